//go:build bench && linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/node/podman"
)

// benchScript is the container both sides run: it ends at once on SIGTERM,
// so removals do not wait for a grace period.
const benchScript = "trap 'exit 0' TERM; sleep 3600 & wait"

func benchDeployment(name string, replicas, round int) string {
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
      labels: {app: %[1]s, round: "%[3]d"}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: main
          image: %[4]s
          command: ["/bin/sh", "-c", %[5]q]
          env:
            - {name: ROUND, value: "%[3]d"}
          resources:
            requests: {cpu: 10m, memory: 8Mi}
`, name, replicas, round, e2eImage, benchScript)
}

// podmanSide runs the podman CLI against the node's Podman service.
type podmanSide struct {
	url string
}

func (p podmanSide) run(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "podman", append([]string{"--url", p.url}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// start creates a pod and runs the benchmark container in it, as Capstan
// does for a one-container pod: `podman pod create` then `podman run -d`.
func (p podmanSide) start(ctx context.Context, name string) error {
	if err := p.run(ctx, "pod", "create", "--name", name, "--label", "capstan.bench=raw"); err != nil {
		return err
	}
	return p.run(ctx, "run", "-d", "--pod", name, "--name", name+"-main", e2eImage, "/bin/sh", "-c", benchScript)
}

func (p podmanSide) removeRaw(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "podman", "--url", p.url, "pod", "ps", "-q", "--filter", "label=capstan.bench=raw")
	out, err := cmd.Output()
	if err != nil {
		return err
	}
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		return p.run(ctx, append([]string{"pod", "rm", "-f", "-t", "0"}, ids...)...)
	}
	return nil
}

func (p podmanSide) podsOfNode(ctx context.Context, node string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "podman", "--url", p.url, "pod", "ps", "-q", "--filter", "label=capstan.node="+node)
	out, err := cmd.Output()
	return strings.Fields(string(out)), err
}

// nodeBin is the node daemon's binary: bin/capstan-node, the nodeonly build
// that `make build` puts beside bin/capstan (docs/ARCHITECTURE.md).
func nodeBin(t *testing.T, cfg benchConfig) string {
	bin := envStr("CAPSTAN_NODE_BIN", filepath.Join(filepath.Dir(cfg.bin), "capstan-node"))
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: %v (make bench builds it)", bin, err)
	}
	return bin
}

// serverBin is the control plane's binary: bin/capstan-server, the
// serveronly build that `make build` puts beside bin/capstan, without the
// Podman bindings (docs/ARCHITECTURE.md).
func serverBin(t *testing.T, cfg benchConfig) string {
	bin := envStr("CAPSTAN_SERVER_BIN", filepath.Join(filepath.Dir(cfg.bin), "capstan-server"))
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: %v (make bench builds it)", bin, err)
	}
	return bin
}

// startNode starts a node daemon process (logs in dir/<logName>.log) and
// waits until it has registered: a Ready Node written after it started, so
// a daemon taking over a node name is not mistaken for the one before.
func startNode(t *testing.T, ctx context.Context, conn *natsbus.Conn, dir, logName, bin, nodeName string, args ...string) *proc {
	t.Helper()
	var before uint64
	if e, err := conn.Nodes.Get(ctx, nodeName); err == nil {
		before = e.Revision
	}
	p := startProc(t, dir, logName, nil, bin, append([]string{"node", "--node-name", nodeName}, args...)...)
	checkFor(t, 90*time.Second, logName+" Ready", func() error {
		if err := p.alive(); err != nil {
			t.Fatal(err)
		}
		e, err := conn.Nodes.Get(ctx, nodeName)
		if err != nil {
			return err
		}
		if e.Revision <= before {
			return fmt.Errorf("not registered yet")
		}
		if !strings.Contains(string(e.Value), `"type":"Ready","status":"True"`) {
			return fmt.Errorf("not ready: %s", e.Value)
		}
		return nil
	})
	return p
}

// benchPodman measures, on real Podman: commit to running (rounds, each
// beside a raw pod create + run), parallel start of 50 pods (beside the same
// through Podman at the node's concurrency), and the node daemon's RSS idle
// and with 50 pods: that of bin/capstan-node, which runs the node for every
// figure here, and beside it that of the full binary's `capstan node`, which
// takes over the node (same name, same data dir) before and after.
func benchPodman(t *testing.T, cfg benchConfig, res *results) {
	requirePodman(t)
	ensureImage(t)
	slimBin := nodeBin(t, cfg)
	dir := t.TempDir()
	repo := newGitRepo(t)
	repo.write("bench.yaml", benchDeployment("bench", 1, 0))
	repo.commit("round 0")
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	nodeName := "bench-" + randHex(3)
	// The production bus: TLS and identities; the admin config lands in
	// dir, and the node joins with a token.
	config := filepath.Join(dir, "client.config")
	t.Setenv("CAPSTAN_CONFIG", config)
	startProc(t, dir, "server", nil, cfg.bin, "server", "--repo", repo.dir, "--data-dir", filepath.Join(dir, "server"),
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--poll-interval", "1h", "--config", config)
	nodeDir := filepath.Join(dir, "node")
	raw := podmanSide{url: "unix://" + podman.SocketPath(filepath.Join(nodeDir, "podman"))}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = raw.removeRaw(ctx)
		if ids, err := raw.podsOfNode(ctx, nodeName); err == nil && len(ids) > 0 {
			_ = raw.run(ctx, append([]string{"pod", "rm", "-f", "-t", "0"}, ids...)...)
		}
	})
	var conn *natsbus.Conn
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	checkFor(t, 30*time.Second, "bus up", func() error {
		var err error
		if _, err := os.Stat(config); err != nil {
			return err
		}
		conn, err = natsbus.Connect(ctx, url, adminBus(t, natsbus.Options{}))
		return err
	})
	t.Cleanup(conn.Close)
	token, stderr, err := cliRun(ctx, "token", "create", "--config", config, "--server", url)
	if err != nil {
		t.Fatalf("capstan token create: %v: %s", err, stderr)
	}
	nodeArgs := []string{"--server", url, "--data-dir", nodeDir, "--token", strings.TrimSpace(token)}
	// BENCH_NODE_ARGS adds flags to the node daemons, to compare settings
	// (say --pod-network= for Podman's default network).
	nodeArgs = append(nodeArgs, strings.Fields(os.Getenv("BENCH_NODE_ARGS"))...)
	// The full binary's node daemon first: its first pod, then its idle RSS.
	full := startNode(t, ctx, conn, dir, "node-full", cfg.bin, nodeName, nodeArgs...)
	tr := trackPods(t, ctx, conn.Objects)
	inRound := func(app string, round int) func(p *benchPod) bool {
		return func(p *benchPod) bool {
			return hasLabel(p, "app", app) && hasLabel(p, "round", fmt.Sprint(round)) && p.Status.Phase == "Running"
		}
	}
	// Round 0 warms up both sides (the infra image, the image's layers).
	tr.wait(t, 3*time.Minute, "round 0 Running", inRound("bench", 0), 1)
	time.Sleep(2 * time.Second) // deliberate: the node settles after its first pod before its idle RSS is read
	idleFull, _ := rss(full.pid())
	idleFullAnon, idleFullFile := rssParts(full.pid())
	full.stop(t)
	// bin/capstan-node takes the node over; its first round (1) is its
	// warm-up and is measured as round 0 was.
	node := startNode(t, ctx, conn, dir, "node", slimBin, nodeName, nodeArgs...)
	repo.write("bench.yaml", benchDeployment("bench", 1, 1))
	repo.commit("round 1")
	tr.wait(t, 2*time.Minute, "round 1 Running", inRound("bench", 1), 1)
	tr.wait(t, 2*time.Minute, "round 1 alone", func(p *benchPod) bool { return hasLabel(p, "app", "bench") }, 1)
	time.Sleep(2 * time.Second) // deliberate: as for the full binary, settle before the idle RSS
	idle, _ := rss(node.pid())
	idleAnon, idleFile := rssParts(node.pid())
	if err := raw.start(ctx, "raw-warmup"); err != nil {
		t.Fatal(err)
	}
	_ = raw.removeRaw(ctx)

	var capstanMS, podmanMS []float64
	for i := 2; i <= cfg.rounds+1; i++ {
		repo.write("bench.yaml", benchDeployment("bench", 1, i))
		repo.commit(fmt.Sprintf("round %d", i))
		t0 := time.Now()
		t1 := tr.wait(t, 2*time.Minute, fmt.Sprintf("round %d Running", i), inRound("bench", i), 1)
		capstanMS = append(capstanMS, ms(t1.Sub(t0)))
		name := fmt.Sprintf("raw-%d", i)
		r0 := time.Now()
		if err := raw.start(ctx, name); err != nil {
			t.Fatal(err)
		}
		podmanMS = append(podmanMS, ms(time.Since(r0)))
		if err := raw.removeRaw(ctx); err != nil {
			t.Fatal(err)
		}
		tr.wait(t, 2*time.Minute, fmt.Sprintf("round %d alone", i), func(p *benchPod) bool { return hasLabel(p, "app", "bench") }, 1)
		t.Logf("round %d: capstan %.0f ms, podman %.0f ms", i, capstanMS[i-2], podmanMS[i-2])
	}
	res.Samples["commit_to_running_capstan"] = capstanMS
	res.Samples["commit_to_running_podman"] = podmanMS
	for _, q := range []struct {
		name   string
		q      float64
		target string
		met    func(v, base float64) bool
	}{
		{"p50", 0.5, "under 1 s; under 3x raw Podman", func(v, base float64) bool { return v < 1000 && v < 3*base }},
		{"p99", 0.99, "", nil},
	} {
		v, base := quantile(capstanMS, q.q), quantile(podmanMS, q.q)
		f := figure{Benchmark: "commit to running", Metric: fmt.Sprintf("%s over %d rounds", q.name, len(capstanMS)), Value: v, Unit: "ms",
			Baseline: ptr(base), BaselineWhat: "podman pod create + podman run -d, same service", Target: q.target}
		if q.met != nil {
			f.Met = ptr(q.met(v, base))
		}
		res.add(f)
	}
	res.note("the raw Podman baseline runs the podman CLI against the node's own Podman service (`podman --url unix://...`), so it includes two CLI process starts; Capstan talks to the same service through the Go bindings.")
	res.note("commit to running: time from `git commit` returning to the new pod's Running status arriving on a watch of the objects bucket; the repository is local, so the git source is woken by fsnotify on its refs. Rolling update with maxSurge 1: the new pod starts before the old one stops. The bus runs as in production: TLS, the node with its own identity (joined with a token).")

	// Parallel start: the bench Deployment goes, then N pods in one commit.
	repo.remove("bench.yaml")
	repo.write("par.yaml", benchDeployment("par", cfg.parallel, 0))
	repo.commit("parallel")
	t0 := time.Now()
	t1 := tr.wait(t, 5*time.Minute, fmt.Sprintf("%d pods Running", cfg.parallel), inRound("par", 0), cfg.parallel)
	capstanPar := t1.Sub(t0)
	time.Sleep(3 * time.Second) // deliberate: the node settles with its pods before its RSS is read
	with50, peak := rss(node.pid())
	anon50, file50 := rssParts(node.pid())
	// The full binary takes the running pods over for its figure with them
	// (it adopts them: it starts none), then removes them.
	node.stop(t)
	full = startNode(t, ctx, conn, dir, "node-full-pods", cfg.bin, nodeName, nodeArgs...)
	time.Sleep(3 * time.Second) // deliberate: as above, settle with the pods before the RSS
	with50Full, peakFull := rss(full.pid())
	anon50Full, file50Full := rssParts(full.pid())
	repo.remove("par.yaml")
	repo.commit("parallel gone")
	checkFor(t, 5*time.Minute, "parallel pods removed", func() error {
		ids, err := raw.podsOfNode(ctx, nodeName)
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			return fmt.Errorf("%d pods left", len(ids))
		}
		return nil
	})
	rawPar := rawParallel(t, ctx, raw, cfg.parallel, cfg.conc)
	if err := raw.removeRaw(ctx); err != nil {
		t.Error(err)
	}
	res.add(figure{Benchmark: "parallel start", Metric: fmt.Sprintf("%d pods, commit to all Running", cfg.parallel), Value: capstanPar.Seconds(), Unit: "s",
		Baseline: ptr(rawPar.Seconds()), BaselineWhat: fmt.Sprintf("%d x (pod create + run -d), %d at a time", cfg.parallel, cfg.conc),
		Target: "under 1.2x raw", Met: ptr(capstanPar.Seconds() < 1.2*rawPar.Seconds()),
		Note: "node daemon MaxParallel 8 (its default)"})
	res.add(figure{Benchmark: "footprint", Metric: "node daemon RSS, idle", Value: mib(idle), Unit: "MiB", Target: "under 50 MB", Met: ptr(float64(idle) < 50e6),
		Note: fmt.Sprintf("bin/capstan-node; anonymous %.1f MiB, file-backed %.1f MiB", mib(idleAnon), mib(idleFile))})
	res.add(figure{Benchmark: "footprint", Metric: "node daemon RSS, idle, full binary", Value: mib(idleFull), Unit: "MiB",
		Note: fmt.Sprintf("bin/capstan node; anonymous %.1f MiB, file-backed %.1f MiB", mib(idleFullAnon), mib(idleFullFile))})
	res.add(figure{Benchmark: "footprint", Metric: fmt.Sprintf("node daemon RSS, %d pods (peak)", cfg.parallel), Value: mib(with50), Unit: "MiB",
		Target: "under 50 MB", Met: ptr(float64(with50) < 50e6), Note: fmt.Sprintf("bin/capstan-node; peak %.1f MiB; anonymous %.1f MiB, file-backed %.1f MiB", mib(peak), mib(anon50), mib(file50))})
	res.add(figure{Benchmark: "footprint", Metric: fmt.Sprintf("node daemon RSS, %d pods, full binary", cfg.parallel), Value: mib(with50Full), Unit: "MiB",
		Note: fmt.Sprintf("bin/capstan node, having taken the running pods over; peak %.1f MiB; anonymous %.1f MiB, file-backed %.1f MiB", mib(peakFull), mib(anon50Full), mib(file50Full))})
	res.note("node daemon RSS: the node daemon process alone (VmRSS from /proc), measured idle after its first pod and %d s after %d pods were Running; the Podman service it started is a separate process and is not counted. "+
		"The figures with a target are bin/capstan-node's, the nodeonly build that hosts which only run pods use (docs/ARCHITECTURE.md), which runs the node for every figure of this benchmark; "+
		"the full binary's `capstan node` (bin/capstan) is measured in the same run on the same node: before it, after its own first pod, and after it, once it has taken the %d running pods over.", 3, cfg.parallel, cfg.parallel)
}

// rawParallel starts n pods through Podman, conc at a time, and returns the
// time until all have started.
func rawParallel(t *testing.T, ctx context.Context, raw podmanSide, n, conc int) time.Duration {
	t.Helper()
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	t0 := time.Now()
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := raw.start(ctx, fmt.Sprintf("rawpar-%d", i)); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	d := time.Since(t0)
	if len(errs) > 0 {
		t.Fatalf("%d raw starts failed, first: %v", len(errs), errs[0])
	}
	return d
}
