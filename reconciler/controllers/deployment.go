package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
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
	c  *cache.Cached
	rs *manifests.ReplicaSet
}

// deploymentController rolls Deployments out through their ReplicaSets.
type deploymentController struct{ queued }

func newDeploymentController(sh *shared) *deploymentController {
	return &deploymentController{newQueued(sh, "Deployment")}
}

func (ctl *deploymentController) reconcile(ctx context.Context, key string) error {
	c, ok := ctl.objects.Get(key)
	if !ok {
		return nil // its ReplicaSets are garbage-collected
	}
	d := c.Obj.(*manifests.Deployment)
	hash := TemplateHash(&d.Spec.Template)
	var cur *ownedRS
	var old []ownedRS
	var maxRev int64
	for _, r := range ctl.objects.List("ReplicaSet", d.Namespace) {
		if !cache.IsControlledBy(r.Obj, d) {
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
		return ctl.updateDeploymentStatus(ctx, c, d, cur, old, nil)
	}
	if cur == nil {
		return ctl.createReplicaSet(ctx, d, hash, maxRev+1, old, desired)
	}
	// A template Git moved away from may be tried again when Git comes
	// back to it.
	for _, o := range old {
		if _, failed := o.rs.Annotations[AnnotationRolloutFailed]; failed {
			upd := cache.Clone(o.rs)
			delete(upd.Annotations, AnnotationRolloutFailed)
			_, err := cache.UpdateObject(ctx, ctl.store, upd, o.c.Rev)
			return err
		}
	}
	if _, failed := cur.rs.Annotations[AnnotationRolloutFailed]; failed {
		return ctl.rollBack(ctx, c, d, cur, old, maxRev, desired)
	}
	if revisionOf(cur.rs) < maxRev {
		// Rolled back to an older template: it becomes the newest revision.
		upd := cache.Clone(cur.rs)
		upd.Annotations[manifests.AnnotationRevision] = strconv.FormatInt(maxRev+1, 10)
		_, err := cache.UpdateObject(ctx, ctl.store, upd, cur.c.Rev)
		return err
	}
	if cur.rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
		upd := cache.Clone(cur.rs)
		upd.Spec.MinReadySeconds = d.Spec.MinReadySeconds
		upd.Generation++
		_, err := cache.UpdateObject(ctx, ctl.store, upd, cur.c.Rev)
		return err
	}

	changed, err := ctl.step(ctx, d, cur, old, desired)
	if err != nil || changed {
		return err
	}
	if err := ctl.cleanupReplicaSets(ctx, d, old); err != nil {
		return err
	}
	if rolloutComplete(cur, old, desired) {
		if _, marked := cur.rs.Annotations[AnnotationRolloutComplete]; !marked {
			// A rollback target from now on.
			upd := cache.Clone(cur.rs)
			upd.Annotations[AnnotationRolloutComplete] = manifests.Now().Format(time.RFC3339)
			_, err := cache.UpdateObject(ctx, ctl.store, upd, cur.c.Rev)
			return err
		}
	}
	return ctl.updateDeploymentStatus(ctx, c, d, cur, old, nil)
}

// step moves the rollout one step towards cur by the Deployment's strategy.
func (ctl *deploymentController) step(ctx context.Context, d *manifests.Deployment, cur *ownedRS, old []ownedRS, desired int32) (bool, error) {
	if d.Spec.Strategy.Type == manifests.RecreateStrategy {
		return ctl.stepRecreate(ctx, d, cur, old, desired)
	}
	return ctl.stepRolling(ctx, d, cur, old, desired)
}

// rolloutComplete reports whether cur runs every replica, available, and
// the old sets are empty.
func rolloutComplete(cur *ownedRS, old []ownedRS, desired int32) bool {
	if manifests.Int32(cur.rs.Spec.Replicas, 1) != desired || cur.rs.Status.AvailableReplicas < desired || cur.rs.Status.Replicas != desired {
		return false
	}
	for _, o := range old {
		if manifests.Int32(o.rs.Spec.Replicas, 1) != 0 || o.rs.Status.Replicas != 0 {
			return false
		}
	}
	return true
}

