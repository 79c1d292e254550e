package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

const secret = "It's a Secret to Everybody"

func sign(key, body string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// TestSignatureVector checks the HMAC against the example GitHub publishes
// ("Validating webhook deliveries"), so sign is not merely checked against
// itself.
func TestSignatureVector(t *testing.T) {
	t.Parallel()
	const want = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got := sign(secret, "Hello, World!"); got != want {
		t.Fatalf("sign = %s, want %s", got, want)
	}
	if !validHMAC(want, []byte("Hello, World!"), []byte(secret)) {
		t.Fatal("validHMAC refuses GitHub's example")
	}
	for _, bad := range []string{"", "zz", want[:62], want + "00", strings.ToUpper(want[:1]) + "0" + want[2:]} {
		if validHMAC(bad, []byte("Hello, World!"), []byte(secret)) {
			t.Errorf("validHMAC accepts %q", bad)
		}
	}
}

// Trimmed but real-shaped push payloads of each forge.
const (
	githubPush = `{"ref":"refs/heads/%s","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"76ae82c7b1a177c8d03f9e96e0adf2466113728f",
"repository":{"id":1296269,"name":"deploy","full_name":"acme/deploy","default_branch":"main","clone_url":"https://github.com/acme/deploy.git"},
"pusher":{"name":"eve","email":"eve@example.com"},"head_commit":{"id":"76ae82c7b1a177c8d03f9e96e0adf2466113728f","message":"scale web"}}`
	githubPing   = `{"zen":"Design for failure.","hook_id":1,"hook":{"type":"Repository","events":["push"]}}`
	githubIssues = `{"action":"opened","issue":{"number":1}}`
	gitlabPush   = `{"object_kind":"push","event_name":"push","before":"95790bf891e76fee5e1747ab589903a6a1f80f22","after":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
"ref":"refs/heads/%s","user_username":"eve","project":{"id":15,"name":"deploy","default_branch":"main","git_http_url":"https://gitlab.example.com/acme/deploy.git"},
"commits":[{"id":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7","message":"scale web"}],"total_commits_count":1}`
	giteaPush = `{"ref":"refs/heads/%s","before":"28e1879d029cb852e4844d9c718537df08844e03","after":"bffeb74224043ba2feb48d137756c8a9331c449a",
"repository":{"id":1,"name":"deploy","full_name":"acme/deploy","default_branch":"main","clone_url":"https://gitea.example.com/acme/deploy.git"},
"pusher":{"login":"eve","email":"eve@example.com"}}`
	tagPush = `{"ref":"refs/tags/v1.0.0","repository":{"default_branch":"main"}}`
)

// recorder counts triggers per target.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) target(name, branch string) Target {
	return Target{Name: name, Branch: branch, Trigger: func() {
		r.mu.Lock()
		r.got = append(r.got, name)
		r.mu.Unlock()
	}}
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.got
	r.got = nil
	return g
}

