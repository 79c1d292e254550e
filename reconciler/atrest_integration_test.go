package reconciler_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/bus/secrets/atrest"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/node/fake"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/schema"
	"github.com/capstan-io/capstan/sources/git"
)

// atRestApp is a Secret, a ConfigMap and a Deployment of two pods taking
// the Secret's password as env and the ConfigMap as a volume (a change of
// it rewrites the file, restarting nothing).
func atRestApp(password, color string) map[string]string {
	return map[string]string{
		"secret.yaml":   "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: " + password + "\n",
		"settings.yaml": settings(color),
		"web.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: main
          image: img:1
          command: ["sleep", "3600"]
          env:
            - name: PASSWORD
              valueFrom:
                secretKeyRef: {name: db, key: password}
          volumeMounts:
            - {name: settings, mountPath: /etc/settings}
      volumes:
        - name: settings
          configMap: {name: settings}
`,
	}
}

// TestSecretsEncryptedAtRest runs the sync and the control plane on the
// at-rest store (bus/secrets/atrest) over a real NATS server, with a real git
// repository and a fake node: the objects bucket holds only ciphertext,
// the node still gets the plain text (sealed to it), a key rotation
// rewrites no assignment and restarts no container, and neither the
// audit records nor any other stream hold a value.
func TestSecretsEncryptedAtRest(t *testing.T) {
	t.Parallel()
	const first, second = "correct-horse-plain-77", "second-value-88"
	r := newRepo(t)
	for name, content := range atRestApp(first, "blue") {
		r.write(name, content)
	}
	r.commit("web with a plain Secret")
	src, err := git.New(git.Options{URL: r.dir, Interval: time.Hour, CacheDir: t.TempDir()}, logger(t))
	if err != nil {
		t.Fatal(err)
	}

	b := natsauthtest.Start(t)
	conn := b.ControlPlane
	keyFile := filepath.Join(t.TempDir(), atrest.KeyFileName)
	keys, err := atrest.LoadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	log := logger(t)
	store := atrest.New(conn.Objects, keys, log)
	ctx, cancel := context.WithCancel(context.Background())
	cp := &controllers.ControlPlane{Objects: store, Assignments: conn.Assignments, Status: conn.Status,
		Nodes: conn.Nodes, Events: conn.Events, Log: log, ResyncPeriod: 500 * time.Millisecond}
	sy := &gitops.Syncer{Name: "root", Source: src, Load: schema.Load, Objects: store, Audit: conn.Audit,
		Events: conn.Events, Log: log, Resync: time.Second}
	rt := fake.New(fake.Options{})
	rt.AddImage("img:1")
	// The node has the bucket as it is: it never holds the key. It runs
	// as its own identity, as in production.
	nc := b.Connect(t, natsauth.RoleNode, "n1", natsbus.Options{Logger: log})
	d := &node.Daemon{Name: "n1", Runtime: rt, Nodes: nc.Nodes, Assignments: nc.Assignments, Status: nc.Status,
		Events: nc.Events, Log: log, DataDir: t.TempDir(), HeartbeatInterval: 300 * time.Millisecond, RelistInterval: 100 * time.Millisecond}
	stopServing, err := store.Subscribe(ctx, conn.NC)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 3)
	for _, run := range []func(context.Context) error{cp.Run, sy.Run, d.Run} {
		go func() { _ = run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
		_ = stopServing()
	})

	// The node runs both pods with the plain password, from assignments
	// that carry the Secret sealed.
	var containers []string
	testwait.For(t, 20*time.Second, "the node runs the pods with the plain password", func() error {
		entries, err := conn.Assignments.List(ctx, ">")
		if err != nil || len(entries) != 2 {
			return fmt.Errorf("%d assignments, %v", len(entries), err)
		}
		for _, e := range entries {
			var a manifests.Assignment
			if err := json.Unmarshal(e.Value, &a); err != nil {
				return err
			}
			if len(a.Secrets) != 0 || len(a.SealedSecrets) == 0 {
				return fmt.Errorf("%s: %d plain Secrets, %d sealed bytes", e.Key, len(a.Secrets), len(a.SealedSecrets))
			}
		}
		pods, err := rt.ListPods(ctx, nil)
		if err != nil || len(pods) != 2 {
			return fmt.Errorf("runtime pods %d, %v", len(pods), err)
		}
		containers = nil
		for _, p := range pods {
			if len(p.Containers) != 1 || p.Containers[0].State != node.StateRunning {
				return fmt.Errorf("pod %s not running", p.Name)
			}
			cfg, ok := rt.ContainerConfig(p.Containers[0].ID)
			if !ok || cfg.Env["PASSWORD"] != first {
				return fmt.Errorf("the container's PASSWORD is not the Secret's plain text")
			}
			containers = append(containers, p.Containers[0].ID)
		}
		return nil
	})

	// The raw bucket holds the value encrypted under the current key,
	// its key name readable; no bucket or stream holds the plain text.
	raw := rawSecret(t, conn.Objects, "Secret.default.db")
	if v := raw.Data["password"]; !bytes.HasPrefix(v, []byte(atrest.Prefix+keys.Current()+":")) {
		t.Fatalf("stored password %q is not ciphertext under %s", v, keys.Current())
	}
	noValueOnBus(t, conn, first)

	// Rotation: one Secret re-encrypted, the old key dropped from the file.
	before := assignmentsNow(t, conn.Assignments)
	watch, err := conn.Assignments.Watch(ctx, ">")
	if err != nil {
		t.Fatal(err)
	}
	waitSynced(t, watch)
	oldKey := keys.Current()
	res, err := atrest.RequestRotate(ctx, conn.NC)
	if err != nil {
		t.Fatal(err)
	}
	if res.Key == oldKey || res.Reencrypted != 1 || !slices.Equal(res.Dropped, []string{oldKey}) {
		t.Fatalf("rotation %+v, want 1 Secret re-encrypted and %s dropped", res, oldKey)
	}
	if rotated := rawSecret(t, conn.Objects, "Secret.default.db"); !bytes.HasPrefix(rotated.Data["password"], []byte(atrest.Prefix+res.Key+":")) {
		t.Fatalf("after rotation the password is %q", rotated.Data["password"])
	}
	if b, _ := os.ReadFile(keyFile); strings.Contains(string(b), "\n"+oldKey+" ") || !strings.Contains(string(b), "\n"+res.Key+" ") {
		t.Fatalf("key file after rotation:\n%s", b)
	}

	// A barrier: the ConfigMap changes after the rotation, so its write
	// follows the rotated Secret's in the bucket, and the control plane
	// sees them in that order. Once each pod's assignment carries the new
	// ConfigMap, the rotated Secret was seen too: each assignment was
	// written exactly once since (for the ConfigMap), its Secrets' digest
	// unchanged, and no container restarted.
	r.write("settings.yaml", settings("green"))
	r.commit("green")
	src.Trigger()
	writes := map[string]int{}
	after := map[string]manifests.Assignment{}
	deadline := time.After(20 * time.Second)
	for len(after) < 2 {
		select {
		case e, ok := <-watch:
			if !ok {
				t.Fatal("the assignments' watch ended")
			}
			if e.Op != bus.OpPut {
				t.Fatalf("assignment %s: op %v", e.Key, e.Op)
			}
			writes[e.Key]++
			var a manifests.Assignment
			if err := json.Unmarshal(e.Value, &a); err != nil {
				t.Fatal(err)
			}
			if len(a.ConfigMaps) == 1 && a.ConfigMaps[0].Data["color"] == "green" {
				after[e.Key] = a
			}
		case <-deadline:
			t.Fatalf("assignments did not follow the ConfigMap: %v", writes)
		}
	}
	for key, a := range after {
		if writes[key] != 1 {
			t.Errorf("assignment %s written %d times since the rotation, want once (the ConfigMap)", key, writes[key])
		}
		if a.SecretsDigest != before[key].SecretsDigest {
			t.Errorf("assignment %s: the rotation changed its Secrets' digest", key)
		}
	}
	pods, _ := rt.ListPods(ctx, nil)
	for _, p := range pods {
		if !slices.Contains(containers, p.Containers[0].ID) {
			t.Errorf("pod %s has a new container: restarted", p.Name)
		}
	}

	// A changed value: the audit record names the key, holds no value.
	for name, content := range atRestApp(second, "green") {
		r.write(name, content)
	}
	changed := r.commit("new password")
	src.Trigger()
	testwait.For(t, 15*time.Second, "the audit record of the new password", func() error {
		rec, err := lastAudit(ctx, conn.Audit, changed)
		if err != nil {
			return err
		}
		for _, c := range rec.Changes {
			if c.Kind == "Secret" && c.Name == "db" && c.Action == "updated" {
				if !slices.Equal(c.Fields, []string{"data.password"}) {
					return fmt.Errorf("Secret change fields %v, want data.password", c.Fields)
				}
				return nil
			}
		}
		return fmt.Errorf("no Secret change in %+v", rec.Changes)
	})

	// A rejected revision: its errors do not quote the value either.
	const rejected = "98765432101"
	r.write("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: "+rejected+"\n")
	bad := r.commit("a number for a password")
	src.Trigger()
	testwait.For(t, 15*time.Second, "the rejection's audit record", func() error {
		rec, err := lastAudit(ctx, conn.Audit, bad)
		if err != nil {
			return err
		}
		if rec.Result != gitops.ResultRejected || !strings.Contains(strings.Join(rec.Errors, "\n"), "secret.yaml:6:3: stringData.password: invalid value") {
			return fmt.Errorf("record %s %v", rec.Result, rec.Errors)
		}
		return nil
	})
	noValueOnBus(t, conn, first, second, rejected)
}

// rawSecret reads a Secret as the bucket holds it.
func rawSecret(t *testing.T, objects bus.Store, key string) *manifests.Secret {
	t.Helper()
	obj, _, err := cache.GetObject(context.Background(), objects, key)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*manifests.Secret)
}

// noValueOnBus fails if any message of any stream or bucket holds one of
// values, as given or in base64.
func noValueOnBus(t *testing.T, conn *natsbus.Conn, values ...string) {
	t.Helper()
	var needles []string
	for _, v := range values {
		needles = append(needles, v, base64.StdEncoding.EncodeToString([]byte(v)))
	}
	for _, hit := range scanBus(t, context.Background(), conn.JS, needles...) {
		t.Errorf("a Secret value is on the bus: %s", hit)
	}
	if len(scanBus(t, context.Background(), conn.JS, "secretKeyRef")) == 0 {
		t.Error("the scan does not even find the pod's spec: it sees nothing")
	}
}

func assignmentsNow(t *testing.T, s bus.Store) map[string]manifests.Assignment {
	t.Helper()
	entries, err := s.List(context.Background(), ">")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]manifests.Assignment{}
	for _, e := range entries {
		var a manifests.Assignment
		if err := json.Unmarshal(e.Value, &a); err != nil {
			t.Fatal(err)
		}
		out[e.Key] = a
	}
	return out
}

// waitSynced reads a watch up to its OpSynced.
func waitSynced(t *testing.T, ch <-chan bus.Entry) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatal("watch ended")
			}
			if e.Op == bus.OpSynced {
				return
			}
		case <-deadline:
			t.Fatal("watch not synced")
		}
	}
}

// lastAudit is the audit record of revision, the last of the root source.
func lastAudit(ctx context.Context, audit bus.Audit, revision string) (manifests.AuditRecord, error) {
	recs, err := audit.List(ctx, "root", time.Time{})
	if err != nil {
		return manifests.AuditRecord{}, err
	}
	if len(recs) == 0 || recs[len(recs)-1].Revision != revision {
		return manifests.AuditRecord{}, fmt.Errorf("no audit record of %s yet", revision)
	}
	return recs[len(recs)-1], nil
}
