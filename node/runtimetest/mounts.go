package runtimetest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capstan-io/capstan/node"
)

// realProcesses reports whether the runtime runs real processes, whose
// files and /etc/hosts the suite can read back (not node/fake).
func (s *suite) realProcesses() bool { return s.cfg.network }

// testMounts checks bind mounts (read-only and writable), tmpfs, and named
// volumes, which outlive the pod that used them.
func (s *suite) testMounts(t *testing.T, h *harness) {
	vol := h.prefix + "-vol"
	labels := map[string]string{LabelRun: s.run, "capstan.claim": vol}
	h.must(h.rt.EnsureVolume(h.ctx, vol, labels), "ensure volume")
	h.must(h.rt.EnsureVolume(h.ctx, vol, labels), "ensure an existing volume")

	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "hello"), []byte("hi-from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	rw := t.TempDir()
	mounts := []node.Mount{
		{Type: node.MountBind, Source: host, Target: "/mnt/host", ReadOnly: true},
		{Type: node.MountBind, Source: rw, Target: "/mnt/rw"},
		{Type: node.MountTmpfs, Target: "/mnt/tmp"},
		{Type: node.MountVolume, Source: vol, Target: "/mnt/vol"},
	}
	pod1 := h.createPod("mounts1")
	writer := h.shell(pod1, "writer", `cat /mnt/host/hello; echo
(touch /mnt/host/x 2>/dev/null && echo host-rw) || echo host-ro
echo written > /mnt/rw/out
awk '$2=="/mnt/tmp"{print "tmp:" $3}' /proc/mounts
echo persisted > /mnt/vol/data`, func(c *node.ContainerConfig) { c.Mounts = mounts })
	h.must(h.rt.StartContainer(h.ctx, writer), "start writer")
	if s.realProcesses() {
		if c := h.waitState(writer, node.StateExited); c.ExitCode != 0 {
			t.Fatalf("writer exited %d: %s", c.ExitCode, h.logs(writer, -1))
		}
		out := h.logs(writer, -1)
		for _, want := range []string{"hi-from-host", "host-ro", "tmp:tmpfs"} {
			if !strings.Contains(out, want) {
				t.Errorf("writer output %q lacks %q", out, want)
			}
		}
		if b, err := os.ReadFile(filepath.Join(rw, "out")); err != nil || string(b) != "written\n" {
			t.Errorf("writable bind mount: %q, %v", b, err)
		}
	}
	// The volume outlives its pod: another pod reads what the first wrote.
	h.must(h.rt.RemovePod(h.ctx, pod1, 0), "remove first pod")
	pod2 := h.createPod("mounts2")
	reader := h.shell(pod2, "reader", "cat /mnt/vol/data", func(c *node.ContainerConfig) {
		c.Mounts = []node.Mount{{Type: node.MountVolume, Source: vol, Target: "/mnt/vol", ReadOnly: true}}
	})
	h.must(h.rt.StartContainer(h.ctx, reader), "start reader")
	if s.realProcesses() {
		h.waitState(reader, node.StateExited)
		if got := h.logs(reader, -1); got != "persisted\n" {
			t.Errorf("volume after its first pod went: %q, want %q", got, "persisted\n")
		}
	}
	// A volume in use cannot be removed; once unused it can, and removing
	// a missing one is not an error.
	if err := h.rt.RemoveVolume(h.ctx, vol); !errors.Is(err, node.ErrConflict) {
		t.Errorf("remove a volume in use: %v, want ErrConflict", err)
	}
	h.must(h.rt.RemovePod(h.ctx, pod2, 0), "remove second pod")
	h.must(h.rt.RemoveVolume(h.ctx, vol), "remove volume")
	h.must(h.rt.RemoveVolume(h.ctx, vol), "remove a missing volume")

	// A mount of an unknown type is refused.
	pod3 := h.createPod("mounts3")
	if _, err := h.rt.CreateContainer(h.ctx, pod3, node.ContainerConfig{Name: h.prefix + "-bad", Image: s.cfg.image,
		Mounts: []node.Mount{{Type: "nfs", Source: "x", Target: "/x"}}}); err == nil {
		t.Error("a mount of type nfs was accepted")
	}
}

// testHostAliases checks a pod's extra /etc/hosts entries, including one
// without an address, which names the pod itself.
func (s *suite) testHostAliases(t *testing.T, h *harness) {
	id, err := h.rt.CreatePod(h.ctx, node.PodConfig{
		Name:     h.prefix + "-hosts",
		Hostname: "hosts",
		Labels:   h.with(map[string]string{"capstan.test/pod": "hosts"}),
		HostAliases: []node.HostAlias{
			{IP: "10.1.2.3", Hostnames: []string{"foo.example", "bar"}},
			{Hostnames: []string{"hosts.sub.default.svc.cluster.local"}},
		},
	})
	h.must(err, "create pod")
	cid := h.shell(id, "cat", "cat /etc/hosts", nil)
	h.must(h.rt.StartContainer(h.ctx, cid), "start")
	if !s.realProcesses() {
		return
	}
	h.waitState(cid, node.StateExited)
	out := h.logs(cid, -1)
	ips := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		for _, name := range f[1:] {
			if _, ok := ips[name]; !ok {
				ips[name] = f[0]
			}
		}
	}
	if ips["foo.example"] != "10.1.2.3" || ips["bar"] != "10.1.2.3" {
		t.Errorf("/etc/hosts lacks the aliases of 10.1.2.3:\n%s", out)
	}
	if ip := ips["hosts.sub.default.svc.cluster.local"]; ip == "" || ip == "10.1.2.3" || strings.HasPrefix(ip, "127.") {
		t.Errorf("/etc/hosts does not give the pod's own name its address (%q):\n%s", ip, out)
	}
}