// rollBack runs the Deployment at the last revision that was fully
// available, as if its template were current, while the current template's
// rollout has failed (it exceeded its progress deadline). This goes beyond
// Kubernetes, which only reports the failure. The failed template is not
// tried again until Git changes the Deployment's template.
func (ctl *deploymentController) rollBack(ctx context.Context, c *cache.Cached, d *manifests.Deployment, failed *ownedRS, old []ownedRS, maxRev int64, desired int32) error {
	target := rollbackTarget(old)
	if target == nil {
		// The first revision failed: nothing to go back to.
		return ctl.updateDeploymentStatus(ctx, c, d, failed, old, nil)
	}
	if revisionOf(target.rs) < maxRev {
		upd := cache.Clone(target.rs)
		upd.Annotations[manifests.AnnotationRevision] = strconv.FormatInt(maxRev+1, 10)
		upd.Annotations[AnnotationChangeCause] = fmt.Sprintf("rollback: revision %d (%s) exceeded its progress deadline", revisionOf(failed.rs), failed.rs.Name)
		if _, err := cache.UpdateObject(ctx, ctl.store, upd, target.c.Rev); err != nil {
			return err
		}
		ctl.event(ctx, d, "Warning", "DeploymentRollback", fmt.Sprintf("Rolled back deployment %q to revision %d (replica set %s, now revision %d): revision %d exceeded its progress deadline",
			d.Name, revisionOf(target.rs), target.rs.Name, maxRev+1, revisionOf(failed.rs)))
		return nil
	}
	others := []ownedRS{*failed}
	for _, o := range old {
		if o.c.Key != target.c.Key {
			others = append(others, o)
		}
	}
	changed, err := ctl.step(ctx, d, target, others, desired)
	if err != nil || changed {
		return err
	}
	if err := ctl.cleanupReplicaSets(ctx, d, others[1:]); err != nil {
		return err
	}
	return ctl.updateDeploymentStatus(ctx, c, d, failed, old, target)
}

// rollbackTarget picks the newest old ReplicaSet that once ran the whole
// Deployment available; failing that, the newest one still running pods.
func rollbackTarget(old []ownedRS) *ownedRS {
	var best, running *ownedRS
	for i := range old { // oldest first
		o := &old[i]
		if _, failed := o.rs.Annotations[AnnotationRolloutFailed]; failed {
			continue
		}
		if _, ok := o.rs.Annotations[AnnotationRolloutComplete]; ok {
			best = o
		}
		if manifests.Int32(o.rs.Spec.Replicas, 1) > 0 || o.rs.Status.AvailableReplicas > 0 {
			running = o
		}
	}
	if best != nil {
		return best
	}
	return running
}

func (ctl *deploymentController) createReplicaSet(ctx context.Context, d *manifests.Deployment, hash string, rev int64, old []ownedRS, desired int32) error {
	tmpl := cache.Clone(&manifests.Pod{TypeMeta: manifests.TypeMeta{Kind: "Pod"}, ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec})
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
			Annotations:     rsAnnotations(d, rev),
			OwnerReferences: []manifests.OwnerReference{cache.OwnerRef(d)},
		},
		Spec: manifests.ReplicaSetSpec{
			Replicas:        &replicas,
			MinReadySeconds: d.Spec.MinReadySeconds,
			Selector:        sel,
			Template:        manifests.PodTemplateSpec{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec},
		},
	}
	if _, err := cache.CreateObject(ctx, ctl.store, rs); err != nil {
		if errors.Is(err, bus.ErrExists) {
			// A ReplicaSet of that name we do not own, or the cache lags:
			// retry once the cache shows it.
			return fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, err)
		}
		return err
	}
	ctl.event(ctx, d, "Normal", "ScalingReplicaSet", fmt.Sprintf("Created replica set %s (revision %d)", rs.Name, rev))
	return nil
}

// rsAnnotations are a new ReplicaSet's annotations: its revision, and
// the change cause: the Deployment's own, or the commit that last changed
// the Deployment.
func rsAnnotations(d *manifests.Deployment, rev int64) map[string]string {
	a := map[string]string{manifests.AnnotationRevision: strconv.FormatInt(rev, 10)}
	for _, k := range []string{AnnotationChangeCause, AnnotationCommit} {
		if v := d.Annotations[k]; v != "" {
			a[k] = v
		}
	}
	return a
}

