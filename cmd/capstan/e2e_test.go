//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// End-to-end tests: real git repositories, the real embedded NATS server
// and real Podman, with `capstan up` and the client commands run in-process
// through Run. They skip without podman unless CAPSTAN_REQUIRE_PODMAN=1:
//
//	CAPSTAN_REQUIRE_PODMAN=1 go test -race -tags "$TAGS" -run E2E -v ./cmd/capstan/

// webYAML is the web Deployment: busybox httpd serving a page made from
// $MESSAGE on hostPort. With bogus, the container gets a field Capstan
// does not know, at the line webBogusLine returns.
func webYAML(msg string, hostPort int, bogus bool) string {
	extra := ""
	if bogus {
		extra = "          bogusField: true\n"
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  # One host port on one node: the old pod goes before the new one starts.
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 0
      maxUnavailable: 1
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          image: %s
%s          command: ["/bin/sh", "-c"]
          args:
            - |
              echo "<h1>$MESSAGE</h1>" > /www/index.html
              trap 'exit 0' TERM
              httpd -f -vv -p 8080 -h /www & wait
          env:
            - name: MESSAGE
              value: %q
          ports:
            - name: http
              containerPort: 8080
              hostPort: %d
`, e2eImage, extra, msg, hostPort)
}

// webBogusPos is where bogusField sits in webYAML(..., true): line, column.
func webBogusPos(t *testing.T) (int, int) {
	for i, l := range strings.Split(webYAML("x", 1, true), "\n") {
		if j := strings.Index(l, "bogusField"); j >= 0 {
			return i + 1, j + 1
		}
	}
	t.Fatal("bogusField not in webYAML")
	return 0, 0
}

// workerYAML is a Deployment without host ports, to scale.
func workerYAML(replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
spec:
  replicas: %d
  selector:
    matchLabels:
      app: worker
  template:
    metadata:
      labels:
        app: worker
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: worker
          image: %s
          command: ["/bin/sh", "-c", "trap 'exit 0' TERM; echo worker started; while true; do sleep 5 & wait; done"]
`, replicas, e2eImage)
}

const settingsYAML = `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
`

