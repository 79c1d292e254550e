package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/node/fake"
)

// The daemon's pod lifecycle on the fake runtime, with a real in-process
// NATS server: probes, hooks, init containers, deadlines, usage and exec.

const img = "img"

type world struct {
	t   *testing.T
	ctx context.Context
	bus *natsauthtest.Bus
	// conn is the control plane's connection: the harness plays the
	// control plane (assignments) and reads what the node wrote.
	conn *natsbus.Conn
	rt   *fake.Runtime
	d    *node.Daemon
}

// newWorld starts a daemon on the fake runtime, connected as node n1 to a
// production-configured bus; each of configure may change it before it
// runs.
func newWorld(t *testing.T, configure ...func(*node.Daemon)) *world {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := natsauthtest.Start(t)
	// The connection logs what the bus refuses this identity.
	nc := b.Connect(t, natsauth.RoleNode, "n1", natsbus.Options{Logger: log})
	rt := fake.New(fake.Options{})
	rt.AddImage(img)
	d := &node.Daemon{Name: "n1", Runtime: rt, Nodes: nc.Nodes, Assignments: nc.Assignments, Status: nc.Status,
		Events: nc.Events, Log: log,
		RelistInterval: 50 * time.Millisecond, UsageInterval: 100 * time.Millisecond}
	for _, c := range configure {
		c(d)
	}
	done := make(chan struct{}, 2)
	go func() { _ = d.Run(ctx); done <- struct{}{} }()
	go func() { _ = d.ServeLogs(ctx, nc.NC); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
	})
	return &world{t: t, ctx: ctx, bus: b, conn: b.ControlPlane, rt: rt, d: d}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// newPod is a pod of one long-running container "app", changed by mod.
func newPod(name string, mod func(*manifests.Pod)) *manifests.Pod {
	p := &manifests.Pod{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default", UID: "uid-" + name + "-0123456789"},
		Spec: manifests.PodSpec{NodeName: "n1", RestartPolicy: manifests.RestartAlways,
			TerminationGracePeriodSeconds: manifests.Ptr(int64(1)),
			Containers:                    []manifests.Container{{Name: "app", Image: img, Command: []string{"sleep", "3600"}}}},
	}
	if mod != nil {
		mod(p)
	}
	return p
}

// assign puts a pod in the node's assignments. The value decodes both as a
// Pod and as a manifests.Assignment holding it, whichever the daemon reads.
func (w *world) assign(p *manifests.Pod) {
	w.t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		w.t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["pod"] = json.RawMessage(b)
	b, _ = json.Marshal(m)
	if _, err := w.conn.Assignments.Put(w.ctx, manifests.AssignmentKey("n1", p.Namespace, p.Name), b); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) unassign(p *manifests.Pod) {
	w.t.Helper()
	if err := w.conn.Assignments.Delete(w.ctx, manifests.AssignmentKey("n1", p.Namespace, p.Name), 0); err != nil {
		w.t.Fatal(err)
	}
}

// report returns the pod's last status report, or an error.
func (w *world) report(p *manifests.Pod) (manifests.PodStatusReport, error) {
	var r manifests.PodStatusReport
	e, err := w.conn.Status.Get(w.ctx, manifests.AssignmentKey("n1", p.Namespace, p.Name))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(e.Value, &r)
}