// scaleRS writes rs.spec.replicas = n if different; it reports whether it
// wrote.
func (ctl *deploymentController) scaleRS(ctx context.Context, d *manifests.Deployment, r *ownedRS, n int32) (bool, error) {
	if manifests.Int32(r.rs.Spec.Replicas, 1) == n {
		return false, nil
	}
	upd := cache.Clone(r.rs)
	from := manifests.Int32(upd.Spec.Replicas, 1)
	upd.Spec.Replicas = &n
	upd.Generation++
	if _, err := cache.UpdateObject(ctx, ctl.store, upd, r.c.Rev); err != nil {
		return false, err
	}
	verb := "up"
	if n < from {
		verb = "down"
	}
	ctl.event(ctx, d, "Normal", "ScalingReplicaSet", fmt.Sprintf("Scaled %s replica set %s from %d to %d", verb, r.rs.Name, from, n))
	return true, nil
}

func (ctl *deploymentController) stepRolling(ctx context.Context, d *manifests.Deployment, cur *ownedRS, old []ownedRS, desired int32) (bool, error) {
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
	changed, err := ctl.scaleRS(ctx, d, cur, n)
	if err != nil || changed {
		return changed, err
	}
	for i := range old {
		ch, err := ctl.scaleRS(ctx, d, &old[i], o[i])
		if err != nil {
			return false, err
		}
		changed = changed || ch
	}
	return changed, nil
}

func (ctl *deploymentController) stepRecreate(ctx context.Context, d *manifests.Deployment, cur *ownedRS, old []ownedRS, desired int32) (bool, error) {
	changed := false
	oldPods := 0
	for i := range old {
		ch, err := ctl.scaleRS(ctx, d, &old[i], 0)
		if err != nil {
			return false, err
		}
		changed = changed || ch
		oldPods += len(ctl.podsOwnedBy(old[i].rs))
	}
	if changed || oldPods > 0 {
		return changed, nil
	}
	return ctl.scaleRS(ctx, d, cur, desired)
}

// cleanupReplicaSets deletes empty old ReplicaSets beyond the history limit.
func (ctl *deploymentController) cleanupReplicaSets(ctx context.Context, d *manifests.Deployment, old []ownedRS) error {
	limit := int(manifests.Int32(d.Spec.RevisionHistoryLimit, 10))
	var empty []ownedRS
	for _, o := range old {
		if manifests.Int32(o.rs.Spec.Replicas, 1) == 0 && o.rs.Status.Replicas == 0 {
			empty = append(empty, o)
		}
	}
	for i := 0; i < len(empty)-limit; i++ { // old is oldest first
		if err := cache.DeleteObject(ctx, ctl.store, empty[i].c.Key, empty[i].c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
			return err
		}
	}
	return nil
}

// updateDeploymentStatus writes the Deployment's status. cur is the
// ReplicaSet of the template Git declares; rolledBack, when set, is the
// one running instead because cur's rollout failed.
func (ctl *deploymentController) updateDeploymentStatus(ctx context.Context, c *cache.Cached, d *manifests.Deployment, cur *ownedRS, old []ownedRS, rolledBack *ownedRS) error {
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
	st.Conditions = manifests.UpdateCondition(st.Conditions, avail)
	prog, err := ctl.progressing(ctx, d, cur, rolledBack, st)
	if err != nil {
		return err
	}
	if p := manifests.FindCondition(st.Conditions, "Progressing"); p == nil || p.Status != prog.Status || p.Reason != prog.Reason ||
		p.Message != prog.Message || manifests.Hash(p.LastUpdateTime) != manifests.Hash(prog.LastUpdateTime) {
		st.Conditions = manifests.SetCondition(st.Conditions, prog)
	}
	if statusEqual(st, d.Status) {
		return nil
	}
	upd := cache.Clone(d)
	upd.Status = st
	_, err = cache.UpdateObject(ctx, ctl.store, upd, c.Rev)
	if errors.Is(err, bus.ErrNotFound) {
		return nil
	}
	return err
}

