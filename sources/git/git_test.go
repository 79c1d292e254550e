package git

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	gossh "golang.org/x/crypto/ssh"

	"github.com/fsnotify/fsnotify"

	"github.com/capstan-io/capstan/sources"
	"github.com/capstan-io/capstan/sources/internal/sourcetest"
)

// repo is a working repository made with the git CLI in a temp dir.
type repo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T, branch string) *repo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git CLI not installed")
	}
	r := &repo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", branch)
	return r
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Ada Author", "GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_COMMITTER_NAME=Cy Committer", "GIT_COMMITTER_EMAIL=cy@example.com",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// write writes files (path -> content; "" content removes) without
// committing.
func (r *repo) write(files map[string]string) {
	r.t.Helper()
	for p, data := range files {
		full := filepath.Join(r.dir, filepath.FromSlash(p))
		if data == "" {
			if err := os.Remove(full); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

// commit writes files, commits them all and returns the commit hash.
func (r *repo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	r.write(files)
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

func newSource(t *testing.T, opts Options) *Source {
	t.Helper()
	s, err := New(opts, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func fetch(t *testing.T, s *Source, known string) *sources.Revision {
	t.Helper()
	rev, err := s.Fetch(context.Background(), known)
	if err != nil {
		t.Fatalf("Fetch(%q): %v", known, err)
	}
	return rev
}

func paths(rev *sources.Revision) string {
	var ps []string
	for _, f := range rev.Files {
		ps = append(ps, f.Path)
	}
	return strings.Join(ps, ",")
}

func fileData(rev *sources.Revision, path string) string {
	for _, f := range rev.Files {
		if f.Path == path {
			return string(f.Data)
		}
	}
	return "<missing>"
}

var baseFiles = map[string]string{
	"apps/web/deploy.yaml":     "kind: Deployment\n",
	"apps/web/svc.yml":         "kind: Service\n",
	"apps/db/cm.json":          "{}\n",
	"apps/schema.cue":          "x: 1\n",
	"apps/README.md":           "not a manifest\n",
	"apps/.hidden/x.yaml":      "hidden\n",
	"infra/ns.yaml":            "kind: Namespace\n",
	".github/workflows/ci.yml": "on: push\n",
}

func TestFetch(t *testing.T) {
	t.Parallel()
	for _, cache := range []string{"memory", "disk"} {
		t.Run(cache, func(t *testing.T) {
			r := newRepo(t, "main")
			head := r.commit("first commit\n\nwith a body", baseFiles)
			opts := Options{URL: r.dir}
			if cache == "disk" {
				opts.CacheDir = t.TempDir()
			}
			s := newSource(t, opts)
			rev := fetch(t, s, "")
			if rev.ID != head {
				t.Errorf("ID = %s, want %s", rev.ID, head)
			}
			if want := "apps/db/cm.json,apps/schema.cue,apps/web/deploy.yaml,apps/web/svc.yml,infra/ns.yaml"; paths(rev) != want {
				t.Errorf("files = %s, want %s", paths(rev), want)
			}
			if got := fileData(rev, "apps/web/deploy.yaml"); got != "kind: Deployment\n" {
				t.Errorf("deploy.yaml = %q", got)
			}
			if rev.Author.Name != "Ada Author" || rev.Author.Email != "ada@example.com" || rev.Author.When.IsZero() {
				t.Errorf("author = %+v", rev.Author)
			}
			if rev.Committer.String() != "Cy Committer <cy@example.com>" {
				t.Errorf("committer = %s", rev.Committer)
			}
			if rev.Message != "first commit\n\nwith a body" {
				t.Errorf("message = %q", rev.Message)
			}

			if _, err := s.Fetch(context.Background(), head); !errors.Is(err, sources.ErrUnchanged) {
				t.Fatalf("Fetch(head) = %v, want ErrUnchanged", err)
			}

			// A changed file, a deleted one, and a new one with the content
			// (the blob) of an unchanged one: files of the last revision
			// are reused by blob, the others read.
			next := r.commit("second", map[string]string{"infra/ns.yaml": "kind: Namespace\nname: x\n", "apps/schema.cue": "",
				"apps/copy.yaml": "kind: Deployment\n"})
			rev = fetch(t, s, head)
			if rev.ID != next || rev.Message != "second" {
				t.Fatalf("after commit: ID %s message %q, want %s", rev.ID, rev.Message, next)
			}
			if strings.Contains(paths(rev), "schema.cue") || fileData(rev, "infra/ns.yaml") != "kind: Namespace\nname: x\n" {
				t.Fatalf("after commit: files %s, ns %q", paths(rev), fileData(rev, "infra/ns.yaml"))
			}
			if want := "apps/copy.yaml,apps/db/cm.json,apps/web/deploy.yaml,apps/web/svc.yml,infra/ns.yaml"; paths(rev) != want {
				t.Errorf("after commit: files = %s, want %s", paths(rev), want)
			}
			for _, f := range []string{"apps/copy.yaml", "apps/web/deploy.yaml"} {
				if got := fileData(rev, f); got != "kind: Deployment\n" {
					t.Errorf("after commit: %s = %q", f, got)
				}
			}
			if _, err := s.Fetch(context.Background(), next); !errors.Is(err, sources.ErrUnchanged) {
				t.Fatalf("Fetch(next) = %v, want ErrUnchanged", err)
			}
		})
	}
}

func TestURLForms(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	head := r.commit("c", baseFiles)
	rel, err := filepath.Rel(mustGetwd(t), r.dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, url := range map[string]string{
		"path":     r.dir,
		"relative": rel,
		"file":     "file://" + r.dir,
		"bare":     "file://" + bareClone(t, r),
	} {
		t.Run(name, func(t *testing.T) {
			s := newSource(t, Options{URL: url, CacheDir: t.TempDir()})
			if got := fetch(t, s, "").ID; got != head {
				t.Fatalf("ID = %s, want %s", got, head)
			}
		})
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func bareClone(t *testing.T, r *repo) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bare.git")
	r.git("clone", "-q", "--bare", r.dir, dir)
	return dir
}

func TestPath(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("c", baseFiles)
	for _, p := range []string{"apps", "/apps/", "./apps"} {
		rev := fetch(t, newSource(t, Options{URL: r.dir, Path: p}), "")
		if want := "db/cm.json,schema.cue,web/deploy.yaml,web/svc.yml"; paths(rev) != want {
			t.Errorf("Path %q: files = %s, want %s", p, paths(rev), want)
		}
	}
	rev := fetch(t, newSource(t, Options{URL: r.dir, Path: "apps/web"}), "")
	if want := "deploy.yaml,svc.yml"; paths(rev) != want {
		t.Errorf("Path apps/web: files = %s, want %s", paths(rev), want)
	}

	for _, p := range []string{"nope", "infra/ns.yaml"} {
		_, err := newSource(t, Options{URL: r.dir, Path: p}).Fetch(context.Background(), "")
		if !errors.Is(err, ErrPathNotFound) {
			t.Errorf("Path %q: err = %v, want ErrPathNotFound", p, err)
		}
	}
	if _, err := New(Options{URL: r.dir, Path: "../x"}, nil); err == nil {
		t.Error("New accepted a path leaving the repository")
	}
}

func TestBranch(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "trunk")
	trunk := r.commit("on trunk", map[string]string{"a.yaml": "a\n"})
	r.git("checkout", "-q", "-b", "feature/x")
	feature := r.commit("on feature", map[string]string{"b.yaml": "b\n"})
	r.git("checkout", "-q", "trunk")

	// No branch: the remote HEAD's, here trunk (not "main").
	if rev := fetch(t, newSource(t, Options{URL: r.dir}), ""); rev.ID != trunk || paths(rev) != "a.yaml" {
		t.Errorf("default branch: %s %s, want trunk %s", rev.ID, paths(rev), trunk)
	}
	if rev := fetch(t, newSource(t, Options{URL: r.dir, Branch: "feature/x", CacheDir: t.TempDir()}), ""); rev.ID != feature || paths(rev) != "a.yaml,b.yaml" {
		t.Errorf("feature/x: %s %s, want %s", rev.ID, paths(rev), feature)
	}
	_, err := newSource(t, Options{URL: r.dir, Branch: "nope"}).Fetch(context.Background(), "")
	if !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("missing branch: err = %v, want ErrBranchNotFound", err)
	}
	_, err = newSource(t, Options{URL: newRepo(t, "main").dir}).Fetch(context.Background(), "")
	if !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("empty repository: err = %v, want ErrBranchNotFound", err)
	}
}

func TestForcePushUnrelatedHistory(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("old 1", map[string]string{"old.yaml": "old\n"})
	oldHead := r.commit("old 2", map[string]string{"old.yaml": "older\n"})
	bare := bareClone(t, r)

	for _, cache := range []string{"memory", "disk"} {
		t.Run(cache, func(t *testing.T) {
			opts := Options{URL: bare}
			if cache == "disk" {
				opts.CacheDir = t.TempDir()
			}
			s := newSource(t, opts)
			if rev := fetch(t, s, ""); rev.ID != oldHead {
				t.Fatalf("ID = %s, want %s", rev.ID, oldHead)
			}

			other := newRepo(t, "main")
			newHead := other.commit("unrelated", map[string]string{"new.yaml": "new\n"})
			other.git("push", "-q", "--force", bare, "main:main")
			rev := fetch(t, s, oldHead)
			if rev.ID != newHead || paths(rev) != "new.yaml" {
				t.Fatalf("after force-push: %s %s, want %s new.yaml", rev.ID, paths(rev), newHead)
			}

			// And back: the old commit is still in the cache.
			r.git("push", "-q", "--force", bare, "main:main")
			if rev := fetch(t, s, newHead); rev.ID != oldHead || fileData(rev, "old.yaml") != "older\n" {
				t.Fatalf("after pushing back: %s, want %s", rev.ID, oldHead)
			}
		})
	}
}

func TestCacheSurvivesRestart(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	first := r.commit("one", map[string]string{"a.yaml": "1\n"})
	cache := t.TempDir()
	fetch(t, newSource(t, Options{URL: r.dir, CacheDir: cache}), "")
	second := r.commit("two", map[string]string{"a.yaml": "2\n"})
	rev := fetch(t, newSource(t, Options{URL: r.dir, CacheDir: cache}), first)
	if rev.ID != second || fileData(rev, "a.yaml") != "2\n" {
		t.Fatalf("reopened cache: %s %q", rev.ID, fileData(rev, "a.yaml"))
	}
}

func TestCredentialsNeverShown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pwFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(pwFile, []byte("filetoken123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts    Options
		display string
		secrets []string
	}{
		{Options{URL: "https://user:secret@127.0.0.1:1/x.git"}, "https://127.0.0.1:1/x.git", []string{"secret", "user"}},
		{Options{URL: "https://tok3n@127.0.0.1:1/x.git"}, "https://127.0.0.1:1/x.git", []string{"tok3n"}},
		{Options{URL: "http://127.0.0.1:1/x.git", PasswordFile: pwFile}, "http://127.0.0.1:1/x.git", []string{"filetoken123"}},
		{Options{URL: "ssh://git:sshsecret@127.0.0.1:1/x.git"}, "ssh://127.0.0.1:1/x.git", []string{"sshsecret"}},
	} {
		s := newSource(t, tc.opts)
		if got := s.Spec().URL; got != tc.display {
			t.Errorf("%s: Spec().URL = %q, want %q", tc.display, got, tc.display)
		}
		_, err := s.Fetch(ctx, "")
		if err == nil {
			t.Fatalf("%s: Fetch from a closed port succeeded", tc.display)
		}
		t.Logf("%s: %v", tc.display, err)
		for _, secret := range tc.secrets {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error shows %q: %v", tc.display, secret, err)
			}
		}
	}

	// Even a URL that does not parse keeps its password out of the error.
	_, err := New(Options{URL: "https://user:se cret@host name/x"}, nil)
	if err == nil || strings.Contains(err.Error(), "se cret") {
		t.Errorf("bad URL: err = %v", err)
	}
}

func TestRedactedErrorMatches(t *testing.T) {
	t.Parallel()
	err := newRedactor("hunter2").wrap(errors.Join(context.DeadlineExceeded, errors.New("auth hunter2 failed")))
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("not redacted: %v", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("redacted error lost its cause")
	}
	if errors.Unwrap(err) != nil {
		t.Fatal("redacted error unwraps to its raw text")
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]Options{
		"no URL":           {},
		"bad branch":       {URL: "/tmp/x", Branch: "a..b"},
		"negative":         {URL: "/tmp/x", Interval: -time.Second},
		"missing key":      {URL: "git@example.com:a/b.git", SSHKeyFile: "/nonexistent/key"},
		"missing password": {URL: "https://example.com/a.git", PasswordFile: "/nonexistent/pw"},
	} {
		if _, err := New(opts, nil); err == nil {
			t.Errorf("%s: New accepted %+v", name, opts)
		}
	}
}

func TestSpec(t *testing.T) {
	t.Parallel()
	s := newSource(t, Options{URL: "git@github.com:org/repo.git", Branch: "prod", Path: "/clusters/a/"})
	got := s.Spec()
	if got.URL != "git@github.com:org/repo.git" || got.Branch != "prod" || got.Path != "clusters/a" || got.Interval != "1m0s" {
		t.Fatalf("Spec = %+v", got)
	}
}

// runSource runs s.Run until the test ends and returns its channel.
func runSource(t *testing.T, s *Source) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, changed) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// Run signals once when its watches are in place.
	sourcetest.WaitSignal(t, changed, 5*time.Second, "Run's start signal")
	return changed
}

func TestRunSeesLocalCommit(t *testing.T) {
	t.Parallel()
	for _, branch := range []string{"", "main", "team/prod"} {
		t.Run("branch="+branch, func(t *testing.T) {
			r := newRepo(t, "main")
			r.commit("c", map[string]string{"a.yaml": "1\n"})
			if branch != "" && branch != "main" {
				r.git("branch", branch)
			}
			s := newSource(t, Options{URL: "file://" + r.dir, Branch: branch, Interval: time.Hour})
			changed := runSource(t, s)
			if branch == "team/prod" {
				r.git("checkout", "-q", branch)
			}
			r.commit("c2", map[string]string{"a.yaml": "2\n"})
			sourcetest.WaitSignal(t, changed, time.Second, "a commit on the local repository")
		})
	}
}

func TestRunSeesNewBranchDirectory(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("c", map[string]string{"a.yaml": "1\n"})
	s := newSource(t, Options{URL: r.dir, Branch: "deep/er/branch", Interval: time.Hour})
	changed := runSource(t, s)
	r.git("branch", "deep/er/branch")
	sourcetest.WaitSignal(t, changed, time.Second, "a branch created in new ref directories")
	sourcetest.Eventually(t, 5*time.Second, "the new branch fetched", func() bool {
		_, err := s.Fetch(context.Background(), "")
		return err == nil
	})
}

func TestRunSeesPackedRefs(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("c", map[string]string{"a.yaml": "1\n"})
	s := newSource(t, Options{URL: r.dir, Branch: "main", Interval: time.Hour})
	changed := runSource(t, s)
	r.git("pack-refs", "--all", "--prune")
	sourcetest.WaitSignal(t, changed, time.Second, "git pack-refs")
}

func TestRefFilter(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("c", map[string]string{"a.yaml": "1\n"})
	gitDir := filepath.Join(r.dir, ".git")
	heads := filepath.Join(gitDir, "refs", "heads")
	for _, tc := range []struct {
		branch string
		name   string
		want   bool
	}{
		{"main", filepath.Join(heads, "main"), true},
		{"main", filepath.Join(heads, "main.lock"), false},
		{"main", filepath.Join(heads, "other"), false},
		{"main", filepath.Join(gitDir, "packed-refs"), true},
		{"main", filepath.Join(gitDir, "HEAD"), false},
		{"", filepath.Join(gitDir, "HEAD"), true},
		{"", filepath.Join(heads, "other"), true},
		{"main", filepath.Join(gitDir, "index"), false},
		{"main", filepath.Join(gitDir, "refs", "tags", "main"), false},
		{"a/b/c", filepath.Join(heads, "a"), true},
		{"a/b/c", filepath.Join(heads, "a", "b", "c"), true},
		{"a/b/c", filepath.Join(heads, "ab"), false},
	} {
		rw := &refWatch{gitDir: gitDir, common: gitDir, heads: heads, branch: tc.branch}
		if got := rw.relevant(fsnotify.Event{Name: tc.name, Op: fsnotify.Write}); got != tc.want {
			t.Errorf("branch %q, event on %s: relevant = %v, want %v", tc.branch, tc.name, got, tc.want)
		}
	}
}

func TestGitDirs(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("c", map[string]string{"a.yaml": "1\n"})
	wt := filepath.Join(t.TempDir(), "wt")
	r.git("worktree", "add", "-q", wt, "-b", "wt")
	bare := bareClone(t, r)
	for _, tc := range []struct{ repo, gitDir, common string }{
		{r.dir, filepath.Join(r.dir, ".git"), filepath.Join(r.dir, ".git")},
		{bare, bare, bare},
		{wt, filepath.Join(r.dir, ".git", "worktrees", "wt"), filepath.Join(r.dir, ".git")},
	} {
		gitDir, common, err := gitDirs(tc.repo)
		if err != nil || gitDir != tc.gitDir || common != tc.common {
			t.Errorf("gitDirs(%s) = %s, %s, %v; want %s, %s", tc.repo, gitDir, common, err, tc.gitDir, tc.common)
		}
	}
	if _, _, err := gitDirs(t.TempDir()); err == nil {
		t.Error("gitDirs accepted an empty directory")
	}
}

func TestTrigger(t *testing.T) {
	t.Parallel()
	s := newSource(t, Options{URL: "https://example.com/x.git", Interval: time.Hour})
	s.Trigger()
	s.Trigger() // never blocks
	changed := runSource(t, s)
	// The start signal and the early trigger may have merged; a new one
	// must come through.
	sourcetest.Drain(changed)
	s.Trigger()
	sourcetest.WaitSignal(t, changed, time.Second, "Trigger")
}

func TestRunPolls(t *testing.T) {
	t.Parallel()
	s := newSource(t, Options{URL: "https://example.com/x.git", Interval: 20 * time.Millisecond})
	changed := runSource(t, s)
	for range 3 {
		sourcetest.WaitSignal(t, changed, time.Second, "poll tick")
	}
}

func TestUnchangedTransfersNoObjects(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("one", map[string]string{"a.yaml": "1\n"})
	s := newSource(t, Options{URL: r.dir, CacheDir: t.TempDir()})
	fetch(t, s, "")
	// The caller already knows a head this source never fetched (another
	// replica applied it, say): the listing alone settles it.
	next := r.commit("two", map[string]string{"a.yaml": "2\n"})
	if _, err := s.Fetch(context.Background(), next); !errors.Is(err, sources.ErrUnchanged) {
		t.Fatalf("Fetch(next) = %v, want ErrUnchanged", err)
	}
	if _, err := s.repo.CommitObject(plumbingHash(next)); err == nil {
		t.Fatal("the unchanged check fetched the commit")
	}
}

func plumbingHash(s string) plumbing.Hash { return plumbing.NewHash(s) }

func TestHTTPBasicAuth(t *testing.T) {
	t.Parallel()
	var gotUser, gotPass string
	var gotOK bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		gotUser, gotPass, gotOK = req.BasicAuth()
		w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
		http.Error(w, "denied", http.StatusUnauthorized)
	}))
	defer srv.Close()
	pwFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(pwFile, []byte("s3cr3t-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSource(t, Options{URL: srv.URL + "/org/repo.git", Username: "robot", PasswordFile: pwFile})
	_, err := s.Fetch(context.Background(), "")
	if !gotOK || gotUser != "robot" || gotPass != "s3cr3t-token" {
		t.Fatalf("server saw basic auth %v %q %q", gotOK, gotUser, gotPass)
	}
	if !errors.Is(err, transport.ErrAuthenticationRequired) && !errors.Is(err, transport.ErrAuthorizationFailed) {
		t.Fatalf("err = %v, want an authentication error", err)
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("error shows the token: %v", err)
	}
}

func TestSSHKeyAndKnownHosts(t *testing.T) {
	t.Parallel()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile, khFile := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(khFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSource(t, Options{URL: "ssh://deploy@127.0.0.1:1/x.git", SSHKeyFile: keyFile, KnownHostsFile: khFile})
	_, err = s.Fetch(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want connection refused", err)
	}
	if _, err := New(Options{URL: "git@127.0.0.1:x.git", SSHKeyFile: khFile}, nil); err == nil {
		t.Fatal("New accepted a key file holding no key")
	}
}

func TestRefetchSameHeadIsServedFromMemory(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("one", map[string]string{"a.yaml": "1\n", "b.yaml": "2\n"})
	s := newSource(t, Options{URL: r.dir})
	first := fetch(t, s, "")
	first.Files[0], first.Files[1] = first.Files[1], first.Files[0] // the caller's copy
	again := fetch(t, s, "")
	if again.ID != first.ID || paths(again) != "a.yaml,b.yaml" {
		t.Fatalf("refetch: %s %s", again.ID, paths(again))
	}
}
