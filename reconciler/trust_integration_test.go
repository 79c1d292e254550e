package reconciler_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/bus/secrets/sops"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/node/fake"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/schema"
	"github.com/capstan-io/capstan/sources/git"
	"github.com/capstan-io/capstan/sources/git/gittest"
)

// trustCluster is a bus, a sync with a signature policy and SOPS keys, a
// control plane and one fake node.
type trustCluster struct {
	ctx  context.Context
	conn *natsbus.Conn
	rt   *fake.Runtime
}

func startTrustCluster(t *testing.T, src *git.Source, dec *sops.Decrypter) *trustCluster {
	t.Helper()
	b := natsauthtest.Start(t)
	conn := b.ControlPlane
	ctx, cancel := context.WithCancel(context.Background())
	log := logger(t)
	cp := &controllers.ControlPlane{Objects: conn.Objects, Assignments: conn.Assignments, Status: conn.Status,
		Nodes: conn.Nodes, Events: conn.Events, Log: log, ResyncPeriod: 500 * time.Millisecond, Sops: dec}
	sy := &gitops.Syncer{Name: "root", Source: src, Load: sops.LoadSecrets(schema.Load, dec), Objects: conn.Objects,
		Audit: conn.Audit, Events: conn.Events, Log: log, Resync: time.Second}
	rt := fake.New(fake.Options{})
	rt.AddImage("img:1")
	nc := b.Connect(t, natsauth.RoleNode, "n1", natsbus.Options{Logger: log})
	d := &node.Daemon{Name: "n1", Runtime: rt, Nodes: nc.Nodes, Assignments: nc.Assignments, Status: nc.Status,
		Events: nc.Events, Log: log, HeartbeatInterval: 300 * time.Millisecond, RelistInterval: 100 * time.Millisecond}
	done := make(chan struct{}, 3)
	for _, run := range []func(context.Context) error{cp.Run, sy.Run, d.Run} {
		go func() { _ = run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
	})
	return &trustCluster{ctx: ctx, conn: conn, rt: rt}
}