// status waits until the pod's reported status satisfies fn.
func (w *world) status(p *manifests.Pod, total time.Duration, what string, fn func(manifests.PodStatus) error) manifests.PodStatus {
	w.t.Helper()
	var st manifests.PodStatus
	testwait.For(w.t, total, what, func() error {
		r, err := w.report(p)
		if err != nil {
			return err
		}
		st = r.Status
		if err := fn(st); err != nil {
			return fmt.Errorf("%w; status %s", err, js(st))
		}
		return nil
	})
	return st
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func cond(st manifests.PodStatus, typ string) string {
	if c := manifests.FindCondition(st.Conditions, typ); c != nil {
		return c.Status
	}
	return ""
}

func containerStatus(st manifests.PodStatus, name string) (manifests.ContainerStatus, bool) {
	for _, cs := range slices.Concat(st.InitContainerStatuses, st.ContainerStatuses) {
		if cs.Name == name {
			return cs, true
		}
	}
	return manifests.ContainerStatus{}, false
}

// containers lists the pod's runtime containers named name, oldest first.
func (w *world) containers(p *manifests.Pod, name string) []node.ContainerInfo {
	w.t.Helper()
	pods, err := w.rt.ListPods(w.ctx, map[string]string{node.LabelUID: p.UID})
	if err != nil {
		w.t.Fatal(err)
	}
	var out []node.ContainerInfo
	for _, rp := range pods {
		for _, c := range rp.Containers {
			if c.Labels[node.LabelContainer] == name {
				out = append(out, c)
			}
		}
	}
	return out
}

// relistsPass waits until n whole relists have run from now, and with
// them every status report they wrote: the window of a check that
// something does not happen, as long as the daemon needs to do it, under
// any load.
func (w *world) relistsPass(n int64) {
	w.t.Helper()
	until := w.d.Relists() + n + 1 // the one under way now may have begun before
	testwait.For(w.t, 10*time.Second, fmt.Sprintf("%d relists", n), func() error {
		if got := w.d.Relists(); got < until {
			return fmt.Errorf("%d of %d relists", got-until+n+1, n+1)
		}
		return nil
	})
}

func (w *world) events(p *manifests.Pod, reason string) []manifests.Event {
	w.t.Helper()
	evs, err := w.conn.Events.List(w.ctx, "Pod", p.Namespace, p.Name)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []manifests.Event
	for _, e := range evs {
		if e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

func execProbe(cmd string, period, failure int32) *manifests.Probe {
	return &manifests.Probe{ProbeHandler: manifests.ProbeHandler{Exec: &manifests.ExecAction{Command: []string{cmd}}},
		PeriodSeconds: period, FailureThreshold: failure}
}

// scripted makes the fake's Exec answer commands by name: a command in
// fail exits 1, anything else 0.
type scripted struct {
	fail map[string]*atomic.Bool
}

func (w *world) script(cmds ...string) scripted {
	s := scripted{fail: map[string]*atomic.Bool{}}
	for _, c := range cmds {
		s.fail[c] = &atomic.Bool{}
	}
	w.rt.SetExec(func(_ context.Context, _ node.ContainerConfig, cmd []string) fake.ExecResult {
		if b, ok := s.fail[cmd[0]]; ok && b.Load() {
			return fake.ExecResult{ExitCode: 1, Stderr: cmd[0] + " failed\n"}
		}
		return fake.ExecResult{}
	})
	return s
}

func (w *world) execCount(cmd string) int {
	n := 0
	for _, e := range w.rt.Execs() {
		if len(e.Cmd) > 0 && e.Cmd[0] == cmd {
			n++
		}
	}
	return n
}

func TestDaemonReadinessProbe(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	s := w.script("ready")
	p := newPod("ready", func(p *manifests.Pod) {
		p.Spec.Containers[0].ReadinessProbe = execProbe("ready", 1, 1)
	})
	w.assign(p)
	w.status(p, 5*time.Second, "ready", func(st manifests.PodStatus) error {
		if cond(st, "Ready") != "True" || cond(st, "ContainersReady") != "True" {
			return errors.New("not ready")
		}
		return nil
	})
	s.fail["ready"].Store(true)
	st := w.status(p, 5*time.Second, "unready", func(st manifests.PodStatus) error {
		if cond(st, "Ready") != "False" || cond(st, "ContainersReady") != "False" {
			return errors.New("still ready")
		}
		return nil
	})
	if cs, _ := containerStatus(st, "app"); cs.Ready || cs.State.Running == nil || cs.RestartCount != 0 || cs.Started == nil || !*cs.Started {
		t.Fatalf("an unready container must keep running, started: %+v", cs)
	}
	if len(w.events(p, "Unhealthy")) == 0 {
		t.Error("no Unhealthy event for a failed readiness probe")
	}
	s.fail["ready"].Store(false)
	w.status(p, 5*time.Second, "ready again", func(st manifests.PodStatus) error {
		if cond(st, "Ready") != "True" {
			return errors.New("not ready")
		}
		return nil
	})
	if n := len(w.containers(p, "app")); n != 1 {
		t.Errorf("readiness failures restarted the container: %d instances", n)
	}
}

func TestDaemonLivenessRestartsWithPreStop(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	s := w.script("alive", "prestop")
	p := newPod("live", func(p *manifests.Pod) {
		p.Spec.Containers[0].LivenessProbe = execProbe("alive", 1, 2)
		p.Spec.Containers[0].Lifecycle = &manifests.Lifecycle{PreStop: &manifests.LifecycleHandler{Exec: &manifests.ExecAction{Command: []string{"prestop"}}}}
	})
	w.assign(p)
	w.status(p, 5*time.Second, "running", func(st manifests.PodStatus) error {
		if cond(st, "Ready") != "True" {
			return errors.New("not ready")
		}
		return nil
	})
	first := w.containers(p, "app")[0].ID
	s.fail["alive"].Store(true)
	w.status(p, 10*time.Second, "restarted once", func(st manifests.PodStatus) error {
		cs, _ := containerStatus(st, "app")
		if cs.RestartCount != 1 || cs.State.Running == nil {
			return errors.New("not restarted")
		}
		return nil
	})
	s.fail["alive"].Store(false)
	// The first instance ran its preStop hook and was stopped (SIGTERM).
	var sawPreStop bool
	for _, e := range w.rt.Execs() {
		if e.ContainerID == first && e.Cmd[0] == "prestop" {
			sawPreStop = true
		}
	}
	if !sawPreStop {
		t.Errorf("no preStop hook ran on the killed instance: %+v", w.rt.Execs())
	}
	inst := w.containers(p, "app")
	if len(inst) != 2 || inst[0].ExitCode != fake.ExitCodeStopped {
		t.Errorf("instances after the restart: %+v", inst)
	}
	if len(w.events(p, "Killing")) != 1 || len(w.events(p, "Unhealthy")) < 2 {
		t.Errorf("events: Killing %d, Unhealthy %d; want 1 and >= 2", len(w.events(p, "Killing")), len(w.events(p, "Unhealthy")))
	}
}

func TestDaemonStartupProbeGates(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	s := w.script("started")
	s.fail["started"].Store(true)
	p := newPod("startup", func(p *manifests.Pod) {
		p.Spec.Containers[0].StartupProbe = execProbe("started", 1, 30)
		p.Spec.Containers[0].LivenessProbe = execProbe("alive", 1, 1)
	})
	w.assign(p)
	w.status(p, 5*time.Second, "running, not started", func(st manifests.PodStatus) error {
		cs, _ := containerStatus(st, "app")
		if cs.State.Running == nil || cs.Started == nil || *cs.Started || cs.Ready || cond(st, "Ready") != "False" {
			return errors.New("want running, not started, not ready")
		}
		return nil
	})
	testwait.For(t, 5*time.Second, "two startup probes", func() error {
		if n := w.execCount("started"); n < 2 {
			return fmt.Errorf("%d startup probes", n)
		}
		return nil
	})
	if n := w.execCount("alive"); n != 0 {
		t.Fatalf("liveness probed %d times before startup passed", n)
	}
	s.fail["started"].Store(false)
	w.status(p, 5*time.Second, "started and ready", func(st manifests.PodStatus) error {
		cs, _ := containerStatus(st, "app")
		if cs.Started == nil || !*cs.Started || !cs.Ready {
			return errors.New("not started")
		}
		return nil
	})
	testwait.For(t, 5*time.Second, "liveness probes after startup", func() error {
		if w.execCount("alive") == 0 {
			return errors.New("no liveness probe yet")
		}
		return nil
	})
}

func TestDaemonInitContainers(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p := newPod("init", func(p *manifests.Pod) {
		p.Spec.InitContainers = []manifests.Container{
			{Name: "first", Image: img, Command: []string{"sleep", "1"}},
			{Name: "second", Image: img, Command: []string{"sleep", "1"}},
		}
	})
	w.assign(p)
	st := w.status(p, 5*time.Second, "first init running", func(st manifests.PodStatus) error {
		if cs, _ := containerStatus(st, "first"); cs.State.Running == nil {
			return errors.New("first not running")
		}
		return nil
	})
	if st.Phase != manifests.PodPending || cond(st, "Initialized") != "False" || manifests.FindCondition(st.Conditions, "Initialized").Reason != "ContainersNotInitialized" {
		t.Fatalf("initializing pod: %s", js(st))
	}
	if cs, _ := containerStatus(st, "app"); cs.State.Waiting == nil || cs.State.Waiting.Reason != "PodInitializing" {
		t.Fatalf("app while initializing: %+v", cs)
	}
	// A few relists pass, and nothing else may start.
	w.relistsPass(4)
	if n := len(w.containers(p, "second")) + len(w.containers(p, "app")); n != 0 {
		t.Fatalf("%d later containers created while the first init container runs", n)
	}
	first := w.containers(p, "first")
	if first[0].Labels[node.LabelInit] != "true" {
		t.Errorf("init container lacks %s: %v", node.LabelInit, first[0].Labels)
	}
	// A failing init container is retried (policy Always), in order.
	if err := w.rt.Exit(first[0].ID, 1); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 5*time.Second, "first retried", func() error {
		if inst := w.containers(p, "first"); len(inst) != 2 || inst[1].State != node.StateRunning {
			return fmt.Errorf("instances %+v", inst)
		}
		return nil
	})
	if err := w.rt.Exit(w.containers(p, "first")[1].ID, 0); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 5*time.Second, "second running", func() error {
		if inst := w.containers(p, "second"); len(inst) != 1 || inst[0].State != node.StateRunning {
			return fmt.Errorf("instances %+v", inst)
		}
		return nil
	})
	if len(w.containers(p, "app")) != 0 {
		t.Fatal("app created before the second init container completed")
	}
	if err := w.rt.Exit(w.containers(p, "second")[0].ID, 0); err != nil {
		t.Fatal(err)
	}
	st = w.status(p, 5*time.Second, "running", func(st manifests.PodStatus) error {
		if st.Phase != manifests.PodRunning || cond(st, "Initialized") != "True" || cond(st, "Ready") != "True" {
			return errors.New("not running")
		}
		return nil
	})
	for _, name := range []string{"first", "second"} {
		cs, _ := containerStatus(st, name)
		if cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" || !cs.Ready {
			t.Errorf("init container %s: %+v", name, cs)
		}
	}
	if cs, _ := containerStatus(st, "first"); cs.RestartCount != 1 {
		t.Errorf("first init container restart count %d, want 1", cs.RestartCount)
	}
	// Completed init containers are kept and never run again: a few
	// relists pass, with no new instance.
	w.relistsPass(4)
	if n := len(w.containers(p, "first")) + len(w.containers(p, "second")); n != 3 {
		t.Errorf("init instances after initialization: %d, want 3", n)
	}
}

