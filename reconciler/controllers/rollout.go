package controllers

import (
	"errors"
	"fmt"
	"slices"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// Annotations of rollouts.
const (
	// AnnotationCommit is the Git commit that last changed an object's
	// declared content, set by the sync when it writes the object. A
	// Deployment's new ReplicaSet copies it: the change cause of that
	// revision.
	AnnotationCommit = manifests.AnnotationCommit
	// AnnotationChangeCause is Kubernetes' free-text change cause, copied
	// from a Deployment to its new ReplicaSets.
	AnnotationChangeCause = "kubernetes.io/change-cause"
	// AnnotationRolloutFailed marks a ReplicaSet whose rollout exceeded the
	// Deployment's progress deadline: the Deployment runs its previous
	// revision instead until Git changes the template. It is on the
	// ReplicaSet, which the controller owns, because the sync rewrites the
	// Deployment's annotations from Git.
	AnnotationRolloutFailed = "capstan.io/rollout-failed"
	// AnnotationRolloutComplete marks a ReplicaSet that once ran the whole
	// Deployment available: a rollback goes back to the newest such.
	AnnotationRolloutComplete = "capstan.io/rollout-complete"
	// ReasonProgressDeadlineExceeded is the Progressing condition's reason
	// when a rollout stalled.
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
)

// ErrRolloutFailed is returned by RolloutStatus when a rollout failed.
var ErrRolloutFailed = errors.New("rollout failed")

// RolloutStatus reports where a Deployment's, StatefulSet's or
// DaemonSet's rollout stands, in the words of `kubectl rollout status`:
// a line to print and whether it is done. A Deployment past its progress
// deadline gives an error wrapping ErrRolloutFailed. It is pure.
func RolloutStatus(obj manifests.Object) (msg string, done bool, err error) {
	switch o := obj.(type) {
	case *manifests.Deployment:
		return deploymentRolloutStatus(o)
	case *manifests.StatefulSet:
		return statefulSetRolloutStatus(o)
	case *manifests.DaemonSet:
		return daemonSetRolloutStatus(o)
	}
	return "", false, fmt.Errorf("no rollout status for kind %s", obj.GetTypeMeta().Kind)
}

func deploymentRolloutStatus(d *manifests.Deployment) (string, bool, error) {
	if d.Generation > d.Status.ObservedGeneration {
		return "Waiting for deployment spec update to be observed...", false, nil
	}
	if c := manifests.FindCondition(d.Status.Conditions, "Progressing"); c != nil && c.Reason == ReasonProgressDeadlineExceeded {
		return "", false, fmt.Errorf("%w: deployment %q exceeded its progress deadline: %s", ErrRolloutFailed, d.Name, c.Message)
	}
	desired := manifests.Int32(d.Spec.Replicas, 1)
	st := d.Status
	switch {
	case st.UpdatedReplicas < desired:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", d.Name, st.UpdatedReplicas, desired), false, nil
	case st.Replicas > st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", d.Name, st.Replicas-st.UpdatedReplicas), false, nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", d.Name, st.AvailableReplicas, st.UpdatedReplicas), false, nil
	}
	return fmt.Sprintf("deployment %q successfully rolled out", d.Name), true, nil
}

func statefulSetRolloutStatus(s *manifests.StatefulSet) (string, bool, error) {
	if s.Spec.UpdateStrategy.Type == "OnDelete" {
		return "", false, fmt.Errorf("rollout status is only available for RollingUpdate strategy type")
	}
	st := s.Status
	if st.ObservedGeneration == 0 || s.Generation > st.ObservedGeneration {
		return "Waiting for statefulset spec update to be observed...", false, nil
	}
	desired := manifests.Int32(s.Spec.Replicas, 1)
	if st.ReadyReplicas < desired {
		return fmt.Sprintf("Waiting for %d pods to be ready...", desired-st.ReadyReplicas), false, nil
	}
	if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && manifests.Int32(ru.Partition, 0) > 0 {
		want := max(desired-*ru.Partition, 0)
		if st.UpdatedReplicas < want {
			return fmt.Sprintf("Waiting for partitioned roll out to finish: %d out of %d new pods have been updated...", st.UpdatedReplicas, want), false, nil
		}
		return fmt.Sprintf("partitioned roll out complete: %d new pods have been updated...", st.UpdatedReplicas), true, nil
	}
	if st.UpdateRevision != st.CurrentRevision {
		return fmt.Sprintf("waiting for statefulset rolling update to complete %d pods at revision %s...", st.UpdatedReplicas, st.UpdateRevision), false, nil
	}
	return fmt.Sprintf("statefulset rolling update complete %d pods at revision %s...", st.CurrentReplicas, st.CurrentRevision), true, nil
}

func daemonSetRolloutStatus(d *manifests.DaemonSet) (string, bool, error) {
	if d.Spec.UpdateStrategy.Type == "OnDelete" {
		return "", false, fmt.Errorf("rollout status is only available for RollingUpdate strategy type")
	}
	st := d.Status
	if st.ObservedGeneration == 0 || d.Generation > st.ObservedGeneration {
		return "Waiting for daemon set spec update to be observed...", false, nil
	}
	if st.UpdatedNumberScheduled < st.DesiredNumberScheduled {
		return fmt.Sprintf("Waiting for daemon set %q rollout to finish: %d out of %d new pods have been updated...", d.Name, st.UpdatedNumberScheduled, st.DesiredNumberScheduled), false, nil
	}
	if st.NumberAvailable < st.DesiredNumberScheduled {
		return fmt.Sprintf("Waiting for daemon set %q rollout to finish: %d of %d updated pods are available...", d.Name, st.NumberAvailable, st.DesiredNumberScheduled), false, nil
	}
	return fmt.Sprintf("daemon set %q successfully rolled out", d.Name), true, nil
}

// RolloutRevision is one revision of a Deployment: a ReplicaSet.
type RolloutRevision struct {
	Revision    int64
	ReplicaSet  string
	Commit      string // the Git commit that declared it, if known
	ChangeCause string
	Images      []string
	Replicas    int32 // spec.replicas
	Failed      bool  // its rollout exceeded the progress deadline
}

// DeploymentHistory lists the revisions of a Deployment from the
// ReplicaSets it controls, oldest first. It is pure.
func DeploymentHistory(d *manifests.Deployment, sets []*manifests.ReplicaSet) []RolloutRevision {
	var out []RolloutRevision
	for _, rs := range sets {
		if !cache.IsControlledBy(rs, d) {
			continue
		}
		r := RolloutRevision{Revision: revisionOf(rs), ReplicaSet: rs.Name, Commit: rs.Annotations[AnnotationCommit],
			ChangeCause: rs.Annotations[AnnotationChangeCause], Replicas: manifests.Int32(rs.Spec.Replicas, 1)}
		_, r.Failed = rs.Annotations[AnnotationRolloutFailed]
		for _, c := range rs.Spec.Template.Spec.Containers {
			r.Images = append(r.Images, c.Image)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b RolloutRevision) int { return int(a.Revision - b.Revision) })
	return out
}
