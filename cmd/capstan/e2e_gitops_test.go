//go:build linux && !nodeonly

package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The end-to-end tests of GitOps in depth: a push webhook deploying at once
// with polling set to an hour, `capstan diff` on branches with its exit
// codes, the history of one object through several commits, and prune
// protection. They run `capstan up` on real Podman, like the others.

const gitHTTPBackend = "/usr/lib/git-core/git-http-backend"

// serveGitHTTP serves the test repository over smart HTTP with git's own
// http-backend (through net/http/cgi), and returns its URL. A repository
// reached over HTTP is only polled, never watched with fsnotify, so only
// the webhook (or the poll) can make Capstan see a commit.
func serveGitHTTP(t *testing.T, r *gitRepo) string {
	t.Helper()
	backend := gitHTTPBackend
	if p, err := exec.Command("git", "--exec-path").Output(); err == nil {
		backend = filepath.Join(strings.TrimSpace(string(p)), "git-http-backend")
	}
	if !fileExists(backend) {
		t.Skipf("git-http-backend not found at %s", backend)
	}
	srv := httptest.NewServer(&cgi.Handler{
		Path: backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(r.dir), "GIT_HTTP_EXPORT_ALL=1", "HOME=" + r.dir},
	})
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(r.dir) + "/.git"
}

