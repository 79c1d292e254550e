package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// Drift of containers: a running container changed outside Capstan. What
// Podman lets anyone with access to it change in place is the container's
// run state (pause), its cgroup limits (`podman update`) and its name
// (`podman rename`); labels, image, command and environment cannot be
// changed without creating another container, which Capstan notices as a
// container it did not create running in its place. The node compares
// every running app container with its pod's spec at each relist, fixes
// what it found (unpause, restore the limits, rename back, remove a
// container it did not create so the plan creates its own) unless the
// pod's source reports drift only, and lists it in the pod's status
// (status.drift), from which the control plane records it in the history.
//
// A container stopped, killed or restarted by hand is not drift here: it
// cannot be told from a crash, so the restart policy handles it as one,
// as the kubelet does.

// LabelContainerHash is the hash of the container spec a runtime container
// was created from: a container carrying another one is not Capstan's.
const LabelContainerHash = "capstan.container-hash"

// ContainerHash is the hash of a container's spec.
func ContainerHash(c *manifests.Container) string { return manifests.Hash(c) }

// Fields of a container that drift, as ContainerDrift.Field.
const (
	DriftPaused   = "state.paused"
	DriftMemory   = "resources.limits.memory"
	DriftCPU      = "resources.limits.cpu"
	DriftName     = "name"
	DriftInstance = "instance"
)

// Actions of ContainerDrift.
const (
	DriftCorrected = "corrected"
	DriftReported  = "reported"
)

// driftKeep is how long a corrected change stays in the pod's status, so
// that the control plane sees it however its status writes coalesce.
const driftKeep = 10 * time.Minute

// maxDrift bounds the changes a pod's status lists.
const maxDrift = 10

// LiveContainer is a running container's live settings, as the kernel
// enforces them (not as they were asked at creation).
type LiveContainer struct {
	Paused        bool
	MemoryLimit   int64 // bytes; 0 for none
	CPULimitMilli int64 // millicores; 0 for none
}

// DriftRuntime is implemented by runtimes that can read a running
// container's live settings and put them back. The daemon looks for
// containers changed outside Capstan only on such a runtime.
type DriftRuntime interface {
	// LiveContainer reads a running container's live settings.
	LiveContainer(ctx context.Context, id string) (LiveContainer, error)
	UnpauseContainer(ctx context.Context, id string) error
	// UpdateContainerLimits sets a running container's limits; 0 removes one.
	UpdateContainerLimits(ctx context.Context, id string, memory, cpuMilli int64) error
	RenameContainer(ctx context.Context, id, name string) error
}

// containerName is the runtime name of a container instance.
func containerName(pod *manifests.Pod, container string, attempt int) string {
	return fmt.Sprintf("%s_%s_%d", PodName(pod), container, attempt)
}

// alteration is one running container found changed outside Capstan.
type alteration struct {
	container string // its name in the pod spec
	index     int    // its index in spec.containers
	id        string // the runtime container
	field     string // a Drift* field
	found     string
	want      string // for DriftName, the name to restore
}

// path is the alteration's pod field path, which ignore rules match.
func (a alteration) path() string {
	return fmt.Sprintf("spec.containers[%d].%s", a.index, a.field)
}

// findAlterations compares the running app containers of a pod with its
// spec. known reports whether the daemon created (or adopted at start) a
// runtime container; live holds the live settings of the running ones
// that could be read. It is pure.
func findAlterations(pod *manifests.Pod, rp *PodInfo, known func(id string) bool, live map[string]LiveContainer) []alteration {
	var out []alteration
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		inst := instances(rp, c.Name)
		if len(inst) == 0 {
			continue
		}
		last := inst[len(inst)-1]
		if last.State != StateRunning {
			continue
		}
		alt := func(field, found, want string) {
			out = append(out, alteration{container: c.Name, index: i, id: last.ID, field: field, found: found, want: want})
		}
		if h := last.Labels[LabelContainerHash]; !known(last.ID) || h != "" && h != ContainerHash(c) {
			alt(DriftInstance, "container "+shortID(last.ID)+" not created by Capstan", "")
			continue // whatever else differs goes with it
		}
		if want := containerName(pod, c.Name, attemptOf(last)); last.Name != "" && last.Name != want {
			alt(DriftName, last.Name, want)
		}
		l, ok := live[last.ID]
		if !ok {
			continue
		}
		if l.Paused {
			alt(DriftPaused, "paused", "running")
		}
		if want := c.Resources.Limits.MemoryBytes(); !sameMemory(l.MemoryLimit, want) {
			alt(DriftMemory, formatBytes(l.MemoryLimit), formatBytes(want))
		}
		if want := c.Resources.Limits.MilliCPU(); l.CPULimitMilli != want {
			alt(DriftCPU, formatMilli(l.CPULimitMilli), formatMilli(want))
		}
	}
	return out
}