// TestE2EWalkingSkeleton walks the four steps of the walking skeleton in
// order, on one node: a commit becomes running pods; a change is rolled out
// within seconds and recorded; a bad commit is rejected whole while the last
// good revision keeps running; and the node survives its own restart
// (adopting its pods), repairs containers killed or removed behind its
// back, removes what Git no longer declares, and never touches a Podman pod
// it did not label.
func TestE2EWalkingSkeleton(t *testing.T) {
	begin := time.Now()
	e := newE2E(t)
	r := e.repo
	webPort := freePort(t)
	webURL := fmt.Sprintf("http://127.0.0.1:%d/", webPort)
	tag := randHex(3)
	msg1, msg2 := "Hello v1 "+tag, "Hello v2 "+tag

	// Every step builds on the state the previous one left.
	step := func(name string, fn func(t *testing.T)) {
		if t.Failed() {
			t.Logf("skip %s: an earlier step failed", name)
			return
		}
		t.Run(name, func(t *testing.T) {
			sb := time.Now()
			e.t, r.t = t, t
			defer func() { e.t, r.t = e.root, e.root }()
			fn(t)
			t.Logf("%s took %s", name, time.Since(sb).Round(time.Millisecond))
		})
	}

	var rev1, rev2, rev3, rev4, rev5 string
	var unlabelled string

	step("1_CommitBecomesRunningPod", func(t *testing.T) {
		r.write("web.yaml", webYAML(msg1, webPort, false))
		r.write("worker.yaml", workerYAML(1))
		rev1 = r.commit("Add web and worker")
		e.startUp()

		// A pod Capstan did not label must never be touched: a running
		// one, created here and checked at the very end.
		unlabelled = "e2e-unlabelled-" + randHex(4)
		e.mustPodman("pod", "create", "--name", unlabelled)
		e.root.Cleanup(func() { _, _ = e.podman("pod", "rm", "-f", "-t", "0", unlabelled) })
		e.mustPodman("run", "-d", "--pod", unlabelled, "--name", unlabelled+"-sleep", e2eImage, "sleep", "600")

		sb := time.Now()
		checkFor(t, 60*time.Second, "web page", func() error {
			body, err := httpGet(webURL)
			if err != nil {
				return err
			}
			if !strings.Contains(body, "<h1>"+msg1+"</h1>") {
				return fmt.Errorf("page %q", body)
			}
			return nil
		})
		t.Logf("commit to page served: %s after up was ready", time.Since(sb).Round(time.Millisecond))

		web := e.readyPods("web", 1, 30*time.Second)
		e.readyPods("worker", 1, 30*time.Second)
		if web[0].Spec.NodeName != e.node {
			t.Errorf("web pod on node %q, want %q", web[0].Spec.NodeName, e.node)
		}
		checkFor(t, 30*time.Second, "get deployments shows web 1/1", func() error {
			row, err := e.deploymentRow("web")
			if err != nil {
				return err
			}
			if len(row) < 2 || row[1] != "1/1" {
				return fmt.Errorf("row %q", row)
			}
			return nil
		})

		// The Podman side: one running web container, labelled.
		cs, err := e.containers()
		if err != nil {
			t.Fatal(err)
		}
		running := runningByApp(cs, "web")
		if len(running) != 1 {
			t.Fatalf("running web containers in Podman: %+v", cs)
		}
		for id, c := range running {
			if c.CPod != "default/"+web[0].Metadata.Name || c.Container != "web" || c.Attempt != "0" {
				t.Errorf("web container labels: %+v", c)
			}
			if got := web[0].Status.ContainerStatuses; len(got) != 1 || got[0].ContainerID != "podman://"+id {
				t.Errorf("containerStatuses %+v, want containerID podman://%s", got, id)
			}
		}

		// `capstan logs` reaches the node and returns httpd's access log.
		if _, err := httpGet(webURL + "index.html"); err != nil {
			t.Fatal(err)
		}
		checkFor(t, 15*time.Second, "httpd access line in capstan logs", func() error {
			out, stderr, err := e.cli("logs", web[0].Metadata.Name)
			if err != nil {
				return fmt.Errorf("logs: %w (%s)", err, stderr)
			}
			if !strings.Contains(out, "url:/index.html") {
				return fmt.Errorf("logs %q", out)
			}
			return nil
		})

		rec := e.auditRecord(rev1, 10*time.Second)
		if rec.Result != "Applied" || rec.Author != e2eAuthorName+" <"+e2eAuthorEmail+">" || strings.TrimSpace(rec.Message) != "Add web and worker" {
			t.Errorf("audit record of %s: %+v", rev1, rec)
		}
		for _, name := range []string{"web", "worker"} {
			if _, ok := rec.change("created", "Deployment", name); !ok {
				t.Errorf("audit record of %s lacks created Deployment %s: %+v", rev1, name, rec.Changes)
			}
		}
	})

	step("2_ChangeRollsOutWithinSeconds", func(t *testing.T) {
		r.write("web.yaml", webYAML(msg2, webPort, false))
		rev2 = r.commit("Change the web message")
		sb := time.Now()
		checkFor(t, 60*time.Second, "new web page", func() error {
			body, err := httpGet(webURL)
			if err != nil {
				return err
			}
			if !strings.Contains(body, "<h1>"+msg2+"</h1>") {
				return fmt.Errorf("page %q", body)
			}
			return nil
		})
		t.Logf("env change: commit to new page in %s", time.Since(sb).Round(time.Millisecond))
		e.readyPods("web", 1, 30*time.Second)

		r.write("worker.yaml", workerYAML(3))
		rev3 = r.commit("Scale the worker to 3")
		sb = time.Now()
		e.readyPods("worker", 3, 60*time.Second)
		t.Logf("scale 1 -> 3: commit to 3 ready pods in %s", time.Since(sb).Round(time.Millisecond))

		// Podman converges too: the old web pod is gone, 1 + 3 running.
		checkFor(t, 30*time.Second, "podman runs 1 web and 3 workers, nothing else", func() error {
			cs, err := e.containers()
			if err != nil {
				return err
			}
			if len(runningByApp(cs, "web")) != 1 || len(runningByApp(cs, "worker")) != 3 || len(cs) != 4 {
				return fmt.Errorf("containers %+v", cs)
			}
			return nil
		})

		author := e2eAuthorName + " <" + e2eAuthorEmail + ">"
		rec := e.auditRecord(rev2, 10*time.Second)
		fields, ok := rec.change("updated", "Deployment", "web")
		if rec.Result != "Applied" || rec.Author != author || !ok || len(rec.Changes) != 1 {
			t.Errorf("audit record of %s: %+v", rev2, rec)
		}
		if !slices.ContainsFunc(fields, func(f string) bool { return strings.Contains(f, "env") }) {
			t.Errorf("audit record of %s: changed fields %q do not name env", rev2, fields)
		}
		rec = e.auditRecord(rev3, 10*time.Second)
		fields, ok = rec.change("updated", "Deployment", "worker")
		if rec.Result != "Applied" || rec.Author != author || !ok || len(rec.Changes) != 1 {
			t.Errorf("audit record of %s: %+v", rev3, rec)
		}
		if !slices.ContainsFunc(fields, func(f string) bool { return strings.Contains(f, "replicas") }) {
			t.Errorf("audit record of %s: changed fields %q do not name replicas", rev3, fields)
		}
	})

	step("3_BadCommitRejectedWhole", func(t *testing.T) {
		before, err := e.containers()
		if err != nil {
			t.Fatal(err)
		}
		// A bad web.yaml and, in the same commit, a good change to the
		// worker: neither is applied.
		r.write("web.yaml", webYAML("Hello v3 "+tag, webPort, true))
		r.write("worker.yaml", workerYAML(2))
		rev4 = r.commit("Break web, scale the worker to 2")
		line, col := webBogusPos(t)
		pos := fmt.Sprintf("web.yaml:%d:%d", line, col)

		var src sourceJSON
		checkFor(t, 20*time.Second, "source shows the rejection", func() error {
			var err error
			if src, err = e.source(); err != nil {
				return err
			}
			if src.Status.AttemptedRevision != rev4 {
				return fmt.Errorf("attemptedRevision %q, want %s", src.Status.AttemptedRevision, rev4)
			}
			return nil
		})
		if !strings.Contains(src.Status.LastError, pos) || !strings.Contains(src.Status.LastError, "bogusField") {
			t.Errorf("source lastError %q, want %s and bogusField", src.Status.LastError, pos)
		}
		if src.Status.AppliedRevision != rev3 {
			t.Errorf("source appliedRevision %q, want the previous commit %s", src.Status.AppliedRevision, rev3)
		}
		if c := findCond(src.Status.Conditions, "Ready"); c == nil || c.Status != "False" {
			t.Errorf("source Ready condition %+v, want False", c)
		}

		rec := e.auditRecord(rev4, 10*time.Second)
		if rec.Result != "Rejected" || len(rec.Changes) != 0 ||
			!slices.ContainsFunc(rec.Errors, func(s string) bool { return strings.Contains(s, pos) && strings.Contains(s, "bogusField") }) {
			t.Errorf("audit record of %s: %+v, want Rejected with an error at %s", rev4, rec, pos)
		}

		// Nothing changes: not the worker's replicas, not a container.
		holdFor(t, 3*time.Second, "after a rejected commit", func() error {
			cs, err := e.containers()
			if err != nil {
				return err
			}
			if !sameContainers(before, cs) {
				return fmt.Errorf("containers changed:\nbefore %+v\nafter  %+v", before, cs)
			}
			var d struct {
				Spec struct {
					Replicas int `json:"replicas"`
				} `json:"spec"`
			}
			if err := e.getJSON(&d, "get", "deployments", "worker", "-o", "json"); err != nil {
				return err
			}
			if d.Spec.Replicas != 3 {
				return fmt.Errorf("worker replicas %d, want 3: the rejected commit was partly applied", d.Spec.Replicas)
			}
			body, err := httpGet(webURL)
			if err != nil || !strings.Contains(body, msg2) {
				return fmt.Errorf("web page %q, %v: want %q", body, err, msg2)
			}
			return nil
		})

		// A restart on a rejected HEAD keeps the last good revision
		// running, records nothing new and still shows the error.
		e.stopUp()
		e.startUp()
		holdFor(t, 3*time.Second, "after restarting on a rejected HEAD", func() error {
			cs, err := e.containers()
			if err != nil {
				return err
			}
			if !sameContainers(before, cs) {
				return fmt.Errorf("containers changed:\nbefore %+v\nafter  %+v", before, cs)
			}
			src, err := e.source()
			if err != nil {
				return err
			}
			if src.Status.AppliedRevision != rev3 || src.Status.AttemptedRevision != rev4 || !strings.Contains(src.Status.LastError, pos) {
				return fmt.Errorf("source status after the restart: %+v", src.Status)
			}
			return nil
		})
		if rec := e.auditRecord(rev4, 5*time.Second); rec.Result != "Rejected" {
			t.Errorf("audit record of %s after the restart: %+v", rev4, rec)
		}

		// The next good commit is applied: web back to rev3's spec (its
		// container untouched), the worker scaled to 2.
		r.write("web.yaml", webYAML(msg2, webPort, false))
		rev5 = r.commit("Fix web")
		rec = e.auditRecord(rev5, 20*time.Second)
		if rec.Result != "Applied" {
			t.Errorf("audit record of %s: %+v", rev5, rec)
		}
		if _, ok := rec.change("updated", "Deployment", "worker"); !ok {
			t.Errorf("audit record of %s lacks the worker update: %+v", rev5, rec.Changes)
		}
		checkFor(t, 10*time.Second, "source applied the fix", func() error {
			src, err := e.source()
			if err != nil {
				return err
			}
			if src.Status.AppliedRevision != rev5 || src.Status.LastError != "" {
				return fmt.Errorf("source status %+v", src.Status)
			}
			return nil
		})
		e.readyPods("worker", 2, 30*time.Second)
		checkFor(t, 30*time.Second, "podman runs 1 web (the same) and 2 workers", func() error {
			cs, err := e.containers()
			if err != nil {
				return err
			}
			if len(runningByApp(cs, "worker")) != 2 || len(cs) != 3 {
				return fmt.Errorf("containers %+v", cs)
			}
			if !sameContainers(filterApp(before, "web"), filterApp(cs, "web")) {
				return fmt.Errorf("web container changed: before %+v, after %+v", filterApp(before, "web"), filterApp(cs, "web"))
			}
			return nil
		})
	})

	step("4_RestartAdoptsAndRepairs", func(t *testing.T) {
		before, err := e.containers()
		if err != nil {
			t.Fatal(err)
		}
		if len(before) != 3 {
			t.Fatalf("want 3 containers, have %+v", before)
		}

		e.stopUp()
		cs, err := e.containers()
		if err != nil {
			t.Fatal(err)
		}
		if !sameContainers(before, cs) || len(runningByApp(cs, "web"))+len(runningByApp(cs, "worker")) != 3 {
			t.Fatalf("stopping capstan up changed containers:\nbefore %+v\nafter  %+v", before, cs)
		}
		if body, err := httpGet(webURL); err != nil || !strings.Contains(body, msg2) {
			t.Errorf("web page while capstan is stopped: %q, %v", body, err)
		}

		// A commit made while capstan is down is applied when it starts.
		r.write("settings.yaml", settingsYAML)
		revDown := r.commit("Add settings while capstan is down")

		e.startUp()
		rec := e.auditRecord(revDown, 20*time.Second)
		if _, ok := rec.change("created", "ConfigMap", "settings"); rec.Result != "Applied" || !ok || len(rec.Changes) != 1 {
			t.Errorf("audit record of %s: %+v", revDown, rec)
		}
		var cm struct {
			Data map[string]string `json:"data"`
		}
		if err := e.getJSON(&cm, "get", "configmaps", "settings", "-o", "json"); err != nil || cm.Data["greeting"] != "hello" {
			t.Errorf("configmap settings: %+v, %v", cm, err)
		}
		// The revision applied before the restart is not recorded again.
		if rec := e.auditRecord(rev5, 5*time.Second); rec.Result != "Applied" {
			t.Errorf("audit record of %s after the restart: %+v", rev5, rec)
		}

		// Adopted: the same containers, all still attempt 0, and the pods
		// report Running with no restart.
		checkFor(t, 30*time.Second, "pods reported again after the restart", func() error {
			for app, n := range map[string]int{"web": 1, "worker": 2} {
				ps, err := e.pods(app)
				if err != nil {
					return err
				}
				if len(ps) != n {
					return fmt.Errorf("%d %s pods, want %d", len(ps), app, n)
				}
				for _, p := range ps {
					if !p.ready() || p.restarts() != 0 {
						return fmt.Errorf("pod %s: ready %v, restarts %d", p.Metadata.Name, p.ready(), p.restarts())
					}
				}
			}
			return nil
		})
		holdFor(t, 3*time.Second, "after restarting capstan up", func() error {
			cs, err := e.containers()
			if err != nil {
				return err
			}
			if !sameContainers(before, cs) {
				return fmt.Errorf("containers changed across the restart:\nbefore %+v\nafter  %+v", before, cs)
			}
			for _, c := range cs {
				if c.Attempt != "0" || c.State != "running" {
					return fmt.Errorf("container %+v: want attempt 0, running", c)
				}
			}
			return nil
		})

		// Killed behind Capstan's back: replaced with attempt 1.
		web := runningByApp(before, "web")
		var old ctr
		for _, c := range web {
			old = c
		}
		e.mustPodman("kill", old.ID)
		sb := time.Now()
		killed := e.waitReplaced(old, "1", 1)
		t.Logf("killed container replaced in %s", time.Since(sb).Round(time.Millisecond))

		// The killed instance's output is still there: `logs --previous`.
		if out, stderr, err := e.cli("logs", "--previous", strings.TrimPrefix(killed.CPod, "default/")); err != nil || !strings.Contains(out, "url:/") {
			t.Errorf("logs --previous: %q, %v (%s); want the killed instance's access lines", out, err, stderr)
		}

		// Removed behind Capstan's back: replaced too.
		e.mustPodman("rm", "-f", "-t", "0", killed.ID)
		sb = time.Now()
		e.waitReplaced(killed, "2", 2)
		t.Logf("removed container replaced in %s", time.Since(sb).Round(time.Millisecond))
		checkFor(t, 15*time.Second, "web page after the repairs", func() error {
			body, err := httpGet(webURL)
			if err == nil && !strings.Contains(body, msg2) {
				err = fmt.Errorf("page %q", body)
			}
			return err
		})

		// Deleted from Git: its Podman pod goes.
		r.remove("web.yaml")
		rev6 := r.commit("Remove web")
		sb = time.Now()
		checkFor(t, 30*time.Second, "web pod removed from Podman", func() error {
			out, err := e.podman("pod", "ps", "-q", "--filter", "label=capstan.node="+e.node, "--filter", "label=app=web")
			if err != nil {
				return err
			}
			if ids := strings.Fields(out); len(ids) > 0 {
				return fmt.Errorf("web pods still there: %v", ids)
			}
			return nil
		})
		t.Logf("deleted from git to Podman pod gone: %s", time.Since(sb).Round(time.Millisecond))
		rec = e.auditRecord(rev6, 10*time.Second)
		if _, ok := rec.change("deleted", "Deployment", "web"); rec.Result != "Applied" || !ok {
			t.Errorf("audit record of %s: %+v", rev6, rec)
		}
		checkFor(t, 15*time.Second, "no web pod on the bus", func() error {
			ps, err := e.pods("web")
			if err != nil || len(ps) > 0 {
				return fmt.Errorf("web pods %+v, %v", ps, err)
			}
			return nil
		})
		// The worker was not disturbed by any of it.
		cs, err = e.containers()
		if err != nil {
			t.Fatal(err)
		}
		if !sameContainers(filterApp(before, "worker"), filterApp(cs, "worker")) {
			t.Errorf("worker containers changed: before %+v, after %+v", filterApp(before, "worker"), filterApp(cs, "worker"))
		}

		// A whole Podman pod removed behind Capstan's back is created
		// again, for the same Capstan pod.
		workers := filterApp(cs, "worker")
		victim := workers[0]
		e.mustPodman("pod", "rm", "-f", "-t", "0", victim.Pod)
		sb = time.Now()
		checkFor(t, 20*time.Second, "removed worker pod recreated", func() error {
			cs, err := e.containers()
			if err != nil {
				return err
			}
			for _, c := range runningByApp(cs, "worker") {
				if c.CPod == victim.CPod && c.Pod != victim.Pod {
					return nil
				}
			}
			return fmt.Errorf("no new running container for %s: %+v", victim.CPod, cs)
		})
		t.Logf("removed Podman pod recreated in %s", time.Since(sb).Round(time.Millisecond))
		e.readyPods("worker", 2, 20*time.Second)

		// The unlabelled pod and its container are untouched.
		out := e.mustPodman("container", "inspect", "--format", "{{.State.Status}}", unlabelled+"-sleep")
		if strings.TrimSpace(out) != "running" {
			t.Errorf("unlabelled pod %s's container: state %q, want running", unlabelled, out)
		}
	})
	t.Logf("walking skeleton took %s", time.Since(begin).Round(time.Millisecond))
}