// postHook sends one webhook delivery and returns the status and reply.
func postHook(t *testing.T, url string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func githubSignature(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// appliedRevision is the source's applied revision, "" before any.
func (e *e2e) appliedRevision() string {
	s, err := e.source()
	if err != nil {
		return ""
	}
	return s.Status.AppliedRevision
}

// TestE2EWebhookDeploy: with polling at an hour and the repository over
// HTTP (so no filesystem watch), a commit is not applied until a signed
// push webhook arrives, and then within seconds. A bad signature and a push
// to another branch trigger nothing.
func TestE2EWebhookDeploy(t *testing.T) {
	e := newE2E(t)
	url := serveGitHTTP(t, e.repo)
	e.repo.write("web.yaml", gitopsDeploy("hooked", 1, ""))
	first := e.repo.commit("deploy hooked")

	const secret = "push-to-deploy-secret"
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hookAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e.startUpWith(url, "--branch", "main", "--resync-interval", "1h",
		"--webhook-listen", hookAddr, "--webhook-secret-file", secretFile)
	e.auditRecord(first, 60*time.Second)
	e.readyPods("hooked", 1, 90*time.Second)

	e.repo.write("web.yaml", gitopsDeploy("hooked", 2, ""))
	second := e.repo.commit("scale hooked to 2")
	notApplied := func() error {
		if got := e.appliedRevision(); got != first {
			return fmt.Errorf("applied %q, want still %s", got, first)
		}
		return nil
	}
	holdFor(t, 3*time.Second, "no webhook, no apply", notApplied)

	hook := "http://" + hookAddr + "/hooks/github"
	push := func(branch string) string {
		return fmt.Sprintf(`{"ref":"refs/heads/%s","after":"%s","repository":{"full_name":"acme/deploy","default_branch":"main"}}`, branch, second)
	}
	body := push("main")
	if code, msg := postHook(t, hook, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": githubSignature("wrong", body)}, body); code != 401 {
		t.Fatalf("bad signature: %d %q, want 401", code, msg)
	}
	other := push("feature")
	if code, msg := postHook(t, hook, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": githubSignature(secret, other)}, other); code != 202 {
		t.Fatalf("push to another branch: %d %q, want 202", code, msg)
	}
	holdFor(t, 2*time.Second, "refused and ignored webhooks apply nothing", notApplied)
	if out := e.up.out.String(); strings.Contains(out, secret) {
		t.Fatal("the secret appears in capstan up's output")
	}
	if n := strings.Count(e.up.out.String(), "webhook refused"); n != 1 {
		t.Errorf("%d log lines for the refused webhook, want 1", n)
	}

	sent := time.Now()
	code, msg := postHook(t, hook, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": githubSignature(secret, body)}, body)
	if code != 200 || !strings.Contains(msg, "triggered root") {
		t.Fatalf("signed push: %d %q, want 200 triggered root", code, msg)
	}
	checkFor(t, 5*time.Second, "applied after the webhook", func() error {
		if got := e.appliedRevision(); got != second {
			return fmt.Errorf("applied %q, want %s", got, second)
		}
		return nil
	})
	t.Logf("webhook to applied: %s", time.Since(sent).Round(time.Millisecond))
	rec := e.auditRecord(second, 10*time.Second)
	if f, ok := rec.change("updated", "Deployment", "hooked"); !ok || !slices.Contains(f, "spec.replicas") {
		t.Fatalf("audit record %+v: want hooked updated in spec.replicas", rec)
	}
	e.readyPods("hooked", 2, 90*time.Second)
}

// diffCLI runs `capstan diff` against the test's bus and returns its
// output and exit code.
func (e *e2e) diffCLI(args ...string) (string, int) {
	e.t.Helper()
	out, stderr, err := e.cli(append([]string{"diff"}, args...)...)
	if err == nil {
		return out, 0
	}
	var ex exitError
	if !errors.As(err, &ex) {
		e.t.Fatalf("capstan diff %v: %v (%s)", args, err, stderr)
	}
	return out, ex.code
}

type objectHistoryJSON struct {
	Object struct {
		Kind      string `json:"kind"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"object"`
	Items []struct {
		Time     string   `json:"time"`
		Source   string   `json:"source"`
		Revision string   `json:"revision"`
		Author   string   `json:"author"`
		Message  string   `json:"message"`
		Result   string   `json:"result"`
		Action   string   `json:"action"`
		Fields   []string `json:"fields"`
	} `json:"items"`
}

// TestE2EGitOps runs one `capstan up` through `capstan diff` on branches
// (exit codes 0, 1, 2, with and without the cluster), the history of one
// object after several commits, and prune protection.
func TestE2EGitOps(t *testing.T) {
	e := newE2E(t)
	e.repo.write("web.yaml", gitopsDeploy("gitops", 1, ""))
	e.repo.write("keep.yaml", gitopsCM("keep", "v1", pruneOffYAML))
	e.repo.write("drop.yaml", gitopsCM("drop", "v1", ""))
	c1 := e.repo.commit("deploy gitops")
	e.startUp()
	e.auditRecord(c1, 60*time.Second)
	e.readyPods("gitops", 1, 90*time.Second)

	t.Run("diff", func(t *testing.T) {
		e.t = t
		defer func() { e.t = e.root }()
		// Branches live in a clone, so the followed repository's HEAD
		// never moves.
		work := t.TempDir()
		e.repo.git("clone", "-q", e.repo.dir, work)
		clone := &gitRepo{t: t, dir: work}
		clone.git("checkout", "-q", "-b", "feature")
		clone.write("web.yaml", gitopsDeploy("gitops", 3, ""))
		clone.write("extra.yaml", gitopsCM("extra", "v1", ""))
		feature := clone.commit("scale gitops, add extra")
		clone.git("checkout", "-q", "-b", "broken", "main")
		clone.write("web.yaml", strings.Replace(gitopsDeploy("gitops", 1, ""), "replicas: 1", "replicas: -1", 1))
		clone.commit("break")

		if out, code := e.diffCLI("--repo", work, "--ref", "main"); code != 0 || !strings.Contains(out, "No changes.") {
			t.Fatalf("main against the cluster: exit %d:\n%s", code, out)
		}
		out, code := e.diffCLI("--repo", work, "--ref", "feature")
		if code != 1 {
			t.Fatalf("feature against the cluster: exit %d, want 1:\n%s", code, out)
		}
		for _, l := range []string{
			fmt.Sprintf("Comparing feature (%s) with the cluster (source root, revision %s)", feature[:12], c1[:12]),
			"+ ConfigMap default/extra created", "~ Deployment default/gitops updated", "    spec.replicas: 1 -> 3",
			"2 changes: 1 created, 1 updated"} {
			if !strings.Contains(out, l+"\n") {
				t.Errorf("no line %q in:\n%s", l, out)
			}
		}
		out, code = e.diffCLI("--repo", work, "--ref", "feature", "-o", "markdown")
		if code != 1 || !strings.HasPrefix(out, "### Capstan diff: 2 changes") || !strings.Contains(out, "<details>") {
			t.Fatalf("feature as markdown: exit %d:\n%s", code, out)
		}
		if out, code = e.diffCLI("--repo", work, "--ref", "broken"); code != 2 || !strings.Contains(out, "web.yaml:6:") {
			t.Fatalf("broken: exit %d, want 2 with web.yaml:6:\n%s", code, out)
		}
		// Without a cluster, as CI runs it: feature against main.
		if out, code = e.diffCLI("--repo", work, "--ref", "feature", "--base", "main", "--server", "nats://127.0.0.1:1"); code != 1 ||
			!strings.Contains(out, fmt.Sprintf("with main (%s)", c1[:12])) {
			t.Fatalf("feature against main offline: exit %d:\n%s", code, out)
		}
		// Diffing changed nothing.
		if got := e.appliedRevision(); got != c1 {
			t.Fatalf("applied %s after diffs, want %s", got, c1)
		}
	})

	t.Run("history of one object", func(t *testing.T) {
		e.t = t
		defer func() { e.t = e.root }()
		e.repo.write("web.yaml", gitopsDeploy("gitops", 2, ""))
		c2 := e.repo.commit("scale gitops to 2")
		e.auditRecord(c2, 30*time.Second)
		e.repo.write("drop.yaml", gitopsCM("drop", "v2", "")) // another object only
		c3 := e.repo.commit("change drop")
		e.auditRecord(c3, 30*time.Second)
		e.repo.write("web.yaml", gitopsDeploy("gitops", 2, "  labels: {tier: front}\n"))
		c4 := e.repo.commit("label gitops")
		e.auditRecord(c4, 30*time.Second)

		var h objectHistoryJSON
		if err := e.getJSON(&h, "history", "deployment/gitops", "-o", "json", "--since", "1h"); err != nil {
			t.Fatal(err)
		}
		if h.Object.Kind != "Deployment" || h.Object.Namespace != "default" || h.Object.Name != "gitops" {
			t.Fatalf("object %+v", h.Object)
		}
		type row struct{ rev, action, fields, msg string }
		var got []row
		for _, it := range h.Items {
			got = append(got, row{it.Revision, it.Action, strings.Join(it.Fields, ","), it.Message})
			if it.Author != e2eAuthorName+" <"+e2eAuthorEmail+">" || it.Result != "Applied" || it.Source != "root" || it.Time == "" {
				t.Errorf("item %+v", it)
			}
		}
		want := []row{{c1, "created", "", "deploy gitops"}, {c2, "updated", "spec.replicas", "scale gitops to 2"},
			{c4, "updated", "metadata.labels.tier", "label gitops"}}
		if !slices.Equal(got, want) {
			t.Fatalf("history of deployment/gitops:\n got %+v\nwant %+v", got, want)
		}
		out, stderr, err := e.cli("history", "deploy/gitops")
		if err != nil {
			t.Fatalf("history deploy/gitops: %v (%s)", err, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[2], c2[:12]) ||
			!strings.Contains(lines[2], "spec.replicas") || !strings.Contains(lines[3], "label gitops") {
			t.Fatalf("history table:\n%s", out)
		}
		if err := e.getJSON(&h, "history", "configmap/drop", "-o", "json"); err != nil || len(h.Items) != 2 || h.Items[1].Revision != c3 {
			t.Fatalf("history of configmap/drop: %+v, %v", h.Items, err)
		}
		if out, _, err := e.cli("history", "deployment/nothing"); err != nil || !strings.Contains(out, "No changes of deployment/nothing") {
			t.Fatalf("history of an unknown object: %q, %v", out, err)
		}
		if _, _, err := e.cli("history", "deployment"); err == nil {
			t.Fatal("history deployment (no name) is no error")
		}
	})

	t.Run("prune protection", func(t *testing.T) {
		e.t = t
		defer func() { e.t = e.root }()
		e.repo.remove("keep.yaml")
		e.repo.remove("drop.yaml")
		c5 := e.repo.commit("remove keep and drop")
		rec := e.auditRecord(c5, 30*time.Second)
		if _, ok := rec.change("kept", "ConfigMap", "keep"); !ok {
			t.Errorf("audit record %+v: keep not recorded as kept", rec)
		}
		if _, ok := rec.change("deleted", "ConfigMap", "drop"); !ok {
			t.Errorf("audit record %+v: drop not deleted", rec)
		}
		checkFor(t, 10*time.Second, "drop deleted", func() error {
			if _, _, err := e.cli("get", "configmap", "drop"); err == nil {
				return fmt.Errorf("configmap drop still there")
			}
			return nil
		})
		holdFor(t, 2*time.Second, "keep kept", func() error {
			_, stderr, err := e.cli("get", "configmap", "keep")
			if err != nil {
				return fmt.Errorf("configmap keep: %v (%s)", err, stderr)
			}
			return nil
		})
		var h objectHistoryJSON
		if err := e.getJSON(&h, "history", "cm/keep", "-o", "json"); err != nil || len(h.Items) != 2 || h.Items[1].Action != "kept" {
			t.Fatalf("history of configmap/keep: %+v, %v", h.Items, err)
		}
		// A restart does not prune it either, nor record it again.
		e.stopUp()
		e.startUp()
		holdFor(t, 3*time.Second, "keep kept across a restart", func() error {
			_, stderr, err := e.cli("get", "configmap", "keep")
			if err != nil {
				return fmt.Errorf("configmap keep: %v (%s)", err, stderr)
			}
			return nil
		})
		if err := e.getJSON(&h, "history", "cm/keep", "-o", "json"); err != nil || len(h.Items) != 2 {
			t.Fatalf("history of configmap/keep after a restart: %+v, %v", h.Items, err)
		}
		// What is applied is no change, the kept object included.
		if out, code := e.diffCLI("--repo", e.repo.dir); code != 0 {
			t.Fatalf("diff of the applied head: exit %d:\n%s", code, out)
		}
	})
}
