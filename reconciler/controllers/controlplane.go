package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/secrets"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/scheduler"
	"github.com/capstan-io/capstan/reconciler/workqueue"
	"golang.org/x/sync/errgroup"
)

// ControlPlane runs every controller of the cluster state: ReplicaSets,
// Deployments, the scheduler, pod assignments to nodes, pod status from
// nodes, node lifecycle and garbage collection. Several may run against one
// bus only if a leader election keeps one active (not yet built: run one).
type ControlPlane struct {
	Objects, Assignments, Status, Nodes bus.Store
	Events                              bus.Events
	Log                                 *slog.Logger

	// NodeGracePeriod is how long a node may miss heartbeats before it is
	// marked NotReady (default 40 s, as Kubernetes).
	NodeGracePeriod time.Duration
	// PodEvictionTimeout is how long pods stay bound to a NotReady node
	// before they are deleted so their controllers replace them elsewhere
	// (default 30 s).
	PodEvictionTimeout time.Duration
	// ResyncPeriod re-queues every object this often, healing missed
	// events (default 30 s).
	ResyncPeriod time.Duration
	// Workers per controller (default 4). The controllers that write once
	// per pod (scheduler, assignments, pod status) run PodWorkers each
	// (default 32): their work is a round trip to the bus, not CPU, so a
	// burst of pods is bound at the rate the bus takes writes rather than
	// at four round trips at a time.
	Workers, PodWorkers int
	// ServiceCIDR is the IPv4 range cluster IPs are allocated from
	// (default 10.96.0.0/16); its first address and the cluster DNS
	// address (DNSServiceIP: .10) are never allocated. ServiceCIDRv6, when
	// set, is an IPv6 range for a second, dual-stack cluster IP (see
	// service.go).
	ServiceCIDR, ServiceCIDRv6 string
	// Sops decrypts Secrets committed encrypted with SOPS, only into the
	// assignments of the pods using them (secrets.go); nil leaves such a
	// Secret out of every assignment.
	Sops secrets.Decrypter
	// Controllers selects the controllers to run, as kube-controller-
	// manager's --controllers: "*" is every one, "name" adds one, "-name"
	// takes one away (later entries win); empty means "*". The names are
	// ControllerNames. A controller left out keeps its queue but works
	// none of it: `capstan server --controllers=*,-scheduler` leaves pods
	// pending.
	Controllers []string
	// Cache, if set, is the process's objects cache, shared with the sync
	// and run by the caller; nil makes and runs one of Objects.
	Cache *cache.Cache
	// Addons are controllers of other rooms run with these (the sync's
	// orphan sweep), made from the shared cache once it exists.
	Addons []Addon

	// testPart, if set, runs as one more part (tests).
	testPart func(ctx context.Context) error
}

func (cp *ControlPlane) defaults() {
	if cp.NodeGracePeriod == 0 {
		cp.NodeGracePeriod = 40 * time.Second
	}
	if cp.PodEvictionTimeout == 0 {
		cp.PodEvictionTimeout = 30 * time.Second
	}
	if cp.ResyncPeriod == 0 {
		cp.ResyncPeriod = 30 * time.Second
	}
	if cp.Workers == 0 {
		cp.Workers = 4
	}
	if cp.PodWorkers == 0 {
		cp.PodWorkers = 32
	}
	if cp.ServiceCIDR == "" {
		cp.ServiceCIDR = DefaultServiceCIDR
	}
	if cp.Log == nil {
		cp.Log = slog.New(slog.DiscardHandler)
	}
}

// workload is a controller of one kind of object that makes other objects
// (pods, ReplicaSets, Jobs) and owns them by a controller reference. It
// embeds queued, which holds its queue and routes it its events.
type workload interface {
	reconcile(ctx context.Context, key string) error
	// register adds its handlers to the caches, before they run.
	register(objects, nodes *cache.Cache)
	work() *queued
}

// workloads makes the workload controllers. Add a new kind's controller
// here.
func (cp *ControlPlane) workloads(sh *shared) []workload {
	return []workload{
		newReplicaSetController(sh),
		newDeploymentController(sh),
		newJobController(sh),
		newCronJobController(sh),
		newHPAController(sh, cp),
		newStatefulSetController(sh),
		newDaemonSetController(sh, cp.PodEvictionTimeout),
		newRCController(sh),
	}
}

// ControllerNames lists the controllers Controllers can name.
func ControllerNames() []string {
	return []string{"scheduler", "assignments", "podstatus", "gc", "replicaset", "deployment", "job", "cronjob",
		"horizontalpodautoscaler", "statefulset", "daemonset", "replicationcontroller", "service", "endpoints", "nodelifecycle", "orphans"}
}

