package writeback

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/capstan-io/capstan/manifests"
)

// TestCommitToRepo writes a commit to a local working copy directly, and
// to a bare repository through a clone and a push.
func TestCommitToRepo(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	gitCmd := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=A", "GIT_AUTHOR_EMAIL=a@example.com", "GIT_COMMITTER_NAME=A", "GIT_COMMITTER_EMAIL=a@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gitCmd(dir, "init", "-q", "-b", "main")
	if err := os.MkdirAll(filepath.Join(dir, "apps"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "apps", "web.yaml"), []byte(webFile), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCmd(dir, "add", "-A")
	gitCmd(dir, "commit", "-q", "-m", "init")
	web := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default"}}
	manifests.SetKind(web)
	scale := func(n int32) makeEdit {
		return func(*gogit.Repository, sourceRepo) (editFunc, error) { return scaleTo(n), nil }
	}
	w := Options{Author: "Sam Scaler <sam@example.com>"}

	res, err := commitToRepo(t.Context(), sourceRepo{url: dir, branch: "main", path: "apps"}, web, "scale deployment/web to 4 replicas", w, scale(4))
	if err != nil {
		t.Fatal(err)
	}
	if got := gitCmd(dir, "log", "-1", "--format=%H %an <%ae> %s"); got != res.Commit+" Sam Scaler <sam@example.com> scale deployment/web to 4 replicas" {
		t.Errorf("head commit %q", got)
	}
	if st := gitCmd(dir, "status", "--porcelain"); st != "" {
		t.Errorf("working copy not clean after the commit: %q", st)
	}
	if diff := gitCmd(dir, "diff", "HEAD~1", "--stat"); !strings.Contains(diff, "1 file changed, 1 insertion(+), 1 deletion(-)") {
		t.Errorf("the commit changed more than one line: %s", diff)
	}

	// The user's own staged work is never swept into our commit.
	if err := os.WriteFile(filepath.Join(dir, "other.yaml"), []byte("x: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCmd(dir, "add", "other.yaml")
	if _, err := commitToRepo(t.Context(), sourceRepo{url: dir, branch: "main", path: "apps"}, web, "m", w, scale(5)); err == nil || !strings.Contains(err.Error(), "staged changes") {
		t.Errorf("got %v, want a refusal", err)
	}
	gitCmd(dir, "reset", "-q", "other.yaml")

	// A bare repository: cloned, committed, pushed.
	bare := filepath.Join(t.TempDir(), "bare.git")
	gitCmd(dir, "clone", "-q", "--bare", dir, bare)
	res, err = commitToRepo(t.Context(), sourceRepo{url: bare, branch: "main", path: "apps"}, web, "scale deployment/web to 6 replicas", w, scale(6))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := gogit.PlainOpen(bare)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil || ref.Hash().String() != res.Commit {
		t.Fatalf("bare main at %v (%v), want %s", ref, err, res.Commit)
	}
	c, _ := repo.CommitObject(ref.Hash())
	f, _ := c.File("apps/web.yaml")
	content, _ := f.Contents()
	if !strings.Contains(content, "replicas: 6 # three is plenty") {
		t.Errorf("pushed file:\n%s", content)
	}

	// No identity, no commit.
	t.Setenv("GIT_AUTHOR_NAME", "")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	if _, err := commitToRepo(t.Context(), sourceRepo{url: dir, branch: "main", path: "apps"}, web, "m", Options{}, scale(7)); err == nil || !strings.Contains(err.Error(), "who is committing") {
		t.Errorf("got %v, want an identity error", err)
	}
}
