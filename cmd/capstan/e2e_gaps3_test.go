//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/node/podman"
)

// End-to-end tests of the horizontal pod autoscaler, ReplicationControllers
// and the eviction of a lost node's pods: declared in Git, run on real
// Podman by `capstan up` (and a second in-process `capstan node`), read
// back through the client commands. None needs Services, so every daemon
// runs without the data plane.

// deploymentJSON is a Deployment as `get deployment -o json` prints it.
type deploymentJSON struct {
	Metadata struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Replicas *int `json:"replicas"`
	} `json:"spec"`
	Status struct {
		Replicas      int `json:"replicas"`
		ReadyReplicas int `json:"readyReplicas"`
	} `json:"status"`
}

const hpaDeploymentYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: burn
spec:
  replicas: 1
  selector:
    matchLabels:
      app: burn
  template:
    metadata:
      labels:
        app: burn
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: ` + e2eImage + `
          command: ["sh", "-c", "trap 'exit 0' TERM; while :; do :; done"]
          resources:
            requests:
              cpu: 50m
            limits:
              cpu: 100m
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: burn
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: burn
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 50
`

// TestE2EHorizontalPodAutoscaler runs a Deployment of one pod burning its
// CPU limit (twice its request) under an autoscaler aiming at 50% of the
// request: the node samples the pods' use every 15 s and the autoscaler
// looks every 15 s, so within a minute or two the Deployment grows past
// the single replica Git declares, the autoscaler owns its replica count,
// and the periodic re-apply of Git does not take it back.
func TestE2EHorizontalPodAutoscaler(t *testing.T) {
	e := newE2E(t)
	e.repo.write("burn.yaml", hpaDeploymentYAML)
	e.repo.commit("a CPU-bound deployment and its autoscaler")
	e.startUpWith(e.repo.dir, "--dataplane=false", "--resync-interval", "3s")
	e.readyPods("burn", 1, 90*time.Second)

	begin := time.Now()
	var dep deploymentJSON
	checkFor(t, 150*time.Second, "deployment burn scaled up by its autoscaler", func() error {
		if err := e.getJSON(&dep, "get", "deployment", "burn", "-o", "json"); err != nil {
			return err
		}
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas <= 1 {
			return fmt.Errorf("spec.replicas %v", dep.Spec.Replicas)
		}
		return nil
	})
	t.Logf("scaled to %d replicas %s after the first pod was ready", *dep.Spec.Replicas, time.Since(begin).Round(time.Second))
	if *dep.Spec.Replicas > 3 {
		t.Fatalf("scaled to %d replicas, past maxReplicas 3", *dep.Spec.Replicas)
	}
	if got := dep.Metadata.Annotations["capstan.io/replicas-owner"]; got != "burn" {
		t.Errorf("annotation capstan.io/replicas-owner = %q, want the autoscaler burn", got)
	}
	if !strings.Contains(e.repo.git("show", "HEAD:burn.yaml"), "replicas: 1\n") {
		t.Fatal("the test's premise: Git declares 1 replica")
	}

	// The autoscaler's row: its target, bounds and current replicas.
	checkFor(t, 60*time.Second, "get hpa shows the scale-up", func() error {
		row, err := e.tableRow("hpa", "burn")
		if err != nil {
			return err
		}
		// NAME REFERENCE TARGETS... MINPODS MAXPODS REPLICAS AGE
		if len(row) < 7 || row[1] != "Deployment/burn" || !strings.HasPrefix(row[2], "cpu:") {
			return fmt.Errorf("row %q", row)
		}
		n := len(row)
		if row[n-4] != "1" || row[n-3] != "3" {
			return fmt.Errorf("min/max pods in row %q, want 1 and 3", row)
		}
		if r, err := strconv.Atoi(row[n-2]); err != nil || r <= 1 {
			return fmt.Errorf("replicas in row %q, want more than 1", row)
		}
		if strings.Contains(strings.Join(row, " "), "<unknown>") {
			return fmt.Errorf("no current utilization in row %q", row)
		}
		t.Logf("get hpa: %q", row)
		return nil
	})

	// The Deployment's extra pods run; Git's re-apply (every 3 s here)
	// leaves the autoscaler's count alone.
	checkFor(t, 90*time.Second, "more than one burn pod ready", func() error {
		ps, err := e.pods("burn")
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range ps {
			if p.ready() {
				ready++
			}
		}
		if ready <= 1 {
			return fmt.Errorf("%d pod(s), %d ready", len(ps), ready)
		}
		return nil
	})
	holdFor(t, 8*time.Second, "replicas stay the autoscaler's across Git re-applies", func() error {
		var d deploymentJSON
		if err := e.getJSON(&d, "get", "deployment", "burn", "-o", "json"); err != nil {
			return err
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas <= 1 {
			return fmt.Errorf("spec.replicas back to %v (Git's count) while the autoscaler owns it", d.Spec.Replicas)
		}
		return nil
	})
}

func replicationControllerYAML(replicas int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ReplicationController
metadata:
  name: legacy
spec:
  replicas: %d
  selector:
    app: legacy
  template:
    metadata:
      labels:
        app: legacy
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: %s
          command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
`, replicas, e2eImage)
}