// logBuffer is a slog handler's output, safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestDeliveries(t *testing.T) {
	t.Parallel()
	type tc struct {
		name    string
		path    string
		method  string
		header  map[string]string
		body    string
		status  int
		trigger []string // targets triggered
		reply   string   // a substring of the answer
	}
	gh := func(event, body, sig string) map[string]string {
		return map[string]string{"X-GitHub-Event": event, "X-Hub-Signature-256": sig, "Content-Type": "application/json"}
	}
	ghBody := fmt.Sprintf(githubPush, "main")
	glBody := fmt.Sprintf(gitlabPush, "main")
	gtBody := fmt.Sprintf(giteaPush, "main")
	form := "payload=" + url.QueryEscape(ghBody)
	cases := []tc{
		{name: "github push to the watched branch", path: "/hooks/github", header: gh("push", ghBody, "sha256="+sign(secret, ghBody)),
			body: ghBody, status: 200, trigger: []string{"root", "default"}, reply: "triggered root, default"},
		{name: "github push to another branch", path: "/hooks/github",
			header: gh("push", "", "sha256="+sign(secret, fmt.Sprintf(githubPush, "feature"))),
			body:   fmt.Sprintf(githubPush, "feature"), status: 202, reply: "ignored"},
		{name: "github push to the second source's branch", path: "/hooks/github",
			header: gh("push", "", "sha256="+sign(secret, fmt.Sprintf(githubPush, "release/1"))),
			body:   fmt.Sprintf(githubPush, "release/1"), status: 200, trigger: []string{"release"}},
		{name: "github tag push", path: "/hooks/github", header: gh("push", "", "sha256="+sign(secret, tagPush)),
			body: tagPush, status: 202, reply: "no source follows it (push to refs/tags/v1.0.0"},
		{name: "github pull request ref", path: "/hooks/github", header: gh("push", "", "sha256="+sign(secret, `{"ref":"refs/pull/1/head"}`)),
			body: `{"ref":"refs/pull/1/head"}`, status: 202, reply: "not a branch nor a tag"},
		{name: "github ping", path: "/hooks/github", header: gh("ping", "", "sha256="+sign(secret, githubPing)),
			body: githubPing, status: 200, reply: "pong"},
		{name: "github other event", path: "/hooks/github", header: gh("issues", "", "sha256="+sign(secret, githubIssues)),
			body: githubIssues, status: 202, reply: "not a push"},
		{name: "github form-encoded", path: "/hooks/github",
			header: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(secret, form), "Content-Type": "application/x-www-form-urlencoded"},
			body:   form, status: 200, trigger: []string{"root", "default"}},
		{name: "github wrong secret", path: "/hooks/github", header: gh("push", "", "sha256="+sign("guess", ghBody)),
			body: ghBody, status: 401},
		{name: "github signature of another body", path: "/hooks/github", header: gh("push", "", "sha256="+sign(secret, ghBody)),
			body: ghBody + " ", status: 401},
		{name: "github sha1 signature only", path: "/hooks/github",
			header: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=0123"}, body: ghBody, status: 401},
		{name: "github no signature", path: "/hooks/github", header: map[string]string{"X-GitHub-Event": "push"}, body: ghBody, status: 401},
		{name: "github signed garbage", path: "/hooks/github", header: gh("push", "", "sha256="+sign(secret, "{not json")),
			body: "{not json", status: 400},

		{name: "gitlab push", path: "/hooks/gitlab", header: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret},
			body: glBody, status: 200, trigger: []string{"root", "default"}},
		{name: "gitlab push to another branch", path: "/hooks/gitlab", header: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret},
			body: fmt.Sprintf(gitlabPush, "feature"), status: 202},
		{name: "gitlab merge request", path: "/hooks/gitlab", header: map[string]string{"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": secret},
			body: `{"object_kind":"merge_request"}`, status: 202},
		{name: "gitlab wrong token", path: "/hooks/gitlab", header: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret + "x"},
			body: glBody, status: 401},
		{name: "gitlab token prefix", path: "/hooks/gitlab", header: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret[:5]},
			body: glBody, status: 401},
		{name: "gitlab no token", path: "/hooks/gitlab", header: map[string]string{"X-Gitlab-Event": "Push Hook"}, body: glBody, status: 401},

		{name: "gitea push", path: "/hooks/gitea", header: map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign(secret, gtBody)},
			body: gtBody, status: 200, trigger: []string{"root", "default"}},
		{name: "forgejo push", path: "/hooks/forgejo",
			header: map[string]string{"X-Forgejo-Event": "push", "X-Forgejo-Signature": sign(secret, gtBody), "X-Gitea-Event": "push", "X-Gitea-Signature": sign(secret, gtBody)},
			body:   gtBody, status: 200, trigger: []string{"root", "default"}},
		{name: "gitea push to another branch", path: "/hooks/gitea",
			header: map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign(secret, fmt.Sprintf(giteaPush, "dev"))},
			body:   fmt.Sprintf(giteaPush, "dev"), status: 202},
		{name: "gitea bad signature", path: "/hooks/gitea", header: map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign("nope", gtBody)},
			body: gtBody, status: 401},
		{name: "forgejo signature with a prefix", path: "/hooks/forgejo",
			header: map[string]string{"X-Forgejo-Event": "push", "X-Forgejo-Signature": "sha256=" + sign(secret, gtBody)}, body: gtBody, status: 401},

		{name: "generic bearer, no body", path: "/hooks/generic", header: map[string]string{"Authorization": "Bearer " + secret},
			status: 200, trigger: []string{"root", "release", "default"}},
		{name: "generic bearer, branch", path: "/hooks/generic", header: map[string]string{"Authorization": "Bearer " + secret},
			body: `{"branch":"main"}`, status: 200, trigger: []string{"root", "default"}},
		{name: "generic bearer, one source", path: "/hooks/generic", header: map[string]string{"Authorization": "Bearer " + secret},
			body: `{"source":"release"}`, status: 200, trigger: []string{"release"}},
		{name: "generic bearer, unknown source", path: "/hooks/generic", header: map[string]string{"Authorization": "Bearer " + secret},
			body: `{"source":"nope"}`, status: 202},
		{name: "generic hmac, ref", path: "/hooks/generic", header: map[string]string{"X-Capstan-Signature": "sha256=" + sign(secret, `{"ref":"refs/heads/release/1"}`)},
			body: `{"ref":"refs/heads/release/1"}`, status: 200, trigger: []string{"release", "default"}},
		// The generic form names no default branch: a target following
		// the default one is triggered by any branch.
		{name: "generic hmac, other branch", path: "/hooks/generic", header: map[string]string{"X-Capstan-Signature": "sha256=" + sign(secret, `{"branch":"x"}`)},
			body: `{"branch":"x"}`, status: 200, trigger: []string{"default"}},
		{name: "generic hmac, tag", path: "/hooks/generic", header: map[string]string{"X-Capstan-Signature": "sha256=" + sign(secret, `{"ref":"refs/tags/v1"}`)},
			body: `{"ref":"refs/tags/v1"}`, status: 202, reply: "watching root (main), release (release/1)"},
		{name: "generic wrong bearer", path: "/hooks/generic", header: map[string]string{"Authorization": "Bearer nope"}, status: 401},
		{name: "generic basic auth", path: "/hooks/generic", header: map[string]string{"Authorization": "Basic " + secret}, status: 401},
		{name: "generic nothing", path: "/hooks/generic", status: 401},

		{name: "GET", path: "/hooks/github", method: "GET", status: 405},
		{name: "unknown path", path: "/hooks/bitbucket", header: map[string]string{"Authorization": "Bearer " + secret}, status: 404},
	}
	rec := &recorder{}
	logs := &logBuffer{}
	r, err := New(Options{Secret: []byte(secret), Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Targets: []Target{rec.target("root", "main"), rec.target("release", "release/1"), rec.target("default", "")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if method == "" {
				method = "POST"
			}
			req := httptest.NewRequest(method, c.path, strings.NewReader(c.body))
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			r.Handler().ServeHTTP(w, req)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body.String())
			}
			if got := rec.take(); !slices.Equal(got, c.trigger) {
				t.Errorf("triggered %v, want %v", got, c.trigger)
			}
			if !strings.Contains(w.Body.String(), c.reply) {
				t.Errorf("reply %q does not contain %q", w.Body.String(), c.reply)
			}
			if strings.Contains(w.Body.String(), secret) {
				t.Errorf("reply holds the secret: %q", w.Body.String())
			}
		})
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the log holds the secret:\n%s", logs.String())
	}
}