func TestDaemonInitContainerFailsPodWithNever(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p := newPod("initfail", func(p *manifests.Pod) {
		p.Spec.RestartPolicy = manifests.RestartNever
		p.Spec.InitContainers = []manifests.Container{{Name: "setup", Image: img, Command: []string{"sh", "-c", "exit 3"}}}
	})
	w.assign(p)
	st := w.status(p, 5*time.Second, "failed", func(st manifests.PodStatus) error {
		if st.Phase != manifests.PodFailed {
			return errors.New("not failed")
		}
		return nil
	})
	if cs, _ := containerStatus(st, "setup"); cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 3 {
		t.Errorf("init container: %+v", cs)
	}
	// A few relists pass, and nothing may start.
	w.relistsPass(4)
	if n := len(w.containers(p, "app")); n != 0 {
		t.Errorf("app containers created after a failed init container: %d", n)
	}
	if n := len(w.containers(p, "setup")); n != 1 {
		t.Errorf("init container retried under Never: %d instances", n)
	}
}

func TestDaemonPostStartFailureRestarts(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	// The hook fails in the first instance only.
	w.rt.SetExec(func(_ context.Context, c node.ContainerConfig, cmd []string) fake.ExecResult {
		if cmd[0] == "hook" && c.Labels[node.LabelAttempt] == "0" {
			return fake.ExecResult{ExitCode: 1}
		}
		return fake.ExecResult{}
	})
	p := newPod("poststart", func(p *manifests.Pod) {
		p.Spec.Containers[0].Lifecycle = &manifests.Lifecycle{PostStart: &manifests.LifecycleHandler{Exec: &manifests.ExecAction{Command: []string{"hook"}}}}
	})
	w.assign(p)
	w.status(p, 5*time.Second, "restarted and running", func(st manifests.PodStatus) error {
		cs, _ := containerStatus(st, "app")
		if cs.RestartCount != 1 || cs.State.Running == nil {
			return errors.New("not restarted")
		}
		return nil
	})
	if inst := w.containers(p, "app"); len(inst) != 2 || inst[0].State != node.StateExited {
		t.Errorf("instances: %+v", inst)
	}
	if w.execCount("hook") != 2 {
		t.Errorf("postStart ran %d times, want 2", w.execCount("hook"))
	}
	if len(w.events(p, "FailedPostStartHook")) != 1 {
		t.Errorf("FailedPostStartHook events: %+v", w.events(p, "FailedPostStartHook"))
	}
}

