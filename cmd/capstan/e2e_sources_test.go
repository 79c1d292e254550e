//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// The end-to-end test of many sources on real Podman: a Source declared in
// the root repository adds a second repository; a bad file there does not
// block the root; health in `get sources`; drift on the bus corrected,
// then reported; a container removed behind Capstan's back recorded as
// drift; and notifications received by a local HTTP server.

func appsWorkerYAML() string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: apps-worker
spec:
  replicas: 1
  selector:
    matchLabels: {app: apps-worker}
  template:
    metadata:
      labels: {app: apps-worker}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: worker
          image: %s
          command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 5 & wait; done"]
`, e2eImage)
}

const appsSettingsYAML = `apiVersion: v1
kind: ConfigMap
metadata:
  name: apps-settings
data:
  greeting: hello
`

func appsSourceYAML(url, extra string) string {
	return fmt.Sprintf("apiVersion: capstan.io/v1\nkind: Source\nmetadata:\n  name: apps\nspec:\n  url: %s\n  interval: 1h\n%s", url, extra)
}

// hookServer records the JSON notices posted to it.
type hookServer struct {
	mu      sync.Mutex
	notices []map[string]any
	srv     *httptest.Server
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil || r.URL.Path != "/hook" || r.Method != http.MethodPost {
			t.Errorf("unexpected notification %s %s %q", r.Method, r.URL.Path, b)
		}
		h.mu.Lock()
		h.notices = append(h.notices, m)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// count returns how many notices match source, reason and revision.
func (h *hookServer) count(source, reason, rev string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.notices {
		if m["source"] == source && m["reason"] == reason && m["revision"] == rev {
			n++
		}
	}
	return n
}

// history returns the audit records of one source.
func (e *e2e) history(source string) ([]auditJSON, error) {
	var h struct {
		Items []auditJSON `json:"items"`
	}
	err := e.getJSON(&h, "history", "--source", source, "-o", "json")
	return h.Items, err
}

// sourceRow waits until the source's row in `get sources` satisfies ok.
func (e *e2e) sourceRow(name string, total time.Duration, what string, ok func(row []string) error) []string {
	e.t.Helper()
	var row []string
	checkFor(e.t, total, what, func() error {
		var err error
		if row, err = e.tableRow("sources", name); err != nil {
			return err
		}
		return ok(row)
	})
	return row
}

// editOnBus changes an object in the objects bucket directly, behind
// Git's back.
func (e *e2e) editOnBus(key string, change func(manifests.Object)) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := natsbus.Connect(ctx, e.url, adminBus(t, natsbus.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 5 {
		obj, rev, err := cache.GetObject(ctx, conn.Objects, key)
		if err != nil {
			t.Fatal(err)
		}
		change(obj)
		if _, err = cache.UpdateObject(ctx, conn.Objects, obj, rev); err == nil {
			return
		}
	}
	t.Fatalf("could not edit %s", key)
}

func (e *e2e) configMapData(name string) (map[string]string, error) {
	var cm struct {
		Data map[string]string `json:"data"`
	}
	err := e.getJSON(&cm, "get", "configmap", name, "-o", "json")
	return cm.Data, err
}

func TestE2ESources(t *testing.T) {
	e := newE2E(t)
	hook := newHookServer(t)
	apps := newGitRepo(t)
	apps.write("worker.yaml", appsWorkerYAML())
	apps.write("settings.yaml", appsSettingsYAML)
	appsRev1 := apps.commit("apps: worker and settings")

	e.repo.write("root.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: root-one\ndata:\n  k: v\n")
	e.repo.write("apps-source.yaml", appsSourceYAML(apps.dir, ""))
	e.repo.write("notifier.yaml", fmt.Sprintf(`apiVersion: capstan.io/v1
kind: Notifier
metadata:
  name: hook
spec:
  type: generic
  address: %s/hook
  sources: [apps]
