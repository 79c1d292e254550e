package reconciler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// TemplateHash keys a ReplicaSet by the pod template it runs.
func TemplateHash(t *manifests.PodTemplateSpec) string {
	c := *t
	c.Labels = maps.Clone(t.Labels)
	delete(c.Labels, manifests.LabelPodTemplateHash)
	return manifests.Hash(c)
}

func revisionOf(rs *manifests.ReplicaSet) int64 {
	n, _ := strconv.ParseInt(rs.Annotations[manifests.AnnotationRevision], 10, 64)
	return n
}

type ownedRS struct {
	c  *Cached
	rs *manifests.ReplicaSet
}

func (cp *ControlPlane) reconcileDeployment(ctx context.Context, key string) error {
	c, ok := cp.objects.Get(key)
	if !ok {
		return nil // its ReplicaSets are garbage-collected
	}
	d := c.Obj.(*manifests.Deployment)
	hash := TemplateHash(&d.Spec.Template)
	var cur *ownedRS
	var old []ownedRS
	var maxRev int64
	for _, r := range cp.objects.List("ReplicaSet", d.Namespace) {
		if !isControlledBy(r.Obj, d) {
			continue
		}
		rs := r.Obj.(*manifests.ReplicaSet)
		maxRev = max(maxRev, revisionOf(rs))
		if rs.Labels[manifests.LabelPodTemplateHash] == hash {
			cur = &ownedRS{r, rs}
		} else {
			old = append(old, ownedRS{r, rs})
		}
	}
	// Oldest revision first: those are shrunk first.
	slices.SortFunc(old, func(a, b ownedRS) int { return int(revisionOf(a.rs) - revisionOf(b.rs)) })
	desired := manifests.Int32(d.Spec.Replicas, 1)

	if d.Spec.Paused {
		return cp.updateDeploymentStatus(ctx, c, d, cur, old)
	}
	if cur == nil {
		return cp.createReplicaSet(ctx, d, hash, maxRev+1, old, desired)
	}
	if revisionOf(cur.rs) < maxRev {
		// Rolled back to an older template: it becomes the newest revision.
		upd := Clone(cur.rs)
		upd.Annotations[manifests.AnnotationRevision] = strconv.FormatInt(maxRev+1, 10)
		_, err := UpdateObject(ctx, cp.Objects, upd, cur.c.Rev)
		return err
	}

	var changed bool
	var err error
	if d.Spec.Strategy.Type == manifests.RecreateStrategy {
		changed, err = cp.stepRecreate(ctx, d, cur, old, desired)
	} else {
		changed, err = cp.stepRolling(ctx, d, cur, old, desired)
	}
	if err != nil || changed {
		return err
	}
	if err := cp.cleanupReplicaSets(ctx, d, old); err != nil {
		return err
	}
	return cp.updateDeploymentStatus(ctx, c, d, cur, old)
}