// ParseControllers reads a Controllers list into the set of names to run,
// or says which entry names no controller.
func ParseControllers(spec []string) (map[string]bool, error) {
	known := ControllerNames()
	if len(spec) == 0 {
		spec = []string{"*"}
	}
	on := map[string]bool{}
	for _, s := range spec {
		s = strings.TrimSpace(s)
		name, off := strings.CutPrefix(s, "-")
		switch {
		case s == "*":
			for _, n := range known {
				on[n] = true
			}
		case slices.Contains(known, name):
			on[name] = !off
		default:
			return nil, fmt.Errorf("controllers: unknown controller %q (known: *, %s)", s, strings.Join(known, ", "))
		}
	}
	return on, nil
}

// Controller is a keyed work loop of another room that the control plane
// runs with its own (an Addon).
type Controller struct {
	Name      string // one of ControllerNames
	Queue     *workqueue.Queue
	Reconcile func(ctx context.Context, key string) error
	// Resync lists the keys to re-queue, those keep takes of them.
	Resync func(keep func(key string) bool) []string
	// OnObject, if set, is told of every change in the objects cache.
	OnObject cache.Handler
	// Watch, if set, runs beside the workers: triggers of its own.
	Watch func(ctx context.Context) error
}

// Shared is what the control plane shares with its addons.
type Shared struct {
	Objects bus.Store
	Cache   *cache.Cache
	Log     *slog.Logger
}

// Addon makes a Controller from the shared parts.
type Addon func(Shared) *Controller

// controller is one keyed work loop.
type controller struct {
	name      string
	queue     *workqueue.Queue
	reconcile func(ctx context.Context, key string) error
	// resync lists the keys to re-queue every ResyncPeriod, those keep
	// takes of them: one slot of the period's (resyncLoop).
	resync func(keep func(key string) bool) []string
	// workers overrides ControlPlane.Workers.
	workers int
	// stop, if set, waits for work the reconciles left running.
	stop func()
}