// TestE2EReplicationController runs a v1 ReplicationController (equality
// selector) and scales it in Git.
func TestE2EReplicationController(t *testing.T) {
	e := newE2E(t)
	e.repo.write("legacy.yaml", replicationControllerYAML(2))
	e.repo.commit("a replication controller of 2")
	e.startUpWith(e.repo.dir, "--dataplane=false")

	first := e.readyPods("legacy", 2, 90*time.Second)
	checkFor(t, 30*time.Second, "2 running legacy containers", func() error {
		cs, err := e.containers()
		if err != nil {
			return err
		}
		if n := len(runningByApp(cs, "legacy")); n != 2 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})

	e.repo.write("legacy.yaml", replicationControllerYAML(3))
	rev := e.repo.commit("scale the replication controller to 3")
	e.auditRecord(rev, 60*time.Second)

	after := e.readyPods("legacy", 3, 90*time.Second)
	kept := 0
	for _, p := range first {
		if slices.ContainsFunc(after, func(q podJSON) bool { return q.Metadata.Name == p.Metadata.Name }) {
			kept++
		}
	}
	if kept != 2 {
		t.Errorf("scaling up replaced pods: %d of the first 2 kept", kept)
	}
	checkFor(t, 30*time.Second, "3 running legacy containers", func() error {
		cs, err := e.containers()
		if err != nil {
			return err
		}
		if n := len(runningByApp(cs, "legacy")); n != 3 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	checkFor(t, 30*time.Second, "get rc shows 3", func() error {
		row, err := e.tableRow("rc", "legacy")
		if err != nil {
			return err
		}
		// NAME DESIRED CURRENT READY AGE
		if len(row) != 5 || row[1] != "3" || row[2] != "3" || row[3] != "3" {
			return fmt.Errorf("row %q", row)
		}
		return nil
	})
}

// stoppableNode is one in-process `capstan node` with its own context.
type stoppableNode struct {
	name   string
	cancel context.CancelFunc
	done   chan error
	out    *syncBuffer
}

// startStoppableNode runs `capstan node` as a second node of the test's bus, on the
// Podman service of `up`, without the data plane, and waits until it is
// Ready. Its pods are removed at the end of the test.
func (e *e2e) startStoppableNode(name string) *stoppableNode {
	t := e.t
	t.Helper()
	e.root.Cleanup(func() { // registered before the run's: runs after it stops
		out, err := e.podman("pod", "ps", "-q", "--filter", "label=capstan.node="+name)
		if err != nil {
			e.root.Errorf("cleanup of node %s: %v", name, err)
			return
		}
		if ids := strings.Fields(out); len(ids) > 0 {
			if _, err := e.podman(append([]string{"pod", "rm", "-f", "-t", "0"}, ids...)...); err != nil {
				e.root.Errorf("cleanup of node %s: %v", name, err)
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	n := &stoppableNode{name: name, cancel: cancel, done: make(chan error, 1), out: &syncBuffer{}}
	sock := "unix://" + podman.SocketPath(filepath.Join(e.dataDir, "podman"))
	args := []string{"node", "--server", e.url, "--data-dir", t.TempDir(), "--node-name", name, "--token", e.joinToken(),
		"--node-address", "127.0.0.2", "--dataplane=false", "--podman-socket", sock, "--log-level", "debug"}
	go func() { n.done <- Run(ctx, args, n.out, n.out) }()
	e.root.Cleanup(func() {
		if err := n.stop(); err != nil {
			e.root.Errorf("capstan node %s: %v", name, err)
		}
		if e.root.Failed() || os.Getenv("CAPSTAN_E2E_LOGS") == "1" {
			e.root.Logf("output of capstan node %s:\n%s", name, n.out.String())
		}
	})
	checkFor(t, 60*time.Second, "node "+name+" Ready", func() error {
		select {
		case err := <-n.done:
			n.done <- err
			t.Fatalf("capstan node %s exited early: %v\n%s", name, err, n.out.String())
		default:
		}
		ready, err := e.isNodeReady(name)
		if err != nil {
			return err
		}
		if !ready {
			return fmt.Errorf("node %s not Ready", name)
		}
		return nil
	})
	return n
}

// stop cancels the node's context and waits for it to return; it may be
// called more than once.
func (n *stoppableNode) stop() error {
	n.cancel()
	select {
	case err := <-n.done:
		n.done <- err
		return err
	case <-time.After(60 * time.Second):
		return fmt.Errorf("capstan node %s did not stop within 60s of its context's end", n.name)
	}
}

// runningOn counts the running containers of an app on a node, as Podman
// lists them by their labels.
func (e *e2e) runningOn(node, app string) (int, error) {
	out, err := e.podman("ps", "--filter", "label=capstan.node="+node, "--format", "json")
	if err != nil {
		return 0, err
	}
	var cs []struct {
		State  string            `json:"State"`
		Labels map[string]string `json:"Labels"`
	}
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		return 0, fmt.Errorf("decode podman ps: %w: %q", err, out)
	}
	n := 0
	for _, c := range cs {
		if c.State == "running" && c.Labels["app"] == app && c.Labels["capstan.node"] == node && c.Labels["capstan.container"] != "" {
			n++
		}
	}
	return n, nil
}

const spreadDeploymentYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: spread
spec:
  replicas: 4
  selector:
    matchLabels:
      app: spread
  template:
    metadata:
      labels:
        app: spread
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: ` + e2eImage + `
          command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
`

// TestE2ENodeEviction runs a Deployment of 4 over two nodes, then stops the
// second node's daemon (its Podman pods keep running, as when a machine
// drops off the network): the node goes NotReady after the grace period,
// and after the eviction timeout its pods are replaced on the first node.
//
// The grace period must exceed the node's heartbeat interval (10 s, not a
// flag of `up` or `node`), or the healthy node flaps NotReady between
// heartbeats and loses its pods too.
func TestE2ENodeEviction(t *testing.T) {
	e := newE2E(t)
	e.repo.write("placeholder.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: placeholder\ndata:\n  a: b\n")
	e.repo.commit("nothing to run yet")
	e.startUpWith(e.repo.dir, "--dataplane=false", "--node-grace-period", "15s", "--pod-eviction-timeout", "2s")
	nodeB := e.node + "-b"
	b := e.startStoppableNode(nodeB)

	// Committed once both nodes are Ready, so that the scheduler spreads
	// the replicas over them (the repository is watched).
	e.repo.write("spread.yaml", spreadDeploymentYAML)
	e.repo.commit("a deployment of 4")
	pods := e.readyPods("spread", 4, 90*time.Second)
	on := map[string]int{}
	for _, p := range pods {
		on[p.Spec.NodeName]++
	}
	if on[e.node] == 0 || on[nodeB] == 0 || on[e.node]+on[nodeB] != 4 {
		t.Fatalf("pods by node %v: want the 4 replicas spread over %s and %s", on, e.node, nodeB)
	}
	t.Logf("pods by node before the loss: %v", on)
	onB := on[nodeB]

	// Node B's daemon goes; its containers stay.
	lost := time.Now()
	if err := b.stop(); err != nil {
		t.Fatalf("capstan node %s: %v", nodeB, err)
	}
	// The premise: a lost machine, whose containers nobody stopped.
	if n, err := e.runningOn(nodeB, "spread"); err != nil || n != onB {
		t.Fatalf("after node %s's daemon stopped, %d of its %d spread containers run (err %v); the test wants them left running", nodeB, n, onB, err)
	}

	// NotReady within the grace period after the last heartbeat (at most
	// 10 s before the loss).
	checkFor(t, 40*time.Second, "node "+nodeB+" NotReady", func() error {
		ready, err := e.isNodeReady(nodeB)
		if err != nil {
			return err
		}
		if ready {
			return fmt.Errorf("node %s still Ready", nodeB)
		}
		row, err := e.tableRow("nodes", nodeB)
		if err != nil {
			return err
		}
		if len(row) < 2 || !strings.HasPrefix(row[1], "NotReady") {
			return fmt.Errorf("get nodes row %q", row)
		}
		return nil
	})
	t.Logf("node %s NotReady %s after its daemon stopped", nodeB, time.Since(lost).Round(time.Second))

	checkFor(t, 30*time.Second, "4 ready spread pods, all on "+e.node, func() error {
		ps, err := e.pods("spread")
		if err != nil {
			return err
		}
		var bad []string
		for _, p := range ps {
			if p.Spec.NodeName != e.node || !p.ready() {
				bad = append(bad, fmt.Sprintf("%s on %q phase %s", p.Metadata.Name, p.Spec.NodeName, p.Status.Phase))
			}
		}
		if len(ps) != 4 || len(bad) > 0 {
			return fmt.Errorf("%d pods; not ready on %s: %v", len(ps), e.node, bad)
		}
		return nil
	})
	t.Logf("pods replaced on %s %s after node %s's daemon stopped", e.node, time.Since(lost).Round(time.Second), nodeB)
	checkFor(t, 30*time.Second, "4 running spread containers on "+e.node, func() error {
		cs, err := e.containers()
		if err != nil {
			return err
		}
		if n := len(runningByApp(cs, "spread")); n != 4 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	ready, err := e.isNodeReady(e.node)
	if err != nil || !ready {
		t.Errorf("node %s: ready %v, err %v; the healthy node must stay Ready", e.node, ready, err)
	}
}