// sameMemory compares memory limits as the kernel keeps them: rounded
// down to whole pages.
func sameMemory(live, want int64) bool {
	const page = 4096
	if live == 0 || want == 0 {
		return live == want
	}
	return live/page == want/page
}

func formatBytes(b int64) string {
	switch {
	case b == 0:
		return "none"
	case b%(1<<30) == 0:
		return fmt.Sprintf("%dGi", b>>30)
	case b%(1<<20) == 0:
		return fmt.Sprintf("%dMi", b>>20)
	}
	return fmt.Sprint(b)
}

func formatMilli(m int64) string {
	if m == 0 {
		return "none"
	}
	return fmt.Sprintf("%dm", m)
}

func shortID(id string) string { return id[:min(12, len(id))] }

// ignoredDrift drops the alterations whose path an ignore path names, or
// lies under.
func ignoredDrift(alts []alteration, ignore []string) []alteration {
	if len(ignore) == 0 {
		return alts
	}
	return slices.DeleteFunc(alts, func(a alteration) bool {
		p := a.path()
		for _, ig := range ignore {
			if p == ig || strings.HasPrefix(p, ig+".") || strings.HasPrefix(p, ig+"[") {
				return true
			}
		}
		return false
	})
}

// driftEntry is one change in a pod's status.drift; active while the
// change is still found.
type driftEntry struct {
	manifests.ContainerDrift
	id     string
	active bool
}

// noteDrift merges the alterations found now into a pod's entries: one
// still found keeps its entry (and time), a new one gets a new entry, an
// entry no longer found turns inactive; inactive entries go at once when
// reported (the change is gone) and after driftKeep when corrected. It
// is pure.
func noteDrift(entries []driftEntry, found []alteration, action string, now time.Time) []driftEntry {
	out := slices.Clone(entries)
	matched := make([]bool, len(out))
	for _, a := range found {
		i := slices.IndexFunc(out, func(e driftEntry) bool {
			return e.active && e.id == a.id && e.Container == a.container && e.Field == a.field && e.Action == action
		})
		if i >= 0 {
			matched[i] = true
			continue
		}
		out = append(out, driftEntry{ContainerDrift: manifests.ContainerDrift{Container: a.container, Field: a.field,
			Found: a.found, Want: a.want, Action: action, Time: manifests.NewTime(now)}, id: a.id, active: true})
		matched = append(matched, true)
	}
	kept := out[:0]
	for i, e := range out {
		e.active = e.active && matched[i]
		if !e.active && (e.Action == DriftReported || now.Sub(e.Time.Time) >= driftKeep) {
			continue
		}
		kept = append(kept, e)
	}
	if n := len(kept); n > maxDrift {
		kept = kept[n-maxDrift:]
	}
	return kept
}

// driftStatus is a pod's status.drift.
func (d *Daemon) driftStatus(uid string) []manifests.ContainerDrift {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []manifests.ContainerDrift
	for _, e := range d.drift[uid] {
		out = append(out, e.ContainerDrift)
	}
	return out
}

