//go:build linux && !nodeonly

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/schema"
	"github.com/capstan-io/capstan/sources/git"
)

// sampleReport has one change of each kind and two fields.
func sampleReport() *diffReport {
	return &diffReport{
		Target: "feature (1a2b3c4d5e6f)",
		Base:   "the cluster (source root, revision 0123456789ab)",
		Changes: []objChange{
			{Action: "created", Kind: "Deployment", Namespace: "default", Name: "api"},
			{Action: "updated", Kind: "Deployment", Namespace: "default", Name: "web", Fields: []fieldChange{
				{Path: "spec.replicas", Old: "1", New: "3"},
				{Path: "spec.template.spec.containers[0].env", Old: "", New: `[{"name":"A","value":"x|y"}]`},
			}},
			{Action: "deleted", Kind: "ConfigMap", Namespace: "default", Name: "old"},
			{Action: "kept", Kind: "Namespace", Name: "legacy"},
		},
	}
}

func TestDiffFormat(t *testing.T) {
	cases := []struct {
		name     string
		rep      *diffReport
		markdown bool
		want     string
		code     int
	}{
		{name: "text changes", rep: sampleReport(), code: 1, want: `Comparing feature (1a2b3c4d5e6f) with the cluster (source root, revision 0123456789ab)
+ Deployment default/api created
~ Deployment default/web updated
    spec.replicas: 1 -> 3
    spec.template.spec.containers[0].env: (none) -> [{"name":"A","value":"x|y"}]
- ConfigMap default/old deleted
= Namespace legacy kept (capstan.io/prune: disabled)
4 changes: 1 created, 1 updated, 1 deleted, 1 kept
`},
		{name: "text no change", rep: &diffReport{Target: "main (1a2b3c4d5e6f)", Base: "main (1a2b3c4d5e6f)"}, code: 0,
			want: "Comparing main (1a2b3c4d5e6f) with main (1a2b3c4d5e6f)\nNo changes.\n"},
		{name: "text errors", code: 2, rep: &diffReport{Target: "bad (1a2b3c4d5e6f)", Base: "the cluster (source root, nothing applied yet)",
			Errors: []string{"deploy/web.yaml:7:15: spec.replicas: conflicting values -1 and >=0"}},
			want: `Comparing bad (1a2b3c4d5e6f) with the cluster (source root, nothing applied yet)
1 error:
  deploy/web.yaml:7:15: spec.replicas: conflicting values -1 and >=0
`},
		{name: "text base errors", code: 2, rep: &diffReport{Base: "main (1a2b3c4d5e6f)", BaseErrors: []string{"a.yaml:1:1: x", "b.yaml:2:2: y"}},
			want: "The base main (1a2b3c4d5e6f) does not validate (2 errors):\n  a.yaml:1:1: x\n  b.yaml:2:2: y\n"},
		{name: "markdown changes", rep: sampleReport(), markdown: true, code: 1, want: "### Capstan diff: 4 changes\n\n" +
			"Comparing `feature (1a2b3c4d5e6f)` with the cluster (source root, revision 0123456789ab): 1 created, 1 updated, 1 deleted, 1 kept.\n\n" +
			"| Action | Kind | Namespace | Name | Fields |\n| --- | --- | --- | --- | --- |\n" +
			"| created | Deployment | default | api |  |\n" +
			"| updated | Deployment | default | web | `spec.replicas`, `spec.template.spec.containers[0].env` |\n" +
			"| deleted | ConfigMap | default | old |  |\n" +
			"| kept | Namespace |  | legacy |  |\n\n" +
			"<details><summary>Field changes</summary>\n\n" +
			"```diff\nDeployment default/web\n- spec.replicas: 1\n+ spec.replicas: 3\n+ spec.template.spec.containers[0].env: [{\"name\":\"A\",\"value\":\"x|y\"}]\n```\n" +
			"\n</details>\n"},
		{name: "markdown no change", markdown: true, code: 0, rep: &diffReport{Target: "HEAD (1a2b3c4d5e6f)", Base: "origin/main (1a2b3c4d5e6f)"},
			want: "### Capstan diff: no changes\n\nComparing `HEAD (1a2b3c4d5e6f)` with origin/main (1a2b3c4d5e6f).\n\n"},
		{name: "markdown errors with backticks", markdown: true, code: 2,
			rep:  &diffReport{Target: "x (1)", Base: "y (2)", Errors: []string{"a.cue:1:1: a ``` b", "a.cue:2:1: c"}},
			want: "### Capstan diff: 2 errors\n\nComparing `x (1)` with y (2).\n\nErrors:\n\n````text\na.cue:1:1: a ``` b\na.cue:2:1: c\n````\n"},
		{name: "markdown base errors", markdown: true, code: 2, rep: &diffReport{Base: "main (1)", BaseErrors: []string{"a.yaml:1:1: x"}},
			want: "### Capstan diff: the base does not validate\n\nThe base `main (1)` has 1 validation error:\n\n```text\na.yaml:1:1: x\n```\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			var err error
			if c.markdown {
				err = writeDiffMarkdown(&b, c.rep)
			} else {
				err = writeDiffText(&b, c.rep)
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != c.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), c.want)
			}
			if got := c.rep.exitCode(); got != c.code {
				t.Errorf("exit code %d, want %d", got, c.code)
			}
		})
	}
}

