//go:build !nodeonly

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	yamlv3 "gopkg.in/yaml.v3"

	"github.com/capstan-io/capstan/manifests"
)

const webFile = `# the shop's front end
apiVersion: v1
kind: ConfigMap
metadata:
  name: web
data:
  a: b
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # keep this name
spec:
  replicas: 3 # three is plenty
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: main
          image: img:2 # the new one
  # rollout settings
  minReadySeconds: 5
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers: [{name: main, image: img:1}]
`

func editWeb(t *testing.T, kind, name string, edit editFunc) string {
	t.Helper()
	doc, _, first, ok := findDocument([]byte(webFile), kind, "default", name)
	if !ok {
		t.Fatalf("%s/%s not found", kind, name)
	}
	out, err := edit(doc, []byte(webFile), first)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestSetReplicasKeepsTheRest(t *testing.T) {
	got := editWeb(t, "Deployment", "web", func(doc *yamlv3.Node, text []byte, first int) ([]byte, error) {
		return setReplicas(doc, text, first, 12)
	})
	if want := strings.Replace(webFile, "replicas: 3 # three", "replicas: 12 # three", 1); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Absent: one line added under spec, indented as its fields.
	got = editWeb(t, "Deployment", "api", func(doc *yamlv3.Node, text []byte, first int) ([]byte, error) {
		return setReplicas(doc, text, first, 0)
	})
	if want := strings.Replace(webFile, "  name: api\nspec:\n", "  name: api\nspec:\n  replicas: 0\n", 1); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestReplaceTemplateKeepsTheRest(t *testing.T) {
	var tmpl yamlv3.Node
	if err := yamlv3.Unmarshal([]byte("metadata:\n  labels: {app: web}\nspec:\n  containers:\n    - name: main\n      image: img:1 # the old one\n"), &tmpl); err != nil {
		t.Fatal(err)
	}
	got := editWeb(t, "Deployment", "web", func(doc *yamlv3.Node, text []byte, first int) ([]byte, error) {
		return replaceTemplate(doc, text, first, tmpl.Content[0])
	})
	want := strings.Replace(webFile, `  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: main
          image: img:2 # the new one
`, `  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: main
          image: img:1 # the old one
`, 1)
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// The last field of the last document.
	got = editWeb(t, "Deployment", "api", func(doc *yamlv3.Node, text []byte, first int) ([]byte, error) {
		return replaceTemplate(doc, text, first, tmpl.Content[0])
	})
	if !strings.HasSuffix(got, "  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: main\n          image: img:1 # the old one\n") ||
		!strings.HasPrefix(got, webFile[:strings.Index(webFile, "  name: api")]) {
		t.Errorf("got\n%s", got)
	}
}

func TestTemplateNodeDropsHashLabel(t *testing.T) {
	rs := &manifests.ReplicaSet{}
	rs.Spec.Template.Labels = map[string]string{"app": "web", manifests.LabelPodTemplateHash: "abc"}
	rs.Spec.Template.Spec.Containers = []manifests.Container{{Name: "main", Image: "img:1"}}
	n, err := templateNode(rs)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := yamlv3.Marshal(n)
	if strings.Contains(string(b), "pod-template-hash") || !strings.Contains(string(b), "image: img:1") || strings.Contains(string(b), "{") || strings.Contains(string(b), `""`) {
		t.Errorf("template:\n%s", b)
	}
	if rs.Spec.Template.Labels[manifests.LabelPodTemplateHash] != "abc" {
		t.Error("templateNode changed the ReplicaSet")
	}
}

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
	scaleTo := func(n int32) makeEdit {
		return func(*gogit.Repository, sourceRepo) (editFunc, error) {
			return func(doc *yamlv3.Node, text []byte, first int) ([]byte, error) {
				return setReplicas(doc, text, first, n)
			}, nil
		}
	}
	w := gitWriteFlags{author: "Sam Scaler <sam@example.com>"}

	res, err := commitToRepo(t.Context(), sourceRepo{url: dir, branch: "main", path: "apps"}, web, "scale deployment/web to 4 replicas", w, scaleTo(4))
	if err != nil {
		t.Fatal(err)
	}
	if got := gitCmd(dir, "log", "-1", "--format=%H %an <%ae> %s"); got != res.commit+" Sam Scaler <sam@example.com> scale deployment/web to 4 replicas" {
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
	if _, err := commitToRepo(t.Context(), sourceRepo{url: dir, branch: "main", path: "apps"}, web, "m", w, scaleTo(5)); err == nil || !strings.Contains(err.Error(), "staged changes") {
		t.Errorf("got %v, want a refusal", err)
	}
	gitCmd(dir, "reset", "-q", "other.yaml")

	// A bare repository: cloned, committed, pushed.
	bare := filepath.Join(t.TempDir(), "bare.git")
	gitCmd(dir, "clone", "-q", "--bare", dir, bare)
	res, err = commitToRepo(t.Context(), sourceRepo{url: bare, branch: "main", path: "apps"}, web, "scale deployment/web to 6 replicas", w, scaleTo(6))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := gogit.PlainOpen(bare)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil || ref.Hash().String() != res.commit {
		t.Fatalf("bare main at %v (%v), want %s", ref, err, res.commit)
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
	if _, err := commitToRepo(t.Context(), sourceRepo{url: dir, branch: "main", path: "apps"}, web, "m", gitWriteFlags{}, scaleTo(7)); err == nil || !strings.Contains(err.Error(), "who is committing") {
		t.Errorf("got %v, want an identity error", err)
	}
}
