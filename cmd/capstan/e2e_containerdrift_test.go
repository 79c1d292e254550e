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

	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/manifests"
)

// The end-to-end test of containers changed in place behind Capstan's
// back, on real Podman: a container paused, another's memory limit
// raised with `podman update` and the same one renamed are put back by the
// node (the same containers, not new ones) and recorded as
// DriftCorrected in `capstan history`; with the source's drift mode
// report, the same changes are recorded once as DriftDetected and left.

func driftAppYAML(name string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: 1
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: %[2]s
          command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
          resources:
            limits: {memory: 64Mi, cpu: 500m}
`, name, e2eImage)
}

// podmanState is a container's state as Podman says: running, paused...
func (e *e2e) podmanState(id string) (string, error) {
	out, err := e.podman("inspect", "--format", "{{.State.Status}}", id)
	return strings.TrimSpace(out), err
}

// liveMemoryLimit reads a container's memory limit from its cgroup: Podman
// 4.3's inspect keeps showing the limit it was created with after a
// `podman update`.
func (e *e2e) liveMemoryLimit(id string) (int64, error) {
	out, err := e.podman("inspect", "--format", "{{.State.CgroupPath}}", id)
	if err != nil {
		return 0, err
	}
	path := strings.TrimSpace(out)
	file := filepath.Join("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes")
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		file = filepath.Join("/sys/fs/cgroup", path, "memory.max")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// assignedDriftMode returns the drift mode the assignment of a pod on the
// test's node carries.
func (e *e2e) assignedDriftMode(pod string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := natsbus.Connect(ctx, e.url, adminBus(e.t, natsbus.Options{}))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ns, name, _ := strings.Cut(pod, "/")
	ent, err := conn.Assignments.Get(ctx, manifests.AssignmentKey(e.node, ns, name))
	if err != nil {
		return "", err
	}
	var a manifests.Assignment
	if err := json.Unmarshal(ent.Value, &a); err != nil {
		return "", err
	}
	if a.Drift == nil {
		return "", nil
	}
	return a.Drift.Mode, nil
}

// driftRecords counts the history records of apps with result that
// record one change of the pod's container field.
func (e *e2e) driftRecords(result, pod, field string) (int, error) {
	recs, err := e.history("apps")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if f, ok := r.change("altered", "Pod", strings.TrimPrefix(pod, "default/")); ok && r.Result == result && slices.Equal(f, []string{field}) {
			n++
		}
	}
	return n, nil
}

func TestE2EContainerDrift(t *testing.T) {
	e := newE2E(t)
	apps := newGitRepo(t)
	apps.write("paused.yaml", driftAppYAML("drift-paused"))
	apps.write("limited.yaml", driftAppYAML("drift-limited"))
	apps.commit("apps: two workloads with limits")
	e.repo.write("apps-source.yaml", appsSourceYAML(apps.dir, ""))
	e.repo.commit("root: the apps source")
	e.startUpWith(e.repo.dir, "--resync-interval", "2s")

	var paused, limited ctr
	checkFor(t, 90*time.Second, "both workloads running", func() error {
		cs, err := e.containers()
		if err != nil {
			return err
		}
		p, l := runningByApp(cs, "drift-paused"), runningByApp(cs, "drift-limited")
		if len(p) != 1 || len(l) != 1 {
			return fmt.Errorf("running: %d and %d", len(p), len(l))
		}
		for _, c := range p {
			paused = c
		}
		for _, c := range l {
			limited = c
		}
		return nil
	})
	t.Cleanup(func() { _, _ = e.podman("unpause", paused.ID) })
	if m, err := e.liveMemoryLimit(limited.ID); err != nil || m != 64<<20 {
		t.Fatalf("memory limit before: %d, %v", m, err)
	}

	name := func(id string) string { return strings.TrimSpace(e.mustPodman("inspect", "--format", "{{.Name}}", id)) }
	limitedName := name(limited.ID)

	// Correct (the default): put back and recorded.
	e.mustPodman("pause", paused.ID)
	e.mustPodman("update", "--memory", "128m", limited.ID)
	e.mustPodman("rename", limited.ID, "renamed-by-hand")
	checkFor(t, 60*time.Second, "changes corrected and recorded", func() error {
		if s, err := e.podmanState(paused.ID); err != nil || s != "running" {
			return fmt.Errorf("paused container: %q, %v", s, err)
		}
		if m, err := e.liveMemoryLimit(limited.ID); err != nil || m != 64<<20 {
			return fmt.Errorf("memory limit: %d, %v", m, err)
		}
		if n, err := e.driftRecords("DriftCorrected", paused.CPod, "containers.app.state.paused"); err != nil || n != 1 {
			return fmt.Errorf("%d DriftCorrected records of the pause, %v", n, err)
		}
		if n, err := e.driftRecords("DriftCorrected", limited.CPod, "containers.app.resources.limits.memory"); err != nil || n != 1 {
			return fmt.Errorf("%d DriftCorrected records of the limit, %v", n, err)
		}
		if n, err := e.driftRecords("DriftCorrected", limited.CPod, "containers.app.name"); err != nil || n != 1 {
			return fmt.Errorf("%d DriftCorrected records of the rename, %v", n, err)
		}
		if n := name(limited.ID); n != limitedName {
			return fmt.Errorf("container named %q, want %q", n, limitedName)
		}
		return nil
	})
	// Put back in place: the same containers, no restart.
	cs, err := e.containers()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := runningByApp(cs, "drift-paused")[paused.ID]; !ok {
		t.Fatalf("the paused container was replaced, not resumed: %+v", cs)
	}
	if _, ok := runningByApp(cs, "drift-limited")[limited.ID]; !ok {
		t.Fatalf("the updated container was replaced, not restored: %+v", cs)
	}
	desc, _, err := e.cli("describe", "pod", strings.TrimPrefix(paused.CPod, "default/"))
	if err != nil || !strings.Contains(desc, "DriftCorrected") {
		t.Fatalf("describe pod shows no DriftCorrected event: %q, %v", desc, err)
	}

	// Report: recorded once, left as is.
	e.repo.write("apps-source.yaml", appsSourceYAML(apps.dir, "  drift:\n    mode: report\n"))
	e.repo.commit("root: apps reports drift")
	checkFor(t, 60*time.Second, "the report mode reaches the node", func() error {
		for _, p := range []string{paused.CPod, limited.CPod} {
			if m, err := e.assignedDriftMode(p); err != nil || m != "report" {
				return fmt.Errorf("assignment of %s: mode %q, %v", p, m, err)
			}
		}
		return nil
	})
	e.mustPodman("pause", paused.ID)
	e.mustPodman("update", "--memory", "128m", limited.ID)
	checkFor(t, 60*time.Second, "changes reported", func() error {
		if n, err := e.driftRecords("DriftDetected", paused.CPod, "containers.app.state.paused"); err != nil || n != 1 {
			return fmt.Errorf("%d DriftDetected records of the pause, %v", n, err)
		}
		if n, err := e.driftRecords("DriftDetected", limited.CPod, "containers.app.resources.limits.memory"); err != nil || n != 1 {
			return fmt.Errorf("%d DriftDetected records of the limit, %v", n, err)
		}
		return nil
	})
	holdFor(t, 5*time.Second, "reported changes left as they are", func() error {
		if s, err := e.podmanState(paused.ID); err != nil || s != "paused" {
			return fmt.Errorf("paused container: %q, %v", s, err)
		}
		if m, err := e.liveMemoryLimit(limited.ID); err != nil || m != 128<<20 {
			return fmt.Errorf("memory limit: %d, %v", m, err)
		}
		return nil
	})
	for _, c := range []struct{ pod, field string }{{paused.CPod, "containers.app.state.paused"}, {limited.CPod, "containers.app.resources.limits.memory"}} {
		if n, err := e.driftRecords("DriftDetected", c.pod, c.field); err != nil || n != 1 {
			t.Fatalf("%d DriftDetected records of %s %s through several relists, %v", n, c.pod, c.field, err)
		}
	}
}