func (cp *ControlPlane) createReplicaSet(ctx context.Context, d *manifests.Deployment, hash string, rev int64, old []ownedRS, desired int32) error {
	tmpl := Clone(&manifests.Pod{TypeMeta: manifests.TypeMeta{Kind: "Pod"}, ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec})
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[manifests.LabelPodTemplateHash] = hash
	sel := &manifests.LabelSelector{MatchLabels: maps.Clone(d.Spec.Selector.MatchLabels), MatchExpressions: d.Spec.Selector.MatchExpressions}
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[manifests.LabelPodTemplateHash] = hash
	// With nothing running yet there is nothing to roll from: start at
	// full size. Otherwise the rollout grows it step by step.
	replicas := int32(0)
	running := false
	for _, o := range old {
		if manifests.Int32(o.rs.Spec.Replicas, 0) > 0 || o.rs.Status.Replicas > 0 {
			running = true
		}
	}
	if !running {
		replicas = desired
	}
	rs := &manifests.ReplicaSet{
		TypeMeta: manifests.TypeMeta{Kind: "ReplicaSet", APIVersion: "apps/v1"},
		ObjectMeta: manifests.ObjectMeta{
			Name:            d.Name + "-" + hash,
			Namespace:       d.Namespace,
			Labels:          maps.Clone(tmpl.Labels),
			Annotations:     map[string]string{manifests.AnnotationRevision: strconv.FormatInt(rev, 10)},
			OwnerReferences: []manifests.OwnerReference{ownerRef(d)},
		},
		Spec: manifests.ReplicaSetSpec{
			Replicas:        &replicas,
			MinReadySeconds: d.Spec.MinReadySeconds,
			Selector:        sel,
			Template:        manifests.PodTemplateSpec{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec},
		},
	}
	if _, err := CreateObject(ctx, cp.Objects, rs); err != nil {
		if errors.Is(err, bus.ErrExists) {
			// A ReplicaSet of that name we do not own, or the cache lags:
			// retry once the cache shows it.
			return fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, err)
		}
		return err
	}
	cp.event(ctx, d, "Normal", "ScalingReplicaSet", fmt.Sprintf("Created replica set %s (revision %d)", rs.Name, rev))
	return nil
}

// scaleRS writes rs.spec.replicas = n if different; it reports whether it
// wrote.
func (cp *ControlPlane) scaleRS(ctx context.Context, d *manifests.Deployment, r *ownedRS, n int32) (bool, error) {
	if manifests.Int32(r.rs.Spec.Replicas, 1) == n {
		return false, nil
	}
	upd := Clone(r.rs)
	from := manifests.Int32(upd.Spec.Replicas, 1)
	upd.Spec.Replicas = &n
	upd.Generation++
	if _, err := UpdateObject(ctx, cp.Objects, upd, r.c.Rev); err != nil {
		return false, err
	}
	verb := "up"
	if n < from {
		verb = "down"
	}
	cp.event(ctx, d, "Normal", "ScalingReplicaSet", fmt.Sprintf("Scaled %s replica set %s from %d to %d", verb, r.rs.Name, from, n))
	return true, nil
}

func (cp *ControlPlane) stepRolling(ctx context.Context, d *manifests.Deployment, cur *ownedRS, old []ownedRS, desired int32) (bool, error) {
	var surge, unavail int32 = 0, 0
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		var err error
		if surge, err = ru.MaxSurge.Scaled(desired, true); err != nil {
			return false, err
		}
		if unavail, err = ru.MaxUnavailable.Scaled(desired, false); err != nil {
			return false, err
		}
	} else {
		surge, _ = manifests.FromString("25%").Scaled(desired, true)
		unavail, _ = manifests.FromString("25%").Scaled(desired, false)
	}
	st := func(rs *manifests.ReplicaSet) RSState {
		// Available pods are counted only once the ReplicaSet's status
		// describes its current spec.
		return RSState{Replicas: manifests.Int32(rs.Spec.Replicas, 1), Available: rs.Status.AvailableReplicas}
	}
	olds := make([]RSState, len(old))
	for i, o := range old {
		olds[i] = st(o.rs)
	}
	n, o := PlanRollingUpdate(desired, surge, unavail, st(cur.rs), olds)
	changed, err := cp.scaleRS(ctx, d, cur, n)
	if err != nil || changed {
		return changed, err
	}
	for i := range old {
		ch, err := cp.scaleRS(ctx, d, &old[i], o[i])
		if err != nil {
			return false, err
		}
		changed = changed || ch
	}
	return changed, nil
}

func (cp *ControlPlane) stepRecreate(ctx context.Context, d *manifests.Deployment, cur *ownedRS, old []ownedRS, desired int32) (bool, error) {
	changed := false
	oldPods := 0
	for i := range old {
		ch, err := cp.scaleRS(ctx, d, &old[i], 0)
		if err != nil {
			return false, err
		}
		changed = changed || ch
		oldPods += len(cp.podsOwnedBy(old[i].rs))
	}
	if changed || oldPods > 0 {
		return changed, nil
	}
	return cp.scaleRS(ctx, d, cur, desired)
}