func TestDiffMarkdownTruncatesDetails(t *testing.T) {
	rep := &diffReport{Target: "a", Base: "b"}
	for i := range 2000 {
		rep.Changes = append(rep.Changes, objChange{Action: "updated", Kind: "ConfigMap", Namespace: "default", Name: fmt.Sprint("cm", i),
			Fields: []fieldChange{{Path: "data.k", Old: `"` + strings.Repeat("o", 40) + `"`, New: `"` + strings.Repeat("n", 40) + `"`}}})
	}
	var b bytes.Buffer
	if err := writeDiffMarkdown(&b, rep); err != nil {
		t.Fatal(err)
	}
	details := b.String()[strings.Index(b.String(), "<details>"):]
	if len(details) > maxMarkdownDetails+200 || !strings.Contains(details, "… (truncated)\n```\n") {
		t.Fatalf("details of %d bytes, ending %q", len(details), details[max(0, len(details)-80):])
	}
}

func diffLoad(t *testing.T, files ...string) []manifests.Object {
	t.Helper()
	var fs []manifests.File
	for i, f := range files {
		fs = append(fs, manifests.File{Path: fmt.Sprintf("f%d.yaml", i), Data: []byte(f)})
	}
	objs, err := schema.Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func gitopsCM(name, value, annotations string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n%sdata:\n  k: %q\n", name, annotations, value)
}

func gitopsDeploy(name string, replicas int, annotations string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
%[3]sspec:
  replicas: %[2]d
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
        - name: main
          image: localhost/capstan-demo:latest
          command: ["httpd", "-f", "-p", "8080"]
`, name, replicas, annotations)
}

const pruneOffYAML = "  annotations:\n    capstan.io/prune: disabled\n"

// TestDiffObjects covers the comparison itself, on the views the sync
// compares.
func TestDiffObjects(t *testing.T) {
	// What the cluster holds: annotated by the sync, with status and
	// server-set metadata that are no change.
	applied := func(objs []manifests.Object, source string) []manifests.Object {
		var out []manifests.Object
		for _, o := range objs {
			o = cache.Clone(o)
			m := o.GetObjectMeta()
			if m.Annotations == nil {
				m.Annotations = map[string]string{}
			}
			m.Annotations[manifests.AnnotationSource] = source
			m.Annotations[controllers.AnnotationCommit] = "0123"
			m.UID, m.Generation, m.CreationTimestamp = "uid-1", 4, manifests.Now()
			if d, ok := o.(*manifests.Deployment); ok {
				d.Status.ReadyReplicas = 1
			}
			out = append(out, o)
		}
		return out
	}
	base := diffLoad(t, gitopsDeploy("web", 1, ""), gitopsCM("same", "v", ""), gitopsCM("old", "v", ""), gitopsCM("keep", "v", pruneOffYAML))
	cluster := applied(base, "root")
	// An autoscaler owns web's replicas on the cluster: Git's count is no change.
	scaled := applied(diffLoad(t, gitopsDeploy("web", 5, "")), "root")[0]
	scaled.GetObjectMeta().Annotations[manifests.AnnotationReplicasOwner] = "web"
	withHPA := append([]manifests.Object{scaled}, cluster[1:]...)

	type want struct{ action, name, fields string }
	cases := []struct {
		name     string
		declared []manifests.Object
		current  []manifests.Object
		others   map[string]string
		source   string
		policy   *manifests.DriftPolicy
		want     []want
		errs     []string
	}{
		{name: "same, offline", declared: base, current: base},
		{name: "same, cluster", declared: base, current: cluster, source: "root"},
		{name: "changes, cluster", source: "root", current: cluster,
			declared: diffLoad(t, gitopsDeploy("web", 3, ""), gitopsCM("same", "v", ""), gitopsCM("new", "v", "")),
			want:     []want{{"created", "new", ""}, {"updated", "web", "spec.replicas: 1 -> 3"}, {"kept", "keep", ""}, {"deleted", "old", ""}}},
		{name: "changes, offline", current: base,
			declared: diffLoad(t, gitopsDeploy("web", 1, "  labels: {tier: front}\n"), gitopsCM("same", "w", ""), gitopsCM("old", "v", ""), gitopsCM("keep", "v", pruneOffYAML)),
			want:     []want{{"updated", "same", `data.k: "v" -> "w"`}, {"updated", "web", `metadata.labels.tier: (none) -> "front"`}}},
		{name: "replicas owned by an autoscaler", source: "root", current: withHPA, declared: base},
		{name: "a field the source ignores", source: "root", current: cluster,
			policy:   &manifests.DriftPolicy{Ignore: []manifests.DriftIgnore{{Kind: "Deployment", Paths: []string{"spec.replicas"}}}},
			declared: diffLoad(t, gitopsDeploy("web", 3, ""), gitopsCM("same", "v", ""), gitopsCM("old", "v", ""), gitopsCM("keep", "v", pruneOffYAML))},
		{name: "held by another owner", source: "root", current: cluster, others: map[string]string{"ConfigMap.default.new": "", "ConfigMap.default.other": "team-b"},
			declared: append(slices.Clone(base), diffLoad(t, gitopsCM("new", "v", ""), gitopsCM("other", "v", ""))...),
			errs:     []string{"ConfigMap default/new is already declared by a controller", "ConfigMap default/other is already declared by team-b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			changes, errs, err := diffObjects(c.declared, c.current, c.others, c.source, c.policy)
			if err != nil {
				t.Fatal(err)
			}
			var got []want
			for _, ch := range changes {
				var fs []string
				for _, f := range ch.Fields {
					fs = append(fs, fmt.Sprintf("%s: %s -> %s", f.Path, shownValue(f.Old), shownValue(f.New)))
				}
				got = append(got, want{ch.Action, ch.Name, strings.Join(fs, "; ")})
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("changes %+v, want %+v", got, c.want)
			}
			if !slices.Equal(errs, c.errs) {
				t.Errorf("errors %q, want %q", errs, c.errs)
			}
		})
	}
}

// diffRun runs `capstan diff` and returns its output and exit code.
func diffRun(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err := Run(ctx, append([]string{"diff"}, args...), &out, &errb)
	code := 0
	if err != nil {
		var ex exitError
		if !errors.As(err, &ex) {
			t.Fatalf("capstan diff %v: %v", args, err)
		}
		code = ex.code
		if ex.msg != "" {
			errb.WriteString(ex.msg)
		}
	}
	if errb.Len() > 0 {
		t.Logf("capstan diff %v: stderr: %s", args, errb.String())
	}
	return out.String(), code
}

func diffWantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !slices.Contains(strings.Split(out, "\n"), l) {
			t.Errorf("no line %q in:\n%s", l, out)
		}
	}
}

// TestDiffAgainstCluster runs a real sync of a repository (in-process NATS,
// a git source following its deploy/ directory), then diffs branches, a
// broken branch and a directory against what it applied.
func TestDiffAgainstCluster(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	b := natsauthtest.Start(t)
	conn := b.ControlPlane
	config := filepath.Join(t.TempDir(), "config")
	if err := b.Config(t, natsauth.RoleViewer, "reviewer").Save(config); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CAPSTAN_CONFIG", config)

	r := newGitRepo(t)
	if err := os.Mkdir(filepath.Join(r.dir, "deploy"), 0o755); err != nil {
		t.Fatal(err)
	}
	r.write("deploy/web.yaml", gitopsDeploy("web", 1, ""))
	r.write("deploy/old.yaml", gitopsCM("old", "v", ""))
	r.write("deploy/keep.yaml", gitopsCM("keep", "v", pruneOffYAML))
	r.write("README.md", "not a manifest")
	head := r.commit("initial")

	src, err := git.New(git.Options{URL: r.dir, Branch: "main", Path: "deploy", Interval: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sy := &gitops.Syncer{Name: "root", Source: src, Load: schema.Load, Objects: conn.Objects, Audit: conn.Audit, Events: conn.Events, Resync: time.Hour}
	syncDone := make(chan struct{})
	go func() { _ = sy.Run(ctx); close(syncDone) }()
	t.Cleanup(func() { cancel(); <-syncDone })
	checkFor(t, 15*time.Second, "revision applied", func() error {
		s, err := sourceObject(ctx, conn.Objects, "root")
		if err != nil || s == nil || s.Status.AppliedRevision != head {
			return fmt.Errorf("source %+v, %v", s, err)
		}
		return nil
	})
	server := []string{"--repo", r.dir, "--server", b.URL}

	out, code := diffRun(t, append(server, "--ref", "main")...)
	if code != 0 || !strings.Contains(out, "No changes.") {
		t.Fatalf("main against the cluster: exit %d:\n%s", code, out)
	}

	r.git("checkout", "-q", "-b", "feature")
	r.write("deploy/web.yaml", gitopsDeploy("web", 3, ""))
	r.write("deploy/new.yaml", gitopsCM("new", "v", ""))
	r.remove("deploy/old.yaml")
	r.remove("deploy/keep.yaml")
	feature := r.commit("scale web, add new, drop old and keep")
	out, code = diffRun(t, append(server, "--ref", "feature")...)
	if code != 1 {
		t.Fatalf("feature: exit %d, want 1:\n%s", code, out)
	}
	diffWantLines(t, out,
		fmt.Sprintf("Comparing feature (%s) with the cluster (source root, revision %s)", feature[:12], head[:12]),
		"+ ConfigMap default/new created",
		"~ Deployment default/web updated",
		"    spec.replicas: 1 -> 3",
		"- ConfigMap default/old deleted",
		"= ConfigMap default/keep kept (capstan.io/prune: disabled)",
		"4 changes: 1 created, 1 updated, 1 deleted, 1 kept")

	out, code = diffRun(t, append(server, "--ref", "feature", "-o", "markdown")...)
	if code != 1 || !strings.HasPrefix(out, "### Capstan diff: 4 changes\n") ||
		!strings.Contains(out, "| updated | Deployment | default | web | `spec.replicas` |\n") ||
		!strings.Contains(out, "- spec.replicas: 1\n+ spec.replicas: 3\n") {
		t.Fatalf("feature as markdown: exit %d:\n%s", code, out)
	}

	// The cluster is not touched by a diff.
	if s, _ := sourceObject(ctx, conn.Objects, "root"); s.Status.AppliedRevision != head {
		t.Fatalf("applied revision moved to %s", s.Status.AppliedRevision)
	}

	r.git("checkout", "-q", "-b", "broken", "main")
	r.write("deploy/web.yaml", strings.Replace(gitopsDeploy("web", 1, ""), "replicas: 1", "replicas: many", 1))
	r.commit("break web")
	out, code = diffRun(t, append(server, "--ref", "broken")...)
	if code != 2 || !strings.Contains(out, "1 error:\n  deploy/web.yaml:6:3: spec.replicas: ") || !strings.Contains(out, "spec.replicas") {
		t.Fatalf("broken: exit %d, want 2 with deploy/web.yaml:6:3:\n%s", code, out)
	}

	// A local directory, the way an editor leaves it (nothing committed).
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "web.yaml"), []byte(gitopsDeploy("web", 1, "  labels: {tier: front}\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "old.yaml"), []byte(gitopsCM("old", "v", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "keep.yaml"), []byte(gitopsCM("keep", "v", pruneOffYAML)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = diffRun(t, work, "--server", b.URL)
	if code != 1 || !strings.Contains(out, "~ Deployment default/web updated\n    metadata.labels.tier: (none) -> \"front\"\n1 change: 1 updated\n") {
		t.Fatalf("directory: exit %d:\n%s", code, out)
	}

	// Another source: nothing applied, so everything is new, and the keys
	// root holds are conflicts.
	out, code = diffRun(t, append(server, "--ref", "main", "--source", "other", "--path", "deploy")...)
	if code != 2 || !strings.Contains(out, "Deployment default/web is already declared by root") ||
		!strings.Contains(out, "the cluster (source other, nothing applied yet)") {
		t.Fatalf("other source: exit %d:\n%s", code, out)
	}

	// Once the sync has kept a protected object, it is no change any more.
	r.git("checkout", "-q", "main")
	r.remove("deploy/keep.yaml")
	dropped := r.commit("drop keep")
	checkFor(t, 15*time.Second, "removal applied", func() error {
		s, err := sourceObject(ctx, conn.Objects, "root")
		if err != nil || s == nil || s.Status.AppliedRevision != dropped {
			return fmt.Errorf("source %+v, %v", s, err)
		}
		return nil
	})
	if out, code = diffRun(t, append(server, "--ref", "main")...); code != 0 || !strings.Contains(out, "No changes.") {
		t.Fatalf("main after keep was kept: exit %d:\n%s", code, out)
	}
	// Declaring it again takes it back unchanged: no change either.
	if out, code = diffRun(t, append(server, "--ref", "HEAD~1")...); code != 0 {
		t.Fatalf("declaring keep again: exit %d:\n%s", code, out)
	}

	// Trouble: an unknown ref, an unreachable bus.
	if out, code = diffRun(t, append(server, "--ref", "nope")...); code != 2 {
		t.Fatalf("unknown ref: exit %d:\n%s", code, out)
	}
	if out, code = diffRun(t, "--repo", r.dir, "--ref", "main", "--server", "nats://127.0.0.1:1"); code != 2 {
		t.Fatalf("no bus: exit %d:\n%s", code, out)
	}
}

// TestDiffOffline compares two refs of one repository with no cluster at
// all, as a CI job on a pull request does.
func TestDiffOffline(t *testing.T) {
	r := newGitRepo(t)
	r.write("web.yaml", gitopsDeploy("web", 1, ""))
	r.write("old.yaml", gitopsCM("old", "v", ""))
	main := r.commit("initial")
	r.git("checkout", "-q", "-b", "feature")
	r.write("web.yaml", gitopsDeploy("web", 2, ""))
	r.remove("old.yaml")
	r.commit("scale web, drop old")
	noBus := []string{"--repo", r.dir, "--server", "nats://127.0.0.1:1"}

	out, code := diffRun(t, append(noBus, "--base", "main")...) // --ref defaults to HEAD: feature
	if code != 1 {
		t.Fatalf("HEAD against main: exit %d:\n%s", code, out)
	}
	diffWantLines(t, out, fmt.Sprintf("Comparing HEAD (%s) with main (%s)", r.git("rev-parse", "HEAD")[:12], main[:12]),
		"~ Deployment default/web updated", "    spec.replicas: 1 -> 2", "- ConfigMap default/old deleted", "2 changes: 1 updated, 1 deleted")

	if out, code = diffRun(t, append(noBus, "--base", "main", "--ref", "main")...); code != 0 {
		t.Fatalf("main against main: exit %d:\n%s", code, out)
	}
	// The other way round: created.
	out, code = diffRun(t, append(noBus, "--base", "feature", "--ref", "main", "-o", "markdown")...)
	if code != 1 || !strings.Contains(out, "| created | ConfigMap | default | old |  |\n") {
		t.Fatalf("main against feature: exit %d:\n%s", code, out)
	}

	// A broken base is trouble, not an empty base.
	r.write("web.yaml", "kind: Nope\n")
	r.commit("break")
	r.git("branch", "broken")
	if out, code = diffRun(t, append(noBus, "--base", "broken", "--ref", "main")...); code != 2 || !strings.Contains(out, "does not validate") {
		t.Fatalf("broken base: exit %d:\n%s", code, out)
	}
	if out, code = diffRun(t, append(noBus, "--base", "main", "--ref", "broken")...); code != 2 || !strings.Contains(out, "web.yaml:1:") {
		t.Fatalf("broken target: exit %d:\n%s", code, out)
	}
	if out, code = diffRun(t, append(noBus, "--base", "main", "-o", "yaml")...); code != 2 {
		t.Fatalf("bad output: exit %d:\n%s", code, out)
	}
}