func TestDaemonRemovalRunsPreStopWithinGrace(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var hooked atomic.Int32
	w.rt.SetExec(func(ctx context.Context, _ node.ContainerConfig, cmd []string) fake.ExecResult {
		if cmd[0] == "prestop" {
			hooked.Add(1)
			<-ctx.Done() // a hook that never ends by itself
		}
		return fake.ExecResult{}
	})
	p := newPod("bye", func(p *manifests.Pod) {
		p.Spec.TerminationGracePeriodSeconds = manifests.Ptr(int64(1))
		p.Spec.Containers[0].Lifecycle = &manifests.Lifecycle{PreStop: &manifests.LifecycleHandler{Exec: &manifests.ExecAction{Command: []string{"prestop"}}}}
	})
	w.assign(p)
	w.status(p, 5*time.Second, "running", func(st manifests.PodStatus) error {
		if st.Phase != manifests.PodRunning {
			return errors.New("not running")
		}
		return nil
	})
	begin := time.Now()
	w.unassign(p)
	testwait.For(t, 10*time.Second, "pod removed", func() error {
		if pods, _ := w.rt.ListPods(w.ctx, map[string]string{node.LabelUID: p.UID}); len(pods) != 0 {
			return errors.New("pod still there")
		}
		return nil
	})
	took := time.Since(begin)
	if hooked.Load() != 1 {
		t.Errorf("preStop ran %d times, want 1", hooked.Load())
	}
	// The hook is cut at the grace period (1 s); the stop then gets the
	// kubelet's 2 s extension at most (the fake stops at once).
	if took < time.Second || took > 5*time.Second {
		t.Errorf("removal took %v, want the grace period of 1s (plus little)", took)
	}
}