func (c *trustCluster) audit(t *testing.T) []manifests.AuditRecord {
	recs, err := c.conn.Audit.List(c.ctx, "root", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func (c *trustCluster) configValue(t *testing.T) string {
	obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("ConfigMap", "default", "settings"))
	if err != nil {
		return ""
	}
	return obj.(*manifests.ConfigMap).Data["color"]
}

func settings(color string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: " + color + "\n"
}

// signingKey makes an OpenPGP key with the real gpg and returns the git
// options that sign with it, and its armored public key.
func signingKey(t *testing.T) (gitArgs []string, armored, fpr string) {
	fpr, armored = gittest.OpenPGPKey(t, "Ada <ada@example.com>")
	return []string{"-c", "gpg.format=openpgp", "-c", "user.signingkey=" + fpr, "-c", "commit.gpgsign=true"}, armored, fpr
}

// Not parallel: the signing key's GNUPGHOME is set with t.Setenv
// (gittest.OpenPGPKey) for the git commands that sign.
func TestSignaturePolicyKeepsLastGoodRevision(t *testing.T) {
	sign, armored, fpr := signingKey(t)
	r := newRepo(t)
	r.write("settings.yaml", settings("blue"))
	r.git(append(sign, "add", "-A")...)
	r.git(append(sign, "commit", "-q", "-m", "blue, signed")...)
	good := r.git("rev-parse", "HEAD")

	keys := func() (*git.Keyring, error) { return git.ParseKeys([]byte(armored)) }
	src, err := git.New(git.Options{URL: r.dir, Interval: 200 * time.Millisecond, CacheDir: t.TempDir(),
		Verify: &git.VerifyOptions{Mode: git.VerifyAll, Keys: keys}}, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	c := startTrustCluster(t, src, nil)
	testwait.For(t, 10*time.Second, "the signed revision applied", func() error {
		if v := c.configValue(t); v != "blue" {
			return fmt.Errorf("color %q", v)
		}
		return nil
	})
	// The audit record is written after the objects: wait for it.
	var recs []manifests.AuditRecord
	testwait.For(t, 10*time.Second, "an audit record", func() error {
		if recs = c.audit(t); len(recs) == 0 {
			return fmt.Errorf("no audit record yet")
		}
		return nil
	})
	if last := recs[len(recs)-1]; last.Revision != good || last.Result != "Applied" || last.Signature == nil ||
		last.Signature.Status != "verified" || last.Signature.Key != fpr || last.Signature.Signer != "Ada <ada@example.com>" {
		t.Fatalf("audit record %+v signature %+v", last, last.Signature)
	}

	// An unsigned commit is refused, recorded with the reason, and blue
	// keeps running.
	r.write("settings.yaml", settings("red"))
	bad := r.commit("red, unsigned")
	testwait.For(t, 10*time.Second, "the unsigned commit refused", func() error {
		recs := c.audit(t)
		last := recs[len(recs)-1]
		if last.Revision != bad {
			return fmt.Errorf("last record is %s", last.Revision)
		}
		if last.Result != "Rejected" || last.Signature == nil || last.Signature.Status != "unsigned" ||
			len(last.Errors) != 1 || !strings.Contains(last.Errors[0], bad[:12]) || !strings.Contains(last.Errors[0], "is not signed") {
			return fmt.Errorf("record %+v signature %+v", last, last.Signature)
		}
		return nil
	})
	// Through several resyncs, nothing of the refused revision lands.
	testwait.Holds(t, 2500*time.Millisecond, "the last good revision stays", func() error {
		if v := c.configValue(t); v != "blue" {
			return fmt.Errorf("color %q after an unsigned commit, want blue", v)
		}
		return nil
	})
	src2, _, _ := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("Source", "", "root"))
	if st := src2.(*manifests.Source).Status; st.AppliedRevision != good || st.AttemptedRevision != bad || !strings.Contains(st.LastError, "is not signed") {
		t.Errorf("source status %+v", st)
	}
	rejected := 0
	for _, rec := range c.audit(t) {
		if rec.Revision == bad {
			rejected++
		}
	}
	if rejected != 1 {
		t.Errorf("the refused revision was recorded %d times, want once", rejected)
	}

	// Mode "all": a signed commit on top does not launder the unsigned one.
	r.write("settings.yaml", settings("green"))
	r.git(append(sign, "add", "-A")...)
	r.git(append(sign, "commit", "-q", "-m", "green, signed")...)
	top := r.git("rev-parse", "HEAD")
	testwait.For(t, 10*time.Second, "the signed commit on an unsigned one rejected", func() error {
		recs := c.audit(t)
		last := recs[len(recs)-1]
		if last.Revision != top || last.Result != "Rejected" || last.Signature.Commit != bad {
			return fmt.Errorf("record %+v %+v", last, last.Signature)
		}
		return nil
	})
	if v := c.configValue(t); v != "blue" {
		t.Fatalf("color %q, want blue", v)
	}
}

// scanBus reads every message of every stream on the bus (each KV bucket
// is a stream too) and returns the subjects whose data holds any needle.
func scanBus(t *testing.T, ctx context.Context, js jetstream.JetStream, needles ...string) []string {
	t.Helper()
	var hits []string
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			msg, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue // deleted or purged
			}
			for _, n := range needles {
				if bytes.Contains(msg.Data, []byte(n)) {
					hits = append(hits, name+" "+msg.Subject)
				}
			}
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return hits
}