// TestDefaultBranchWithoutPayload: a target following the default branch
// is triggered by any branch push whose payload does not name the default.
func TestDefaultBranchWithoutPayload(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	r, err := New(Options{Secret: []byte(secret), Targets: []Target{rec.target("root", "")}})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"ref":"refs/heads/trunk"}`
	req := httptest.NewRequest("POST", "/hooks/gitea", strings.NewReader(body))
	req.Header.Set("X-Gitea-Event", "push")
	req.Header.Set("X-Gitea-Signature", sign(secret, body))
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, req)
	if w.Code != 200 || !slices.Equal(rec.take(), []string{"root"}) {
		t.Fatalf("status %d %q; want 200 and root triggered", w.Code, w.Body.String())
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	r, err := New(Options{Secret: []byte(secret), MaxBodyBytes: 1024, Targets: []Target{rec.target("root", "")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1024, 1025, 10 << 20} {
		body := `{"branch":"main","pad":"` + strings.Repeat("x", max(0, n-len(`{"branch":"main","pad":""}`))) + `"}`
		req := httptest.NewRequest("POST", "/hooks/generic", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		w := httptest.NewRecorder()
		r.Handler().ServeHTTP(w, req)
		want := http.StatusOK
		if len(body) > 1024 {
			want = http.StatusRequestEntityTooLarge
		}
		if w.Code != want {
			t.Errorf("body of %d bytes: status %d, want %d", len(body), w.Code, want)
		}
		if got := rec.take(); (want == 200) != (len(got) == 1) {
			t.Errorf("body of %d bytes: triggered %v", len(body), got)
		}
	}
}

// TestRefusedLoggedOncePerMinute: a flood of bad signatures from one
// address is one log line a minute; another address gets its own.
func TestRefusedLoggedOncePerMinute(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	r, err := New(Options{Secret: []byte(secret), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.refused.now = func() time.Time { return now }
	send := func(remote string) {
		req := httptest.NewRequest("POST", "/hooks/github", strings.NewReader("{}"))
		req.RemoteAddr = remote
		req.Header.Set("X-Hub-Signature-256", "sha256="+sign("guess", "{}"))
		w := httptest.NewRecorder()
		r.Handler().ServeHTTP(w, req)
		if w.Code != 401 {
			t.Fatalf("status %d", w.Code)
		}
	}
	count := func() int { return strings.Count(logs.String(), "webhook refused") }
	for range 20 {
		send("192.0.2.1:1000")
		send("192.0.2.1:1001") // another port, same address
	}
	if n := count(); n != 1 {
		t.Fatalf("%d log lines for one address, want 1:\n%s", n, logs.String())
	}
	send("192.0.2.2:1000")
	if n := count(); n != 2 {
		t.Fatalf("%d log lines for two addresses, want 2", n)
	}
	now = now.Add(59 * time.Second)
	send("192.0.2.1:1000")
	if n := count(); n != 2 {
		t.Fatalf("logged again within the minute")
	}
	now = now.Add(2 * time.Second)
	send("192.0.2.1:1000")
	if n := count(); n != 3 {
		t.Fatalf("not logged again after the minute")
	}
	if !strings.Contains(logs.String(), "remote=192.0.2.1") {
		t.Errorf("the log does not name the address:\n%s", logs.String())
	}
}

func TestLimiterBounded(t *testing.T) {
	t.Parallel()
	now := time.Now()
	l := &limiter{every: time.Minute, last: map[string]time.Time{}, now: func() time.Time { return now }}
	for i := range 10000 {
		l.allow(fmt.Sprint(i))
	}
	if len(l.last) > maxLimiterKeys {
		t.Fatalf("%d keys remembered", len(l.last))
	}
	now = now.Add(time.Minute)
	if !l.allow("new") {
		t.Fatal("a new address is not logged once the minute is over")
	}
	if len(l.last) > 1024 {
		t.Fatalf("%d keys remembered after the minute", len(l.last))
	}
}

func TestNewNeedsSecret(t *testing.T) {
	t.Parallel()
	if _, err := New(Options{}); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("New without a secret: %v", err)
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecretFile(empty); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("empty file: %v", err)
	}
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadSecretFile(good); err != nil || string(b) != "s3cret" {
		t.Fatalf("ReadSecretFile = %q, %v", b, err)
	}
	if _, err := ReadSecretFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing file is no error")
	}
}

// TestRunServesAndShutsDown runs the real server on a loopback port: a
// signed push over TCP triggers, and Run returns nil soon after its context
// ends, even with a client holding an idle connection.
func TestRunServesAndShutsDown(t *testing.T) {
	t.Parallel()
	triggered := make(chan struct{}, 1)
	r, err := New(Options{Addr: "127.0.0.1:0", Secret: []byte(secret),
		Targets: []Target{{Name: "root", Branch: "main", Trigger: func() { triggered <- struct{}{} }}}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, l) }()

	body := fmt.Sprintf(githubPush, "main")
	req, _ := http.NewRequest("POST", "http://"+l.Addr().String()+"/hooks/github", strings.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	select {
	case <-triggered:
	case <-time.After(5 * time.Second):
		t.Fatal("not triggered")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.DefaultClient.Post("http://"+l.Addr().String()+"/hooks/generic", "", nil); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

func TestRunBadAddress(t *testing.T) {
	t.Parallel()
	r, err := New(Options{Addr: "256.0.0.1:http", Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run on a bad address returned nil")
	}
}

func TestRepositoryKey(t *testing.T) {
	t.Parallel()
	same := [][]string{
		{"https://github.com/acme/deploy.git", "git@github.com:acme/deploy.git", "ssh://git@github.com/acme/deploy",
			"https://GitHub.com/Acme/Deploy/", "http://token@github.com:443/acme/deploy", "git://github.com/acme/deploy.git",
			"ssh://git@github.com:22/acme/deploy.git/", "github.com:acme/deploy"},
		{"http://127.0.0.1:8080/repo/.git", "http://127.0.0.1:9090/repo", "git@127.0.0.1:repo"},
		{"/srv/git/ops", "/srv/git/ops/", "file:///srv/git/ops", "/srv/git/ops.git", "/srv/git/../git/ops"},
	}
	for _, group := range same {
		for _, u := range group[1:] {
			if a, b := RepositoryKey(group[0]), RepositoryKey(u); a != b {
				t.Errorf("%s -> %q, %s -> %q: want the same", group[0], a, u, b)
			}
		}
	}
	differ := [][2]string{
		{"https://github.com/acme/deploy.git", "https://github.com/acme/deploy-prod.git"},
		{"https://github.com/acme/deploy.git", "https://gitlab.com/acme/deploy.git"},
		{"https://github.com/acme/deploy.git", "https://github.com/other/deploy.git"},
		{"git@github.com:acme/deploy.git", "git@github.com:acme/ops.git"},
		{"/srv/git/ops", "/srv/git/OPS"},        // a local path keeps its case
		{"/srv/git/ops", "https://srv/git/ops"}, // a local path is no remote
	}
	for _, d := range differ {
		if a, b := RepositoryKey(d[0]), RepositoryKey(d[1]); a == b {
			t.Errorf("%s and %s both -> %q: want different", d[0], d[1], a)
		}
	}
}

// TestTargetsByRepositoryAndRef: a push triggers the sources of its
// repository (whichever of its addresses they follow) whose ref follows
// the push: branch sources by branch, tag and semver sources by tags,
// pinned sources never.
func TestTargetsByRepositoryAndRef(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	tgt := func(name, url string, spec manifests.SourceSpec) Target {
		spec.URL = url
		return TargetFor(name, spec, rec.target(name, "").Trigger)
	}
	ref := func(r manifests.GitRef) manifests.SourceSpec { return manifests.SourceSpec{Ref: &r} }
	r, err := New(Options{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	r.SetTargets([]Target{
		tgt("root", "/srv/git/root", manifests.SourceSpec{Branch: "main"}),
		tgt("apps", "https://github.com/acme/apps.git", ref(manifests.GitRef{Branch: "main"})),
		tgt("apps-ssh", "git@github.com:acme/apps.git", manifests.SourceSpec{}), // the default branch
		tgt("apps-staging", "ssh://git@github.com/Acme/apps", ref(manifests.GitRef{Branch: "staging"})),
		tgt("apps-v1", "https://github.com/acme/apps", ref(manifests.GitRef{Tag: "v1.0.0"})),
		tgt("apps-semver", "https://github.com/acme/apps", ref(manifests.GitRef{SemVer: "~1.0"})),
		tgt("apps-pinned", "https://github.com/acme/apps", ref(manifests.GitRef{Commit: "0123456789012345678901234567890123456789"})),
		tgt("ops", "https://github.com/acme/ops.git", ref(manifests.GitRef{Branch: "main"})),
		tgt("dir", "", manifests.SourceSpec{}),
	})
	// The repository of every payload: acme/apps.
	const gh = `{"ref":%q,"repository":{"default_branch":"main","clone_url":"https://github.com/acme/apps.git","ssh_url":"git@github.com:acme/apps.git","html_url":"https://github.com/acme/apps"}}`
	const gl = `{"ref":%q,"project":{"default_branch":"main","git_http_url":"https://github.com/acme/apps.git","git_ssh_url":"git@github.com:acme/apps.git"}}`
	cases := []struct {
		name, path, body string
		header           map[string]string
		status           int
		trigger          []string
	}{
		{"github branch", "/hooks/github", fmt.Sprintf(gh, "refs/heads/main"), nil, 200, []string{"apps", "apps-ssh", "dir"}},
		{"github other branch", "/hooks/github", fmt.Sprintf(gh, "refs/heads/staging"), nil, 200, []string{"apps-staging"}},
		{"github followed tag", "/hooks/github", fmt.Sprintf(gh, "refs/tags/v1.0.0"), nil, 200, []string{"apps-v1", "apps-semver"}},
		{"github other tag", "/hooks/github", fmt.Sprintf(gh, "refs/tags/v1.0.1"), nil, 200, []string{"apps-semver"}},
		{"github unfollowed branch", "/hooks/github", fmt.Sprintf(gh, "refs/heads/feature"), nil, 202, nil},
		{"gitlab branch", "/hooks/gitlab", fmt.Sprintf(gl, "refs/heads/main"), nil, 200, []string{"apps", "apps-ssh", "dir"}},
		{"gitea another repository", "/hooks/gitea", `{"ref":"refs/heads/main","repository":{"default_branch":"main","clone_url":"https://github.com/acme/ops.git"}}`, nil, 200, []string{"ops", "dir"}},
		{"generic url", "/hooks/generic", `{"url":"/srv/git/root/","branch":"main"}`, map[string]string{"Authorization": "Bearer " + secret}, 200, []string{"root", "dir"}},
		{"generic pinned by name", "/hooks/generic", `{"source":"apps-pinned"}`, map[string]string{"Authorization": "Bearer " + secret}, 202, nil},
		{"generic everything", "/hooks/generic", "", map[string]string{"Authorization": "Bearer " + secret}, 200,
			[]string{"root", "apps", "apps-ssh", "apps-staging", "apps-v1", "apps-semver", "ops", "dir"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", c.path, strings.NewReader(c.body))
			switch c.path {
			case "/hooks/github":
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-Hub-Signature-256", "sha256="+sign(secret, c.body))
			case "/hooks/gitlab":
				req.Header.Set("X-Gitlab-Event", "Push Hook")
				req.Header.Set("X-Gitlab-Token", secret)
			case "/hooks/gitea":
				req.Header.Set("X-Gitea-Event", "push")
				req.Header.Set("X-Gitea-Signature", sign(secret, c.body))
			}
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			r.Handler().ServeHTTP(w, req)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body.String())
			}
			if got := rec.take(); !slices.Equal(got, c.trigger) {
				t.Errorf("triggered %v, want %v (reply %q)", got, c.trigger, w.Body.String())
			}
		})
	}
	// A bad signature triggers nothing, whatever the payload names.
	body := fmt.Sprintf(gh, "refs/heads/main")
	req := httptest.NewRequest("POST", "/hooks/github", strings.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+sign("guess", body))
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, req)
	if w.Code != 401 || len(rec.take()) != 0 {
		t.Fatalf("bad signature: %d, triggered something", w.Code)
	}
}