func TestDaemonActiveDeadline(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p := newPod("deadline", func(p *manifests.Pod) {
		p.Spec.ActiveDeadlineSeconds = manifests.Ptr(int64(1))
	})
	w.assign(p)
	st := w.status(p, 10*time.Second, "failed by deadline", func(st manifests.PodStatus) error {
		if st.Phase != manifests.PodFailed || st.Reason != "DeadlineExceeded" {
			return errors.New("not failed")
		}
		return nil
	})
	if cond(st, "Ready") != "False" {
		t.Errorf("a pod past its deadline is ready: %s", js(st))
	}
	testwait.For(t, 5*time.Second, "container stopped", func() error {
		if inst := w.containers(p, "app"); len(inst) != 1 || inst[0].State != node.StateExited {
			return fmt.Errorf("instances %+v", inst)
		}
		return nil
	})
	// Several relists pass, and no restart comes.
	w.relistsPass(6)
	if n := len(w.containers(p, "app")); n != 1 {
		t.Errorf("container restarted past the deadline: %d instances", n)
	}
	if len(w.events(p, "DeadlineExceeded")) == 0 {
		t.Error("no DeadlineExceeded event")
	}
}

func TestDaemonOOMKilled(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p := newPod("oom", func(p *manifests.Pod) { p.Spec.RestartPolicy = manifests.RestartNever })
	w.assign(p)
	testwait.For(t, 5*time.Second, "running", func() error {
		if inst := w.containers(p, "app"); len(inst) != 1 || inst[0].State != node.StateRunning {
			return fmt.Errorf("instances %+v", inst)
		}
		return nil
	})
	if err := w.rt.OOMKill(w.containers(p, "app")[0].ID); err != nil {
		t.Fatal(err)
	}
	w.status(p, 5*time.Second, "OOMKilled", func(st manifests.PodStatus) error {
		cs, _ := containerStatus(st, "app")
		if st.Phase != manifests.PodFailed || cs.State.Terminated == nil || cs.State.Terminated.Reason != "OOMKilled" {
			return errors.New("not OOMKilled")
		}
		return nil
	})
}