// waitReplaced waits until the web container old is replaced by a running
// one with the given attempt label in the same Capstan pod, and `get pods`
// reports restartCount restarts and Ready. It returns the new container.
func (e *e2e) waitReplaced(old ctr, attempt string, restarts int) ctr {
	e.t.Helper()
	var got ctr
	checkFor(e.t, 20*time.Second, "container "+old.ID[:12]+" replaced", func() error {
		cs, err := e.containers()
		if err != nil {
			return err
		}
		run := runningByApp(cs, "web")
		if len(run) != 1 {
			return fmt.Errorf("running web containers: %+v", cs)
		}
		for _, c := range run {
			got = c
		}
		if got.ID == old.ID || got.CPod != old.CPod || got.Attempt != attempt {
			return fmt.Errorf("running web container %+v, want a new one with attempt %s in %s", got, attempt, old.CPod)
		}
		ps, err := e.pods("web")
		if err != nil {
			return err
		}
		if len(ps) != 1 || !ps[0].ready() || ps[0].restarts() != restarts ||
			len(ps[0].Status.ContainerStatuses) != 1 || ps[0].Status.ContainerStatuses[0].ContainerID != "podman://"+got.ID {
			return fmt.Errorf("get pods: %+v, want ready, restartCount %d, containerID %s", ps, restarts, got.ID)
		}
		return nil
	})
	return got
}

