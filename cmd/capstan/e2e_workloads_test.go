//go:build linux && !nodeonly

package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
)

// statefulSetYAML is a StatefulSet whose pods append "<hostname> started"
// to a file on their claim each time they start.
func statefulSetYAML(name string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: %[1]s
spec:
  replicas: 2
  serviceName: %[1]s
  podManagementPolicy: OrderedReady
  selector:
    matchLabels:
      app: %[1]s
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: main
          image: %[2]s
          command: ["/bin/sh", "-c"]
          args:
            - |
              echo "$(hostname) started" >> /data/log
              trap 'exit 0' TERM
              while true; do sleep 1; done
          volumeMounts:
            - name: data
              mountPath: /data
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: ["ReadWriteOnce"]
        resources:
          requests:
            storage: 10Mi
`, name, e2eImage)
}

func daemonSetYAML(name string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: %[1]s
spec:
  selector:
    matchLabels:
      app: %[1]s
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: main
          image: %[2]s
          command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
`, name, e2eImage)
}

// workloadPod is a pod as `get pods -o json` prints it, with what these
// tests read.
type workloadPod struct {
	Metadata struct {
		Name              string            `json:"name"`
		UID               string            `json:"uid"`
		CreationTimestamp time.Time         `json:"creationTimestamp"`
		Labels            map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		NodeName  string `json:"nodeName"`
		Hostname  string `json:"hostname"`
		Subdomain string `json:"subdomain"`
	} `json:"spec"`
	Status struct {
		Phase      string `json:"phase"`
		Conditions []struct {
			Type               string    `json:"type"`
			Status             string    `json:"status"`
			LastTransitionTime time.Time `json:"lastTransitionTime"`
		} `json:"conditions"`
	} `json:"status"`
}

func (p workloadPod) readySince() (time.Time, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" && c.Status == "True" && p.Status.Phase == "Running" {
			return c.LastTransitionTime, true
		}
	}
	return time.Time{}, false
}

// readyWorkloadPods waits for exactly n ready pods labelled app=app.
func (e *e2e) readyWorkloadPods(app string, n int, total time.Duration) map[string]workloadPod {
	e.t.Helper()
	var got map[string]workloadPod
	checkFor(e.t, total, fmt.Sprintf("%d ready %s pod(s)", n, app), func() error {
		var list struct {
			Items []workloadPod `json:"items"`
		}
		if err := e.getJSON(&list, "get", "pods", "-o", "json"); err != nil {
			return err
		}
		got = map[string]workloadPod{}
		for _, p := range list.Items {
			if p.Metadata.Labels["app"] != app {
				continue
			}
			if _, ok := p.readySince(); !ok {
				return fmt.Errorf("pod %s not ready (%s)", p.Metadata.Name, p.Status.Phase)
			}
			got[p.Metadata.Name] = p
		}
		if len(got) != n {
			return fmt.Errorf("%d ready pods, want %d", len(got), n)
		}
		return nil
	})
	return got
}

// workloadRow returns the cells of one row of `get KIND`.
func (e *e2e) workloadRow(kind, name string) ([]string, error) {
	out, stderr, err := e.cli("get", kind)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w (%s)", kind, err, stderr)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return f, nil
		}
	}
	return nil, fmt.Errorf("no row for %s in %q", name, out)
}

// startNode runs `capstan node` in-process as a second node on the same
// host, with its own data dir and Podman service, until the test ends.
func (e *e2e) startNode(name string) {
	t := e.t
	t.Helper()
	dir := t.TempDir()
	token := e.joinToken()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"node", "--server", e.url, "--node-name", name, "--data-dir", dir, "--token", token, "--log-level", "debug"}, out, out)
	}()
	e.root.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.root.Errorf("capstan node %s: %v", name, err)
			}
		case <-time.After(60 * time.Second):
			e.root.Errorf("capstan node %s did not stop", name)
		}
		if e.root.Failed() || os.Getenv("CAPSTAN_E2E_LOGS") == "1" {
			e.root.Logf("output of capstan node %s:\n%s", name, out.String())
		}
	})
	checkFor(t, 90*time.Second, "node "+name+" Ready", func() error {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("capstan node %s exited early: %v\n%s", name, err, out.String())
		default:
		}
		row, err := e.workloadRow("nodes", name)
		if err != nil {
			return err
		}
		if row[1] != "Ready" {
			return fmt.Errorf("node %s: %v", name, row)
		}
		return nil
	})
}