func TestDaemonUsage(t *testing.T) {
	w := newWorld(t)
	p := newPod("usage", func(p *manifests.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, manifests.Container{Name: "side", Image: img, Command: []string{"sleep", "3600"}})
	})
	w.assign(p)
	var names []string
	testwait.For(t, 5*time.Second, "two running containers", func() error {
		names = nil
		for _, c := range slices.Concat(w.containers(p, "app"), w.containers(p, "side")) {
			if c.State == node.StateRunning {
				names = append(names, c.Name)
			}
		}
		if len(names) != 2 {
			return fmt.Errorf("running %v", names)
		}
		return nil
	})
	// CPU time grows at half a core per container while the test runs.
	begin := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			for i, n := range names {
				w.rt.SetStats(n, node.ContainerStats{CPUNanos: uint64(time.Since(begin)) / 2, MemoryBytes: uint64(i+1) << 20})
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var first manifests.PodStatusReport
	testwait.For(t, 5*time.Second, "usage reported", func() error {
		r, err := w.report(p)
		if err != nil || r.Usage == nil {
			return fmt.Errorf("no usage: %v", err)
		}
		first = r
		return nil
	})
	if first.Usage.MemoryBytes != 3<<20 {
		t.Errorf("memory %d, want %d", first.Usage.MemoryBytes, 3<<20)
	}
	if first.Usage.CPUMilli < 700 || first.Usage.CPUMilli > 1300 {
		t.Errorf("cpu %dm, want about 1000m (two containers at half a core)", first.Usage.CPUMilli)
	}
	// A new sample rewrites the report, but not the status.
	testwait.For(t, 5*time.Second, "a later usage sample", func() error {
		r, err := w.report(p)
		if err != nil || r.Usage == nil || !r.Usage.Time.After(first.Usage.Time.Time) {
			return errors.New("no new sample")
		}
		if manifests.Hash(r.Status) != manifests.Hash(first.Status) {
			t.Errorf("the status changed with the usage alone:\n%s\n%s", js(first.Status), js(r.Status))
		}
		return nil
	})
}

