//go:build bench && linux

package main

// `make bench` runs TestBench: every benchmark of issue 6, each beside its
// baseline measured in the same run, then writes bench/results.json,
// bench/*.png and docs/BENCHMARKS.md. The benchmarks run the real code:
// the capstan binary (bin/capstan, built by make) as separate server and
// node processes, real Podman for the pod start figures, simulated nodes
// (`capstan node --simulate`, the real node daemon over node/fake) for the
// scale figures, and gitops.Syncer with sources/git and schema.Load
// for the sync figures. Nothing here asserts on speed.

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// benchConfig is read from the environment (the Makefile passes its
// variables through); the defaults fit about ten minutes on two cores.
type benchConfig struct {
	only        map[string]bool // empty: all
	bin         string
	outDir      string // bench/
	docs        string // docs/BENCHMARKS.md
	micro       string // output of the Go micro-benchmarks, when run
	rounds      int    // commit to running
	parallel    int    // parallel start: pods
	conc        int    // parallel start: raw Podman concurrency
	nodes       int    // simulated nodes
	pods        int    // scheduler throughput: pods
	lossPods    int    // node loss: pods on the killed nodes
	schedRounds int    // scheduler throughput: rounds, for the median
	manifests   int    // sync: files
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envStr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func loadBenchConfig() benchConfig {
	c := benchConfig{
		only:        map[string]bool{},
		bin:         envStr("CAPSTAN_BIN", filepath.Join("..", "..", "bin", "capstan")),
		outDir:      envStr("BENCH_OUT", filepath.Join("..", "..", "bench")),
		docs:        envStr("BENCH_DOCS", filepath.Join("..", "..", "docs", "BENCHMARKS.md")),
		micro:       os.Getenv("BENCH_MICRO"),
		rounds:      envInt("BENCH_ROUNDS", 20),
		parallel:    envInt("BENCH_PARALLEL", 50),
		conc:        envInt("BENCH_CONCURRENCY", 8),
		nodes:       envInt("BENCH_NODES", 1000),
		pods:        envInt("BENCH_PODS", 30000),
		lossPods:    envInt("BENCH_LOSS_PODS", 300),
		schedRounds: envInt("BENCH_SCHED_ROUNDS", 5),
		manifests:   envInt("BENCH_MANIFESTS", 10000),
	}
	for s := range strings.SplitSeq(os.Getenv("BENCH_ONLY"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.only[s] = true
		}
	}
	return c
}

func (c benchConfig) wants(name string) bool { return len(c.only) == 0 || c.only[name] }

// figure is one measured value beside its baseline.
type figure struct {
	Benchmark string   `json:"benchmark"`
	Metric    string   `json:"metric"`
	Value     float64  `json:"value"`
	Unit      string   `json:"unit"`
	Baseline  *float64 `json:"baseline,omitempty"`
	// BaselineWhat says what the baseline is.
	BaselineWhat string   `json:"baselineWhat,omitempty"`
	Ratio        *float64 `json:"ratio,omitempty"`
	Target       string   `json:"target,omitempty"`
	Met          *bool    `json:"met,omitempty"`
	Note         string   `json:"note,omitempty"`
}

// results is what bench/results.json holds.
type results struct {
	Date      time.Time            `json:"date"`
	Commit    string               `json:"commit"`
	Dirty     bool                 `json:"dirty"`
	Machine   map[string]string    `json:"machine"`
	Config    map[string]any       `json:"config"`
	Figures   []figure             `json:"figures"`
	Micro     []microResult        `json:"micro,omitempty"`
	Profiles  map[string]string    `json:"profiles,omitempty"` // name -> top lines
	Notes     []string             `json:"notes,omitempty"`
	Samples   map[string][]float64 `json:"samples,omitempty"` // name -> ms
	Durations map[string]string    `json:"durations"`
	mu        sync.Mutex
}

func (r *results) add(f figure) { r.insert(-1, f) }

// insert adds f as the i-th figure (at the end for -1): a figure taken
// later than those after it.
func (r *results) insert(i int, f figure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f.Baseline != nil && *f.Baseline != 0 {
		ratio := f.Value / *f.Baseline
		f.Ratio = &ratio
	}
	if i < 0 || i > len(r.Figures) {
		i = len(r.Figures)
	}
	r.Figures = slices.Insert(r.Figures, i, f)
}

// next is the index the next figure added takes.
func (r *results) next() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.Figures)
}

