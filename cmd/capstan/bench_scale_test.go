//go:build bench && linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// Settings of the scale session, reported with the figures.
const (
	simHeartbeat   = 10 * time.Second // the daemon's default (+<20 % jitter)
	lostHeartbeat  = time.Second      // the nodes to lose, so their last heartbeat is just before the kill
	simNodeGrace   = 20 * time.Second
	simEviction    = 2 * time.Second
	podsPerLost    = 100 // a node takes at most 110 pods
	fanoutPods     = 200
	fanoutInterval = 20 * time.Millisecond
)

func benchRS(name string, replicas int32, cpu, mem string) *manifests.ReplicaSet {
	labels := map[string]string{"app": name}
	return &manifests.ReplicaSet{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec: manifests.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &manifests.LabelSelector{MatchLabels: labels},
			Template: manifests.PodTemplateSpec{
				ObjectMeta: manifests.ObjectMeta{Labels: labels},
				Spec: manifests.PodSpec{Containers: []manifests.Container{{
					Name: "main", Image: e2eImage, Command: []string{"sleep", "3600"},
					Resources: manifests.ResourceRequirements{Requests: manifests.ResourceList{"cpu": manifests.Quantity(cpu), "memory": manifests.Quantity(mem)}},
				}}},
			},
		},
	}
}

// readyNodes counts the Ready nodes whose names have prefix.
func readyNodes(ctx context.Context, nodes bus.Store, prefix string) (int, error) {
	es, err := nodes.List(ctx, ">")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range es {
		if strings.HasPrefix(e.Key, prefix+"-") && strings.Contains(string(e.Value), `"type":"Ready","status":"True"`) {
			n++
		}
	}
	return n, nil
}

// seenLog collects the simulated nodes' reports of assignments reaching
// them (the first per key).
type seenLog struct {
	mu   sync.Mutex
	seen map[string]seenReport
}

func (s *seenLog) get(key string) (seenReport, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.seen[key]
	return r, ok
}

