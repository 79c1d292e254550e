package gitops

import (
	"errors"
	"fmt"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/controllers"
)

// Health of a source, in SourceStatus.Health, worst last.
//
//   - Ready: the source's latest revision is applied and every object it
//     declares is done: rollouts complete, Jobs complete, pods ready.
//   - Progressing: applied (or not yet attempted), and objects are still
//     converging: a rollout under way, a Job running, a pod starting.
//   - Degraded: applied, but an object failed: a rollout past its progress
//     deadline, a failed Job, a pod failed or crash-looping, an image
//     missing.
//   - Failed: the source's last sync failed: its head revision was
//     rejected (an invalid file, a bad signature), could not be fetched,
//     or its apply failed. The last good revision keeps running, but Git
//     is not what runs: that is a failure to act on, so it outranks what
//     the objects say (Flux marks such a Kustomization Ready=False too).
const (
	HealthReady       = "Ready"
	HealthProgressing = "Progressing"
	HealthDegraded    = "Degraded"
	HealthFailed      = "Failed"
)

// healthRank orders health from best to worst.
var healthRank = map[string]int{HealthReady: 0, HealthProgressing: 1, HealthDegraded: 2, HealthFailed: 3}

// ObjectHealth says how one object stands: Ready, Progressing or
// Degraded, and why when not Ready. Kinds with nothing to wait for
// (ConfigMaps, Services, CronJobs...) are Ready. It is pure.
func ObjectHealth(obj manifests.Object) (health, msg string) {
	switch o := obj.(type) {
	case *manifests.Deployment, *manifests.StatefulSet, *manifests.DaemonSet:
		m, done, err := controllers.RolloutStatus(obj)
		switch {
		case errors.Is(err, controllers.ErrRolloutFailed):
			return HealthDegraded, err.Error()
		case err != nil:
			return HealthReady, "" // OnDelete: no rollout to wait for
		case !done:
			return HealthProgressing, m
		}
	case *manifests.ReplicaSet:
		return replicasHealth("replicaset", o.Name, o.Generation, manifests.Int32(o.Spec.Replicas, 1), o.Status)
	case *manifests.ReplicationController:
		return replicasHealth("replicationcontroller", o.Name, o.Generation, manifests.Int32(o.Spec.Replicas, 1), o.Status)
	case *manifests.Job:
		if c := manifests.FindCondition(o.Status.Conditions, "Failed"); c != nil && c.Status == manifests.ConditionTrue {
			return HealthDegraded, fmt.Sprintf("job %q failed: %s", o.Name, c.Message)
		}
		if c := manifests.FindCondition(o.Status.Conditions, "Complete"); c != nil && c.Status == manifests.ConditionTrue {
			return HealthReady, ""
		}
		if o.Spec.Suspend != nil && *o.Spec.Suspend {
			return HealthReady, "" // suspended as declared
		}
		return HealthProgressing, fmt.Sprintf("job %q: %d active, %d succeeded", o.Name, o.Status.Active, o.Status.Succeeded)
	case *manifests.Pod:
		return podHealth(o)
	}
	return HealthReady, ""
}

func replicasHealth(kind, name string, gen int64, desired int32, st manifests.ReplicaSetStatus) (string, string) {
	if st.ObservedGeneration < gen || st.ReadyReplicas < desired {
		return HealthProgressing, fmt.Sprintf("%s %q: %d of %d pods ready", kind, name, st.ReadyReplicas, desired)
	}
	return HealthReady, ""
}

// podFailing are the container waiting reasons that will not pass by
// themselves.
var podFailing = map[string]bool{"CrashLoopBackOff": true, "ErrImageNeverPull": true, "ErrImagePull": true,
	"ImagePullBackOff": true, "CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true}

func podHealth(p *manifests.Pod) (string, string) {
	switch p.Status.Phase {
	case manifests.PodSucceeded:
		return HealthReady, ""
	case manifests.PodFailed:
		return HealthDegraded, fmt.Sprintf("pod %q failed: %s", p.Name, p.Status.Message)
	}
	for _, cs := range append(append([]manifests.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && podFailing[w.Reason] {
			return HealthDegraded, fmt.Sprintf("pod %q: container %s: %s", p.Name, cs.Name, w.Reason)
		}
	}
	if c := manifests.FindCondition(p.Status.Conditions, "Ready"); c != nil && c.Status == manifests.ConditionTrue {
		return HealthReady, ""
	}
	return HealthProgressing, fmt.Sprintf("pod %q is not ready", p.Name)
}

// SourceHealth combines a source's sync state and its objects' health
// into the source's health and a one-line message. lastError is the
// source's last sync error ("" after a success), applied whether any
// revision was applied. It is pure.
func SourceHealth(lastError string, applied bool, objs []manifests.Object) (health, msg string) {
	if lastError != "" {
		return HealthFailed, firstLine(lastError)
	}
	health, n := HealthReady, 0
	for _, o := range objs {
		h, m := ObjectHealth(o)
		if h == HealthReady {
			continue
		}
		n++
		if healthRank[h] > healthRank[health] {
			health, msg = h, m
		}
	}
	switch {
	case !applied:
		return HealthProgressing, "no revision applied yet"
	case n > 1:
		msg = fmt.Sprintf("%s (and %d more not ready)", msg, n-1)
	case n == 0:
		msg = fmt.Sprintf("%d object(s) ready", len(objs))
	}
	return health, msg
}