func TestRemoteExec(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p := newPod("exec", func(p *manifests.Pod) {
		p.Spec.InitContainers = []manifests.Container{{Name: "setup", Image: img, Command: []string{"sh", "-c", "exit 0"}}}
	})
	w.assign(p)
	w.status(p, 5*time.Second, "running", func(st manifests.PodStatus) error {
		if st.Phase != manifests.PodRunning {
			return errors.New("not running")
		}
		return nil
	})
	var stdout, stderr bytes.Buffer
	// The request comes from a person's CLI: an operator's identity, the
	// least one allowed to ask for exec.
	ops := w.bus.Raw(t, natsauth.RoleOperator, "ops")
	// Without -c the pod's only app container: init containers do not count.
	code, err := node.RemoteExec(w.ctx, ops, "n1", node.ExecRequest{Namespace: "default", Pod: "exec",
		Command: []string{"sh", "-c", "echo hi; echo oops >&2; exit 4"}}, &stdout, &stderr)
	if err != nil || code != 4 || stdout.String() != "hi\n" || stderr.String() != "oops\n" {
		t.Fatalf("exec: code %d err %v stdout %q stderr %q", code, err, stdout.String(), stderr.String())
	}
	// The exited init container is found, but cannot run anything.
	_, err = node.RemoteExec(w.ctx, ops, "n1", node.ExecRequest{Namespace: "default", Pod: "exec", Container: "setup",
		Command: []string{"true"}}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("exec in an exited container: %v", err)
	}
	_, err = node.RemoteExec(w.ctx, ops, "n1", node.ExecRequest{Namespace: "default", Pod: "nope", Command: []string{"true"}}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "not running on node") {
		t.Errorf("exec in a missing pod: %v", err)
	}
	_, err = node.RemoteExec(w.ctx, ops, "n2", node.ExecRequest{Namespace: "default", Pod: "exec", Command: []string{"true"}}, &stdout, &stderr)
	if !errors.Is(err, node.ErrNoNode) {
		t.Errorf("exec on a node that does not answer: %v, want ErrNoNode", err)
	}
}

// slowList is the fake runtime with a slow ListPods, as Podman's is
// under load, counting the lists.
type slowList struct {
	*fake.Runtime
	delay time.Duration
	lists atomic.Int64
}

func (s *slowList) ListPods(ctx context.Context, match map[string]string) ([]node.PodInfo, error) {
	s.lists.Add(1)
	time.Sleep(s.delay) // deliberate: the slow runtime this fake plays
	return s.Runtime.ListPods(ctx, match)
}

// A slot that frees starts the next pod waiting for one, without a relist
// in between: with one slot, six pods start with fewer relists than pods.
// Waiting for the relist each finished sync pokes made every start after
// the first wait for a whole list of the node's pods.
func TestDaemonFreedSlotStartsTheNextPod(t *testing.T) {
	t.Parallel()
	var rt *slowList
	w := newWorld(t, func(d *node.Daemon) {
		rt = &slowList{Runtime: d.Runtime.(*fake.Runtime), delay: 200 * time.Millisecond}
		d.Runtime, d.MaxParallel, d.RelistInterval = rt, 1, time.Hour
	})
	var pods []*manifests.Pod
	for i := range 6 {
		p := newPod(fmt.Sprintf("p%d", i), nil)
		pods = append(pods, p)
		w.assign(p)
	}
	var lists int64
	testwait.For(t, 30*time.Second, "six pods started", func() error {
		lists = rt.lists.Load() // before looking: the lists that began before all had started
		for _, p := range pods {
			if cs := w.containers(p, "app"); len(cs) == 0 || cs[0].State != node.StateRunning {
				return fmt.Errorf("%s not running", p.Name)
			}
		}
		return nil
	})
	if lists >= int64(len(pods)) {
		t.Fatalf("%d lists of the node's pods before %d pods had started one at a time: each waited for a relist", lists, len(pods))
	}
}