// progressing computes the Progressing condition as Kubernetes does: True
// (ReplicaSetUpdated) while the rollout moves, its lastUpdateTime renewed at
// each sign of progress (more updated, ready or available pods, fewer old
// ones); True (NewReplicaSetAvailable) once complete; False
// (ProgressDeadlineExceeded) when progressDeadlineSeconds pass without
// progress. On that timeout it marks cur's ReplicaSet failed, which rolls
// the Deployment back (rollBack).
func (ctl *deploymentController) progressing(ctx context.Context, d *manifests.Deployment, cur, rolledBack *ownedRS, st manifests.DeploymentStatus) (manifests.Condition, error) {
	desired := manifests.Int32(d.Spec.Replicas, 1)
	prev := manifests.FindCondition(d.Status.Conditions, "Progressing")
	now := manifests.Now()
	keepTime := func(c manifests.Condition) manifests.Condition {
		if prev != nil && prev.Status == c.Status && prev.Reason == c.Reason && prev.Message == c.Message {
			c.LastUpdateTime = prev.LastUpdateTime
		}
		if c.LastUpdateTime == nil {
			c.LastUpdateTime = now
		}
		return c
	}
	if d.Spec.Paused {
		return keepTime(manifests.Condition{Type: "Progressing", Status: manifests.ConditionUnknown, Reason: "DeploymentPaused", Message: "Deployment is paused"}), nil
	}
	if cur == nil {
		return keepTime(manifests.Condition{Type: "Progressing", Status: manifests.ConditionTrue, Reason: "NewReplicaSetCreated"}), nil
	}
	timedOut := fmt.Sprintf("ReplicaSet %q has timed out progressing.", cur.rs.Name)
	if _, failed := cur.rs.Annotations[AnnotationRolloutFailed]; failed {
		msg := timedOut + " No earlier revision to roll back to."
		if rolledBack != nil {
			msg = timedOut + fmt.Sprintf(" Rolled back to ReplicaSet %q (revision %d).", rolledBack.rs.Name, revisionOf(rolledBack.rs))
		}
		return keepTime(manifests.Condition{Type: "Progressing", Status: manifests.ConditionFalse, Reason: ReasonProgressDeadlineExceeded, Message: msg}), nil
	}
	doneMsg := fmt.Sprintf("ReplicaSet %q has successfully progressed.", cur.rs.Name)
	switch {
	case st.UpdatedReplicas == desired && st.Replicas == desired && st.AvailableReplicas == desired:
		return keepTime(manifests.Condition{Type: "Progressing", Status: manifests.ConditionTrue, Reason: "NewReplicaSetAvailable", Message: doneMsg}), nil
	case prev != nil && prev.Message == doneMsg && st.Replicas == st.UpdatedReplicas:
		// Complete before: a pod lost since is not a stalled rollout.
		return *prev, nil
	}
	msg := fmt.Sprintf("ReplicaSet %q is progressing.", cur.rs.Name)
	was := d.Status
	progressed := prev == nil || prev.Message != msg || prev.LastUpdateTime == nil ||
		st.UpdatedReplicas > was.UpdatedReplicas || st.ReadyReplicas > was.ReadyReplicas || st.AvailableReplicas > was.AvailableReplicas ||
		st.Replicas-st.UpdatedReplicas < was.Replicas-was.UpdatedReplicas
	last := now
	if !progressed {
		last = prev.LastUpdateTime
	}
	deadline := time.Duration(manifests.Int32(d.Spec.ProgressDeadlineSeconds, 600)) * time.Second
	if left := last.Add(deadline).Sub(now.Time); left > 0 || progressed {
		ctl.requeue("Deployment", manifests.KeyOf(d), left+time.Second)
		return manifests.Condition{Type: "Progressing", Status: manifests.ConditionTrue, Reason: "ReplicaSetUpdated", Message: msg,
			LastTransitionTime: transitionTime(prev, manifests.ConditionTrue), LastUpdateTime: last}, nil
	}
	// No progress within the deadline: mark the ReplicaSet failed; the
	// next reconcile rolls back.
	upd := cache.Clone(cur.rs)
	upd.Annotations[AnnotationRolloutFailed] = now.Format(time.RFC3339)
	if _, err := cache.UpdateObject(ctx, ctl.store, upd, cur.c.Rev); err != nil {
		return manifests.Condition{}, err
	}
	ctl.event(ctx, d, "Warning", ReasonProgressDeadlineExceeded, fmt.Sprintf("ReplicaSet %q (revision %d) made no progress in %s: rolling back",
		cur.rs.Name, revisionOf(cur.rs), deadline))
	return keepTime(manifests.Condition{Type: "Progressing", Status: manifests.ConditionFalse, Reason: ReasonProgressDeadlineExceeded, Message: timedOut}), nil
}

// transitionTime keeps a condition's transition time while its status
// stays.
func transitionTime(prev *manifests.Condition, status string) *manifests.Time {
	if prev != nil && prev.Status == status {
		return prev.LastTransitionTime
	}
	return nil
}

func statusEqual(a, b manifests.DeploymentStatus) bool {
	return manifests.Hash(a) == manifests.Hash(b)
}
