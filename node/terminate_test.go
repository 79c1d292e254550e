package node_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/node/fake"
)

// TestDaemonGracefulTermination marks an assigned pod for deletion: the
// node reports it not ready (Terminating) at once, runs its preStop hook
// only after the termination delay, removes the runtime pod, reports it
// removed, and never restarts it meanwhile.
func TestDaemonGracefulTermination(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var mu sync.Mutex
	var hookAt time.Time
	w.rt.SetExec(func(ctx context.Context, _ node.ContainerConfig, cmd []string) fake.ExecResult {
		if cmd[0] == "prestop" {
			mu.Lock()
			hookAt = time.Now()
			mu.Unlock()
		}
		return fake.ExecResult{}
	})
	p := newPod("bye", func(p *manifests.Pod) {
		p.Spec.TerminationGracePeriodSeconds = manifests.Ptr(int64(5))
		p.Spec.Containers[0].Lifecycle = &manifests.Lifecycle{PreStop: &manifests.LifecycleHandler{Exec: &manifests.ExecAction{Command: []string{"prestop"}}}}
		p.Spec.Containers[0].Ports = []manifests.ContainerPort{{Name: "http", ContainerPort: 8080}, {ContainerPort: 53, Protocol: "UDP"}, {ContainerPort: 9090, HostPort: 9090}}
	})
	w.assign(p)
	st := w.status(p, 5*time.Second, "ready", func(st manifests.PodStatus) error {
		if cond(st, "Ready") != manifests.ConditionTrue {
			return errors.New("not ready")
		}
		if len(st.HostPorts) != 3 {
			return fmt.Errorf("host ports %v", st.HostPorts)
		}
		return nil
	})
	// Every declared port is published: a given host port as given, the
	// others on one the runtime picked; sorted by protocol and port.
	got := map[string]int32{}
	for _, hp := range st.HostPorts {
		got[fmt.Sprintf("%s/%d", hp.Protocol, hp.ContainerPort)] = hp.HostPort
	}
	if got["TCP/9090"] != 9090 || got["TCP/8080"] == 0 || got["UDP/53"] == 0 || st.HostPorts[0].Protocol != "TCP" || st.HostPorts[2].Protocol != "UDP" {
		t.Errorf("host ports %v", st.HostPorts)
	}

	marked := time.Now()
	p.DeletionTimestamp = manifests.Now()
	p.DeletionGracePeriodSeconds = manifests.Ptr(int64(5))
	w.assign(p)
	var notReadyAt time.Time
	testwait.For(t, 5*time.Second, "reported terminating", func() error {
		r, err := w.report(p)
		if err != nil {
			return err
		}
		c := manifests.FindCondition(r.Status.Conditions, "Ready")
		if c == nil || c.Status != manifests.ConditionFalse || c.Reason != "Terminating" {
			return fmt.Errorf("ready %+v", c)
		}
		notReadyAt = time.Now()
		return nil
	})
	testwait.For(t, 10*time.Second, "reported removed", func() error {
		r, err := w.report(p)
		if err != nil {
			return err
		}
		if !r.Removed {
			return errors.New("not removed yet")
		}
		return nil
	})
	if pods, _ := w.rt.ListPods(w.ctx, map[string]string{node.LabelUID: p.UID}); len(pods) != 0 {
		t.Errorf("runtime pod left after the removed report: %+v", pods)
	}
	mu.Lock()
	defer mu.Unlock()
	switch {
	case hookAt.IsZero():
		t.Error("the preStop hook did not run")
	case hookAt.Before(notReadyAt.Add(-100 * time.Millisecond)):
		t.Errorf("preStop ran before the pod was reported not ready")
	case hookAt.Sub(marked) < 900*time.Millisecond:
		t.Errorf("preStop ran %v after the deletion, before the 1 s termination delay", hookAt.Sub(marked))
	}
	if n := len(w.containers(p, "app")); n != 0 {
		t.Errorf("%d containers after removal", n)
	}
	// The report goes with the assignment.
	w.unassign(p)
	testwait.For(t, 5*time.Second, "report deleted", func() error {
		if _, err := w.report(p); err == nil {
			return errors.New("report still there")
		}
		return nil
	})
}

// TestDaemonTerminatingNeverStarted: a pod marked for deletion before its
// node ran it is reported removed without ever being created.
func TestDaemonTerminatingNeverStarted(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p := newPod("late", func(p *manifests.Pod) {
		p.DeletionTimestamp = manifests.Now()
		p.DeletionGracePeriodSeconds = manifests.Ptr(int64(30))
	})
	w.assign(p)
	testwait.For(t, 5*time.Second, "reported removed", func() error {
		r, err := w.report(p)
		if err != nil {
			return err
		}
		if !r.Removed {
			return errors.New("not removed")
		}
		return nil
	})
	if pods, _ := w.rt.ListPods(w.ctx, nil); len(pods) != 0 {
		t.Errorf("a terminating pod was created: %+v", pods)
	}
}
