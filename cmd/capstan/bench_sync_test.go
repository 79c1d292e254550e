//go:build bench && linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/schema"
	"github.com/capstan-io/capstan/sources/git"
)

// syncManifest is one small Deployment, as schema's BenchmarkLoad uses.
func syncManifest(i, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-%[1]d
  namespace: team-%[2]d
  labels: {app: app-%[1]d}
spec:
  replicas: %[3]d
  selector:
    matchLabels: {app: app-%[1]d}
  template:
    metadata:
      labels: {app: app-%[1]d}
    spec:
      containers:
        - name: app
          image: %[4]s
          command: ["sleep", "3600"]
          env:
            - {name: INDEX, value: "%[1]d"}
          ports:
            - containerPort: 8080
          resources:
            requests: {cpu: 10m, memory: 16Mi}
            limits: {memory: 64Mi}
`, i, i%10, replicas, e2eImage)
}

// benchSync measures the sync of a repository of cfg.manifests files:
// the first sync, then one-file changes to applied, beside schema.Load of
// the same files (the CUE validation the sync runs). It runs the sync
// alone (gitops.Syncer, sources/git on a local repository, schema.Load,
// an in-process bus): no control plane acts on the Deployments.
func benchSync(t *testing.T, cfg benchConfig, res *results) {
	n := cfg.manifests
	repo := newGitRepo(t)
	for i := range n {
		d := filepath.Join(repo.dir, fmt.Sprintf("team-%d", i%10))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("app-%d.yaml", i)), []byte(syncManifest(i, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repo.commit("many")

	// Baseline: schema.Load of the same files, three times.
	var paths []string
	_ = filepath.WalkDir(repo.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".yaml") {
			paths = append(paths, p)
		}
		return nil
	})
	var loads []float64
	for range 3 {
		t0 := time.Now()
		objs, err := schema.LoadPaths(paths...)
		if err != nil || len(objs) != n {
			t.Fatalf("load: %d objects, %v", len(objs), err)
		}
		loads = append(loads, time.Since(t0).Seconds())
	}
	load := median(loads)

	dir := t.TempDir()
	srv, err := natsbus.NewServer(natsbus.ServerOptions{DataDir: filepath.Join(dir, "bus"), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	conn, err := natsbus.Connect(ctx, srv.ClientURL(), natsbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Objects.Watch(ctx, "Deployment.>")
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	var puts atomic.Int64
	changed := make(chan string, 16)
	go func() {
		for e := range ch {
			if e.Op == bus.OpPut {
				if puts.Add(1) == int64(n) {
					changed <- "all"
				}
				if puts.Load() > int64(n) {
					changed <- e.Key
				}
			}
		}
	}()
	src, err := git.New(git.Options{URL: repo.dir, Interval: time.Hour, CacheDir: filepath.Join(dir, "git")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &gitops.Syncer{Name: "bench", Source: src, Load: schema.Load, Objects: conn.Objects, Audit: conn.Audit, Events: conn.Events, Resync: time.Hour}
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- s.Run(ctx) }()
	select {
	case <-changed:
	case err := <-done:
		t.Fatalf("sync stopped: %v", err)
	case <-time.After(5 * time.Minute):
		t.Fatalf("first sync: %d of %d objects after 5 minutes", puts.Load(), n)
	}
	first := time.Since(t0).Seconds()
	var changes []float64
	for i := 1; i <= 3; i++ {
		f := filepath.Join(repo.dir, "team-7", "app-7.yaml")
		if err := os.WriteFile(f, []byte(syncManifest(7, 1+i)), 0o644); err != nil {
			t.Fatal(err)
		}
		var prof *os.File
		if i == 1 { // profile this process (the sync) through one change
			if prof, err = os.Create(filepath.Join(cfg.outDir, "sync.cpu.pprof")); err == nil {
				if err := pprof.StartCPUProfile(prof); err != nil {
					prof.Close()
					prof = nil
				}
			}
		}
		repo.commit(fmt.Sprintf("change %d", i))
		t0 := time.Now()
		select {
		case key := <-changed:
			if key != "Deployment.team-7.app-7" {
				t.Fatalf("changed %s", key)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("one-file change not applied within 2 minutes")
		}
		changes = append(changes, time.Since(t0).Seconds())
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
			res.Profiles[fmt.Sprintf("sync: one-file change of a %d-file repository (CPU of the sync)", n)] = pprofTop(prof.Name())
		}
	}
	change := median(changes)
	res.add(figure{Benchmark: "sync", Metric: fmt.Sprintf("first sync of %d manifests", n), Value: first, Unit: "s",
		Baseline: ptr(load), BaselineWhat: "schema.Load (CUE validation) of the same files, median of 3"})
	res.add(figure{Benchmark: "sync", Metric: "one-file change: commit to applied, median of 3", Value: change, Unit: "s",
		Baseline: ptr(load), BaselineWhat: "schema.Load of all the files", Target: "under 1 s", Met: ptr(change < 1),
		Note: fmt.Sprintf("runs %s", fmtSecs(changes))})
	res.note("sync: Deployments of about 30 lines in 10 directories, one per file; the sync runs alone against an in-process bus (no control plane), from a local repository woken by fsnotify.")
}

func fmtSecs(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.2f s", x)
	}
	return strings.Join(s, ", ")
}
