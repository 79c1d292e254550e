//go:build remote && linux

package podman_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/node/podman"
	"github.com/capstan-io/capstan/node/runtimetest"
)

// startRuntime starts a Podman service in a temporary data dir, builds the
// test image if missing and connects; it skips, or fails, as
// runtimetest.RequirePodman says.
func startRuntime(t *testing.T) *podman.Runtime {
	t.Helper()
	runtimetest.RequirePodman(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	uri, stop, err := podman.EnsureService(ctx, podman.ServiceOptions{DataDir: dir, Logger: logger})
	if err != nil {
		t.Fatalf("start podman service: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop podman service: %v", err)
		}
	})
	rt, err := podman.New(ctx, uri, podman.WithLogger(logger))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	ok, err := rt.ImageExists(ctx, runtimetest.DefaultImage)
	if err != nil {
		t.Fatalf("image exists: %v", err)
	}
	if !ok {
		cmd := exec.CommandContext(ctx, filepath.Join("..", "..", "scripts", "build-image.sh"), runtimetest.DefaultImage)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+podman.ConfigPath(dir))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build test image: %v\n%s", err, out)
		}
	}
	return rt
}

// testWriter sends log lines to t.Log, so they show with the test's output.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func TestContract(t *testing.T) {
	rt := startRuntime(t)
	runtimetest.Run(t, func(*testing.T) node.Runtime { return rt })
}

// TestTimings logs how long pod creation, container start and ListPods
// take, for the design notes; it checks only that they work.
func TestTimings(t *testing.T) {
	rt := startRuntime(t) // skips with -short
	ctx := context.Background()
	run := fmt.Sprintf("timings-%d", time.Now().UnixNano())
	labels := map[string]string{runtimetest.LabelRun: run}
	t.Cleanup(func() {
		pods, err := rt.ListPods(ctx, labels)
		if err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for _, p := range pods {
			if err := rt.RemovePod(ctx, p.ID, 0); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})

	const n = 5
	var createPod, createStart time.Duration
	for i := range n {
		begin := time.Now()
		podID, err := rt.CreatePod(ctx, node.PodConfig{Name: fmt.Sprintf("%s-%d", run, i), Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		mid := time.Now()
		id, err := rt.CreateContainer(ctx, podID, node.ContainerConfig{
			Name: fmt.Sprintf("%s-%d-c", run, i), Image: runtimetest.DefaultImage,
			Command: []string{"sh", "-c"}, Args: []string{"exit 1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		createPod += mid.Sub(begin)
		createStart += time.Since(mid)
	}
	t.Logf("per pod: create+start pod %v, create+start container %v",
		(createPod / n).Round(time.Millisecond), (createStart / n).Round(time.Millisecond))

	// The first list inspects each exited container once; later lists use
	// the cache.
	for i := range 3 {
		begin := time.Now()
		pods, err := rt.ListPods(ctx, labels)
		if err != nil {
			t.Fatal(err)
		}
		if len(pods) != n {
			t.Fatalf("listed %d pods, want %d", len(pods), n)
		}
		for _, p := range pods {
			if len(p.Containers) != 1 || p.Containers[0].State != node.StateExited || p.Containers[0].ExitCode != 1 {
				t.Fatalf("pod %s lists %+v, want one container exited with code 1", p.Name, p.Containers)
			}
		}
		t.Logf("ListPods #%d of %d pods with exited containers: %v", i+1, n, time.Since(begin).Round(time.Microsecond))
	}
}

func TestEnsureServiceReusesRunningService(t *testing.T) {
	runtimetest.RequirePodman(t)
	ctx := context.Background()
	dir := t.TempDir()
	uri, stop, err := podman.EnsureService(ctx, podman.ServiceOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	uri2, stop2, err := podman.EnsureService(ctx, podman.ServiceOptions{SocketURI: uri})
	if err != nil || uri2 != uri {
		t.Fatalf("reuse: %q %v", uri2, err)
	}
	if err := stop2(); err != nil {
		t.Fatalf("stop of a reused service: %v", err)
	}
	if err := podman.Ping(ctx, uri); err != nil {
		t.Fatalf("stop of a reused service stopped it: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := podman.Ping(ctx, uri); err == nil {
		t.Fatal("service answers after stop")
	}
	if err := stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	_, _, err = podman.EnsureService(ctx, podman.ServiceOptions{SocketURI: uri})
	if err == nil {
		t.Fatal("EnsureService with a dead socket and no data dir did not fail")
	}
}