// Run runs the control plane until ctx ends or a part of it fails; it
// returns once every goroutine it started has, with the first failure.
func (cp *ControlPlane) Run(ctx context.Context) error {
	cp.defaults()
	enabled, err := ParseControllers(cp.Controllers)
	if err != nil {
		return err
	}

	sh := newShared(cp)

	// Each controller adds its handlers to the caches (register), and the
	// manager keeps its work loop.
	sched := scheduler.New(cp.Objects, sh.objects, sh.event, cp.Log)
	schedCtl := &controller{name: "scheduler", queue: sched.Queue(), reconcile: sched.Reconcile, resync: sched.PendingKeys, workers: cp.PodWorkers,
		stop: sched.Wait}
	assign := newAssigner(sh, cp)
	assignCtl := &controller{name: "assignments", queue: assign.queue, reconcile: assign.reconcile, resync: sh.keysOf("Pod"), workers: cp.PodWorkers}
	status := newStatusMirror(sh)
	statusCtl := &controller{name: "podstatus", queue: status.queue, reconcile: status.reconcile, resync: sh.terminatingPods, workers: cp.PodWorkers}
	gc := newGCController(sh)
	gcCtl := &controller{name: "gc", queue: gc.queue, reconcile: gc.reconcile, resync: gc.ownedKeys}
	ctls := []*controller{schedCtl, assignCtl, statusCtl, gcCtl}
	parts := Shared{Objects: cp.Objects, Cache: sh.objects, Log: cp.Log}
	var watches []*Controller
	for _, mk := range cp.Addons {
		a := mk(parts)
		ctls = append(ctls, &controller{name: a.Name, queue: a.Queue, reconcile: a.Reconcile, resync: a.Resync})
		if a.OnObject != nil {
			sh.objects.AddHandler(a.OnObject)
		}
		if a.Watch != nil {
			watches = append(watches, a)
		}
	}
	for _, w := range cp.workloads(sh) {
		w.register(sh.objects, sh.nodes)
		q := w.work()
		ctls = append(ctls, &controller{name: strings.ToLower(q.kind), queue: q.queue, reconcile: w.reconcile, resync: sh.keysOf(q.kind)})
	}
	gc.register(sh.objects, sh.nodes)
	assign.register(sh.objects, sh.nodes)
	status.register(sh.objects, sh.nodes)
	svcCtls, err := serviceControllers(sh, cp) // Services and their endpoints (service.go, endpoints.go)
	if err != nil {
		return err
	}
	ctls = append(ctls, svcCtls...)
	sh.objects.AddHandler(sched.OnObject(schedCtl.queue))
	sh.nodes.AddHandler(sched.OnNode(schedCtl.queue))

	// The parts run as one: the first to fail cancels the others, and Run
	// returns once all have.
	g, ctx := errgroup.WithContext(ctx)
	run := func(name string, fn func(context.Context) error) {
		g.Go(func() error {
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				cp.Log.Error("control plane part stopped", "part", name, "err", err)
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	if cp.Cache == nil {
		run("objects cache", sh.objects.Run)
	}
	run("nodes cache", sh.nodes.Run)
	run("assignments watch", func(ctx context.Context) error { return assign.watch(ctx, assign.queue) })
	run("status watch", func(ctx context.Context) error { return status.watch(ctx, status.queue) })

	for _, c := range []<-chan struct{}{sh.objects.Synced(), sh.nodes.Synced(), assign.synced, status.synced} {
		select {
		case <-c:
		case <-ctx.Done():
			return g.Wait()
		}
	}
	cp.Log.Info("control plane caches synced")
	ctls = slices.DeleteFunc(ctls, func(c *controller) bool {
		if !slices.Contains(ControllerNames(), c.name) {
			panic("controller " + c.name + " is missing from ControllerNames")
		}
		if !enabled[c.name] {
			cp.Log.Info("controller not started (--controllers)", "controller", c.name)
			return true
		}
		return false
	})
	for _, c := range ctls {
		run(c.name, func(ctx context.Context) error {
			workers := cp.Workers
			if c.workers > 0 {
				workers = c.workers
			}
			c.queue.RunWorkers(ctx, workers, c.reconcile, func(key string, err error) {
				if !errors.Is(err, bus.ErrConflict) && !errors.Is(err, scheduler.ErrUnschedulable) {
					cp.Log.Warn("reconcile failed", "controller", c.name, "key", key, "err", err)
				}
			})
			if c.stop != nil {
				c.stop()
			}
			return nil
		})
	}
	run("resync", func(ctx context.Context) error { return cp.resyncLoop(ctx, ctls) })
	if enabled["nodelifecycle"] {
		run("node lifecycle", newNodeLifecycle(sh, cp).run)
	}
	for _, a := range watches {
		if enabled[a.Name] {
			run(a.Name+" triggers", a.Watch)
		}
	}
	if enabled["orphans"] && !slices.ContainsFunc(ctls, func(c *controller) bool { return c.name == "orphans" }) {
		cp.Log.Info("orphan sweep off: no sources or no audit stream in this process")
	}
	run("events", sh.rec.Run)
	// Everything is level-triggered: queue all now that the caches hold
	// the world (one slot of one: every key).
	resyncSlot(ctls, 0, 1)
	if cp.testPart != nil {
		run("test part", cp.testPart)
	}
	return g.Wait()
}

// resyncLoop re-queues every controller's keys once per ResyncPeriod,
// spread over the period: each tick re-queues the keys of one slot of
// resyncSlots (by a hash of the key), so at tens of thousands of pods a
// resync is a trickle and not one burst that fills every queue at once
// (a full queue keeps its map's size, docs/BENCHMARKS.md).
func (cp *ControlPlane) resyncLoop(ctx context.Context, ctls []*controller) error {
	slots := resyncSlots(cp.ResyncPeriod)
	t := time.NewTicker(cp.ResyncPeriod / time.Duration(slots))
	defer t.Stop()
	for tick := uint32(0); ; tick++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			resyncSlot(ctls, tick%slots, slots)
		}
	}
}

// resyncSlot re-queues the keys of one slot of slots.
func resyncSlot(ctls []*controller, slot, slots uint32) {
	for _, c := range ctls {
		if c.resync != nil {
			for _, k := range c.resync(func(k string) bool { return slots == 1 || keySlot(k, slots) == slot }) {
				c.queue.Add(k)
			}
		}
	}
}

// resyncSlots is how many ticks a resync period is spread over: one
// every 3 s, up to 10; a period under 6 s (tests) is one tick. Each tick
// reads every key to pick its slot's, so ticks are not more frequent
// (docs/BENCHMARKS.md).
func resyncSlots(period time.Duration) uint32 {
	return uint32(min(max(period/(3*time.Second), 1), 10))
}

// keySlot is key's resync slot: FNV-1a of its last 16 bytes, where the
// keys of one owner's pods differ (their names' random suffixes).
func keySlot(key string, slots uint32) uint32 {
	h := uint32(2166136261)
	for i := max(len(key)-16, 0); i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return h % slots
}

// all keeps every key.
func all(string) bool { return true }