`, hook.srv.URL))
	e.repo.commit("root: a config map, the apps source and a notifier")
	e.startUpWith(e.repo.dir, "--resync-interval", "2s")

	// Both sources Ready once the worker rolled out, with their revisions.
	out, _, err := e.cli("get", "sources")
	if err != nil || !strings.HasPrefix(out, "NAME") || !slices.Equal(strings.Fields(strings.SplitN(out, "\n", 2)[0]), []string{"NAME", "HEALTH", "APPLIED", "ATTEMPTED", "LAST-SYNC", "MESSAGE"}) {
		t.Fatalf("get sources header: %q %v", out, err)
	}
	e.sourceRow("apps", 90*time.Second, "apps Ready at its first revision", func(r []string) error {
		if r[1] != "Ready" || r[2] != appsRev1[:12] || r[3] != appsRev1[:12] {
			return fmt.Errorf("row %v", r)
		}
		return nil
	})
	e.sourceRow("root", 30*time.Second, "root Ready", func(r []string) error {
		if r[1] != "Ready" {
			return fmt.Errorf("row %v", r)
		}
		return nil
	})
	wide, _, err := e.cli("get", "sources", "-o", "wide")
	if err != nil || !strings.Contains(wide, "URL") || !strings.Contains(wide, apps.dir) || !strings.Contains(wide, "REF") {
		t.Fatalf("get sources -o wide: %q %v", wide, err)
	}
	checkFor(t, 30*time.Second, "rollout Ready notice of apps", func() error {
		if n := hook.count("apps", "Ready", appsRev1); n != 1 {
			return fmt.Errorf("%d notices; all: %v", n, hook.notices)
		}
		return nil
	})

	// A bad file in apps fails apps only; the root keeps applying.
	apps.write("broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\nnotAField: 1\n")
	bad := apps.commit("apps: a bad file")
	e.sourceRow("apps", 30*time.Second, "apps Failed on the bad revision", func(r []string) error {
		if r[1] != "Failed" || r[2] != appsRev1[:12] || r[3] != bad[:12] || !strings.Contains(strings.Join(r[5:], " "), "broken.yaml") {
			return fmt.Errorf("row %v", r)
		}
		return nil
	})
	e.repo.write("root2.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: root-two\ndata:\n  k: v\n")
	root2 := e.repo.commit("root: another config map")
	e.sourceRow("root", 30*time.Second, "root applies while apps is failing", func(r []string) error {
		if r[1] != "Ready" || r[2] != root2[:12] {
			return fmt.Errorf("row %v", r)
		}
		return nil
	})
	if _, err := e.configMapData("root-two"); err != nil {
		t.Fatalf("root-two: %v", err)
	}
	checkFor(t, 30*time.Second, "one Rejected notice", func() error {
		if n := hook.count("apps", "Rejected", bad); n != 1 {
			return fmt.Errorf("%d notices", n)
		}
		return nil
	})
	apps.remove("broken.yaml")
	appsRev3 := apps.commit("apps: fix")
	e.sourceRow("apps", 60*time.Second, "apps Ready again", func(r []string) error {
		if r[1] != "Ready" || r[2] != appsRev3[:12] {
			return fmt.Errorf("row %v", r)
		}
		return nil
	})
	if n := hook.count("apps", "Rejected", bad); n != 1 {
		t.Fatalf("%d Rejected notices for one failure", n)
	}

	// Drift on the bus, corrected (the default) and recorded.
	settingsKey := manifests.Key("ConfigMap", "default", "apps-settings")
	e.editOnBus(settingsKey, func(o manifests.Object) { o.(*manifests.ConfigMap).Data["greeting"] = "edited by hand" })
	checkFor(t, 30*time.Second, "drift corrected and recorded", func() error {
		d, err := e.configMapData("apps-settings")
		if err != nil || d["greeting"] != "hello" {
			return fmt.Errorf("data %v, %v", d, err)
		}
		recs, err := e.history("apps")
		if err != nil {
			return err
		}
		for _, r := range recs {
			if f, ok := r.change("updated", "ConfigMap", "apps-settings"); ok && r.Result == "DriftCorrected" && slices.Equal(f, []string{"data.greeting"}) {
				return nil
			}
		}
		return fmt.Errorf("no DriftCorrected record: %+v", recs)
	})

	// A container removed behind Capstan's back: the node starts it again,
	// the control plane records it as drift of apps.
	var victim ctr
	checkFor(t, 30*time.Second, "the apps worker container", func() error {
		cs, err := e.containers()
		if err != nil {
			return err
		}
		for _, c := range runningByApp(cs, "apps-worker") {
			victim = c
			return nil
		}
		return fmt.Errorf("none running: %+v", cs)
	})
	e.mustPodman("rm", "-f", "-t", "0", victim.ID)
	checkFor(t, 60*time.Second, "container drift recorded", func() error {
		recs, err := e.history("apps")
		if err != nil {
			return err
		}
		for _, r := range recs {
			if _, ok := r.change("recreated", "Pod", strings.TrimPrefix(victim.CPod, "default/")); ok && r.Result == "DriftCorrected" {
				return nil
			}
		}
		return fmt.Errorf("no record of the recreated container: %+v", recs)
	})

	// Drift reported only: recorded once, left as is.
	starts := e.sourceStarts("apps")
	e.repo.write("apps-source.yaml", appsSourceYAML(apps.dir, "  drift:\n    mode: report\n"))
	e.repo.commit("root: apps reports drift")
	checkFor(t, 30*time.Second, "apps in report mode", func() error {
		var s struct {
			Spec struct {
				Drift struct {
					Mode string `json:"mode"`
				} `json:"drift"`
			} `json:"spec"`
		}
		if err := e.getJSON(&s, "get", "source", "apps", "-o", "json"); err != nil {
			return err
		}
		if s.Spec.Drift.Mode != "report" {
			return fmt.Errorf("drift mode %q", s.Spec.Drift.Mode)
		}
		return nil
	})
	// The manager restarts the apps sync with its new policy.
	checkFor(t, 30*time.Second, "the apps sync restarted", func() error {
		if n := e.sourceStarts("apps"); n <= starts {
			return fmt.Errorf("started %d times, as before the change", n)
		}
		return nil
	})
	e.editOnBus(settingsKey, func(o manifests.Object) { o.(*manifests.ConfigMap).Data["greeting"] = "reported" })
	checkFor(t, 30*time.Second, "drift reported", func() error {
		recs, err := e.history("apps")
		if err != nil {
			return err
		}
		for _, r := range recs {
			if f, ok := r.change("drifted", "ConfigMap", "apps-settings"); ok && r.Result == "DriftDetected" && slices.Equal(f, []string{"data.greeting"}) {
				return nil
			}
		}
		return fmt.Errorf("no DriftDetected record: %+v", recs)
	})
	holdFor(t, 5*time.Second, "reported drift left alone", func() error {
		d, err := e.configMapData("apps-settings")
		if err != nil || d["greeting"] != "reported" {
			return fmt.Errorf("data %v, %v", d, err)
		}
		return nil
	})
	recs, err := e.history("apps")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Result == "DriftDetected" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d DriftDetected records for one drift through several resyncs", n)
	}
	desc, _, err := e.cli("describe", "source", "apps")
	if err != nil || !strings.Contains(desc, "Health:     Ready") || !strings.Contains(desc, "Drift:      report") {
		t.Fatalf("describe source apps: %q %v", desc, err)
	}
}

// sourceStarts counts the times capstan up's source manager started the
// declared source name's sync, from its log.
func (e *e2e) sourceStarts(name string) int {
	n := 0
	for line := range strings.Lines(e.up.out.String()) {
		if strings.Contains(line, `msg="starting source"`) && strings.Contains(line, " source="+name+" ") {
			n++
		}
	}
	return n
}
