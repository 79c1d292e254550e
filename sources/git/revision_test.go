package git

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestReadRevision(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	first := r.commit("first", baseFiles)
	r.git("tag", "v1")
	second := r.commit("second", map[string]string{"apps/web/deploy.yaml": "kind: Deployment # v2\n", "apps/db/cm.json": ""})
	r.git("checkout", "-q", "-b", "feature")
	third := r.commit("third\n\nbody", map[string]string{"infra/extra.yaml": "kind: ConfigMap\n"})
	r.git("checkout", "-q", "main")
	// Uncommitted edits are not part of any revision.
	r.write(map[string]string{"apps/web/deploy.yaml": "dirty\n"})
	bare := bareClone(t, r)
	clone := filepath.Join(t.TempDir(), "clone")
	r.git("clone", "-q", r.dir, clone)
	sub := filepath.Join(r.dir, "apps", "web")

	cases := []struct {
		name, dir, ref, path string
		id, paths, deploy    string
	}{
		{name: "branch", dir: r.dir, ref: "main", id: second,
			paths:  "apps/schema.cue,apps/web/deploy.yaml,apps/web/svc.yml,infra/ns.yaml",
			deploy: "kind: Deployment # v2\n"},
		{name: "other branch with path", dir: r.dir, ref: "feature", path: "infra", id: third, paths: "extra.yaml,ns.yaml"},
		{name: "tag", dir: r.dir, ref: "v1", path: "apps/web", id: first, paths: "deploy.yaml,svc.yml"},
		{name: "HEAD~1", dir: r.dir, ref: "HEAD~1", id: first,
			paths: "apps/db/cm.json,apps/schema.cue,apps/web/deploy.yaml,apps/web/svc.yml,infra/ns.yaml", deploy: "kind: Deployment\n"},
		{name: "full hash", dir: r.dir, ref: third, path: "/infra/", id: third, paths: "extra.yaml,ns.yaml"},
		{name: "short hash", dir: r.dir, ref: first[:10], path: "apps/db", id: first, paths: "cm.json"},
		{name: "from a subdirectory", dir: sub, ref: "main", path: "apps/web", id: second, paths: "deploy.yaml,svc.yml"},
		{name: "bare", dir: bare, ref: "feature", path: "infra", id: third, paths: "extra.yaml,ns.yaml"},
		{name: "remote branch of a clone", dir: clone, ref: "origin/feature", path: "infra", id: third, paths: "extra.yaml,ns.yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rev, err := ReadRevision(c.dir, c.ref, c.path)
			if err != nil {
				t.Fatal(err)
			}
			if rev.ID != c.id {
				t.Errorf("ID %s, want %s", rev.ID, c.id)
			}
			if got := paths(rev); got != c.paths {
				t.Errorf("paths %q, want %q", got, c.paths)
			}
			if c.deploy != "" {
				if got := fileData(rev, "apps/web/deploy.yaml"); got != c.deploy {
					t.Errorf("deploy.yaml %q, want %q", got, c.deploy)
				}
			}
			if rev.Author.Name != "Ada Author" || rev.Committer.Email != "cy@example.com" || rev.Message == "" {
				t.Errorf("commit metadata %+v", rev)
			}
		})
	}

	rev, err := ReadRevision(r.dir, "feature", "")
	if err != nil || rev.Message != "third\n\nbody" {
		t.Fatalf("message %q, %v", rev.Message, err)
	}

	for _, c := range []struct {
		name, dir, ref, path string
		is                   error
	}{
		{name: "unknown ref", dir: r.dir, ref: "nope", is: ErrRevisionNotFound},
		{name: "missing path", dir: r.dir, ref: "main", path: "nope", is: ErrPathNotFound},
		{name: "path leaving the repository", dir: r.dir, ref: "main", path: "../x"},
		{name: "not a repository", dir: t.TempDir(), ref: "main"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadRevision(c.dir, c.ref, c.path)
			if err == nil {
				t.Fatal("no error")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("error %v, want %v", err, c.is)
			}
		})
	}
}
