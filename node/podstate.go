package node

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// LabelInit marks the runtime containers of a pod's init containers, so
// they are never taken for app containers.
const LabelInit = "capstan.init"

// isInit reports whether a runtime container runs an init container.
func isInit(c ContainerInfo) bool { return c.Labels[LabelInit] == "true" }

// initPolicy is the restart policy of init containers: they are retried
// on failure unless the pod's policy is Never, and never re-run once they
// succeeded.
func initPolicy(pod *manifests.Pod) string {
	if pod.Spec.RestartPolicy == manifests.RestartNever {
		return manifests.RestartNever
	}
	return manifests.RestartOnFailure
}

// initState is how far a pod's init containers have got.
type initState struct {
	done    bool     // all succeeded, or the app containers have started
	failed  bool     // one failed for good (restart policy Never): the pod fails
	next    int      // when !done: the index of the init container to run or wait for
	pending []string // when !done: the init containers not completed yet
}

// initProgress reads a pod's init containers from its runtime state. It is
// pure. App containers that have been created mean initialization finished
// earlier, even if the init containers' instances are gone since.
func initProgress(pod *manifests.Pod, rp *PodInfo) initState {
	if len(pod.Spec.InitContainers) == 0 {
		return initState{done: true}
	}
	if rp != nil {
		for _, c := range pod.Spec.Containers {
			if len(instances(rp, c.Name)) > 0 {
				return initState{done: true}
			}
		}
	}
	st := initState{next: -1}
	for i, c := range pod.Spec.InitContainers {
		var inst []ContainerInfo
		if rp != nil {
			inst = instances(rp, c.Name)
		}
		if n := len(inst); n > 0 && inst[n-1].State == StateExited && inst[n-1].ExitCode == 0 {
			continue
		}
		if st.next < 0 {
			st.next = i
			if n := len(inst); n > 0 && inst[n-1].State == StateExited && !ShouldRestart(initPolicy(pod), inst[n-1].ExitCode) {
				st.failed = true
			}
		}
		st.pending = append(st.pending, c.Name)
	}
	st.done = st.next < 0
	return st
}

// deadlineExceeded reports whether a pod has been active longer than its
// activeDeadlineSeconds, counted from its runtime pod's creation.
func deadlineExceeded(pod *manifests.Pod, rp *PodInfo, now time.Time) bool {
	ads := pod.Spec.ActiveDeadlineSeconds
	if ads == nil || rp == nil || rp.Created.IsZero() {
		return false
	}
	return now.Sub(rp.Created) >= time.Duration(*ads)*time.Second
}

// containerStep is what to do now with one container of a pod.
type containerStep struct {
	c    *manifests.Container
	init bool
	plan containerPlan
}

// acts reports whether the step changes anything in the runtime.
func (s containerStep) acts() bool {
	return s.plan.create || s.plan.start != "" || len(s.plan.remove) > 0
}

// planPod decides what to do with a pod's containers now: the next init
// container while they have not all succeeded, else every app container.
// known gives the highest attempt the daemon has created per container. A
// pod past its deadline, or whose init container failed for good, gets
// nothing. It is pure.
func planPod(pod *manifests.Pod, rp *PodInfo, known func(string) int, now time.Time) []containerStep {
	if deadlineExceeded(pod, rp, now) {
		return nil
	}
	if rp == nil {
		rp = &PodInfo{}
	}
	in := initProgress(pod, rp)
	if in.failed {
		return nil
	}
	if !in.done {
		c := &pod.Spec.InitContainers[in.next]
		return []containerStep{{c: c, init: true, plan: planContainer(instances(rp, c.Name), initPolicy(pod), known(c.Name), now)}}
	}
	steps := make([]containerStep, 0, len(pod.Spec.Containers))
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		steps = append(steps, containerStep{c: c, plan: planContainer(instances(rp, c.Name), pod.Spec.RestartPolicy, known(c.Name), now)})
	}
	return steps
}

// observed is what the daemon knows of a pod beyond the runtime's view.
type observed struct {
	// waiting holds a reason per container not created yet, by name.
	waiting map[string]manifests.ContainerStateWaiting
	// probes holds the probe results per runtime container ID.
	probes map[string]probeResult
	hostIP string
	// terminating: the pod is marked for deletion, so it is not ready.
	terminating bool
}

// containerStatus computes one container's status from its instances.
// policy is the restart policy that applies to it.
func containerStatus(c *manifests.Container, inst []ContainerInfo, policy string, obs observed) manifests.ContainerStatus {
	cs := manifests.ContainerStatus{Name: c.Name, Image: c.Image}
	if len(inst) == 0 {
		w := manifests.ContainerStateWaiting{Reason: "ContainerCreating"}
		if wr, ok := obs.waiting[c.Name]; ok {
			w = wr
		}
		cs.State.Waiting = &w
		cs.Started = manifests.Ptr(false)
		return cs
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
		started := c.StartupProbe == nil
		ready := started && c.ReadinessProbe == nil
		if r, ok := obs.probes[last.ID]; ok {
			started, ready = r.started, r.started && r.ready
		}
		cs.Started = manifests.Ptr(started)
		cs.Ready = ready
	case StateExited:
		term := terminatedState(last)
		if ShouldRestart(policy, last.ExitCode) {
			// Waiting for its back-off: CrashLoopBackOff, as the kubelet.
			cs.LastState = manifests.ContainerState{Terminated: term}
			cs.State.Waiting = &manifests.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off restarting failed container %s", c.Name)}
			if wr, ok := obs.waiting[c.Name]; ok {
				cs.State.Waiting = &wr
			}
		} else {
			cs.State.Terminated = term
		}
		cs.Started = manifests.Ptr(false)
	default:
		cs.State.Waiting = &manifests.ContainerStateWaiting{Reason: "ContainerCreating"}
		cs.Started = manifests.Ptr(false)
	}
	return cs
}

