package writeback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	yaml "gopkg.in/yaml.v3"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/controllers"
)

// sourceRepo is where an object's declaring source lives.
type sourceRepo struct {
	name, url, branch, path string
	verify                  string // the signature policy's mode, "" for none
}

// makeEdit makes the edit once the repository is open (to read its
// history).
type makeEdit func(repo *gogit.Repository, src sourceRepo) (editFunc, error)

// plannedWrite is what a request commits: the message and the edit, or
// done when there is nothing to commit.
type plannedWrite struct {
	msg  string
	edit makeEdit
	done string
}

// planWrite reads from the bus what the change needs (the Deployment's
// ReplicaSets for undo) and makes the commit's message and edit. The CLI
// (for a repository it writes itself) and the control plane share it.
func planWrite(ctx context.Context, objects bus.Store, obj manifests.Object, req Change) (plannedWrite, error) {
	target := strings.ToLower(obj.GetTypeMeta().Kind) + "/" + obj.GetObjectMeta().Name
	if req.Replicas != nil {
		n := *req.Replicas
		return plannedWrite{msg: fmt.Sprintf("scale %s to %d replicas", target, n), edit: func(*gogit.Repository, sourceRepo) (editFunc, error) {
			return func(doc *yaml.Node) error { return setReplicas(doc, n) }, nil
		}}, nil
	}
	d, ok := obj.(*manifests.Deployment)
	if !ok {
		return plannedWrite{}, fmt.Errorf("cannot roll back %s", target)
	}
	rss, err := replicaSets(ctx, objects, d.Namespace)
	if err != nil {
		return plannedWrite{}, err
	}
	var rs *manifests.ReplicaSet
	var rev, current int64
	revs := map[*manifests.ReplicaSet]int64{}
	for _, r := range rss {
		if h := controllers.DeploymentHistory(d, []*manifests.ReplicaSet{r}); len(h) == 1 {
			revs[r] = h[0].Revision
			current = max(current, h[0].Revision)
		}
	}
	for r, n := range revs {
		if (req.ToRevision > 0 && n == req.ToRevision) || (req.ToRevision == 0 && n < current && n > rev) {
			rs, rev = r, n
		}
	}
	switch {
	case rs == nil && req.ToRevision > 0:
		return plannedWrite{}, refuse("unable to find the specified revision %d", req.ToRevision)
	case rs == nil:
		return plannedWrite{}, refuse("no rollout history found for deployment \"%s\"", d.Name)
	case rev == current:
		return plannedWrite{done: fmt.Sprintf("deployment/%s skipped rollback (current template already matches revision %d)", d.Name, rev)}, nil
	}
	commit := rs.Annotations[manifests.AnnotationCommit]
	msg := fmt.Sprintf("roll back deployment/%s to revision %d", d.Name, rev)
	if commit != "" {
		msg += fmt.Sprintf(" (template of commit %s)", commit[:min(len(commit), 12)])
	}
	return plannedWrite{msg: msg, edit: func(repo *gogit.Repository, src sourceRepo) (editFunc, error) {
		tmpl := templateAt(repo, commit, src.path, d.Namespace, d.Name)
		if tmpl == nil {
			var err error
			if tmpl, err = templateNode(rs); err != nil {
				return nil, err
			}
		}
		return func(doc *yaml.Node) error { return replaceTemplate(doc, tmpl) }, nil
	}}, nil
}

// replicaSets lists the ReplicaSets of a namespace.
func replicaSets(ctx context.Context, objects bus.Store, ns string) ([]*manifests.ReplicaSet, error) {
	entries, err := objects.List(ctx, "ReplicaSet."+ns+".>")
	if err != nil {
		return nil, fmt.Errorf("list ReplicaSets: %w", err)
	}
	var out []*manifests.ReplicaSet
	for _, e := range entries {
		if obj, err := manifests.Decode(e.Value); err == nil {
			if rs, ok := obj.(*manifests.ReplicaSet); ok {
				out = append(out, rs)
			}
		}
	}
	return out, nil
}

// templateAt reads the pod template of Deployment ns/name as commit hash
// declared it (under path), or nil when the commit or the object is not
// there.
func templateAt(repo *gogit.Repository, hash, srcPath, ns, name string) *yaml.Node {
	if !plumbing.IsHash(hash) {
		return nil
	}
	c, err := repo.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		return nil
	}
	tree, err := c.Tree()
	if err != nil {
		return nil
	}
	var found *yaml.Node
	_ = tree.Files().ForEach(func(f *object.File) error {
		ext := strings.ToLower(path.Ext(f.Name))
		if (ext != ".yaml" && ext != ".yml") || (srcPath != "" && !strings.HasPrefix(f.Name, strings.Trim(srcPath, "/")+"/")) {
			return nil
		}
		data, err := f.Contents()
		if err != nil {
			return nil
		}
		if doc, ok := findDocument([]byte(data), objectRef{Kind: "Deployment", Namespace: ns, Name: name}); ok {
			found = mapValue(mapValue(doc.root, "spec"), "template")
			return errStopWalk
		}
		return nil
	})
	return found
}

var errStopWalk = errors.New("stop")

// templateNode is a ReplicaSet's pod template as YAML, without the
// pod-template-hash label the controller added.
func templateNode(rs *manifests.ReplicaSet) (*yaml.Node, error) {
	t := rs.Spec.Template
	t.Labels = maps.Clone(t.Labels)
	delete(t.Labels, manifests.LabelPodTemplateHash)
	b, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	if b, err = json.Marshal(dropEmpty(v)); err != nil {
		return nil, err
	}
	y, err := sigsyaml.JSONToYAML(b)
	if err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(y, &n); err != nil {
		return nil, err
	}
	stripStyle(n.Content[0])
	return n.Content[0], nil
}

// dropEmpty removes the empty strings, nulls and empty objects that Go's
// encoding leaves in a template, so Git gets what a person would write.
func dropEmpty(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			e = dropEmpty(e)
			if e == nil || e == "" {
				delete(t, k)
				continue
			}
			if m, ok := e.(map[string]any); ok && len(m) == 0 {
				delete(t, k)
				continue
			}
			t[k] = e
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = dropEmpty(e)
		}
	}
	return v
}

// stripStyle makes every node block style, for nodes read from JSON.
func stripStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	for _, c := range n.Content {
		stripStyle(c)
	}
}
