package controllers

// Pure planners: no I/O, no clock; property-tested in plan_test.go.

// RSState is what the rolling-update planner needs of one ReplicaSet.
type RSState struct {
	Replicas  int32 // spec.replicas
	Available int32 // status.availableReplicas
}

// PlanRollingUpdate returns the replica counts a Deployment's ReplicaSets
// should move to in one step of a rolling update: the new ReplicaSet grows
// while the total stays within desired+maxSurge, and old ReplicaSets shrink
// while the available pods stay at or above desired-maxUnavailable
// (unavailable old pods go first, as they count for nothing). Old sets are
// taken in the order given (callers pass oldest first).
//
// One step either grows the new set or shrinks old ones, never both, so a
// caller that writes the step and waits for the sets' status to catch up
// never overshoots either bound.
func PlanRollingUpdate(desired, maxSurge, maxUnavailable int32, cur RSState, old []RSState) (newReplicas int32, oldReplicas []int32) {
	oldReplicas = make([]int32, len(old))
	total := cur.Replicas
	for i, o := range old {
		oldReplicas[i] = o.Replicas
		total += o.Replicas
	}
	if maxSurge == 0 && maxUnavailable == 0 {
		maxUnavailable = 1 // as Kubernetes: both zero would deadlock
	}
	newReplicas = cur.Replicas
	switch {
	case cur.Replicas > desired:
		return desired, oldReplicas
	case cur.Replicas < desired:
		if room := desired + maxSurge - total; room > 0 {
			newReplicas = min(cur.Replicas+room, desired)
			return newReplicas, oldReplicas
		}
	}

	// Shrink old sets: the bound is how far the total can fall before the
	// pods that are or may become available drop below minAvailable.
	minAvailable := desired - maxUnavailable
	newUnavailable := max(cur.Replicas-cur.Available, 0)
	budget := total - minAvailable - newUnavailable
	if budget <= 0 {
		return newReplicas, oldReplicas
	}
	// First the old pods that are not available: removing them costs no
	// availability.
	for i, o := range old {
		unavailable := max(oldReplicas[i]-o.Available, 0)
		d := min(unavailable, budget)
		oldReplicas[i] -= d
		budget -= d
	}
	// Then available ones, within the remaining budget.
	for i := range old {
		d := min(oldReplicas[i], budget)
		oldReplicas[i] -= d
		budget -= d
	}
	return newReplicas, oldReplicas
}

// PodRank orders pods for deletion when a ReplicaSet shrinks: the cheaper
// to lose first (unscheduled, then not running, then not ready, then newest).
type PodRank struct {
	Scheduled bool
	Running   bool
	Ready     bool
	Created   int64 // unix seconds
	Name      string
}

// Less reports whether a should be deleted before b.
func (a PodRank) Less(b PodRank) bool {
	if a.Scheduled != b.Scheduled {
		return !a.Scheduled
	}
	if a.Running != b.Running {
		return !a.Running
	}
	if a.Ready != b.Ready {
		return !a.Ready
	}
	if a.Created != b.Created {
		return a.Created > b.Created
	}
	return a.Name > b.Name
}
