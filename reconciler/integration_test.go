package reconciler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/schema"
	"github.com/capstan-io/capstan/sources/git"
)

// These tests run the sync and the control plane against a real in-process
// NATS server and real git repositories; the node daemons use the fake
// runtime (the real Podman path is covered end to end in cmd/capstan).

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type repo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T) *repo {
	r := &repo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *repo) write(name, content string) {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *repo) commit(msg string) string {
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

func deployment(name string, replicas int, image, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: %[2]d
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
        - name: main
          image: %[3]s
          command: ["sleep", "3600"]
%[4]s`, name, replicas, image, extra)
}

type cluster struct {
	t   *testing.T
	ctx context.Context
	// bus is the production-configured server; conn is the control
	// plane's connection to it, which the harness uses too.
	bus   *natsauthtest.Bus
	conn  *natsbus.Conn
	repo  *repo
	nodes map[string]context.CancelFunc
	rts   map[string]*fake.Runtime
}

func startCluster(t *testing.T, r *repo, opts ...func(*controllers.ControlPlane)) *cluster {
	b := natsauthtest.Start(t)
	conn := b.ControlPlane
	ctx, cancel := context.WithCancel(context.Background())
	log := logger(t)
	src, err := git.New(git.Options{URL: r.dir, Interval: time.Hour, CacheDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	cp := &controllers.ControlPlane{Objects: conn.Objects, Assignments: conn.Assignments, Status: conn.Status,
		Nodes: conn.Nodes, Events: conn.Events, Log: log, NodeGracePeriod: 2 * time.Second, PodEvictionTimeout: time.Second,
		ResyncPeriod: 500 * time.Millisecond}
	for _, o := range opts {
		o(cp)
	}
	sy := &gitops.Syncer{Name: "root", Source: src, Load: schema.Load, Objects: conn.Objects, Audit: conn.Audit,
		Events: conn.Events, Log: log, Resync: 2 * time.Second}
	go func() { _ = cp.Run(ctx); done <- struct{}{} }()
	go func() { _ = sy.Run(ctx); done <- struct{}{} }()
	c := &cluster{t: t, ctx: ctx, bus: b, conn: conn, repo: r, nodes: map[string]context.CancelFunc{}, rts: map[string]*fake.Runtime{}}
	t.Cleanup(func() {
		for _, stop := range c.nodes {
			stop()
		}
		cancel()
		<-done
		<-done
	})
	return c
}

// nodeConn connects as node name, the identity a node daemon has in
// production.
func (c *cluster) nodeConn(name string) *natsbus.Conn {
	c.t.Helper()
	return c.bus.Connect(c.t, natsauth.RoleNode, name, natsbus.Options{Logger: logger(c.t)})
}

// addNode starts a node daemon with img:1 and img:2 on the fake runtime.
func (c *cluster) addNode(name string) *fake.Runtime {
	return c.startNode(name, []string{"img:1", "img:2"}, 0)
}

// startNode starts a node daemon named name with images on the fake
// runtime, sampling usage every usage (0: the daemon's default).
func (c *cluster) startNode(name string, images []string, usage time.Duration) *fake.Runtime {
	rt := fake.New(fake.Options{})
	for _, img := range images {
		rt.AddImage(img)
	}
	nc := c.nodeConn(name)
	ctx, cancel := context.WithCancel(c.ctx)
	d := &node.Daemon{Name: name, Runtime: rt, Nodes: nc.Nodes, Assignments: nc.Assignments,
		Status: nc.Status, Events: nc.Events, Log: logger(c.t), HeartbeatInterval: 300 * time.Millisecond,
		RelistInterval: 100 * time.Millisecond, UsageInterval: usage}
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	c.nodes[name] = func() { cancel(); <-done }
	c.rts[name] = rt
	return rt
}

// nodeReady says whether the node's record on the bus is Ready.
func (c *cluster) nodeReady(name string) error {
	e, err := c.conn.Nodes.Get(c.ctx, name)
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	var n manifests.Node
	if err := json.Unmarshal(e.Value, &n); err != nil {
		return err
	}
	if !manifests.IsNodeReady(&n) {
		return fmt.Errorf("node %s not ready: %+v", name, n.Status.Conditions)
	}
	return nil
}

func (c *cluster) pods(app string) []*manifests.Pod {
	entries, err := c.conn.Objects.List(c.ctx, "Pod.default.>")
	if err != nil {
		c.t.Fatal(err)
	}
	var out []*manifests.Pod
	for _, e := range entries {
		obj, err := manifests.Decode(e.Value)
		if err != nil {
			c.t.Fatal(err)
		}
		if p := obj.(*manifests.Pod); p.Labels["app"] == app {
			out = append(out, p)
		}
	}
	return out
}

// quiet checks that a converged cluster writes nothing to the objects
// bucket through several resyncs of the controllers and the sync: every
// reconcile of a converged state is a no-op. The status writes still in
// flight when the pods turned ready have no end to observe, so it first
// waits for the writes to stop for a second (less than the sync's resync,
// more than the controllers'); the window d, longer than both, is the
// check.
func (c *cluster) quiet(d time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	ch, err := c.conn.Objects.Watch(ctx, ">")
	if err != nil {
		c.t.Fatal(err)
	}
	var mu sync.Mutex
	var writes []string
	go func() {
		synced := false
		for e := range ch {
			if e.Op == bus.OpSynced {
				synced = true
				continue
			}
			if synced && !strings.HasPrefix(e.Key, "Source.") {
				mu.Lock()
				writes = append(writes, e.Key)
				mu.Unlock()
			}
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(writes) }
	settled := testwait.Settles(c.t, 15*time.Second, time.Second, "the writes of a converging cluster", count)
	testwait.Holds(c.t, d, "a converged cluster writes nothing", func() error {
		mu.Lock()
		defer mu.Unlock()
		if n := len(writes) - settled; n > 0 {
			return fmt.Errorf("%d writes: %v", n, writes[settled:])
		}
		return nil
	})
}

func (c *cluster) source() *manifests.Source {
	obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("Source", "", "root"))
	if err != nil {
		return &manifests.Source{}
	}
	return obj.(*manifests.Source)
}

// readyPods waits until app has exactly n ready pods, all with image.
func (c *cluster) readyPods(app string, n int, image string, within time.Duration) []*manifests.Pod {
	var pods []*manifests.Pod
	testwait.For(c.t, within, fmt.Sprintf("%d ready pods of %s at %s", n, app, image), func() error {
		pods = c.pods(app)
		ready := 0
		for _, p := range pods {
			if p.Spec.Containers[0].Image != image {
				return fmt.Errorf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
			}
			if manifests.IsPodReady(p) {
				ready++
			}
		}
		if len(pods) != n || ready != n {
			return fmt.Errorf("%d pods, %d ready; want %d", len(pods), ready, n)
		}
		return nil
	})
	return pods
}

// A control plane run without its scheduler (--controllers=*,-scheduler)
// still makes the pods, and leaves them pending on a Ready node.
func TestControllersLeaveOneOut(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.write("apps/web.yaml", deployment("web", 2, "img:1", ""))
	r.commit("web")
	c := startCluster(t, r, func(cp *controllers.ControlPlane) { cp.Controllers = []string{"*", "-scheduler"} })
	c.addNode("n1")
	testwait.For(t, 15*time.Second, "two pods made", func() error {
		if n := len(c.pods("web")); n != 2 {
			return fmt.Errorf("%d pods, want 2", n)
		}
		return nil
	})
	testwait.For(t, 10*time.Second, "node n1 Ready", func() error { return c.nodeReady("n1") })
	// The node is Ready: through several resyncs, no pod is bound.
	testwait.Holds(t, 1500*time.Millisecond, "no pod is bound without the scheduler", func() error {
		for _, p := range c.pods("web") {
			if p.Spec.NodeName != "" {
				return fmt.Errorf("pod %s bound to %s with the scheduler left out", p.Name, p.Spec.NodeName)
			}
		}
		return nil
	})
}

func TestCommitToRunningPods(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.write("apps/web.yaml", deployment("web", 3, "img:1", ""))
	first := r.commit("web at img:1")
	c := startCluster(t, r)
	rt := c.addNode("n1")

	pods := c.readyPods("web", 3, "img:1", 15*time.Second)
	for _, p := range pods {
		if p.Spec.NodeName != "n1" {
			t.Fatalf("pod %s on %q, want n1", p.Name, p.Spec.NodeName)
		}
	}
	if got := c.source().Status.AppliedRevision; got != first {
		t.Fatalf("applied revision %q, want %q", got, first)
	}
	c.quiet(3 * time.Second)
	podsInRuntime, err := rt.ListPods(c.ctx, map[string]string{node.LabelNode: "n1"})
	if err != nil || len(podsInRuntime) != 3 {
		t.Fatalf("runtime has %d pods (%v), want 3", len(podsInRuntime), err)
	}

	// An image change rolls out through a new ReplicaSet.
	r.write("apps/web.yaml", deployment("web", 3, "img:2", ""))
	r.commit("web at img:2")
	c.readyPods("web", 3, "img:2", 20*time.Second)
	testwait.For(t, 10*time.Second, "the old ReplicaSet at 0", func() error {
		entries, err := c.conn.Objects.List(c.ctx, "ReplicaSet.default.>")
		if err != nil {
			return err
		}
		if len(entries) != 2 {
			return fmt.Errorf("%d replicasets, want 2 (old one kept at 0 for rollback)", len(entries))
		}
		for _, e := range entries {
			obj, _ := manifests.Decode(e.Value)
			rs := obj.(*manifests.ReplicaSet)
			if rs.Spec.Template.Spec.Containers[0].Image == "img:1" && manifests.Int32(rs.Spec.Replicas, 1) != 0 {
				return fmt.Errorf("old replicaset still has %d replicas", *rs.Spec.Replicas)
			}
		}
		return nil
	})

	// Scale down.
	r.write("apps/web.yaml", deployment("web", 1, "img:2", ""))
	r.commit("scale web to 1")
	c.readyPods("web", 1, "img:2", 10*time.Second)

	// A broken manifest is rejected whole: nothing of it applies.
	before := c.pods("web")
	r.write("apps/web.yaml", deployment("web", 4, "img:1", ""))
	r.write("apps/bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  a: b\nbogus: 1\n")
	bad := r.commit("a bad commit")
	testwait.For(t, 10*time.Second, "the bad commit rejected", func() error {
		st := c.source().Status
		if st.AttemptedRevision != bad {
			return fmt.Errorf("attempted %q", st.AttemptedRevision)
		}
		if !strings.Contains(st.LastError, "bad.yaml:7:1") || !strings.Contains(st.LastError, "bogus") {
			return fmt.Errorf("last error %q lacks bad.yaml:7:1 and the field", st.LastError)
		}
		return nil
	})
	after := c.pods("web")
	if len(after) != 1 || after[0].Name != before[0].Name || after[0].Spec.Containers[0].Image != "img:2" {
		t.Fatalf("a rejected revision changed the pods: before %s, after %d pods", before[0].Name, len(after))
	}
	recs, err := c.conn.Audit.List(c.ctx, "root", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	if last.Result != gitops.ResultRejected || last.Revision != bad || last.Author != "Ada <ada@example.com>" || len(last.Errors) == 0 {
		t.Fatalf("last audit record %+v, want the rejection of %s", last, bad)
	}

	// The next good commit applies; removing the file prunes everything.
	r.git("rm", "-q", "apps/bad.yaml")
	r.commit("fix")
	c.readyPods("web", 4, "img:1", 20*time.Second)
	r.git("rm", "-q", "apps/web.yaml")
	r.write("apps/keep.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n")
	r.commit("remove web")
	testwait.For(t, 15*time.Second, "web's pods gone", func() error {
		if n := len(c.pods("web")); n != 0 {
			return fmt.Errorf("%d web pods left", n)
		}
		rp, err := rt.ListPods(c.ctx, map[string]string{node.LabelNode: "n1"})
		if err != nil || len(rp) != 0 {
			return fmt.Errorf("runtime still has %d pods (%v)", len(rp), err)
		}
		return nil
	})
	testwait.For(t, 10*time.Second, "the removal audited", func() error {
		recs, _ := c.conn.Audit.List(c.ctx, "root", time.Time{})
		last := recs[len(recs)-1]
		for _, ch := range last.Changes {
			if ch.Action == "deleted" && ch.Kind == "Deployment" && ch.Name == "web" {
				return nil
			}
		}
		return fmt.Errorf("audit of the removal lacks the deleted Deployment: %+v", last.Changes)
	})
}

func TestContainerRemovedBehindOurBackIsReplaced(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.write("web.yaml", deployment("web", 1, "img:1", ""))
	r.commit("web")
	c := startCluster(t, r)
	rt := c.addNode("n1")
	c.readyPods("web", 1, "img:1", 15*time.Second)
	pods, _ := rt.ListPods(c.ctx, map[string]string{node.LabelNode: "n1"})
	id := pods[0].Containers[0].ID
	if err := rt.RemoveContainer(c.ctx, id); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the removed container replaced", func() error {
		pods, _ := rt.ListPods(c.ctx, map[string]string{node.LabelNode: "n1"})
		if len(pods) != 1 || len(pods[0].Containers) != 1 || pods[0].Containers[0].ID == id || pods[0].Containers[0].State != node.StateRunning {
			return fmt.Errorf("container not replaced: %+v", pods)
		}
		return nil
	})
}

func TestLostNodesPodsMoveElsewhere(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.write("web.yaml", deployment("web", 4, "img:1", ""))
	r.commit("web")
	c := startCluster(t, r)
	c.addNode("n1")
	c.addNode("n2")
	pods := c.readyPods("web", 4, "img:1", 15*time.Second)
	on := map[string]int{}
	for _, p := range pods {
		on[p.Spec.NodeName]++
	}
	if on["n1"] != 2 || on["n2"] != 2 {
		t.Fatalf("replicas not spread: %v", on)
	}
	c.nodes["n2"]() // n2 stops heartbeating
	testwait.For(t, 20*time.Second, "the pods moved to n1", func() error {
		ps := c.pods("web")
		ready := 0
		for _, p := range ps {
			if p.Spec.NodeName != "n1" {
				return fmt.Errorf("pod %s still on %s", p.Name, p.Spec.NodeName)
			}
			if manifests.IsPodReady(p) {
				ready++
			}
		}
		if ready != 4 {
			return fmt.Errorf("%d ready on n1", ready)
		}
		return nil
	})
	n, _, err := cache.GetObject(c.ctx, c.conn.Nodes, "n2")
	if err != nil {
		t.Fatal(err)
	}
	if manifests.IsNodeReady(n.(*manifests.Node)) {
		t.Fatal("n2 still Ready")
	}
}