func (r *results) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// setProfile keeps a profile's top lines under name; safe from any
// goroutine.
func (r *results) setProfile(name, top string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Profiles == nil {
		r.Profiles = map[string]string{}
	}
	r.Profiles[name] = top
}

func ptr[T any](v T) *T { return &v }

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// quantile returns the q-quantile (0..1) of xs by the nearest-rank method.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func median(xs []float64) float64 { return quantile(xs, 0.5) }

// TestBench runs the benchmarks. It is also the entry point of the bus
// process the scale benchmarks start (benchBusEnv).
func TestBench(t *testing.T) {
	if dir := os.Getenv(benchBusEnv); dir != "" {
		serveBenchBus(t, dir)
		return
	}
	cfg := loadBenchConfig()
	if _, err := os.Stat(cfg.bin); err != nil {
		t.Fatalf("%s: %v (make bench builds it)", cfg.bin, err)
	}
	if err := os.MkdirAll(cfg.outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	res := &results{Date: time.Now().UTC(), Machine: machine(), Durations: map[string]string{},
		Profiles: map[string]string{}, Samples: map[string][]float64{},
		Config: map[string]any{"rounds": cfg.rounds, "parallel_pods": cfg.parallel, "raw_concurrency": cfg.conc,
			"simulated_nodes": cfg.nodes, "scheduler_pods": cfg.pods, "node_loss_pods": cfg.lossPods, "sync_manifests": cfg.manifests}}
	res.Commit, res.Dirty = gitCommit()
	steps := []struct {
		name string
		fn   func(t *testing.T, cfg benchConfig, res *results)
	}{
		{"micro", benchMicro},
		{"podman", benchPodman}, // commit to running, parallel start, node footprint
		{"scale", benchScale},   // scheduler, fan-out, control plane footprint, node loss
		{"sync", benchSync},
		{"syncalways", benchSyncAlways},
		{"auth", func(t *testing.T, cfg benchConfig, res *results) { benchAuthCost(t, res); benchAuthCommit(t, cfg, res) }},
	}
	for _, s := range steps {
		if !cfg.wants(s.name) {
			continue
		}
		begin := time.Now()
		t.Run(s.name, func(t *testing.T) { s.fn(t, cfg, res) })
		res.Durations[s.name] = time.Since(begin).Round(time.Second).String()
		t.Logf("%s took %s", s.name, time.Since(begin).Round(time.Second))
	}
	printTable(t, res)
	writeResults(t, cfg, res)
}

func machine() map[string]string {
	m := map[string]string{"goos": runtime.GOOS, "goarch": runtime.GOARCH, "cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		m["memory"] = strings.Join(strings.Fields(strings.TrimPrefix(l, "MemTotal:")), " ")
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m["os"] = strings.Trim(v, `"`)
			}
		}
	}
	if out, err := exec.Command("podman", "--version").Output(); err == nil {
		m["podman"] = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["loadavg_at_start"] = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return m
}

func gitCommit() (string, bool) {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown", false
	}
	st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(out)), len(strings.TrimSpace(string(st))) > 0
}

// procStatus reads the memory lines of /proc/PID/status, in bytes (empty
// when the process is gone).
func procStatus(pid int) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[2] == "kB" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			out[strings.TrimSuffix(f[0], ":")] = v << 10
		}
	}
	return out
}

// rss returns a process's resident set and its peak, from /proc.
func rss(pid int) (cur, peak int64) {
	st := procStatus(pid)
	return st["VmRSS"], st["VmHWM"]
}