// podStatus computes the status of a pod from its runtime state. prev is
// the status last reported, whose transition times are kept when nothing
// changed.
func podStatus(pod *manifests.Pod, rp *PodInfo, prev *manifests.PodStatus, obs observed, now time.Time) manifests.PodStatus {
	st := manifests.PodStatus{Phase: manifests.PodPending, HostIP: obs.hostIP}
	if rp != nil && !rp.Created.IsZero() {
		st.StartTime = manifests.NewTime(rp.Created)
		st.PodIP = rp.IP
	}
	if rp != nil {
		st.HostPorts = publishedPorts(rp.Ports)
	}
	if prev != nil && prev.StartTime != nil {
		st.StartTime = prev.StartTime
	}
	in := initProgress(pod, rp)
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		var inst []ContainerInfo
		if rp != nil {
			inst = instances(rp, c.Name)
		}
		cs := containerStatus(c, inst, initPolicy(pod), obs)
		if len(inst) == 0 && !in.done && i != in.next {
			cs.State.Waiting = &manifests.ContainerStateWaiting{Reason: "PodInitializing"}
		}
		// An init container is ready once it completed.
		cs.Ready = cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0
		if in.done && len(inst) == 0 {
			cs.State = manifests.ContainerState{Terminated: &manifests.ContainerStateTerminated{Reason: "Completed"}}
			cs.Ready = true
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	var running, restarting, succeeded, failed, notStarted int
	allReady := true
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		var inst []ContainerInfo
		if rp != nil {
			inst = instances(rp, c.Name)
		}
		cs := containerStatus(c, inst, pod.Spec.RestartPolicy, obs)
		if len(inst) == 0 && !in.done {
			cs.State.Waiting = &manifests.ContainerStateWaiting{Reason: "PodInitializing"}
		}
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
			succeeded++
		case cs.State.Terminated != nil:
			failed++
		case len(inst) > 0 && inst[len(inst)-1].State == StateExited:
			restarting++
		default:
			notStarted++
		}
		allReady = allReady && cs.Ready
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	n := len(pod.Spec.Containers)
	switch {
	case in.failed:
		st.Phase = manifests.PodFailed
	case !in.done:
		st.Phase = manifests.PodPending
	case notStarted > 0 && running == 0 && restarting == 0:
		st.Phase = manifests.PodPending
	case succeeded == n:
		st.Phase = manifests.PodSucceeded
	case succeeded+failed == n:
		st.Phase = manifests.PodFailed
	default:
		st.Phase = manifests.PodRunning
	}
	if st.Phase != manifests.PodSucceeded && deadlineExceeded(pod, rp, now) {
		st.Phase = manifests.PodFailed
		st.Reason = "DeadlineExceeded"
		st.Message = fmt.Sprintf("Pod was active on the node longer than the specified deadline (%ds)", *pod.Spec.ActiveDeadlineSeconds)
	}
	if obs.terminating && prev != nil && prev.Phase != manifests.PodSucceeded && prev.Phase != manifests.PodFailed &&
		(st.Phase == manifests.PodSucceeded || st.Phase == manifests.PodFailed) {
		// Containers stopped by the deletion did not fail or finish by
		// themselves: a Job must not count them, and the scheduler keeps
		// the pod's room until it is gone.
		st.Phase = prev.Phase
	}
	var prevConds []manifests.Condition
	if prev != nil {
		prevConds = prev.Conditions
	}
	cond := func(t string, ok bool, reason, msg string) manifests.Condition {
		c := manifests.Condition{Type: t, Status: manifests.ConditionFalse, Reason: reason, Message: msg}
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
	notReadyMsg := ""
	if !ready {
		var names []string
		for _, cs := range st.ContainerStatuses {
			if !cs.Ready {
				names = append(names, cs.Name)
			}
		}
		if len(names) > 0 {
			notReadyMsg = fmt.Sprintf("containers with unready status: %v", names)
		}
	}
	initMsg := ""
	if !in.done {
		initMsg = fmt.Sprintf("containers with incomplete status: %v", in.pending)
	}
	readyCond := cond("Ready", ready, "ContainersNotReady", notReadyMsg)
	if obs.terminating {
		readyCond = cond("Ready", false, "Terminating", "the pod is being deleted")
	}
	st.Conditions = []manifests.Condition{
		cond("Initialized", in.done, "ContainersNotInitialized", initMsg),
		cond("ContainersReady", ready, "ContainersNotReady", notReadyMsg),
		readyCond,
	}
	return st
}

// publishedPorts turns a runtime pod's port mappings into the pod's
// status.hostPorts, sorted by protocol and container port. A mapping
// whose host port is not known yet is left out.
func publishedPorts(ports []PortMapping) []manifests.PublishedPort {
	var out []manifests.PublishedPort
	for _, p := range ports {
		if p.HostPort == 0 {
			continue
		}
		out = append(out, manifests.PublishedPort{ContainerPort: int32(p.ContainerPort), Protocol: strings.ToUpper(p.Protocol), HostPort: int32(p.HostPort)})
	}
	slices.SortFunc(out, func(a, b manifests.PublishedPort) int {
		if c := strings.Compare(a.Protocol, b.Protocol); c != 0 {
			return c
		}
		return int(a.ContainerPort - b.ContainerPort)
	})
	return out
}
