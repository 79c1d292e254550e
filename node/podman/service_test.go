//go:build linux

package podman

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestHostConfig(t *testing.T) {
	t.Parallel()
	conf := string(HostConfig())
	for _, want := range []string{`runtime = "runc"`, `cgroup_manager = "cgroupfs"`, `events_logger = "file"`, "default_ulimits"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %s:\n%s", want, conf)
		}
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if got := clampRlimit(unix.RLIMIT_NOFILE, maxNofile); got > rl.Max || got > maxNofile {
		t.Errorf("nofile %d above hard limit %d or %d", got, rl.Max, maxNofile)
	}
	if got := clampRlimit(unix.RLIMIT_NOFILE, 1); got != 1 {
		t.Errorf("clamp to 1 gave %d", got)
	}
}

func TestEnsureServiceNeedsSocketOrDir(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, _, err := EnsureService(ctx, ServiceOptions{}); err == nil {
		t.Error("no socket and no data dir: no error")
	}
	dead := "unix://" + t.TempDir() + "/none.sock"
	if _, _, err := EnsureService(ctx, ServiceOptions{SocketURI: dead}); err == nil {
		t.Error("dead socket and no data dir: no error")
	}
	if err := Ping(ctx, "ssh://host/run/podman.sock"); err == nil {
		t.Error("ping over ssh: no error")
	}
}

func TestEnsureServiceReportsFailedStart(t *testing.T) {
	t.Parallel()
	_, _, err := EnsureService(context.Background(), ServiceOptions{DataDir: t.TempDir(), Podman: "/bin/false"})
	if err == nil {
		t.Fatal("service that exits at once: no error")
	}
	t.Log(err)
}