// benchScale runs one cluster of simulated nodes against a control plane
// process and measures, in order: watch fan-out (paced pods), scheduler
// throughput (a burst of pods from ReplicaSets), the footprint of the
// processes, and node loss.
func benchScale(t *testing.T, cfg benchConfig, res *results) {
	dir := t.TempDir()
	busPprof := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	busProc, url := startBenchBus(t, dir, false, PprofEnv+"="+busPprof)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conn, err := natsbus.Connect(ctx, url, natsbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cpBin := serverBin(t, cfg)
	// BENCH_CP_ENV adds environment to the control plane (GOGC=100, say,
	// to compare with its default).
	startCP := func(name string, extra ...string) *proc {
		return startProc(t, dir, name, append([]string{PprofEnv + "=" + pprofAddr}, strings.Fields(os.Getenv("BENCH_CP_ENV"))...), cpBin, append([]string{"server", "--nats-url", url, "--insecure-bus",
			"--data-dir", filepath.Join(dir, "cp"), "--node-grace-period", simNodeGrace.String(), "--pod-eviction-timeout", simEviction.String(),
			"--log-level", "warn"}, extra...)...)
	}
	cp := startCP("control-plane-setup")
	simArgs := func(n int, prefix string, heartbeat time.Duration, extra ...string) []string {
		return append([]string{"node", "--simulate", fmt.Sprint(n), "--simulate-prefix", prefix, "--server", url, "--insecure-bus",
			"--data-dir", filepath.Join(dir, prefix), "--simulate-heartbeat-interval", heartbeat.String(), "--log-level", "warn"}, extra...)
	}
	check := func(ps ...*proc) {
		for _, p := range ps {
			if err := p.alive(); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The nodes to lose come first, alone, so the pods to lose land there.
	lostNodes := (cfg.lossPods + podsPerLost - 1) / podsPerLost
	lost := startProc(t, dir, "lost-nodes", nil, cfg.bin, simArgs(lostNodes, "lost", lostHeartbeat)...)
	checkFor(t, time.Minute, "lost nodes Ready", func() error {
		check(cp, lost)
		n, err := readyNodes(ctx, conn.Nodes, "lost")
		if err == nil && n < lostNodes {
			err = fmt.Errorf("%d of %d Ready", n, lostNodes)
		}
		return err
	})
	tr := trackPods(t, ctx, conn.Objects)
	if _, err := cache.CreateObject(ctx, conn.Objects, benchRS("doomed", int32(cfg.lossPods), "10m", "16Mi")); err != nil {
		t.Fatal(err)
	}
	tr.wait(t, 3*time.Minute, "pods on the nodes to lose", func(p *benchPod) bool { return hasLabel(p, "app", "doomed") && p.Status.Phase == "Running" }, cfg.lossPods)

	seen := &seenLog{seen: map[string]seenReport{}}
	sub, err := conn.NC.Subscribe(SeenSubject, func(m *nats.Msg) {
		var r seenReport
		if json.Unmarshal(m.Data, &r) != nil {
			return
		}
		seen.mu.Lock()
		if _, ok := seen.seen[r.Key]; !ok {
			seen.seen[r.Key] = r
		}
		seen.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	simPprof := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sim := startProc(t, dir, "simulated-nodes", append([]string{PprofEnv + "=" + simPprof}, strings.Fields(os.Getenv("BENCH_SIM_ENV"))...), cfg.bin, simArgs(cfg.nodes, "sim", simHeartbeat, "--simulate-report-seen")...)
	begin := time.Now()
	checkFor(t, 3*time.Minute, fmt.Sprintf("%d simulated nodes Ready", cfg.nodes), func() error {
		check(cp, lost, sim)
		n, err := readyNodes(ctx, conn.Nodes, "sim")
		if err == nil && n < cfg.nodes {
			err = fmt.Errorf("%d of %d Ready", n, cfg.nodes)
		}
		return err
	})
	t.Logf("%d simulated nodes Ready in %s", cfg.nodes, time.Since(begin).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // deliberate: the cluster settles before the idle RSS is read
	simIdle, _ := rss(sim.pid())
	cpIdle, _ := rss(cp.pid())

	benchFanout(t, ctx, conn, tr, seen, res)

	// Scheduler throughput, as kube-scheduler's scheduler_perf measures
	// it: the pods are pending before the scheduler starts. The control
	// plane runs without its scheduler (--controllers=*,-scheduler) while
	// ReplicaSets of 300 pods (fewer for small runs) create them, then
	// restarts with every controller and binds them. The first round is
	// profiled and followed until every pod runs; later rounds
	// (BENCH_SCHED_ROUNDS) delete the last round's ReplicaSets and time
	// the binds of new ones, for the median.
	perRS := min(300, cfg.pods)
	inRound := func(prefix string) func(p *benchPod) bool {
		return func(p *benchPod) bool { return strings.HasPrefix(p.Metadata.Labels["app"], prefix+"-") }
	}
	createPending := func(round int, prefix string) time.Duration {
		cp.stop(t)
		cp = startCP(fmt.Sprintf("control-plane-unscheduled-%d", round), "--controllers=*,-scheduler")
		c0 := time.Now()
		for i := 0; i*perRS < cfg.pods; i++ {
			name := fmt.Sprintf("%s-%03d", prefix, i)
			if _, err := cache.CreateObject(ctx, conn.Objects, benchRS(name, int32(min(perRS, cfg.pods-i*perRS)), "50m", "32Mi")); err != nil {
				t.Fatal(err)
			}
		}
		tCreated := tr.wait(t, 8*time.Minute, fmt.Sprintf("round %d: %d pods created, pending", round, cfg.pods), inRound(prefix), cfg.pods)
		check(cp, sim)
		cp.stop(t)
		return tCreated.Sub(c0)
	}
	// bindsOf returns the pods of a round bound, and the first and last
	// bind (server timestamps).
	bindsOf := func(prefix string) (times map[string]podTimes, bound int, first, last time.Time) {
		times = tr.snapshot(func(k string) bool { return strings.HasPrefix(k, "Pod.default."+prefix+"-") })
		for _, pt := range times {
			if pt.Bound.IsZero() {
				continue
			}
			bound++
			if first.IsZero() || pt.Bound.Before(first) {
				first = pt.Bound
			}
			last = later(last, pt.Bound)
		}
		return times, bound, first, last
	}

	created := createPending(1, "burst")
	res.add(figure{Benchmark: "scheduler throughput", Metric: fmt.Sprintf("%d pending pods created by ReplicaSets", cfg.pods), Value: float64(cfg.pods) / created.Seconds(), Unit: "pods/s",
		Note: fmt.Sprintf("%s from the ReplicaSets' creation, the control plane running without its scheduler", created.Round(time.Millisecond))})
	profile := make(chan string, 1)
	simProfile := make(chan string, 1)
	busProfile := make(chan string, 1)
	writes0 := streamWrites(ctx, conn.JS)
	split := newCPUSplit(map[string]int{"bus": busProc.pid(), "simulated nodes": sim.pid(), "harness": os.Getpid()})
	t0 := time.Now()
	cp = startCP("control-plane")
	split.add("control plane", cp.pid())
	go func() {
		profile <- fetchProfile(t, pprofAddr, "profile?seconds=20", filepath.Join(cfg.outDir, "control-plane.cpu.pprof"))
	}()
	go func() {
		simProfile <- fetchProfile(t, simPprof, "profile?seconds=20", filepath.Join(cfg.outDir, "simulated-nodes.cpu.pprof"))
	}()
	go func() {
		busProfile <- fetchProfile(t, busPprof, "profile?seconds=20", filepath.Join(cfg.outDir, "bus.cpu.pprof"))
	}()
	isBurst := inRound("burst")
	tAll := tr.wait(t, 8*time.Minute, fmt.Sprintf("%d pods Running", cfg.pods), func(p *benchPod) bool { return isBurst(p) && p.Status.Phase == "Running" }, cfg.pods)
	cpuNote := split.done()
	cpuNote += "; bus writes per pod: " + writesPerPod(writes0, streamWrites(ctx, conn.JS), cfg.pods)
	// Nodes starved of CPU miss heartbeats: say how many the control plane
	// marked NotReady during the burst (they take no pods meanwhile).
	if b, err := os.ReadFile(filepath.Join(dir, "control-plane.log")); err == nil {
		cpuNote += fmt.Sprintf("; nodes marked NotReady so far: %d", strings.Count(string(b), "node not ready"))
	}
	t.Log(cpuNote)
	check(cp, sim)
	times, bound, firstBound, lastBound := bindsOf("burst")
	var fanLat, fanAssign []float64
	perNode := map[string]int{}
	for k, pt := range times {
		if pt.Bound.IsZero() {
			continue
		}
		perNode[pt.Node]++
		_, ns, name := splitKey(k)
		if r, ok := seen.get(pt.Node + "." + ns + "." + name); ok {
			fanLat = append(fanLat, ms(r.Seen.Sub(pt.Bound)))
			fanAssign = append(fanAssign, ms(r.Written.Sub(pt.Bound)))
		}
	}
	window := lastBound.Sub(firstBound)
	rate := float64(bound) / window.Seconds()
	bindCPU := split.between(firstBound, lastBound)
	minPer, maxPer := cfg.pods, 0
	for _, n := range perNode {
		minPer, maxPer = min(minPer, n), max(maxPer, n)
	}
	scaleNote := ""
	if cfg.pods < 30000 || cfg.nodes < 1000 {
		scaleNote = fmt.Sprintf("; scaled down to %d nodes, %d pods (BENCH_NODES, BENCH_PODS for the full scale)", cfg.nodes, cfg.pods)
	}
	schedFirst := fmt.Sprintf("round 1: from the first bind to the last %s; the control plane's start to its first bind (loading its caches): %s%s; %s",
		window.Round(time.Millisecond), firstBound.Sub(t0).Round(time.Millisecond), scaleNote, bindCPU)
	schedAt := res.next() // the median's row, once the rounds are done
	res.add(figure{Benchmark: "scheduler throughput", Metric: "all Running after the scheduler's start", Value: tAll.Sub(t0).Seconds(), Unit: "s",
		Note: fmt.Sprintf("round 1; %d to %d pods per node (spread by owner); %s", minPer, maxPer, cpuNote)})
	if len(fanLat) > 0 {
		res.add(figure{Benchmark: "watch fan-out", Metric: fmt.Sprintf("bind to node sees it, under the burst, p99 (%d)", len(fanLat)), Value: quantile(fanLat, 0.99), Unit: "ms",
			Note: fmt.Sprintf("p50 %.1f ms; of which bind to assignment written (the assigner): p50 %.1f ms, p99 %.1f ms", quantile(fanLat, 0.5), quantile(fanAssign, 0.5), quantile(fanAssign, 0.99))})
	}
	if top := <-profile; top != "" {
		res.Profiles["control plane CPU during the burst (20 s)"] = top
	}
	if top := <-simProfile; top != "" {
		res.Profiles["simulated nodes CPU during the burst (20 s)"] = top
	}
	if top := <-busProfile; top != "" {
		res.Profiles["bus CPU during the burst (20 s)"] = top
	}

	// The footprint is the cluster's at rest: 3 s after the last pod
	// ran, the control plane is still working off the burst (the status
	// reports behind it), and its heap holds that backlog. It is read
	// again once the control plane has settled: under a fifth of a core
	// over 5 s, or after 60 s.
	time.Sleep(3 * time.Second) // deliberate: the footprint 3 s after the burst
	cpBurst, _ := rss(cp.pid())
	settled := time.Now()
	for prev := cpuTime(cp.pid()); time.Since(settled) < 60*time.Second; {
		time.Sleep(5 * time.Second) // deliberate: the window the CPU use is measured over
		cur := cpuTime(cp.pid())
		if cur-prev < time.Second {
			break
		}
		prev = cur
	}
	settleTook := time.Since(settled).Round(time.Second)
	cpNow, cpPeak := rss(cp.pid())
	cpAnon, cpFile := rssParts(cp.pid())
	cpMem := memStats(pprofAddr, cpGOGC())
	simNow, _ := rss(sim.pid())
	busNow, busPeak := rss(busProc.pid())
	if top := fetchProfile(t, pprofAddr, "heap", filepath.Join(cfg.outDir, "control-plane.heap.pprof")); top != "" {
		res.Profiles["control plane heap (in use), settled after the burst"] = top
	}
	total := cfg.pods + cfg.lossPods
	res.add(figure{Benchmark: "footprint", Metric: fmt.Sprintf("control plane RSS, %d nodes, %d pods", cfg.nodes+lostNodes, total), Value: mib(cpNow), Unit: "MiB",
		Baseline: ptr(mib(cpIdle)), BaselineWhat: fmt.Sprintf("the control plane before the burst (%d pods)", cfg.lossPods),
		Target: "under 150 MB", Met: ptr(float64(cpNow) < 150e6), Note: fmt.Sprintf("bin/capstan-server, settled (%s after the last pod ran and 3 s: under a fifth of a core over 5 s, or 60 s); 3 s after the last pod ran %.0f MiB; peak %.0f MiB (VmHWM); anonymous %.0f MiB, file-backed %.0f MiB; %s; the bus is a separate process: %.0f MiB, peak %.0f MiB",
			settleTook, mib(cpBurst), mib(cpPeak), mib(cpAnon), mib(cpFile), cpMem, mib(busNow), mib(busPeak))})
	res.add(figure{Benchmark: "footprint", Metric: fmt.Sprintf("%d simulated nodes (one process), RSS", cfg.nodes), Value: mib(simNow), Unit: "MiB",
		Baseline: ptr(mib(simIdle)), BaselineWhat: "the same process with no pods",
		Note: fmt.Sprintf("%.0f KiB per node with pods", float64(simNow)/1024/float64(cfg.nodes))})

	// Node loss, timed from the lost nodes' last heartbeat (the moment
	// the grace period starts) and from the kill.
	lost.kill()
	k0 := time.Now()
	var lastBeat time.Time
	for i := range lostNodes {
		if e, err := conn.Nodes.Get(ctx, fmt.Sprintf("lost-%04d", i)); err == nil && e.Time.After(lastBeat) {
			lastBeat = e.Time
		}
	}
	tLoss := tr.wait(t, 3*time.Minute, "lost pods Running elsewhere", func(p *benchPod) bool {
		return hasLabel(p, "app", "doomed") && p.Status.Phase == "Running" && !onNodePrefix(p, "lost-")
	}, cfg.lossPods)
	loss := tLoss.Sub(lastBeat).Seconds()
	// Where the time after the grace went: the NotReady mark (the lost
	// nodes' last write), then the replacements' creation, bind and Running.
	var notReady time.Time
	for i := range lostNodes {
		if e, err := conn.Nodes.Get(ctx, fmt.Sprintf("lost-%04d", i)); err == nil && e.Time.After(notReady) {
			notReady = e.Time
		}
	}
	var firstNew, lastNew, lastBind, lastRun time.Time
	for _, pt := range tr.snapshot(func(k string) bool { return strings.HasPrefix(k, "Pod.default.doomed-") }) {
		if !pt.Created.After(lastBeat) {
			continue // an evicted pod
		}
		if firstNew.IsZero() || pt.Created.Before(firstNew) {
			firstNew = pt.Created
		}
		lastNew, lastBind, lastRun = later(lastNew, pt.Created), later(lastBind, pt.Bound), later(lastRun, pt.Running)
	}
	since := func(t time.Time) string { return fmt.Sprintf("%.2f s", t.Sub(lastBeat).Seconds()) }
	lossSteps := fmt.Sprintf("from the last heartbeat: marked NotReady %s, first replacement created %s, last created %s, last bound %s, last Running %s",
		since(notReady), since(firstNew), since(lastNew), since(lastBind), since(lastRun))
	t.Log("node loss: " + lossSteps)
	base := (simNodeGrace + simEviction).Seconds()
	res.add(figure{Benchmark: "node loss", Metric: fmt.Sprintf("%d pods on %d killed nodes, Running elsewhere", cfg.lossPods, lostNodes), Value: loss, Unit: "s",
		Baseline: ptr(base), BaselineWhat: fmt.Sprintf("node grace %s + pod eviction timeout %s", simNodeGrace, simEviction),
		Target: "baseline + under 2 s", Met: ptr(loss < base+2),
		Note: fmt.Sprintf("from the last heartbeat (%.1f s from the SIGKILL); the lost nodes heartbeat every %s; a node holds at most 110 pods, so %d pods need %d nodes; %s",
			tLoss.Sub(k0).Seconds(), lostHeartbeat, cfg.lossPods, lostNodes, lossSteps)})
	// More scheduler rounds, for the median.
	rates, roundCPU := []float64{rate}, []string{bindCPU}
	prev := "burst"
	for round := 2; round <= cfg.schedRounds; round++ {
		for i := 0; i*perRS < cfg.pods; i++ {
			rs := benchRS(fmt.Sprintf("%s-%03d", prev, i), 0, "50m", "32Mi")
			manifests.SetKind(rs)
			if err := cache.DeleteObject(ctx, conn.Objects, manifests.KeyOf(rs), 0); err != nil {
				t.Fatal(err)
			}
		}
		// The pods are deleted at once, as `kubectl delete --force
		// --grace-period=0` does: a graceful deletion of every pod would
		// be a large part of the session (docs/BENCHMARKS.md).
		d0 := time.Now()
		keys := slices.Collect(maps.Keys(tr.snapshot(func(k string) bool { return strings.HasPrefix(k, "Pod.default."+prev+"-") })))
		var wg sync.WaitGroup
		todo := make(chan string)
		var failed atomic.Int64
		for range 64 {
			wg.Go(func() {
				for k := range todo {
					if err := conn.Objects.Delete(ctx, k, 0); err != nil && !errors.Is(err, bus.ErrNotFound) {
						failed.Add(1)
					}
				}
			})
		}
		for _, k := range keys {
			todo <- k
		}
		close(todo)
		wg.Wait()
		if n := failed.Load(); n > 0 {
			t.Fatalf("round %d: %d pods of round %d not deleted", round, n, round-1)
		}
		tr.wait(t, 8*time.Minute, fmt.Sprintf("round %d: the pods of round %d gone", round, round-1), inRound(prev), 0)
		// Then their nodes stop them and their assignments and reports
		// go: the next binds must not share the machine with that.
		checkFor(t, 5*time.Minute, fmt.Sprintf("round %d: the assignments and reports of round %d gone", round, round-1), func() error {
			for _, store := range []bus.Store{conn.Assignments, conn.Status} {
				es, err := store.List(ctx, ">")
				if err != nil {
					return err
				}
				left := 0
				for _, e := range es {
					if _, _, name := splitKey(e.Key); strings.HasPrefix(name, prev+"-") {
						left++
					}
				}
				if left > 0 {
					time.Sleep(time.Second) // deliberate: paces the polls, a listing is every entry of the bucket
					return fmt.Errorf("%d left", left)
				}
			}
			return nil
		})
		prefix := fmt.Sprintf("burst%d", round)
		d1 := time.Now()
		createPending(round, prefix)
		split := newCPUSplit(map[string]int{"bus": busProc.pid(), "simulated nodes": sim.pid(), "harness": os.Getpid()})
		cp = startCP(fmt.Sprintf("control-plane-%d", round))
		split.add("control plane", cp.pid())
		// Round 2 is profiled while it binds: the first round's profile
		// runs on past its binds, through the reports that make the pods
		// Running. Its 8 s cover the caches' load and the binds
		// (docs/BENCHMARKS.md).
		var bindProfiles sync.WaitGroup
		if round == 2 {
			for _, p := range []struct{ what, addr, file string }{
				{"control plane", pprofAddr, "control-plane.bind.cpu.pprof"},
				{"simulated nodes", simPprof, "simulated-nodes.bind.cpu.pprof"},
			} {
				bindProfiles.Go(func() {
					if top := fetchProfile(t, p.addr, "profile?seconds=8", filepath.Join(cfg.outDir, p.file)); top != "" {
						res.setProfile(p.what+" CPU while binding (round 2, 8 s from the control plane's start)", top)
					}
				})
			}
		}
		tr.wait(t, 8*time.Minute, fmt.Sprintf("round %d: %d pods bound", round, cfg.pods), func(p *benchPod) bool { return inRound(prefix)(p) && p.Spec.NodeName != "" }, cfg.pods)
		split.done()
		bindProfiles.Wait()
		_, n, first, last := bindsOf(prefix)
		rates = append(rates, float64(n)/last.Sub(first).Seconds())
		roundCPU = append(roundCPU, split.between(first, last))
		t.Logf("scheduler round %d: %d pods bound in %s (the last round's pods gone in %s, new ones pending in %s); %s", round, n, last.Sub(first).Round(time.Millisecond),
			d1.Sub(d0).Round(time.Second), time.Since(d1).Round(time.Second), roundCPU[len(roundCPU)-1])
		prev = prefix
	}
	var each []string
	for i, r := range rates {
		each = append(each, fmt.Sprintf("%.0f", r))
		if i > 0 {
			each[i] += " (" + roundCPU[i] + ")"
		}
	}
	med := median(rates)
	res.insert(schedAt, figure{Benchmark: "scheduler throughput", Metric: fmt.Sprintf("%d pending pods on %d nodes: bound/s, median of %d rounds", bound, cfg.nodes, len(rates)), Value: med, Unit: "pods/s",
		Baseline: ptr(680.0), BaselineWhat: "kube-scheduler CI floor (680-810 pods/s at 5,000 nodes; published, not run here)",
		Target: "5,000 pods/s or more", Met: ptr(med >= 5000),
		Note: fmt.Sprintf("rounds: %s pods/s, each from the first bind to the last; %s", strings.Join(each, "; "), schedFirst)})
	res.note("scale session: the bus, the control plane (`capstan-server server --nats-url`, the serveronly build, node grace %s, pod eviction timeout %s), %d simulated nodes (`capstan node --simulate`, heartbeat %s, relist 10 s, each +<20%% jitter) and %d more to lose (heartbeat %s) are separate processes; the bus has no TLS or identities here (--insecure-bus: the simulated nodes share connections), their cost is BenchmarkAuth's.",
		simNodeGrace, simEviction, cfg.nodes, simHeartbeat, lostNodes, lostHeartbeat)
	res.note("control plane RSS: read once the control plane has settled after the scheduler's first round (under a fifth of a core over 5 s, at most 60 s after the last pod ran): the footprint of the cluster at rest. The note gives it 3 s after the last pod ran too, and the peak (VmHWM), which the burst sets.")
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// streamWrites returns the last sequence of every stream of the bus: the
// messages ever written to it (KV puts and deletes, events, audit records).
func streamWrites(ctx context.Context, js jetstream.JetStream) map[string]uint64 {
	out := map[string]uint64{}
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			continue
		}
		if info, err := s.Info(ctx); err == nil {
			out[name] = info.State.LastSeq
		}
	}
	return out
}

// writesPerPod says how many messages each stream took per pod between two
// streamWrites.
func writesPerPod(before, after map[string]uint64, pods int) string {
	// The assignments buckets (natsbus.AssignmentShards) count as one.
	per := map[string]float64{}
	for stream, n := range after {
		name := strings.TrimPrefix(stream, "KV_")
		if base, _, ok := strings.Cut(name, "-"); ok && base == bus.BucketAssignments {
			name = base
		}
		per[name] += float64(n-before[stream]) / float64(pods)
	}
	var parts []string
	total := 0.0
	for _, name := range slices.Sorted(maps.Keys(per)) {
		if per[name] > 0 {
			total += per[name]
			parts = append(parts, fmt.Sprintf("%s %.1f", name, per[name]))
		}
	}
	return fmt.Sprintf("%.1f (%s)", total, strings.Join(parts, ", "))
}

// benchFanout measures, with the cluster quiet, the time from a pod's bind
// to its node's watch delivering the assignment, beside raw JetStream KV
// put-to-watch on the same server.
func benchFanout(t *testing.T, ctx context.Context, conn *natsbus.Conn, tr *podTracker, seen *seenLog, res *results) {
	kv, err := conn.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "benchraw", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	raw := natsbus.NewKV(kv)
	ch, err := raw.Watch(ctx, "k.>")
	if err != nil {
		t.Fatal(err)
	}
	<-ch // synced
	var rawLat []float64
	val := make([]byte, 2048) // about an assignment's size
	for i := range fanoutPods {
		t0 := time.Now()
		if _, err := raw.Put(ctx, fmt.Sprintf("k.%d", i), val); err != nil {
			t.Fatal(err)
		}
		<-ch
		rawLat = append(rawLat, ms(time.Since(t0)))
		time.Sleep(fanoutInterval) // deliberate: the benchmark's pacing
	}
	for i := range fanoutPods {
		pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: fmt.Sprintf("fan-%03d", i), Namespace: "fanout", Labels: map[string]string{"app": "fan"}},
			Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "main", Image: e2eImage, Command: []string{"sleep", "3600"},
				Resources: manifests.ResourceRequirements{Requests: manifests.ResourceList{"cpu": "1m", "memory": "1Mi"}}}}}}
		if _, err := cache.CreateObject(ctx, conn.Objects, pod); err != nil {
			t.Fatal(err)
		}
		time.Sleep(fanoutInterval) // deliberate: the benchmark's pacing
	}
	tr.wait(t, time.Minute, "fan-out pods Running", func(p *benchPod) bool { return hasLabel(p, "app", "fan") && p.Status.Phase == "Running" }, fanoutPods)
	var lat, assign, bind []float64
	for k, pt := range tr.snapshot(func(k string) bool { return strings.HasPrefix(k, "Pod.fanout.") }) {
		_, ns, name := splitKey(k)
		r, ok := seen.get(pt.Node + "." + ns + "." + name)
		if !ok {
			continue
		}
		lat = append(lat, ms(r.Seen.Sub(pt.Bound)))
		assign = append(assign, ms(r.Written.Sub(pt.Bound)))
		bind = append(bind, ms(pt.Bound.Sub(pt.Created)))
	}
	if len(lat) < fanoutPods {
		t.Errorf("only %d of %d assignments were reported seen", len(lat), fanoutPods)
	}
	rate := fmt.Sprintf("%d pods created one at a time, %s apart", fanoutPods, fanoutInterval)
	res.add(figure{Benchmark: "watch fan-out", Metric: "bind to node sees assignment, p50", Value: quantile(lat, 0.5), Unit: "ms",
		Baseline: ptr(quantile(rawLat, 0.5)), BaselineWhat: "JetStream KV put to watch, same server", Note: rate})
	res.add(figure{Benchmark: "watch fan-out", Metric: "bind to node sees assignment, p99", Value: quantile(lat, 0.99), Unit: "ms",
		Baseline: ptr(quantile(rawLat, 0.99)), BaselineWhat: "JetStream KV put to watch, same server", Target: "under 50 ms", Met: ptr(quantile(lat, 0.99) < 50),
		Note: fmt.Sprintf("of which bind to assignment written (the assigner): p50 %.1f ms, p99 %.1f ms", quantile(assign, 0.5), quantile(assign, 0.99))})
	res.add(figure{Benchmark: "scheduler throughput", Metric: "bind latency at a paced 50 pods/s, p99", Value: quantile(bind, 0.99), Unit: "ms",
		Note: fmt.Sprintf("p50 %.1f ms; from the pod's creation to its bind, server timestamps", quantile(bind, 0.5))})
}