// rssParts returns a process's resident anonymous memory (heap, stacks)
// and resident file pages (mostly the binary's own text and data).
func rssParts(pid int) (anon, file int64) {
	st := procStatus(pid)
	return st["RssAnon"], st["RssFile"]
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// cpuTime returns the CPU time (user and system) a process has used, from
// /proc/PID/stat, in clock ticks of 10 ms.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// cpuSplit measures the CPU time each named process uses between its
// creation and done(), and samples it every 200 ms meanwhile, so that the
// share of a shorter window (the binds) can be told too.
type cpuSplit struct {
	mu      sync.Mutex
	names   []string
	pids    []int
	start   []time.Duration
	t0      time.Time
	samples []cpuSample
	stop    chan struct{}
}

// cpuSample is each process's CPU time at one moment (in names' order; a
// process added later is missing from earlier samples).
type cpuSample struct {
	at   time.Time
	used []time.Duration
}

func newCPUSplit(procs map[string]int) *cpuSplit {
	c := &cpuSplit{t0: time.Now(), stop: make(chan struct{})}
	for _, n := range slices.Sorted(maps.Keys(procs)) {
		c.names = append(c.names, n)
		c.pids = append(c.pids, procs[n])
		c.start = append(c.start, cpuTime(procs[n]))
	}
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
			}
			c.mu.Lock()
			smp := cpuSample{at: time.Now()}
			for _, pid := range c.pids {
				smp.used = append(smp.used, cpuTime(pid))
			}
			c.samples = append(c.samples, smp)
			c.mu.Unlock()
		}
	}()
	return c
}

// add counts one more process, from now: one started after newCPUSplit.
func (c *cpuSplit) add(name string, pid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = append(c.names, name)
	c.pids = append(c.pids, pid)
	c.start = append(c.start, cpuTime(pid))
}

// done stops the sampling and returns "name 1.2 s (35 %%)" per process,
// the share being of one core over the wall time since newCPUSplit.
func (c *cpuSplit) done() string {
	close(c.stop)
	c.mu.Lock()
	defer c.mu.Unlock()
	wall := time.Since(c.t0)
	final := cpuSample{at: time.Now()} // so that a window ending now has a sample after it
	var parts []string
	for i, n := range c.names {
		final.used = append(final.used, cpuTime(c.pids[i]))
		used := final.used[i] - c.start[i]
		parts = append(parts, fmt.Sprintf("%s %.1f s (%.0f%% of a core)", n, used.Seconds(), 100*used.Seconds()/wall.Seconds()))
	}
	c.samples = append(c.samples, final)
	return fmt.Sprintf("CPU over %.1f s: %s", wall.Seconds(), strings.Join(parts, ", "))
}

// between returns each process's share of a core from the last sample at
// or before from to the first at or after to, or "" without such samples.
func (c *cpuSplit) between(from, to time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, b := -1, -1
	for i, smp := range c.samples {
		if !smp.at.After(from) {
			a = i
		}
		if b < 0 && !smp.at.Before(to) {
			b = i
		}
	}
	if a < 0 || b < 0 || b <= a {
		return ""
	}
	wall := c.samples[b].at.Sub(c.samples[a].at)
	var parts []string
	for i, n := range c.names {
		if i >= len(c.samples[a].used) {
			continue
		}
		used := c.samples[b].used[i] - c.samples[a].used[i]
		parts = append(parts, fmt.Sprintf("%s %.0f%%", n, 100*used.Seconds()/wall.Seconds()))
	}
	return fmt.Sprintf("CPU while binding (%.1f s), in shares of one core: %s", wall.Seconds(), strings.Join(parts, ", "))
}

// proc is a capstan (or bus) process the benchmarks started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan error
}

// startProc starts a process with its output in dir/<name>.log; it is
// stopped with SIGTERM (then SIGKILL) at the test's end.
func startProc(t *testing.T, dir, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: f, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		p.done <- nil
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Logf("%s did not stop within 30s of SIGTERM; killing it", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.done <- nil
}

// kill ends the process at once, as a crash or power loss would.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
	p.done <- nil
}

