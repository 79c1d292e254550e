//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	filage "filippo.io/age"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/sources/git/gittest"
)

// The end-to-end tests of trust: commits signed with OpenPGP and SSH keys
// under a signature policy, a Secret committed encrypted with SOPS reaching
// a container's environment without its plain text in any bucket or stream
// but the node's own assignment, and `capstan scale` writing a commit that
// the cluster then applies. They run `capstan up` on real Podman.

// trustGPG makes an OpenPGP key with the real gpg, in a home the test's git
// commands use, and returns its fingerprint and armored public key.
func trustGPG(t *testing.T) (fpr, armored string) {
	return gittest.OpenPGPKey(t, "Olga OpenPGP <olga@example.com>")
}

// trustSSH makes an SSH key with the real ssh-keygen: the private key's
// path, the public key line and its fingerprint.
func trustSSH(t *testing.T) (priv, pub, fp string) {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	priv = filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sam@example.com", "-f", priv).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	b, err := os.ReadFile(priv + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-l", "-f", priv+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	return priv, string(b), strings.Fields(string(out))[1]
}

type signedAudit struct {
	Action    string   `json:"action"`
	Revision  string   `json:"revision"`
	Result    string   `json:"result"`
	Errors    []string `json:"errors"`
	Signature *struct {
		Status, Key, Signer, Commit string
	} `json:"signature"`
}

// trustRecord waits for the audit record of rev.
func (e *e2e) trustRecord(rev string, total time.Duration) signedAudit {
	e.t.Helper()
	var rec signedAudit
	checkFor(e.t, total, "history record of "+rev, func() error {
		var h struct {
			Items []signedAudit `json:"items"`
		}
		if err := e.getJSON(&h, "history", "-o", "json"); err != nil {
			return err
		}
		for _, r := range h.Items {
			if r.Revision == rev && (r.Action == "" || r.Action == "sync") { // a write-back names its commit too
				rec = r
				return nil
			}
		}
		return fmt.Errorf("no record among %d", len(h.Items))
	})
	return rec
}

// scanAllStreams reads every message of every stream on the bus (each KV
// bucket is a stream too) and returns "stream subject" of those holding a
// needle.
func scanAllStreams(t *testing.T, url string, needles ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := natsbus.Connect(ctx, url, adminBus(t, natsbus.Options{Name: "e2e-scan"}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var hits []string
	streams := 0
	names := conn.JS.StreamNames(ctx)
	for name := range names.Name() {
		streams++
		st, err := conn.JS.Stream(ctx, name)
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
				continue // deleted
			}
			for _, n := range needles {
				if bytes.Contains(msg.Data, []byte(n)) {
					hits = append(hits, name+" "+msg.Subject)
				}
			}
		}
	}
	if err := names.Err(); err != nil && err != jetstream.ErrEndOfData {
		t.Fatal(err)
	}
	if streams < 5 {
		t.Fatalf("scanned only %d streams", streams)
	}
	return hits
}

const trustSecretPlain = "s3cret-Trust-e2e-value"