// splitKey splits an objects key Kind.ns.name.
func splitKey(k string) (kind, ns, name string) {
	kind, rest, _ := strings.Cut(k, ".")
	ns, name, _ = strings.Cut(rest, ".")
	return kind, ns, name
}

// fetchProfile saves a pprof profile of a capstan process and returns its
// top lines (go tool pprof -top).
func fetchProfile(t *testing.T, addr, what, dst string) string {
	// A process just started may not listen yet: try for a few seconds.
	var resp *http.Response
	err := testwait.Until(5*time.Second, func() (err error) {
		resp, err = http.Get("http://" + addr + "/debug/pprof/" + what)
		return err
	})
	if err != nil {
		t.Logf("profile %s: %v", what, err)
		return ""
	}
	defer resp.Body.Close()
	f, err := os.Create(dst)
	if err != nil {
		t.Logf("profile %s: %v", what, err)
		return ""
	}
	_, err = io.Copy(f, resp.Body)
	f.Close()
	if err != nil {
		return ""
	}
	return pprofTop(dst)
}

// cpGOGC says the control plane's GOGC: capstan server's default, or a
// GOGC given in BENCH_CP_ENV, the control plane's extra environment.
func cpGOGC() string {
	for _, kv := range strings.Fields(os.Getenv("BENCH_CP_ENV")) {
		if v, ok := strings.CutPrefix(kv, "GOGC="); ok {
			return "GOGC=" + v + " (BENCH_CP_ENV)"
		}
	}
	return fmt.Sprintf("GOGC=%d (capstan server's default --gc-percent)", defaultGCPercent)
}