// checkDrift looks for containers of the desired pods changed outside
// Capstan, notes them for the pods' status, and starts their correction
// unless the pod's drift mode is report. listed is when the runtime was
// listed. The first call adopts every container it finds.
func (d *Daemon) checkDrift(ctx context.Context, desired map[string]*manifests.Pod, hashes map[string]string, pods []PodInfo, listed time.Time) {
	d.mu.Lock()
	present := map[string]bool{}
	for _, p := range pods {
		for _, c := range p.Containers {
			present[c.ID] = true
			if !d.adopted {
				d.ours[c.ID] = listed
			}
		}
	}
	d.adopted = true
	for id, at := range d.ours {
		if !present[id] && at.Before(listed) { // created after the list: not in it yet
			delete(d.ours, id)
		}
	}
	for uid := range d.drift {
		if !slices.ContainsFunc(pods, func(p PodInfo) bool { return p.Labels[LabelUID] == uid }) {
			delete(d.drift, uid)
		}
	}
	d.mu.Unlock()
	dr, ok := d.Runtime.(DriftRuntime)
	if !ok {
		return
	}
	byUID := map[string]*PodInfo{}
	for i := range pods {
		byUID[pods[i].Labels[LabelUID]] = &pods[i]
	}
	now := time.Now()
	for key, pod := range desired {
		rp := byUID[pod.UID]
		if rp == nil || pod.DeletionTimestamp != nil || rp.Labels[LabelSpecHash] != hashes[pod.UID] {
			continue
		}
		d.mu.Lock()
		_, busy := d.inflight[pod.UID] // creating or fixing containers: the list may be behind
		policy := d.driftPolicy[key]
		d.mu.Unlock()
		if busy {
			continue
		}
		live := map[string]LiveContainer{}
		for _, c := range rp.Containers {
			if c.State == StateRunning && !isInit(c) {
				if l, err := dr.LiveContainer(ctx, c.ID); err == nil {
					live[c.ID] = l
				} else if ctx.Err() == nil {
					d.Log.Debug("read live container", "container", c.ID, "err", err)
				}
			}
		}
		known := func(id string) bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			_, ok := d.ours[id]
			return ok
		}
		var ignore []string
		action := DriftCorrected
		if policy != nil {
			ignore = policy.Ignore
			if policy.Mode == "report" {
				action = DriftReported
			}
		}
		alts := ignoredDrift(findAlterations(pod, rp, known, live), ignore)
		d.mu.Lock()
		before := len(d.drift[pod.UID])
		d.drift[pod.UID] = noteDrift(d.drift[pod.UID], alts, action, now)
		grew := len(d.drift[pod.UID]) > before
		d.mu.Unlock()
		if len(alts) == 0 {
			continue
		}
		if grew {
			d.Log.Warn("container changed outside Capstan", "pod", key, "changes", describeAlterations(alts), "action", action)
		}
		if action == DriftCorrected {
			d.spawn(ctx, pod.UID, func(ctx context.Context) { d.correctDrift(ctx, dr, pod, alts) })
		}
	}
}

func describeAlterations(alts []alteration) string {
	var parts []string
	for _, a := range alts {
		parts = append(parts, fmt.Sprintf("%s %s: %s (want %s)", a.container, a.field, a.found, a.want))
	}
	return strings.Join(parts, "; ")
}

// correctDrift puts back what alts found changed.
func (d *Daemon) correctDrift(ctx context.Context, dr DriftRuntime, pod *manifests.Pod, alts []alteration) {
	limited := map[string]bool{}
	for _, a := range alts {
		c := &pod.Spec.Containers[a.index]
		var err error
		var did string
		switch a.field {
		case DriftInstance:
			err = d.Runtime.RemoveContainer(ctx, a.id)
			did = fmt.Sprintf("removed container %s, which Capstan did not create, in place of %s", shortID(a.id), c.Name)
		case DriftName:
			err = dr.RenameContainer(ctx, a.id, a.want)
			did = fmt.Sprintf("renamed container %s back from %s", a.want, a.found)
		case DriftPaused:
			err = dr.UnpauseContainer(ctx, a.id)
			did = "unpaused container " + c.Name
		case DriftMemory, DriftCPU:
			if limited[a.id] {
				continue
			}
			limited[a.id] = true
			err = dr.UpdateContainerLimits(ctx, a.id, c.Resources.Limits.MemoryBytes(), c.Resources.Limits.MilliCPU())
			did = fmt.Sprintf("restored the limits of container %s (%s: %s, want %s)", c.Name, a.field, a.found, a.want)
		}
		if err != nil {
			if ctx.Err() == nil {
				d.Log.Warn("correct container drift", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "field", a.field, "err", err)
			}
			continue // the next relist finds it again and retries
		}
		d.Log.Info("container drift corrected", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "field", a.field)
		d.event(ctx, pod, "Warning", "DriftCorrected", did)
	}
}