// cleanupReplicaSets deletes empty old ReplicaSets beyond the history limit.
func (cp *ControlPlane) cleanupReplicaSets(ctx context.Context, d *manifests.Deployment, old []ownedRS) error {
	limit := int(manifests.Int32(d.Spec.RevisionHistoryLimit, 10))
	var empty []ownedRS
	for _, o := range old {
		if manifests.Int32(o.rs.Spec.Replicas, 1) == 0 && o.rs.Status.Replicas == 0 {
			empty = append(empty, o)
		}
	}
	for i := 0; i < len(empty)-limit; i++ { // old is oldest first
		if err := DeleteObject(ctx, cp.Objects, empty[i].c.Key, empty[i].c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
			return err
		}
	}
	return nil
}

func (cp *ControlPlane) updateDeploymentStatus(ctx context.Context, c *Cached, d *manifests.Deployment, cur *ownedRS, old []ownedRS) error {
	desired := manifests.Int32(d.Spec.Replicas, 1)
	st := manifests.DeploymentStatus{ObservedGeneration: d.Generation, Conditions: slices.Clone(d.Status.Conditions)}
	all := old
	if cur != nil {
		all = append(slices.Clone(old), *cur)
		st.UpdatedReplicas = cur.rs.Status.Replicas
	}
	for _, o := range all {
		st.Replicas += o.rs.Status.Replicas
		st.ReadyReplicas += o.rs.Status.ReadyReplicas
		st.AvailableReplicas += o.rs.Status.AvailableReplicas
	}
	st.UnavailableReplicas = max(desired-st.AvailableReplicas, 0)

	var unavail int32
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil && d.Spec.Strategy.Type != manifests.RecreateStrategy {
		unavail, _ = ru.MaxUnavailable.Scaled(desired, false)
	}
	avail := manifests.Condition{Type: "Available", Status: manifests.ConditionFalse, Reason: "MinimumReplicasUnavailable", Message: "Deployment does not have minimum availability."}
	if st.AvailableReplicas >= desired-unavail {
		avail = manifests.Condition{Type: "Available", Status: manifests.ConditionTrue, Reason: "MinimumReplicasAvailable", Message: "Deployment has minimum availability."}
	}
	st.Conditions = setCond(st.Conditions, avail)
	prog := manifests.Condition{Type: "Progressing", Status: manifests.ConditionTrue, Reason: "ReplicaSetUpdated"}
	switch {
	case d.Spec.Paused:
		prog = manifests.Condition{Type: "Progressing", Status: manifests.ConditionUnknown, Reason: "DeploymentPaused", Message: "Deployment is paused"}
	case cur != nil && st.UpdatedReplicas == desired && st.Replicas == desired && st.AvailableReplicas == desired:
		prog.Reason = "NewReplicaSetAvailable"
		prog.Message = fmt.Sprintf("ReplicaSet %q has successfully progressed.", cur.rs.Name)
	case cur != nil:
		prog.Message = fmt.Sprintf("ReplicaSet %q is progressing.", cur.rs.Name)
	}
	st.Conditions = setCond(st.Conditions, prog)
	if statusEqual(st, d.Status) {
		return nil
	}
	upd := Clone(d)
	upd.Status = st
	_, err := UpdateObject(ctx, cp.Objects, upd, c.Rev)
	if errors.Is(err, bus.ErrNotFound) {
		return nil
	}
	return err
}

// setCond sets c, keeping the transition time when the status is unchanged
// and touching nothing when nothing changed.
func setCond(conds []manifests.Condition, c manifests.Condition) []manifests.Condition {
	if old := manifests.FindCondition(conds, c.Type); old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
		return conds
	}
	return manifests.SetCondition(conds, c)
}

func statusEqual(a, b manifests.DeploymentStatus) bool {
	return manifests.Hash(a) == manifests.Hash(b)
}
