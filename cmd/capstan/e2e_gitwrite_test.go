//go:build linux && !nodeonly

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/capstan-io/capstan/sources/git"
)

// Tests of push-to-deploy for declared sources and of the commits the
// control plane writes for `capstan scale`. They run `capstan server` (the
// bus, the control plane and the sources, no node: no Podman needed)
// against repositories served over smart HTTP by git's own http-backend,
// behind basic auth where credentials matter.

// gitUser is an account of the test git server.
type gitUser struct {
	password string
	write    bool
}

// gitServer serves the bare repositories of a directory over smart HTTP.
// With users, every request needs basic auth, and a push needs a user
// with write access (403 otherwise); without, anyone reads and pushes.
type gitServer struct {
	t    *testing.T
	root string
	url  string
}

func newGitServer(t *testing.T, users map[string]gitUser) *gitServer {
	t.Helper()
	backend := gitHTTPBackend
	if p, err := exec.Command("git", "--exec-path").Output(); err == nil {
		backend = filepath.Join(strings.TrimSpace(string(p)), "git-http-backend")
	}
	if !fileExists(backend) {
		t.Skipf("git-http-backend not found at %s", backend)
	}
	s := &gitServer{t: t, root: t.TempDir()}
	h := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1", "HOME=" + s.root}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		push := strings.HasSuffix(r.URL.Path, "/git-receive-pack") || r.URL.Query().Get("service") == "git-receive-pack"
		if users != nil {
			name, pw, ok := r.BasicAuth()
			u, known := users[name]
			if !ok || !known || u.password != pw {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			if push && !u.write {
				http.Error(w, name+" may not push", http.StatusForbidden)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// publish makes a bare copy of r served as <name>.git, open to pushes,
// and returns its directory and URL.
func (s *gitServer) publish(r *gitRepo, name string) (dir, url string) {
	dir = filepath.Join(s.root, name+".git")
	r.git("clone", "-q", "--bare", r.dir, dir)
	r.git("-C", dir, "config", "http.receivepack", "true")
	return dir, s.url + "/" + name + ".git"
}

// startServer runs `capstan server` following repoURL with extra flags,
// and waits until the root source has applied a revision.
func (e *e2e) startServer(repoURL string, extra ...string) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := &upRun{cancel: cancel, done: make(chan error, 1), out: &syncBuffer{}}
	args := append([]string{"server", "--repo", repoURL, "--data-dir", e.dataDir, "--listen", e.listen,
		"--poll-interval", "1h", "--log-level", "debug"}, extra...)
	go func() { u.done <- Run(ctx, args, u.out, u.out) }()
	e.up = u
	e.root.Cleanup(func() {
		if err := e.stopRun(u); err != nil {
			e.root.Errorf("capstan server at cleanup: %v", err)
		}
		if e.root.Failed() || os.Getenv("CAPSTAN_E2E_LOGS") == "1" {
			e.root.Logf("output of capstan server:\n%s", u.out.String())
		}
	})
	checkFor(t, 60*time.Second, "root source applied", func() error {
		select {
		case err := <-u.done:
			u.done <- err
			t.Fatalf("capstan server exited early: %v\n%s", err, u.out.String())
		default:
		}
		if s, err := e.sourceNamed("root"); err != nil || s.Status.AppliedRevision == "" {
			return fmt.Errorf("root not applied: %v %+v", err, s.Status)
		}
		return nil
	})
}

// newServerE2E is a test world without a node: no Podman needed.
func newServerE2E(t *testing.T) *e2e {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	port := freePort(t)
	return &e2e{t: t, root: t, dataDir: t.TempDir(), listen: fmt.Sprintf("127.0.0.1:%d", port),
		url: fmt.Sprintf("nats://127.0.0.1:%d", port), repo: newGitRepo(t)}
}

func (e *e2e) sourceNamed(name string) (sourceJSON, error) {
	var list struct {
		Items []sourceJSON `json:"items"`
	}
	if err := e.getJSON(&list, "get", "sources", "-o", "json"); err != nil {
		return sourceJSON{}, err
	}
	for _, s := range list.Items {
		if s.Metadata.Name == name {
			return s, nil
		}
	}
	return sourceJSON{}, fmt.Errorf("no source %s", name)
}

func appsColorYAML(color string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: apps-settings\ndata:\n  color: " + color + "\n"
}

// TestE2EWebhookDeclaredSource: a Source declared in Git (not the root),
// polled every hour, over HTTP (so not watched), is fetched when a signed
// push webhook names its repository, in any of the forms forges send, and
// its change is applied; pushes of another repository trigger nothing.
func TestE2EWebhookDeclaredSource(t *testing.T) {
	e := newServerE2E(t)
	apps := newGitRepo(t)
	apps.write("settings.yaml", appsColorYAML("blue"))
	first := apps.commit("blue")
	bare, appsURL := newGitServer(t, nil).publish(apps, "apps")
	e.repo.write("apps-source.yaml", appsSourceYAML(appsURL, ""))
	e.repo.commit("declare apps")

	const secret = "declared-source-webhook-secret"
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hookAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e.startServer(e.repo.dir, "--webhook-listen", hookAddr, "--webhook-secret-file", secretFile)
	color := func() string {
		d, err := e.configMapData("apps-settings")
		if err != nil {
			return err.Error()
		}
		return d["color"]
	}
	checkFor(t, 30*time.Second, "apps applied", func() error {
		if s, err := e.sourceNamed("apps"); err != nil || s.Status.AppliedRevision != first || color() != "blue" {
			return fmt.Errorf("apps %+v (%v), color %q", s.Status, err, color())
		}
		return nil
	})

	apps.write("settings.yaml", appsColorYAML("red"))
	second := apps.commit("red")
	apps.git("push", "-q", bare, "main")
	hook := "http://" + hookAddr + "/hooks/github"
	// GitHub names the repository by its https and ssh addresses; neither
	// is spelled as the Source's URL.
	push := func(cloneURL, sshURL string) string {
		return fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"full_name":"acme/apps","default_branch":"main","clone_url":%q,"ssh_url":%q}}`,
			second, cloneURL, sshURL)
	}
	send := func(body, key string) (int, string) {
		return postHook(t, hook, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": githubSignature(key, body)}, body)
	}
	host := strings.TrimPrefix(strings.TrimSuffix(appsURL, "/apps.git"), "http://")
	host, _, _ = strings.Cut(host, ":")
	ours := push(strings.TrimSuffix(appsURL, ".git")+"/", "git@"+host+":apps.git")
	if code, msg := send(ours, "wrong"); code != 401 {
		t.Fatalf("bad signature: %d %q, want 401", code, msg)
	}
	if code, msg := send(push("https://forge.example.com/acme/other.git", "git@forge.example.com:acme/other.git"), secret); code != 202 {
		t.Fatalf("push of another repository: %d %q, want 202", code, msg)
	}
	holdFor(t, 2*time.Second, "nothing applied without a webhook of its repository", func() error {
		if c := color(); c != "blue" {
			return fmt.Errorf("color %q", c)
		}
		return nil
	})

	code, msg := send(ours, secret)
	if code != 200 || msg != "triggered apps" {
		t.Fatalf("signed push: %d %q, want 200 \"triggered apps\" (the root follows another repository)", code, msg)
	}
	checkFor(t, 10*time.Second, "the change applied after the webhook", func() error {
		if c := color(); c != "red" {
			return fmt.Errorf("color %q", c)
		}
		return nil
	})
	if rec := e.auditRecord(second, 10*time.Second); rec.Source != "apps" || rec.Result != "Applied" {
		t.Fatalf("audit record %+v", rec)
	}
}

// testSigningKey makes an OpenPGP key: its armored private key in a file,
// its armored public key, and a signer for test commits.
func testSigningKey(t *testing.T) (file, public string, signer gogit.Signer) {
	t.Helper()
	e, err := openpgp.NewEntity("Capstan Control Plane", "", "capstan@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var priv, pub bytes.Buffer
	w, _ := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	if err := e.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w, _ = armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	file = filepath.Join(t.TempDir(), "signing.asc")
	if err := os.WriteFile(file, priv.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, _, err = git.LoadSigner(file)
	if err != nil {
		t.Fatal(err)
	}
	return file, pub.String(), signer
}

// commitSigned commits everything in r with go-git, signed.
func commitSigned(t *testing.T, r *gitRepo, signer gogit.Signer, msg string) string {
	t.Helper()
	repo, err := gogit.PlainOpen(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.AddWithOptions(&gogit.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	h, err := wt.Commit(msg, &gogit.CommitOptions{Signer: signer,
		Author: &object.Signature{Name: e2eAuthorName, Email: e2eAuthorEmail, When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func gitSecretYAML(user, password string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: apps-git, namespace: capstan-system}\nstringData: {username: %s, password: %s}\n", user, password)
}

// TestE2EScaleWithSourceCredentials: `capstan scale` of a workload that a
// declared Source brings from a repository needing credentials is written
// by the control plane: it fails clearly while the Source's Secret gives
// read access only, then pushes with the Secret's credentials, signs with
// --git-signing-key so the Source's OpenPGP `verify: head` policy accepts
// the commit, and the sync applies it.
func TestE2EScaleWithSourceCredentials(t *testing.T) {
	e := newServerE2E(t)
	keyFile, public, signer := testSigningKey(t)
	srv := newGitServer(t, map[string]gitUser{"reader": {password: "read-pw"}, "writer": {password: "write-pw", write: true}})
	apps := newGitRepo(t)
	apps.write("worker.yaml", appsWorkerYAML())
	first := commitSigned(t, apps, signer, "apps: worker, signed")
	bare, appsURL := srv.publish(apps, "apps")

	indented := "    " + strings.ReplaceAll(strings.TrimSpace(public), "\n", "\n    ")
	e.repo.write("apps-source.yaml", appsSourceYAML(appsURL, "  secretRef: {name: apps-git}\n  verify: {mode: head, secretRef: {name: apps-keys}}\n"))
	e.repo.write("apps-keys.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: apps-keys, namespace: capstan-system}\nstringData:\n  control-plane.asc: |\n"+indented+"\n")
	e.repo.write("apps-git.yaml", gitSecretYAML("reader", "read-pw"))
	e.repo.commit("declare apps, read-only credentials")
	const hookSecret = "scale-test-webhook"
	hookFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(hookFile, []byte(hookSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	hookAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e.startServer(e.repo.dir, "--git-signing-key", keyFile, "--webhook-listen", hookAddr, "--webhook-secret-file", hookFile)
	checkFor(t, 30*time.Second, "apps applied", func() error {
		if s, err := e.sourceNamed("apps"); err != nil || s.Status.AppliedRevision != first {
			return fmt.Errorf("apps %+v (%v), want applied %s", s.Status, err, first)
		}
		return nil
	})
	headOf := func() string { return apps.git("-C", bare, "rev-parse", "main") }
	scale := func(n int) (string, error) {
		out, stderr, err := e.cli("scale", "deployment/apps-worker", "--replicas", fmt.Sprint(n), "--author", "Sam Scaler <sam@example.com>")
		if err != nil {
			return out, fmt.Errorf("%w %s", err, stderr)
		}
		return out, nil
	}

	t.Run("read-only credentials: a clear error, nothing pushed", func(t *testing.T) {
		_, err := scale(3)
		if err == nil || !strings.Contains(err.Error(), "no write access") || !strings.Contains(err.Error(), "Secret capstan-system/apps-git") {
			t.Fatalf("scale: %v, want no write access naming the Secret", err)
		}
		t.Logf("scale said: %v", err)
		if strings.Contains(err.Error(), "read-pw") || strings.Contains(e.up.out.String(), "read-pw") {
			t.Fatal("the password appears in the error or the log")
		}
		if headOf() != first {
			t.Fatal("something was pushed")
		}
	})

	t.Run("signed commit pushed with the Source's credentials and applied", func(t *testing.T) {
		e.t = t
		e.repo.write("apps-git.yaml", gitSecretYAML("writer", "write-pw"))
		e.repo.commit("apps: write access")
		var out string
		// The source restarts with its new Secret within a moment; until
		// then a scale fails with the old credentials.
		checkFor(t, 30*time.Second, "scale with write access", func() error {
			var err error
			out, err = scale(3)
			return err
		})
		head := headOf()
		if head == first || !strings.Contains(out, "scale deployment/apps-worker to 3 replicas (commit "+head[:12]) || !strings.Contains(out, "pushed by the control plane") {
			t.Fatalf("scale said %q; the branch is at %s", out, head)
		}
		t.Logf("scale said: %s", out)
		if got := apps.git("-C", bare, "log", "-1", "--format=%an <%ae>|%cn|%s|%G?", "main"); !strings.HasPrefix(got, "Sam Scaler <sam@example.com>|Sam Scaler|scale deployment/apps-worker to 3 replicas|") {
			t.Errorf("commit %q", got)
		}
		if body := apps.git("-C", bare, "cat-file", "commit", head); !strings.Contains(body, "gpgsig -----BEGIN PGP SIGNATURE-----") {
			t.Errorf("the commit is not signed:\n%s", body)
		}
		if diff := apps.git("-C", bare, "diff", first, head); !strings.Contains(diff, "-  replicas: 1\n+  replicas: 3") || strings.Count(diff, "\n+") != 2 {
			t.Errorf("diff:\n%s", diff)
		}
		rec := e.trustRecord(head, 20*time.Second)
		if rec.Result != "Applied" || rec.Signature == nil || rec.Signature.Status != "verified" {
			t.Fatalf("audit record %+v signature %+v", rec, rec.Signature)
		}
		var d struct {
			Spec struct {
				Replicas int `json:"replicas"`
			} `json:"spec"`
		}
		if err := e.getJSON(&d, "get", "deployment", "apps-worker", "-o", "json"); err != nil || d.Spec.Replicas != 3 {
			t.Fatalf("deployment replicas %d (%v), want 3", d.Spec.Replicas, err)
		}
	})

	t.Run("rollout undo through the control plane", func(t *testing.T) {
		e.t = t
		// A new template, pushed by someone else and announced by a
		// webhook: revision 2.
		apps.git("pull", "-q", "--ff-only", bare, "main")
		worker := strings.Replace(appsWorkerYAML(), "sleep 5", "sleep 6", 1)
		worker = strings.Replace(worker, "replicas: 1", "replicas: 3", 1)
		apps.write("worker.yaml", worker)
		changed := commitSigned(t, apps, signer, "worker sleeps 6")
		apps.git("push", "-q", bare, "main")
		if code, msg := postHook(t, "http://"+hookAddr+"/hooks/generic", map[string]string{"Authorization": "Bearer " + hookSecret}, `{"source":"apps"}`); code != 200 {
			t.Fatalf("webhook: %d %q", code, msg)
		}
		if rec := e.trustRecord(changed, 20*time.Second); rec.Result != "Applied" {
			t.Fatalf("audit record %+v", rec)
		}
		var out string
		checkFor(t, 20*time.Second, "undo to revision 1", func() error {
			var stderr string
			var err error
			out, stderr, err = e.cli("rollout", "undo", "deployment/apps-worker", "--author", "Sam Scaler <sam@example.com>")
			if err != nil {
				return fmt.Errorf("%w %s", err, stderr) // until the controller made revision 2
			}
			return nil
		})
		head := headOf()
		if !strings.Contains(out, "roll back deployment/apps-worker to revision 1") || !strings.Contains(out, "(commit "+head[:12]) {
			t.Fatalf("undo said %q; the branch is at %s", out, head)
		}
		diff := apps.git("-C", bare, "diff", changed, head)
		var added, removed []string
		for _, l := range strings.Split(diff, "\n") {
			switch {
			case strings.HasPrefix(l, "+") && !strings.HasPrefix(l, "+++"):
				added = append(added, l)
			case strings.HasPrefix(l, "-") && !strings.HasPrefix(l, "---"):
				removed = append(removed, l)
			}
		}
		if len(added) != 1 || len(removed) != 1 || !strings.Contains(added[0], "sleep 5") || !strings.Contains(removed[0], "sleep 6") {
			t.Errorf("undo diff (want the command back, the rest kept):\n%s", diff)
		}
		if rec := e.trustRecord(head, 20*time.Second); rec.Result != "Applied" || rec.Signature == nil || rec.Signature.Status != "verified" {
			t.Fatalf("audit record %+v", rec)
		}
	})
}

// TestE2EScaleLocalSigned: for a local repository the CLI writes the
// commit itself. Under the root's signature policy it refuses to write an
// unsigned commit, and with --git-signing-key the signed commit is
// verified and applied.
func TestE2EScaleLocalSigned(t *testing.T) {
	e := newServerE2E(t)
	keyFile, public, signer := testSigningKey(t)
	keys := filepath.Join(t.TempDir(), "trusted.asc")
	if err := os.WriteFile(keys, []byte(public), 0o600); err != nil {
		t.Fatal(err)
	}
	e.repo.write("worker.yaml", appsWorkerYAML())
	first := commitSigned(t, e.repo, signer, "worker, signed")
	e.startServer(e.repo.dir, "--verify", "head", "--verify-keys", keys)
	if s, _ := e.sourceNamed("root"); s.Status.AppliedRevision != first {
		t.Fatalf("root applied %q, want %s", s.Status.AppliedRevision, first)
	}
	args := []string{"scale", "deployment/apps-worker", "--replicas", "2", "--author", "Sam Scaler <sam@example.com>"}
	_, stderr, err := e.cli(args...)
	if err == nil || !strings.Contains(err.Error(), "verifies commit signatures (mode head): an unsigned commit would be rejected") {
		t.Fatalf("unsigned scale: %v %s, want a refusal", err, stderr)
	}
	if head := e.repo.git("rev-parse", "HEAD"); head != first {
		t.Fatal("an unsigned commit was written")
	}
	out, stderr, err := e.cli(append(args, "--git-signing-key", keyFile)...)
	if err != nil {
		t.Fatalf("signed scale: %v %s", err, stderr)
	}
	head := e.repo.git("rev-parse", "HEAD")
	if head == first || !strings.Contains(out, "(commit "+head[:12]+" to "+e.repo.dir+" (branch main))") {
		t.Fatalf("scale said %q; HEAD is %s", out, head)
	}
	rec := e.trustRecord(head, 20*time.Second)
	if rec.Result != "Applied" || rec.Signature == nil || rec.Signature.Status != "verified" {
		t.Fatalf("audit record %+v signature %+v", rec, rec.Signature)
	}
}
