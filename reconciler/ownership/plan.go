package ownership

import (
	"fmt"
	"slices"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// Change is one object a revision would create, update (Fields says
// where), delete, or keep (annotated capstan.io/prune: disabled).
type Change struct {
	Action    string // created, updated, deleted, kept
	Kind      string
	Namespace string
	Name      string
	Fields    []FieldChange // updated only
}

// FieldChange is one changed leaf with its JSON values ("" when absent).
type FieldChange struct {
	Path, Old, New string
}

// PlanInput is what a plan compares.
type PlanInput struct {
	Declared []manifests.Object // what the revision declares
	Live     []manifests.Object // what the source holds now
	// Others holds the keys another owner holds: another source's name,
	// or "" for a controller. Declaring one is a conflict.
	Others map[string]string
	// Source names the source: declared objects get its annotation, as
	// the sync gives them. "" compares two revisions (no conflicts).
	Source string
	Policy *manifests.DriftPolicy // the source's ignore rules
	// Comparable, if set, gives the live object to compare a declared one
	// with (the CLI opens Secrets encrypted at rest).
	Comparable func(declared, live manifests.Object) manifests.Object
}

// Plan is what applying a revision would change, as the sync would
// change it: every update is decided by Compare.
type Plan struct {
	Changes   []Change
	Conflicts []string // declared objects another owner holds
}

// MakePlan compares in.Declared with in.Live.
func MakePlan(in PlanInput) (Plan, error) {
	live := map[string]manifests.Object{}
	for _, o := range in.Live {
		live[manifests.KeyOf(o)] = o
	}
	declared := slices.Clone(in.Declared)
	manifests.SortObjects(declared)
	var p Plan
	seen := map[string]bool{}
	for _, obj := range declared {
		key := manifests.KeyOf(obj)
		seen[key] = true
		kind, ns, name, _ := manifests.SplitKey(key)
		if in.Source != "" {
			obj = cache.Clone(obj)
			m := obj.GetObjectMeta()
			if m.Annotations == nil {
				m.Annotations = map[string]string{}
			}
			m.Annotations[manifests.AnnotationSource] = in.Source
		}
		cur, ok := live[key]
		if !ok {
			if owner, held := in.Others[key]; held {
				if owner == "" {
					owner = "a controller"
				}
				p.Conflicts = append(p.Conflicts, fmt.Sprintf("%s %s is already declared by %s", kind, manifests.JoinName(ns, name), owner))
				continue
			}
			p.Changes = append(p.Changes, Change{Action: "created", Kind: kind, Namespace: ns, Name: name})
			continue
		}
		if in.Comparable != nil {
			cur = in.Comparable(obj, cur)
		}
		cmp, err := Compare(obj, cur, in.Policy)
		if err != nil {
			return Plan{}, fmt.Errorf("%s: %w", key, err)
		}
		if cmp.Changed() {
			p.Changes = append(p.Changes, Change{Action: "updated", Kind: kind, Namespace: ns, Name: name, Fields: FieldChanges(cmp.LiveView, cmp.WantView)})
		}
	}
	gone := slices.Clone(in.Live)
	manifests.SortObjects(gone)
	for _, o := range gone {
		key := manifests.KeyOf(o)
		if seen[key] {
			continue
		}
		kind, ns, name, _ := manifests.SplitKey(key)
		action := "deleted"
		if o.GetObjectMeta().Annotations[manifests.AnnotationPrune] == manifests.PruneDisabled {
			action = "kept"
		}
		p.Changes = append(p.Changes, Change{Action: action, Kind: kind, Namespace: ns, Name: name})
	}
	return p, nil
}

// FieldChanges lists the leaves that differ between two declared views,
// with their values.
func FieldChanges(live, want []byte) []FieldChange {
	paths := ChangedFields(live, want)
	va, vb := FieldValues(live), FieldValues(want)
	out := make([]FieldChange, len(paths))
	for i, p := range paths {
		out[i] = FieldChange{Path: p, Old: va[p], New: vb[p]}
	}
	return out
}