func TestEncryptedSecretReachesAssignmentOnly(t *testing.T) {
	t.Parallel()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := sops.NewDecrypter(id.String())
	if err != nil {
		t.Fatal(err)
	}
	const plain = "correct-horse-battery-staple"
	enc, err := sops.EncryptSecret([]byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: "+plain+"\n"), []string{id.Recipient().String()})
	if err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	r.write("secret.yaml", string(enc))
	r.write("web.yaml", deployment("web", 1, "img:1", `          env:
            - name: PASSWORD
              valueFrom:
                secretKeyRef: {name: db, key: password}
`))
	r.commit("web with an encrypted secret")
	src, err := git.New(git.Options{URL: r.dir, Interval: time.Hour, CacheDir: t.TempDir()}, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	c := startTrustCluster(t, src, dec)

	// The assignment carries the Secret sealed to the node's key; the node
	// opens it into the container's environment.
	testwait.For(t, 15*time.Second, "the assignment", func() error {
		entries, err := c.conn.Assignments.List(c.ctx, ">")
		if err != nil || len(entries) != 1 {
			return fmt.Errorf("%d assignments, %v", len(entries), err)
		}
		var a manifests.Assignment
		if err := json.Unmarshal(entries[0].Value, &a); err != nil {
			return err
		}
		if len(a.Secrets) != 0 || len(a.SealedSecrets) == 0 {
			return fmt.Errorf("assignment has %d plain and %d sealed bytes of secrets", len(a.Secrets), len(a.SealedSecrets))
		}
		pods, err := c.rt.ListPods(c.ctx, nil)
		if err != nil || len(pods) != 1 || len(pods[0].Containers) != 1 {
			return fmt.Errorf("runtime pods %+v, %v", pods, err)
		}
		cfg, ok := c.rt.ContainerConfig(pods[0].Containers[0].ID)
		if !ok || cfg.Env["PASSWORD"] != plain {
			return fmt.Errorf("the container's PASSWORD is not the decrypted value")
		}
		return nil
	})

	// The objects bucket holds the ciphertext, and no stream or bucket
	// holds the plain text.
	obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("Secret", "default", "db"))
	if err != nil {
		t.Fatal(err)
	}
	if s := obj.(*manifests.Secret); s.SopsDocument() == nil || s.Data != nil || !strings.Contains(s.SopsDocument().Document, "ENC[AES256_GCM") {
		t.Fatalf("stored secret %+v", s)
	}
	needles := []string{plain, base64.StdEncoding.EncodeToString([]byte(plain))}
	hits := scanBus(t, c.ctx, c.conn.JS, needles...)
	for _, hit := range hits {
		t.Errorf("plain text found on the bus: %s", hit)
	}
	if len(scanBus(t, c.ctx, c.conn.JS, "secretKeyRef")) == 0 {
		t.Error("the scan does not even find the pod's spec: it sees nothing")
	}
	entries, err := c.conn.Objects.List(c.ctx, ">")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		for _, n := range needles {
			if bytes.Contains(e.Value, []byte(n)) {
				t.Errorf("objects bucket key %s holds the plain text", e.Key)
			}
		}
	}

	// A revision with a Secret no key opens is rejected at its position.
	other, _ := age.GenerateX25519Identity()
	enc2, err := sops.EncryptSecret([]byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: other\nstringData:\n  k: v\n"), []string{other.Recipient().String()})
	if err != nil {
		t.Fatal(err)
	}
	r.write("other.yaml", string(enc2))
	bad := r.commit("a secret for someone else")
	src.Trigger()
	testwait.For(t, 10*time.Second, "a secret for another recipient rejected", func() error {
		recs, _ := c.conn.Audit.List(c.ctx, "root", time.Time{})
		last := recs[len(recs)-1]
		if last.Revision != bad || last.Result != "Rejected" {
			return fmt.Errorf("last record %s %s", last.Revision, last.Result)
		}
		if want := "other.yaml:4:11: metadata.name: Secret default/other cannot be decrypted"; !strings.Contains(strings.Join(last.Errors, "\n"), want) {
			return fmt.Errorf("errors %q, want %q", last.Errors, want)
		}
		return nil
	})
}
