//go:build bench && linux

package main

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// microResult is one line of `go test -bench` output.
type microResult struct {
	Package    string             `json:"package"`
	Name       string             `json:"name"`
	Iterations int64              `json:"iterations"`
	Metrics    map[string]float64 `json:"metrics"` // unit -> value, e.g. "ns/op"
}

// microRuns are the Go micro-benchmarks of the hot paths, with iteration
// counts that fit the ten minutes.
var microRuns = []struct {
	pkg, bench, benchtime string
}{
	{"./reconciler/scheduler", ".", "1s"},        // the scheduler's filter and score
	{"./reconciler/controllers", ".", "1s"},      // the planners
	{"./schema", "BenchmarkLoad", "3x"},          // the loader
	{"./bus/natsbus", "BenchmarkKV", "2000x"},    // put-to-watch and async puts, SyncAlways off and on
	{"./bus/natsauth", "BenchmarkAuth", "2000x"}, // put-to-watch with and without TLS and identities
}

// benchMicro runs the micro-benchmarks with `go test -bench` (from the
// module root) and keeps their results.
func benchMicro(t *testing.T, cfg benchConfig, res *results) {
	root := filepath.Join("..", "..")
	for _, r := range microRuns {
		cmd := exec.Command("go", "test", "-run", "^$", "-bench", r.bench, "-benchtime", r.benchtime, "-benchmem", r.pkg)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("go test -bench %s %s: %v\n%s", r.bench, r.pkg, err, out)
			continue
		}
		res.Micro = append(res.Micro, parseBench(r.pkg, string(out))...)
	}
}

// parseBench reads the result lines of `go test -bench` output.
func parseBench(pkg, out string) []microResult {
	var rs []microResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		r := microResult{Package: strings.TrimPrefix(pkg, "./"), Name: f[0], Iterations: n, Metrics: map[string]float64{}}
		if i := strings.LastIndexByte(r.Name, '-'); i > 0 {
			r.Name = r.Name[:i] // the GOMAXPROCS suffix
		}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				r.Metrics[f[i+1]] = v
			}
		}
		rs = append(rs, r)
	}
	return rs
}

// benchSyncAlways reports the bus's SyncAlways on/off difference from
// BenchmarkKV (run by benchMicro; run here when micro was skipped).
func benchSyncAlways(t *testing.T, cfg benchConfig, res *results) {
	find := res.micro
	if _, ok := find("BenchmarkKV/sync=false/put-to-watch", "p50-µs"); !ok {
		cmd := exec.Command("go", "test", "-run", "^$", "-bench", "BenchmarkKV", "-benchtime", "2000x", "./bus/natsbus")
		cmd.Dir = filepath.Join("..", "..")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("BenchmarkKV: %v\n%s", err, out)
		}
		res.Micro = append(res.Micro, parseBench("./bus/natsbus", string(out))...)
	}
	for _, m := range []struct{ metric, sub, unit, show string }{
		{"put-to-watch p50", "put-to-watch", "p50-µs", "µs"},
		{"put-to-watch p99", "put-to-watch", "p99-µs", "µs"},
		{"async KV puts", "async-put", "puts/s", "puts/s"},
	} {
		off, ok1 := find("BenchmarkKV/sync=false/"+m.sub, m.unit)
		on, ok2 := find("BenchmarkKV/sync=true/"+m.sub, m.unit)
		if !ok1 || !ok2 {
			t.Errorf("BenchmarkKV %s: no result", m.sub)
			continue
		}
		res.add(figure{Benchmark: "bus durability", Metric: m.metric + ", SyncAlways on", Value: on, Unit: m.show,
			Baseline: ptr(off), BaselineWhat: "SyncAlways off (the default)", Note: "BenchmarkKV in bus/natsbus, 2,000 puts of 512 B"})
	}
}

// benchAuthCost reports what TLS and the identities cost put-to-watch,
// from BenchmarkAuth (run by benchMicro).
func benchAuthCost(t *testing.T, res *results) {
	find := res.micro
	for _, m := range []struct{ metric, unit string }{{"put-to-watch p50", "p50-µs"}, {"put-to-watch p99", "p99-µs"}} {
		off, ok1 := find("BenchmarkAuth/auth=false", m.unit)
		on, ok2 := find("BenchmarkAuth/auth=true", m.unit)
		if !ok1 || !ok2 {
			t.Errorf("BenchmarkAuth %s: no result", m.metric)
			continue
		}
		res.add(figure{Benchmark: "bus security", Metric: m.metric + ", TLS and a node's identity", Value: on, Unit: "µs",
			Baseline: ptr(off), BaselineWhat: "plain NATS, no identities", Note: "BenchmarkAuth in bus/natsauth, 2,000 status puts of 512 B"})
	}
}

// micro is a micro-benchmark's metric, by the benchmark's name.
func (res *results) micro(name, unit string) (float64, bool) {
	for _, m := range res.Micro {
		if m.Name == name {
			v, ok := m.Metrics[unit]
			return v, ok
		}
	}
	return 0, false
}