// removeNodeLeftovers removes the Podman pods and the claim volumes of a
// node; registered before the node starts, it runs after it stopped.
func (e *e2e) removeNodeLeftovers(node string) {
	e.root.Cleanup(func() {
		if out, err := e.podman("pod", "ps", "-q", "--filter", "label=capstan.node="+node); err == nil {
			if ids := strings.Fields(out); len(ids) > 0 {
				_, _ = e.podman(append([]string{"pod", "rm", "-f", "-t", "0"}, ids...)...)
			}
		}
		if out, err := e.podman("volume", "ls", "-q", "--filter", "label=capstan.node="+node); err == nil {
			if names := strings.Fields(out); len(names) > 0 {
				if _, err := e.podman(append([]string{"volume", "rm", "-f"}, names...)...); err != nil {
					e.root.Errorf("cleanup: %v", err)
				}
			}
		}
	})
}

// TestE2EStatefulSetAndDaemonSet runs a StatefulSet and a DaemonSet from
// Git on two node daemons of one host: stable names and ordered start, a
// claim's data surviving its pod, one daemon pod per node and one more
// when a node joins.
func TestE2EStatefulSetAndDaemonSet(t *testing.T) {
	e := newE2E(t)
	sts, ds := "db"+randHex(3), "agent"+randHex(3)
	e.removeNodeLeftovers(e.node)
	e.repo.write("db.yaml", statefulSetYAML(sts))
	e.repo.write("agent.yaml", daemonSetYAML(ds))
	e.repo.commit("a statefulset and a daemonset")
	e.startUp()

	// Stable names, hostnames, and ordered start: pod 1 is made only once
	// pod 0 is ready.
	pods := e.readyWorkloadPods(sts, 2, 90*time.Second)
	p0, p1 := pods[sts+"-0"], pods[sts+"-1"]
	if p0.Metadata.Name == "" || p1.Metadata.Name == "" {
		t.Fatalf("pods %v, want %s-0 and %s-1", slices.Collect(maps.Keys(pods)), sts, sts)
	}
	for _, p := range []workloadPod{p0, p1} {
		if p.Spec.Hostname != p.Metadata.Name || p.Spec.Subdomain != sts {
			t.Fatalf("pod %s: hostname %q subdomain %q", p.Metadata.Name, p.Spec.Hostname, p.Spec.Subdomain)
		}
	}
	ready0, _ := p0.readySince()
	if p1.Metadata.CreationTimestamp.Before(ready0) {
		t.Fatalf("%s made at %s, before %s was ready at %s", p1.Metadata.Name, p1.Metadata.CreationTimestamp, p0.Metadata.Name, ready0)
	}
	checkFor(t, 15*time.Second, "statefulset row", func() error {
		row, err := e.workloadRow("statefulsets", sts)
		if err != nil {
			return err
		}
		if len(row) != 3 || row[1] != "2/2" {
			return fmt.Errorf("row %v, want READY 2/2", row)
		}
		return nil
	})
	if out, stderr, err := e.cli("rollout", "status", "statefulset/"+sts, "--timeout", "30s"); err != nil || !strings.Contains(out, "rolling update complete") {
		t.Fatalf("rollout status statefulset: %v %q %q", err, out, stderr)
	}

	// The claim's data survives the pod: a replacement of pod 0 goes back
	// to its node and finds what the first one wrote.
	conn, err := natsbus.Connect(context.Background(), e.url, adminBus(t, natsbus.Options{Name: "e2e-workloads"}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := cache.DeleteObject(context.Background(), conn.Objects, manifests.Key("Pod", "default", sts+"-0"), 0); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 60*time.Second, "a new "+sts+"-0", func() error {
		pods := e.readyWorkloadPods(sts, 2, 30*time.Second)
		np := pods[sts+"-0"]
		if np.Metadata.UID == p0.Metadata.UID {
			return fmt.Errorf("%s-0 not replaced yet", sts)
		}
		if np.Spec.NodeName != p0.Spec.NodeName {
			t.Fatalf("new %s-0 on %s, its claim is on %s", sts, np.Spec.NodeName, p0.Spec.NodeName)
		}
		return nil
	})
	mount := strings.TrimSpace(e.mustPodman("volume", "inspect", "--format", "{{.Mountpoint}}", "default_data-"+sts+"-0"))
	checkFor(t, 20*time.Second, "two starts in the claim's log", func() error {
		b, err := os.ReadFile(filepath.Join(mount, "log"))
		if err != nil {
			return err
		}
		if got := strings.Count(string(b), sts+"-0 started"); got != 2 {
			return fmt.Errorf("log %q: %d starts of %s-0, want 2", b, got, sts)
		}
		return nil
	})

	// The DaemonSet: one pod on the one node, then one on a node joining.
	onNodes := func(want ...string) {
		t.Helper()
		checkFor(t, 90*time.Second, "daemon pods on "+strings.Join(want, ","), func() error {
			pods := e.readyWorkloadPods(ds, len(want), 30*time.Second)
			var got []string
			for _, p := range pods {
				got = append(got, p.Spec.NodeName)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("on %v", got)
			}
			return nil
		})
	}
	onNodes(e.node)
	second := e.node + "-b"
	e.removeNodeLeftovers(second)
	e.startNode(second)
	want := []string{e.node, second}
	slices.Sort(want)
	onNodes(want...)
	checkFor(t, 15*time.Second, "daemonset row", func() error {
		row, err := e.workloadRow("daemonsets", ds)
		if err != nil {
			return err
		}
		// NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE-SELECTOR AGE
		if len(row) != 8 || !slices.Equal(row[1:6], []string{"2", "2", "2", "2", "2"}) || row[6] != "<none>" {
			return fmt.Errorf("row %v", row)
		}
		return nil
	})
	if out, stderr, err := e.cli("rollout", "status", "daemonset/"+ds, "--timeout", "30s"); err != nil || !strings.Contains(out, "successfully rolled out") {
		t.Fatalf("rollout status daemonset: %v %q %q", err, out, stderr)
	}

	// A Deployment whose new image no node has: the rollout exceeds its
	// progress deadline and Capstan rolls it back.
	web := "web" + randHex(3)
	e.repo.write("web.yaml", deadlineDeploymentYAML(web, e2eImage))
	good := e.repo.commit("web, first version")
	checkFor(t, 30*time.Second, "the first web commit applied", func() error {
		src, err := e.source()
		if err != nil {
			return err
		}
		if src.Status.AppliedRevision != good {
			return fmt.Errorf("applied %s", src.Status.AppliedRevision)
		}
		return nil
	})
	e.readyWorkloadPods(web, 1, 60*time.Second)
	if out, stderr, err := e.cli("rollout", "status", "deployment/"+web, "--timeout", "60s"); err != nil || !strings.Contains(out, "successfully rolled out") {
		t.Fatalf("rollout status deployment: %v %q %q", err, out, stderr)
	}
	e.repo.write("web.yaml", deadlineDeploymentYAML(web, "localhost/capstan-missing:none"))
	bad := e.repo.commit("web on an image nobody has")
	checkFor(t, 30*time.Second, "the bad commit applied", func() error {
		src, err := e.source()
		if err != nil {
			return err
		}
		if src.Status.AppliedRevision != bad {
			return fmt.Errorf("applied %s", src.Status.AppliedRevision)
		}
		return nil
	})
	out, stderr, err := e.cli("rollout", "status", "deployment/"+web, "--timeout", "60s")
	var ex exitError
	if !errors.As(err, &ex) || ex.code != 1 || !strings.Contains(ex.msg, "exceeded its progress deadline") {
		t.Fatalf("rollout status of the bad image: %v, out %q, stderr %q; want exit 1 for the deadline", err, out, stderr)
	}
	checkFor(t, 60*time.Second, "rolled back", func() error {
		row, err := e.workloadRow("deployments", web)
		if err != nil {
			return err
		}
		// NAME READY UP-TO-DATE AVAILABLE AGE ROLLOUT
		if len(row) != 6 || row[1] != "1/1" || row[5] != "RolledBack" {
			return fmt.Errorf("row %v", row)
		}
		return nil
	})
	e.readyWorkloadPods(web, 1, 30*time.Second)
	out, stderr, err = e.cli("rollout", "history", "deployment/"+web)
	if err != nil || !strings.Contains(out, "commit "+shortRev(good)+": web, first version") ||
		!strings.Contains(out, "commit "+shortRev(bad)+": web on an image nobody has") || !strings.Contains(out, "(failed") {
		t.Fatalf("rollout history: %v\n%s%s", err, out, stderr)
	}
	out, _, err = e.cli("describe", "deployment", web)
	if err != nil || !strings.Contains(out, "DeploymentRollback") || !strings.Contains(out, "ProgressDeadlineExceeded") {
		t.Fatalf("describe deployment lacks the rollback: %v\n%s", err, out)
	}
}

func deadlineDeploymentYAML(name, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: 1
  progressDeadlineSeconds: 5
  selector:
    matchLabels:
      app: %[1]s
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: main
          image: %[2]s
          imagePullPolicy: Never
          command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
`, name, image)
}

// TestRolloutStatusFollowsADeployment feeds `rollout status` a watch of a
// Deployment through a rollout: it prints each new state once and exits 0
// when complete, 1 when the rollout failed or the timeout passed.
func TestRolloutStatusFollowsADeployment(t *testing.T) {
	dep := func(gen, observed int64, updated, replicas, available int32, reason string) bus.Entry {
		d := &manifests.Deployment{TypeMeta: manifests.TypeMeta{Kind: "Deployment", APIVersion: "apps/v1"},
			ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default", Generation: gen},
			Spec:       manifests.DeploymentSpec{Replicas: manifests.Ptr(int32(3))},
			Status: manifests.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated, Replicas: replicas, AvailableReplicas: available,
				Conditions: []manifests.Condition{{Type: "Progressing", Status: "True", Reason: reason}}}}
		b, err := cache.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		return bus.Entry{Key: "Deployment.default.web", Value: b, Op: bus.OpPut}
	}
	k, _ := manifests.LookupKind("Deployment")
	run := func(ctx context.Context, entries ...bus.Entry) (string, error) {
		ch := make(chan bus.Entry, len(entries))
		for _, e := range entries {
			ch <- e
		}
		if ctx.Err() == nil {
			close(ch)
		}
		var out strings.Builder
		err := followRollout(ctx, &globals{stdout: &out}, k, "web", ch, true)
		return out.String(), err
	}
	out, err := run(context.Background(), dep(2, 1, 3, 3, 3, "NewReplicaSetAvailable"), bus.Entry{Op: bus.OpSynced},
		dep(2, 2, 1, 4, 1, "ReplicaSetUpdated"), dep(2, 2, 1, 4, 1, "ReplicaSetUpdated"), dep(2, 2, 3, 3, 2, "ReplicaSetUpdated"),
		dep(2, 2, 3, 3, 3, "NewReplicaSetAvailable"))
	want := `Waiting for deployment spec update to be observed...
Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...
Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...
deployment "web" successfully rolled out
`
	if err != nil || out != want {
		t.Fatalf("got %v and\n%s\nwant\n%s", err, out, want)
	}

	_, err = run(context.Background(), dep(2, 2, 1, 4, 1, "ReplicaSetUpdated"), bus.Entry{Op: bus.OpSynced},
		dep(2, 2, 1, 4, 1, controllers.ReasonProgressDeadlineExceeded))
	var ex exitError
	if !errors.As(err, &ex) || ex.code != 1 || !strings.Contains(ex.msg, "exceeded its progress deadline") {
		t.Fatalf("failed rollout: %v, want exit 1 naming the deadline", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ch := make(chan bus.Entry, 2)
	ch <- dep(2, 2, 1, 4, 1, "ReplicaSetUpdated")
	go func() { <-ctx.Done(); close(ch) }()
	err = followRollout(ctx, &globals{stdout: &strings.Builder{}}, k, "web", ch, true)
	if !errors.As(err, &ex) || ex.code != 1 || !strings.Contains(ex.msg, "timed out") {
		t.Fatalf("timeout: %v, want exit 1", err)
	}

	_, err = run(context.Background(), bus.Entry{Op: bus.OpSynced})
	if !errors.As(err, &ex) || !strings.Contains(ex.msg, "not found") {
		t.Fatalf("missing deployment: %v", err)
	}
}