// TestDaemonFirstReport checks a new pod's first status: one that starts
// at once is reported once, Running, with no Pending report before it;
// one whose start takes longer is reported ContainerCreating before it
// runs (after firstReportDelay, 1 s).
func TestDaemonFirstReport(t *testing.T) {
	t.Parallel()
	type seen struct{ phase, waiting string }
	// collect watches the reports; barrier, once the writes it must see
	// are done, writes a key of its own behind them and waits for the
	// watch to bring it: every report written before has come in.
	const barrierKey = "n1.test.barrier"
	collect := func(w *world) (reports func() []seen, barrier func()) {
		ch, err := w.conn.Status.Watch(w.ctx, "n1.>")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var got []seen
		var barriers atomic.Int64
		go func() {
			for e := range ch {
				if e.Op != bus.OpPut {
					continue
				}
				if e.Key == barrierKey {
					barriers.Add(1)
					continue
				}
				var r manifests.PodStatusReport
				if json.Unmarshal(e.Value, &r) != nil {
					continue
				}
				s := seen{phase: string(r.Status.Phase)}
				if len(r.Status.ContainerStatuses) > 0 && r.Status.ContainerStatuses[0].State.Waiting != nil {
					s.waiting = r.Status.ContainerStatuses[0].State.Waiting.Reason
				}
				mu.Lock()
				got = append(got, s)
				mu.Unlock()
			}
		}()
		reports = func() []seen {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(got)
		}
		barrier = func() {
			t.Helper()
			want := barriers.Load() + 1
			if _, err := w.conn.Status.Put(w.ctx, barrierKey, []byte("{}")); err != nil {
				t.Fatal(err)
			}
			testwait.For(t, 10*time.Second, "the barrier through the watch", func() error {
				if barriers.Load() < want {
					return errors.New("not yet")
				}
				return nil
			})
		}
		return reports, barrier
	}

	noUsage := func(d *node.Daemon) { d.UsageInterval = time.Hour } // no write for a usage sample
	w := newWorld(t, noUsage)
	reports, barrier := collect(w)
	fast := newPod("fast", nil)
	w.assign(fast)
	running := func(st manifests.PodStatus) error {
		if st.Phase != manifests.PodRunning {
			return fmt.Errorf("phase %s", st.Phase)
		}
		return nil
	}
	w.status(fast, 10*time.Second, "Running", running)
	// Several relists pass, each with the reports it wrote, and all of
	// them come in: a later report would be among them.
	w.relistsPass(6)
	barrier()
	if got := reports(); len(got) != 1 || got[0].phase != string(manifests.PodRunning) {
		t.Errorf("a pod that starts at once: reports %v, want one, Running", got)
	}

	w = newWorld(t, noUsage, func(d *node.Daemon) {
		rt := fake.New(fake.Options{StartDelay: 5 * time.Second})
		rt.AddImage(img)
		d.Runtime = rt
	})
	reports, barrier = collect(w)
	slow := newPod("slow", nil)
	w.assign(slow)
	w.status(slow, 20*time.Second, "Running", running)
	barrier() // the Running report has come in through the watch too
	got := reports()
	if len(got) < 2 || got[0] != (seen{phase: string(manifests.PodPending), waiting: "ContainerCreating"}) || got[len(got)-1].phase != string(manifests.PodRunning) {
		t.Errorf("a pod that takes 5 s to start: reports %v, want ContainerCreating first, Running last", got)
	}
}
