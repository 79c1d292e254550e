package ownership

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// CopyFields returns a copy of dst with the fields at paths set to their
// values in src, or removed where src has none.
func CopyFields(dst, src manifests.Object, paths []manifests.FieldPath) (manifests.Object, error) {
	var d, sv map[string]any
	if err := roundTrip(dst, &d); err != nil {
		return nil, err
	}
	if err := roundTrip(src, &sv); err != nil {
		return nil, err
	}
	for _, p := range paths {
		if v, ok := getField(sv, p); ok {
			setField(d, p, v)
		} else {
			deleteField(d, p)
		}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return manifests.Decode(b)
}

func roundTrip(obj manifests.Object, into *map[string]any) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

func getField(v any, p manifests.FieldPath) (any, bool) {
	for _, e := range p {
		switch e := e.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[e]; !ok {
				return nil, false
			}
		case int:
			l, ok := v.([]any)
			if !ok || e >= len(l) {
				return nil, false
			}
			v = l[e]
		}
	}
	return v, true
}

// setField sets the value at p, making the objects on the way; a list
// index past the end is left alone.
func setField(root map[string]any, p manifests.FieldPath, val any) {
	var cur any = root
	for i, e := range p {
		last := i == len(p)-1
		switch e := e.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				return
			}
			if last {
				m[e] = val
				return
			}
			next, ok := m[e]
			if !ok || next == nil {
				if _, isIndex := p[i+1].(int); isIndex {
					return
				}
				next = map[string]any{}
				m[e] = next
			}
			cur = next
		case int:
			l, ok := cur.([]any)
			if !ok || e >= len(l) {
				return
			}
			if last {
				l[e] = val
				return
			}
			cur = l[e]
		}
	}
}

// deleteField removes the object key at p; list elements are kept (their
// removal would shift the others).
func deleteField(root map[string]any, p manifests.FieldPath) {
	parent, ok := getField(root, p[:len(p)-1])
	if !ok {
		return
	}
	if m, ok := parent.(map[string]any); ok {
		if k, ok := p[len(p)-1].(string); ok {
			delete(m, k)
		}
	}
}

// DeclaringChain follows controller owner references up from obj to the
// object a source declared: the chain from obj to it, and the source; ""
// when obj does not come from a source.
func DeclaringChain(objects *cache.Cache, obj manifests.Object) ([]manifests.Object, string) {
	var chain []manifests.Object
	for range 6 {
		chain = append(chain, obj)
		meta := obj.GetObjectMeta()
		if s := meta.Annotations[manifests.AnnotationSource]; s != "" {
			return chain, s
		}
		ref := meta.Controller()
		if ref == nil {
			return nil, ""
		}
		c, ok := objects.Get(manifests.Key(ref.Kind, meta.Namespace, ref.Name))
		if !ok || c.Obj.GetObjectMeta().UID != ref.UID {
			return nil, ""
		}
		obj = c.Obj
	}
	return nil, ""
}

// podTemplatePrefix is where a kind keeps the pod template whose fields
// ignore rules on it name.
func podTemplatePrefix(kind string) (string, bool) {
	switch kind {
	case "Pod":
		return "", true
	case "Deployment", "ReplicaSet", "ReplicationController", "StatefulSet", "DaemonSet", "Job":
		return "spec.template.", true
	case "CronJob":
		return "spec.jobTemplate.spec.template.", true
	}
	return "", false
}

// PodDriftPolicy is the drift policy a pod's node applies to its
// containers: its source's mode, and the source's ignore rules that match
// the pod or an owner on the way to the declared object, with paths made
// relative to the pod (spec.template.spec.containers[0].resources of a
// Deployment is spec.containers[0].resources of its pods). nil: correct
// everything.
func PodDriftPolicy(objects *cache.Cache, pod *manifests.Pod) *manifests.PodDriftPolicy {
	chain, source := DeclaringChain(objects, pod)
	if source == "" {
		return nil
	}
	c, ok := objects.Get(manifests.Key("Source", "", source))
	if !ok {
		return nil
	}
	dp := c.Obj.(*manifests.Source).Spec.Drift
	if dp == nil || dp.Mode != DriftReport && len(dp.Ignore) == 0 {
		return nil
	}
	out := &manifests.PodDriftPolicy{}
	if dp.Mode == DriftReport {
		out.Mode = DriftReport
	}
	for _, r := range dp.Ignore {
		for _, o := range chain {
			if !ruleApplies(r, o) {
				continue
			}
			prefix, ok := podTemplatePrefix(o.GetTypeMeta().Kind)
			if !ok {
				continue
			}
			for _, p := range r.Paths {
				if rest, ok := strings.CutPrefix(p, prefix); ok && strings.HasPrefix(rest, "spec.containers") {
					out.Ignore = append(out.Ignore, rest)
				}
			}
		}
	}
	slices.Sort(out.Ignore)
	out.Ignore = slices.Compact(out.Ignore)
	if out.Mode == "" && len(out.Ignore) == 0 {
		return nil
	}
	return out
}

// withIgnored returns want with the fields that the policy's ignore rules
// name for it taken from live (removed when live has none), and whether
// any rule matched.
func withIgnored(policy *manifests.DriftPolicy, want, live manifests.Object) (manifests.Object, bool, error) {
	if policy == nil || len(policy.Ignore) == 0 || live == nil {
		return nil, false, nil
	}
	var paths []manifests.FieldPath
	for _, r := range policy.Ignore {
		if !ruleApplies(r, want) {
			continue
		}
		for _, p := range r.Paths {
			if fp, err := manifests.ParseFieldPath(p); err == nil { // the schema checked it
				paths = append(paths, fp)
			}
		}
	}
	if len(paths) == 0 {
		return nil, false, nil
	}
	out, err := CopyFields(want, live, paths)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// ruleApplies reports whether an ignore rule names obj: its kind (any
// case), namespace and name, each when the rule gives it.
func ruleApplies(r manifests.DriftIgnore, obj manifests.Object) bool {
	m := obj.GetObjectMeta()
	return (r.Kind == "" || strings.EqualFold(r.Kind, obj.GetTypeMeta().Kind)) &&
		(r.Namespace == "" || r.Namespace == m.Namespace) && (r.Name == "" || r.Name == m.Name)
}