// sameContainers reports whether two listings hold the same container IDs
// in the same states.
func sameContainers(a, b []ctr) bool {
	key := func(cs []ctr) []string {
		var k []string
		for _, c := range cs {
			k = append(k, c.ID+"/"+c.State+"/"+c.Attempt)
		}
		slices.Sort(k)
		return k
	}
	return slices.Equal(key(a), key(b))
}

func filterApp(cs []ctr, app string) []ctr {
	var out []ctr
	for _, c := range cs {
		if c.App == app {
			out = append(out, c)
		}
	}
	return out
}

// TestE2EValidate runs `capstan validate` on a good directory and on a bad
// file; it needs no bus and no Podman.
func TestE2EValidate(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(webYAML("hi", 8080, false)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "worker.yaml"), []byte(workerYAML(2)), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := Run(t.Context(), []string{"validate", dir}, &out, &errb); err != nil {
		t.Fatalf("validate on a good dir: %v\nstderr: %s", err, errb.String())
	}
	if !strings.Contains(out.String(), "valid: 2 object(s)") {
		t.Errorf("validate stdout %q", out.String())
	}
	// The bundled demo is valid too.
	out, errb = bytes.Buffer{}, bytes.Buffer{}
	if err := Run(t.Context(), []string{"validate", filepath.Join("..", "..", "manifests", "demo")}, &out, &errb); err != nil {
		t.Errorf("validate manifests/demo: %v\nstderr: %s", err, errb.String())
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte(webYAML("hi", 8080, true)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errb = bytes.Buffer{}, bytes.Buffer{}
	err := Run(t.Context(), []string{"validate", bad}, &out, &errb)
	var ex exitError
	if !errors.As(err, &ex) || ex.code != 1 {
		t.Fatalf("validate on a bad file: %v, want exitError code 1", err)
	}
	line, col := webBogusPos(t)
	want := fmt.Sprintf("%s:%d:%d", bad, line, col)
	if !strings.Contains(errb.String(), want) || !strings.Contains(errb.String(), "bogusField") {
		t.Errorf("validate stderr %q, want %s and the field's name", errb.String(), want)
	}
}
