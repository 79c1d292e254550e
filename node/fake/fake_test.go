package fake_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/node/fake"
	"github.com/capstan-io/capstan/node/runtimetest"
)

func TestContract(t *testing.T) {
	t.Parallel()
	runtimetest.Run(t, func(t *testing.T) node.Runtime {
		r := fake.New(fake.Options{})
		r.AddImage(runtimetest.DefaultImage)
		return r
	}, runtimetest.WithoutNetwork(), runtimetest.WithTimeout(5*time.Second))
}

func TestContractShared(t *testing.T) {
	t.Parallel()
	// One runtime shared by every subtest, with a start delay, as a
	// simulated node would use it.
	r := fake.New(fake.Options{StartDelay: 10 * time.Millisecond})
	r.AddImage(runtimetest.DefaultImage)
	runtimetest.Run(t, func(*testing.T) node.Runtime { return r },
		runtimetest.WithoutNetwork(), runtimetest.WithTimeout(5*time.Second))
}

func setup(t *testing.T) (*fake.Runtime, string) {
	t.Helper()
	r := fake.New(fake.Options{})
	r.AddImage("img")
	ctx := context.Background()
	pod, err := r.CreatePod(ctx, node.PodConfig{Name: "p", Labels: map[string]string{"app": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.CreateContainer(ctx, pod, node.ContainerConfig{Name: "c", Image: "img", Args: []string{"server"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	return r, id
}

func state(t *testing.T, r *fake.Runtime) node.ContainerInfo {
	t.Helper()
	pods, err := r.ListPods(context.Background(), map[string]string{"app": "x"})
	if err != nil || len(pods) != 1 || len(pods[0].Containers) != 1 {
		t.Fatalf("list: %v %+v", err, pods)
	}
	return pods[0].Containers[0]
}

func TestExitAndOOMKill(t *testing.T) {
	t.Parallel()
	r, id := setup(t)
	if c := state(t, r); c.State != node.StateRunning {
		t.Fatalf("state %s, want running", c.State)
	}
	if err := r.Exit(id, 7); err != nil {
		t.Fatal(err)
	}
	if c := state(t, r); c.State != node.StateExited || c.ExitCode != 7 || c.OOMKilled {
		t.Fatalf("after Exit: %+v", c)
	}
	if err := r.Exit(id, 1); !errors.Is(err, node.ErrConflict) {
		t.Fatalf("Exit of an exited container: %v, want ErrConflict", err)
	}
	if err := r.StartContainer(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if err := r.OOMKill(id); err != nil {
		t.Fatal(err)
	}
	if c := state(t, r); c.State != node.StateExited || c.ExitCode != fake.ExitCodeOOM || !c.OOMKilled {
		t.Fatalf("after OOMKill: %+v", c)
	}
	if err := r.Exit("nope", 1); !errors.Is(err, node.ErrNotFound) {
		t.Fatalf("Exit of unknown: %v, want ErrNotFound", err)
	}
}

func TestWriteLog(t *testing.T) {
	t.Parallel()
	r, id := setup(t)
	if err := r.WriteLog(id, false, "one"); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteLog(id, true, "two"); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.ContainerLogs(context.Background(), id, false, -1, &b); err != nil {
		t.Fatal(err)
	}
	if b.String() != "one\ntwo\n" {
		t.Fatalf("logs %q", b.String())
	}
}

func TestStartDelayHonoursContext(t *testing.T) {
	t.Parallel()
	r := fake.New(fake.Options{StartDelay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.StartContainer(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("start with a cancelled context: %v", err)
	}
}