// memStats returns where a capstan process's memory goes, as its runtime
// sees it (the MemStats that /debug/pprof/heap?debug=1 ends with), or "".
func memStats(addr, gogc string) string {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return ""
	}
	v := map[string]float64{}
	for line := range strings.Lines(string(b)) {
		name, val, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "# "), " = ")
		if !ok {
			continue
		}
		if inuse, _, pair := strings.Cut(val, " / "); pair { // "Stack = inuse / sys"
			name, val = name+"Inuse", inuse
		}
		if n, err := strconv.ParseFloat(val, 64); err == nil {
			v[name] = n / (1 << 20)
		}
	}
	if v["HeapInuse"] == 0 {
		return ""
	}
	return fmt.Sprintf("its runtime: heap spans in use %.0f MiB, of which allocated %.0f MiB (the next collection at %.0f MiB: what was live at the last plus GOGC percent, %s), heap free but not yet returned to the system %.0f MiB, stacks %.0f MiB, the collector's and runtime's own %.0f MiB",
		v["HeapInuse"], v["HeapAlloc"], v["NextGC"], gogc, v["HeapIdle"]-v["HeapReleased"], v["StackInuse"], v["MSpanInuse"]+v["MCacheInuse"]+v["BuckHashSys"]+v["GCSys"]+v["OtherSys"])
}

// pprofTop returns the first lines of `go tool pprof -top`.
func pprofTop(file string) string {
	args := []string{"tool", "pprof", "-top", "-nodecount=15"}
	if strings.Contains(file, "heap") {
		args = append(args, "-sample_index=inuse_space")
	}
	bin := ""
	if !strings.Contains(file, "sync") {
		bin = filepath.Join("..", "..", "bin", "capstan")
	}
	out, err := exec.Command("go", append(args, slices.DeleteFunc([]string{bin, file}, func(s string) bool { return s == "" })...)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var keep []string
	for _, l := range lines {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}
