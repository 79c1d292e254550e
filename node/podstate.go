package node

import (
	"fmt"
	"strconv"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// Back-off of container restarts, as the kubelet: the first restart is
// immediate, then 10 s doubling to 5 min; a container that ran 10 min
// resets it.
const (
	backoffBase  = 10 * time.Second
	backoffMax   = 5 * time.Minute
	backoffReset = 10 * time.Minute
)

// RestartDelay returns how long after its exit a container that has been
// restarted `restarts` times in a row waits before the next start.
func RestartDelay(restarts int) time.Duration {
	if restarts <= 0 {
		return 0
	}
	d := backoffBase << min(restarts-1, 10)
	return min(d, backoffMax)
}

// ShouldRestart applies a pod's restart policy to a container's exit code.
func ShouldRestart(policy string, exitCode int32) bool {
	switch policy {
	case manifests.RestartNever:
		return false
	case manifests.RestartOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

// instances returns a container's runtime instances, latest attempt last.
func instances(p *PodInfo, name string) []ContainerInfo {
	var out []ContainerInfo
	for _, c := range p.Containers {
		if c.Labels[LabelContainer] == name {
			out = append(out, c)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && attemptOf(out[j]) < attemptOf(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func attemptOf(c ContainerInfo) int {
	n, _ := strconv.Atoi(c.Labels[LabelAttempt])
	return n
}

func terminatedState(c ContainerInfo) *manifests.ContainerStateTerminated {
	reason := "Completed"
	switch {
	case c.OOMKilled:
		reason = "OOMKilled"
	case c.ExitCode != 0:
		reason = "Error"
	}
	t := &manifests.ContainerStateTerminated{ExitCode: c.ExitCode, Reason: reason}
	if !c.StartedAt.IsZero() {
		t.StartedAt = manifests.NewTime(c.StartedAt)
	}
	if !c.FinishedAt.IsZero() {
		t.FinishedAt = manifests.NewTime(c.FinishedAt)
	}
	return t
}

// containerPlan is what the node should do with one container now.
type containerPlan struct {
	create  bool          // create (and start) a new instance
	start   string        // start this created instance
	wait    time.Duration // back-off left before a restart
	attempt int           // the attempt number of a new instance
	remove  []string      // instances older than the previous one
}

// planContainer decides, from a container's instances, the pod's restart
// policy and the time, what to do. It is pure.
func planContainer(inst []ContainerInfo, policy string, known int, now time.Time) containerPlan {
	var p containerPlan
	if len(inst) == 0 {
		// Never created, or removed behind our back.
		p.create = true
		p.attempt = known
		if known > 0 {
			p.attempt = known + 1
		}
		return p
	}
	for _, c := range inst[:max(len(inst)-2, 0)] {
		p.remove = append(p.remove, c.ID)
	}
	last := inst[len(inst)-1]
	switch last.State {
	case StateCreated:
		p.start = last.ID
	case StateExited:
		if !ShouldRestart(policy, last.ExitCode) {
			return p
		}
		restarts := attemptOf(last)
		if !last.StartedAt.IsZero() && last.FinishedAt.Sub(last.StartedAt) >= backoffReset {
			restarts = 0
		}
		if left := last.FinishedAt.Add(RestartDelay(restarts)).Sub(now); left > 0 {
			p.wait = left
			return p
		}
		p.create = true
		p.attempt = max(attemptOf(last), known) + 1
	}
	return p
}

// podStatus computes the status of a pod from its runtime state. prev is
// the status last reported, whose transition times are kept when nothing
// changed. waiting holds a reason per container not created yet.
func podStatus(pod *manifests.Pod, rp *PodInfo, prev *manifests.PodStatus, waiting map[string]manifests.ContainerStateWaiting, hostIP string, now time.Time) manifests.PodStatus {
	st := manifests.PodStatus{Phase: manifests.PodPending, HostIP: hostIP}
	if rp != nil && !rp.Created.IsZero() {
		st.StartTime = manifests.NewTime(rp.Created)
	}
	if prev != nil && prev.StartTime != nil {
		st.StartTime = prev.StartTime
	}
	var running, restarting, succeeded, failed, notStarted int
	allReady := true
	for _, c := range pod.Spec.Containers {
		cs := manifests.ContainerStatus{Name: c.Name, Image: c.Image}
		var inst []ContainerInfo
		if rp != nil {
			inst = instances(rp, c.Name)
		}
		if len(inst) == 0 {
			w := manifests.ContainerStateWaiting{Reason: "ContainerCreating"}
			if wr, ok := waiting[c.Name]; ok {
				w = wr
			}
			cs.State.Waiting = &w
			notStarted++
			allReady = false
			st.ContainerStatuses = append(st.ContainerStatuses, cs)
			continue
		}
		last := inst[len(inst)-1]
		cs.ContainerID = "podman://" + last.ID
		cs.RestartCount = int32(attemptOf(last))
		if len(inst) > 1 {
			cs.LastState.Terminated = terminatedState(inst[len(inst)-2])
		}
		switch last.State {
		case StateRunning:
			cs.State.Running = &manifests.ContainerStateRunning{StartedAt: manifests.NewTime(last.StartedAt)}
			cs.Ready = true
			cs.Started = manifests.Ptr(true)
			running++
		case StateExited:
			term := terminatedState(last)
			if ShouldRestart(pod.Spec.RestartPolicy, last.ExitCode) {
				// Waiting for its back-off: CrashLoopBackOff, as the kubelet.
				cs.LastState = manifests.ContainerState{Terminated: term}
				cs.State.Waiting = &manifests.ContainerStateWaiting{Reason: "CrashLoopBackOff",
					Message: fmt.Sprintf("back-off restarting failed container %s", c.Name)}
				if wr, ok := waiting[c.Name]; ok {
					cs.State.Waiting = &wr
				}
				restarting++
			} else {
				cs.State.Terminated = term
				if last.ExitCode == 0 {
					succeeded++
				} else {
					failed++
				}
			}
			allReady = false
		default:
			cs.State.Waiting = &manifests.ContainerStateWaiting{Reason: "ContainerCreating"}
			notStarted++
			allReady = false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	n := len(pod.Spec.Containers)
	switch {
	case notStarted > 0 && running == 0 && restarting == 0:
		st.Phase = manifests.PodPending
	case succeeded == n:
		st.Phase = manifests.PodSucceeded
	case succeeded+failed == n:
		st.Phase = manifests.PodFailed
	default:
		st.Phase = manifests.PodRunning
	}
	var prevConds []manifests.Condition
	if prev != nil {
		prevConds = prev.Conditions
	}
	cond := func(t string, ok bool, reason string) manifests.Condition {
		c := manifests.Condition{Type: t, Status: manifests.ConditionFalse, Reason: reason}
		if ok {
			c = manifests.Condition{Type: t, Status: manifests.ConditionTrue}
		}
		if old := manifests.FindCondition(prevConds, t); old != nil && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		} else {
			c.LastTransitionTime = manifests.NewTime(now)
		}
		return c
	}
	ready := allReady && st.Phase == manifests.PodRunning
	st.Conditions = []manifests.Condition{
		cond("Initialized", true, ""),
		cond("ContainersReady", ready, "ContainersNotReady"),
		cond("Ready", ready, "ContainersNotReady"),
	}
	return st
}
