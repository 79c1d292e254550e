//go:build bench && linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/node/podman"
)

// benchAuthCommit measures what TLS and the identities cost commit to
// running: the same rounds as the podman step's, on a control plane and
// node daemon set up alike, once with the production bus and once with
// --insecure-bus, interleaved round by round so both see the same load.
func benchAuthCommit(t *testing.T, cfg benchConfig, res *results) {
	requirePodman(t)
	ensureImage(t)
	rounds := max(cfg.rounds/2, 5)
	type side struct {
		name string
		repo *gitRepo
		tr   *podTracker
		ms   []float64
		raw  podmanSide
		node string
	}
	start := func(insecure bool) *side {
		dir := t.TempDir()
		name := "auth"
		if insecure {
			name = "plain"
		}
		s := &side{name: name, repo: newGitRepo(t)}
		s.repo.write("bench.yaml", benchDeployment("bench-"+name, 1, 0))
		s.repo.commit("round 0")
		port := freePort(t)
		url := fmt.Sprintf("nats://127.0.0.1:%d", port)
		config := filepath.Join(dir, "client.config")
		flags := []string{"--config", config}
		if insecure {
			flags = []string{"--insecure-bus"}
		}
		startProc(t, dir, name+"-server", nil, cfg.bin, append([]string{"server", "--repo", s.repo.dir, "--data-dir", filepath.Join(dir, "server"),
			"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--poll-interval", "1h"}, flags...)...)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		var conn *natsbus.Conn
		if !insecure {
			t.Setenv("CAPSTAN_CONFIG", config)
		}
		checkFor(t, 30*time.Second, name+" bus up", func() error {
			opts := natsbus.Options{Bind: true}
			if !insecure {
				if _, err := os.Stat(config); err != nil {
					return err
				}
				opts = adminBus(t, opts)
			}
			var err error
			conn, err = natsbus.Connect(ctx, url, opts)
			return err
		})
		t.Cleanup(conn.Close)
		nodeDir, nodeName := filepath.Join(dir, "node"), name+"-"+randHex(3)
		nodeArgs := []string{"--server", url, "--data-dir", nodeDir}
		if insecure {
			nodeArgs = append(nodeArgs, "--insecure-bus")
		} else {
			token, stderr, err := cliRun(ctx, "token", "create", "--config", config, "--server", url)
			if err != nil {
				t.Fatalf("capstan token create: %v: %s", err, stderr)
			}
			nodeArgs = append(nodeArgs, "--token", strings.TrimSpace(token))
		}
		raw := podmanSide{url: "unix://" + podman.SocketPath(filepath.Join(nodeDir, "podman"))}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if ids, err := raw.podsOfNode(ctx, nodeName); err == nil && len(ids) > 0 {
				_ = raw.run(ctx, append([]string{"pod", "rm", "-f", "-t", "0"}, ids...)...)
			}
		})
		startNode(t, ctx, conn, dir, name+"-node", nodeBin(t, cfg), nodeName, nodeArgs...)
		s.raw, s.node = raw, nodeName
		s.tr = trackPods(t, ctx, conn.Objects)
		s.tr.wait(t, 3*time.Minute, name+" round 0 Running", func(p *benchPod) bool {
			return hasLabel(p, "app", "bench-"+name) && hasLabel(p, "round", "0") && p.Status.Phase == "Running"
		}, 1)
		return s
	}
	sides := []*side{start(false), start(true)}
	for i := 1; i <= rounds; i++ {
		for _, s := range sides {
			app := "bench-" + s.name
			s.repo.write("bench.yaml", benchDeployment(app, 1, i))
			s.repo.commit(fmt.Sprintf("round %d", i))
			t0 := time.Now()
			t1 := s.tr.wait(t, 2*time.Minute, fmt.Sprintf("%s round %d Running", s.name, i), func(p *benchPod) bool {
				return hasLabel(p, "app", app) && hasLabel(p, "round", fmt.Sprint(i)) && p.Status.Phase == "Running"
			}, 1)
			if i > 1 { // the first round warms the node up
				s.ms = append(s.ms, ms(t1.Sub(t0)))
			}
			s.tr.wait(t, 2*time.Minute, fmt.Sprintf("%s round %d alone", s.name, i), func(p *benchPod) bool { return hasLabel(p, "app", app) }, 1)
		}
	}
	// The pods go through Git, while the nodes still run (their Podman
	// services stop with them).
	for _, s := range sides {
		s.repo.remove("bench.yaml")
		s.repo.commit("done")
		s.tr.wait(t, 2*time.Minute, s.name+" pods gone", func(p *benchPod) bool { return hasLabel(p, "app", "bench-"+s.name) }, 0)
		checkFor(t, 2*time.Minute, s.name+" Podman pods removed", func() error {
			ids, err := s.raw.podsOfNode(context.Background(), s.node)
			if err != nil {
				return err
			}
			if len(ids) > 0 {
				return fmt.Errorf("%d pods left", len(ids))
			}
			return nil
		})
	}
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p99", 0.99}} {
		res.add(figure{Benchmark: "bus security", Metric: fmt.Sprintf("commit to running %s over %d rounds, TLS and identities", q.name, len(sides[0].ms)),
			Value: quantile(sides[0].ms, q.q), Unit: "ms", Baseline: ptr(quantile(sides[1].ms, q.q)), BaselineWhat: "the same with --insecure-bus, rounds interleaved",
			Note: "capstan server and bin/capstan-node, as in the podman step"})
	}
}