func (p *proc) alive() error {
	select {
	case err := <-p.done:
		p.done <- err
		b, _ := os.ReadFile(p.log.Name())
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		return fmt.Errorf("%s exited: %v; last lines:\n%s", p.name, err, strings.Join(lines[max(0, len(lines)-10):], "\n"))
	default:
		return nil
	}
}

// benchBusEnv, set to a data dir, makes the test binary a bus process: a
// NATS server with JetStream configured as natsbus.NewServer configures
// it, but without JetStream's default limit of 1,000 consumers per stream
// (every node's assignments watch is one consumer of one stream; see
// docs/BENCHMARKS.md). It prints its URL and runs until stdin closes.
const benchBusEnv = "CAPSTAN_BENCH_BUS"

func serveBenchBus(t *testing.T, dir string) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "capstan", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: dir, SyncAlways: os.Getenv("CAPSTAN_BENCH_SYNC_ALWAYS") == "1",
		JetStreamLimits: server.JSLimitOpts{DefaultMaxConsumers: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("bus not ready")
	}
	fmt.Println("URL", ns.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	ns.Shutdown()
	ns.WaitForShutdown()
}

// startBenchBus starts the bus process and returns it and its URL.
func startBenchBus(t *testing.T, dir string, syncAlways bool, extraEnv ...string) (*proc, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^TestBench$")
	env := []string{benchBusEnv + "=" + filepath.Join(dir, "bus")}
	if syncAlways {
		env = append(env, "CAPSTAN_BENCH_SYNC_ALWAYS=1")
	}
	env = append(env, extraEnv...)
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, _ := os.Create(filepath.Join(dir, "bus.log"))
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: "bus", cmd: cmd, log: logf, done: make(chan error, 1)}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "URL "); ok {
				urlc <- u
			}
		}
	}()
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case u := <-urlc:
		return p, u
	case <-time.After(30 * time.Second):
		t.Fatal("bus process did not start")
	}
	return nil, ""
}

// printTable logs the figures as the table docs/BENCHMARKS.md shows.
func printTable(t *testing.T, res *results) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-22s %-34s %12s %12s %8s  %s\n", "benchmark", "metric", "value", "baseline", "ratio", "target")
	for _, f := range res.Figures {
		base, ratio := "-", "-"
		if f.Baseline != nil {
			base = fmtVal(*f.Baseline, f.Unit)
		}
		if f.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *f.Ratio)
		}
		met := ""
		if f.Met != nil {
			met = map[bool]string{true: " (met)", false: " (NOT met)"}[*f.Met]
		}
		fmt.Fprintf(&b, "%-22s %-34s %12s %12s %8s  %s%s\n", f.Benchmark, f.Metric, fmtVal(f.Value, f.Unit), base, ratio, f.Target, met)
	}
	t.Log(b.String())
	fmt.Println(b.String())
}

func fmtVal(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.2f %s", v, unit)
}

func writeResults(t *testing.T, cfg benchConfig, res *results) {
	slices.SortStableFunc(res.Figures, func(a, b figure) int { return cmp.Compare(benchOrder(a.Benchmark), benchOrder(b.Benchmark)) })
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.outDir, "results.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if s := res.Samples["commit_to_running_capstan"]; len(s) > 0 {
		if err := plotCommitToRunning(filepath.Join(cfg.outDir, "commit-to-running.png"), s, res.Samples["commit_to_running_podman"]); err != nil {
			t.Errorf("plot: %v", err)
		}
	}
	if err := os.WriteFile(cfg.docs, []byte(markdown(cfg, res)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s, %s", filepath.Join(cfg.outDir, "results.json"), cfg.docs)
}

var benchNames = []string{"commit to running", "parallel start", "scheduler throughput", "watch fan-out", "footprint", "sync", "node loss", "bus durability", "bus security"}

func benchOrder(name string) int {
	if i := slices.Index(benchNames, name); i >= 0 {
		return i
	}
	return len(benchNames)
}