func trustDeployment(replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: vault-web # the web front
spec:
  replicas: %d
  selector:
    matchLabels: {app: vault-web}
  template:
    metadata:
      labels: {app: vault-web}
    spec:
      containers:
        - name: main
          image: %s
          command: ["sleep", "3600"]
          env:
            - name: DB_PASSWORD
              valueFrom:
                secretKeyRef: {name: db, key: password}
`, replicas, e2eImage)
}

func TestE2ETrust(t *testing.T) {
	e := newE2E(t)
	fpr, armored := trustGPG(t)
	sshPriv, sshPub, sshFP := trustSSH(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "trusted-keys")
	if err := os.WriteFile(keys, []byte(armored+"\n"+sshPub), 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := filage.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	ageKey := filepath.Join(dir, "age.key")
	if err := os.WriteFile(ageKey, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The Secret, encrypted by the CLI, committed with the workload,
	// signed with OpenPGP.
	enc, stderr, err := e.cli("secret", "encrypt", "--age", id.Recipient().String(), "--from-literal", "password="+trustSecretPlain, "db")
	if err != nil {
		t.Fatalf("secret encrypt: %v %s", err, stderr)
	}
	if strings.Contains(enc, trustSecretPlain) || !strings.Contains(enc, "ENC[AES256_GCM") {
		t.Fatalf("encrypted manifest:\n%s", enc)
	}
	r := e.repo
	gpgSign := []string{"-c", "gpg.format=openpgp", "-c", "user.signingkey=" + fpr, "-c", "commit.gpgsign=true"}
	sshSign := []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + sshPriv, "-c", "commit.gpgsign=true"}
	commitWith := func(sign []string, msg string) string {
		r.git("add", "-A")
		r.git(append(sign, "commit", "-q", "-m", msg)...)
		return r.git("rev-parse", "HEAD")
	}
	r.write("db-secret.yaml", enc)
	r.write("web.yaml", trustDeployment(1))
	r.write("settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n")
	signed := commitWith(gpgSign, "web with an encrypted secret, signed with OpenPGP")

	e.startUpWith(r.dir, "--verify", "head", "--verify-keys", keys, "--sops-age-key-file", ageKey)

	t.Run("openpgp signed commit applied", func(t *testing.T) {
		e.t = t
		rec := e.trustRecord(signed, 60*time.Second)
		if rec.Result != "Applied" || rec.Signature == nil || rec.Signature.Status != "verified" || rec.Signature.Key != fpr || rec.Signature.Signer != "Olga OpenPGP <olga@example.com>" {
			t.Fatalf("record %+v signature %+v", rec, rec.Signature)
		}
		e.readyPods("vault-web", 1, 90*time.Second)
	})

	t.Run("encrypted secret reaches the container only", func(t *testing.T) {
		e.t = t
		var env string
		checkFor(t, 60*time.Second, "the container's environment", func() error {
			cs, err := e.containers()
			if err != nil {
				return err
			}
			for _, c := range runningByApp(cs, "vault-web") {
				out, err := e.podman("exec", c.ID, "sh", "-c", "echo \"$DB_PASSWORD\"")
				if err != nil {
					return err
				}
				env = strings.TrimSpace(out)
				return nil
			}
			return fmt.Errorf("no running container")
		})
		if env != trustSecretPlain {
			t.Fatalf("DB_PASSWORD=%q, want the decrypted value", env)
		}
		needles := []string{trustSecretPlain, base64.StdEncoding.EncodeToString([]byte(trustSecretPlain))}
		// The node receives the Secret sealed to its own key: no bucket
		// or stream holds the plain text.
		for _, hit := range scanAllStreams(t, e.url, needles...) {
			t.Errorf("plain text on the bus: %s", hit)
		}
		if len(scanAllStreams(t, e.url, "secretKeyRef")) == 0 {
			t.Error("the scan does not even find the pod's spec: it sees nothing")
		}
		out, _, err := e.cli("get", "secret", "db", "-o", "yaml")
		if err == nil && strings.Contains(out, trustSecretPlain) {
			t.Errorf("get secret shows the plain text:\n%s", out)
		}
	})

	var unsigned string
	t.Run("unsigned commit rejected, last good revision kept", func(t *testing.T) {
		e.t = t
		r.write("settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: red\n")
		unsigned = r.commit("red, unsigned")
		rec := e.trustRecord(unsigned, 30*time.Second)
		if rec.Result != "Rejected" || rec.Signature == nil || rec.Signature.Status != "unsigned" ||
			len(rec.Errors) == 0 || !strings.Contains(rec.Errors[0], unsigned[:12]) || !strings.Contains(rec.Errors[0], "is not signed") {
			t.Fatalf("record %+v signature %+v", rec, rec.Signature)
		}
		src, err := e.source()
		if err != nil {
			t.Fatal(err)
		}
		if src.Status.AppliedRevision != signed || src.Status.AttemptedRevision != unsigned {
			t.Errorf("source status %+v", src.Status)
		}
		var cm struct {
			Data map[string]string `json:"data"`
		}
		if err := e.getJSON(&cm, "get", "configmap", "settings", "-o", "json"); err != nil {
			t.Fatal(err)
		}
		if cm.Data["color"] != "blue" {
			t.Errorf("color %q: the unsigned revision was applied", cm.Data["color"])
		}
	})

	t.Run("ssh signed commit applied", func(t *testing.T) {
		e.t = t
		r.write("settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: green\n")
		sshSigned := commitWith(sshSign, "green, signed with SSH")
		rec := e.trustRecord(sshSigned, 30*time.Second)
		if rec.Result != "Applied" || rec.Signature == nil || rec.Signature.Status != "verified" || rec.Signature.Key != sshFP || rec.Signature.Signer != "sam@example.com" {
			t.Fatalf("record %+v signature %+v", rec, rec.Signature)
		}
	})

	t.Run("scale writes a commit the cluster applies", func(t *testing.T) {
		e.t = t
		// Commits written by `scale` are not signed: follow the repository
		// without a policy from here on.
		e.stopUp()
		e.startUpWith(r.dir, "--sops-age-key-file", ageKey)
		// scale reads the policy from the root Source object, which the
		// new run rewrites shortly after it is up: wait for that.
		checkFor(t, 15*time.Second, "the root Source without a verify policy", func() error {
			src, err := e.source()
			if err == nil && src.Spec.Verify != nil {
				err = fmt.Errorf("source %s still verifies (mode %s)", src.Metadata.Name, src.Spec.Verify.Mode)
			}
			return err
		})
		before := r.git("rev-parse", "HEAD")
		out, stderr, err := e.cli("scale", "deployment/vault-web", "--replicas", "2", "--author", "Sam Scaler <sam@example.com>")
		if err != nil {
			t.Fatalf("scale: %v %s", err, stderr)
		}
		head := r.git("rev-parse", "HEAD")
		if head == before || !strings.Contains(out, "scale deployment/vault-web to 2 replicas") {
			t.Fatalf("no commit: %s", out)
		}
		if got := r.git("log", "-1", "--format=%an <%ae>|%s"); got != "Sam Scaler <sam@example.com>|scale deployment/vault-web to 2 replicas" {
			t.Errorf("commit %q", got)
		}
		if diff := r.git("diff", before, head); !strings.Contains(diff, "-  replicas: 1\n+  replicas: 2") || strings.Count(diff, "\n+") != 2 {
			t.Errorf("diff:\n%s", diff)
		}
		rec := e.trustRecord(head, 30*time.Second)
		if rec.Result != "Applied" {
			t.Fatalf("record %+v", rec)
		}
		e.readyPods("vault-web", 2, 90*time.Second)
	})
}
