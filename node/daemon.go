package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// Daemon is the node daemon: it registers its Node and heartbeats, watches
// only its own assignments, runs each assigned pod through the Runtime,
// restarts containers by the pod's policy with back-off, and reports pod
// status. On start it adopts the runtime pods it labelled before and
// removes labelled ones no longer assigned; it never touches unlabelled ones.
type Daemon struct {
	Name                       string            // the node's name: a DNS label
	Address                    string            // the address pods' host ports are reached on
	Labels                     map[string]string // extra node labels
	Runtime                    Runtime
	Nodes, Assignments, Status bus.Store
	Events                     bus.Events
	Log                        *slog.Logger

	// HeartbeatInterval between Node status writes (default 10 s).
	HeartbeatInterval time.Duration
	// RelistInterval between runtime relists (default 1 s).
	RelistInterval time.Duration
	// MaxParallel bounds the pods started or stopped at once (default 8).
	MaxParallel int

	mu        sync.Mutex
	desired   map[string]*manifests.Pod // "<ns>/<name>" -> pod
	inflight  map[string]bool           // pod uid or runtime pod id -> busy
	attempts  map[string]int            // "<uid>/<container>" -> highest attempt seen
	waiting   map[string]map[string]manifests.ContainerStateWaiting
	reported  map[string]reportedStatus // "<ns>/<name>" -> last report
	runtimeOK bool
	trigger   chan struct{}
	wg        sync.WaitGroup
}

type reportedStatus struct {
	hash   string
	status manifests.PodStatus
	uid    string
}

func (d *Daemon) defaults() {
	if d.HeartbeatInterval == 0 {
		d.HeartbeatInterval = 10 * time.Second
	}
	if d.RelistInterval == 0 {
		d.RelistInterval = time.Second
	}
	if d.MaxParallel == 0 {
		d.MaxParallel = 8
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Address == "" {
		d.Address = "127.0.0.1"
	}
	d.Log = d.Log.With("node", d.Name)
	d.desired = map[string]*manifests.Pod{}
	d.inflight = map[string]bool{}
	d.attempts = map[string]int{}
	d.waiting = map[string]map[string]manifests.ContainerStateWaiting{}
	d.reported = map[string]reportedStatus{}
	d.trigger = make(chan struct{}, 1)
}

// Run runs the daemon until ctx ends; it returns after its goroutines exit.
// Stopping it stops no pod.
func (d *Daemon) Run(ctx context.Context) error {
	if strings.ContainsAny(d.Name, ". *>") || d.Name == "" {
		return fmt.Errorf("node name %q: must be a DNS label", d.Name)
	}
	d.defaults()
	ctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); d.wg.Wait() }()

	d.wg.Go(func() { d.heartbeat(ctx) })
	synced := make(chan struct{})
	watchErr := make(chan error, 1)
	d.wg.Go(func() { watchErr <- d.watchAssignments(ctx, synced) })
	select {
	case <-synced:
	case err := <-watchErr:
		return err
	case <-ctx.Done():
		return nil
	}
	d.Log.Info("node daemon watching its assignments")
	t := time.NewTicker(d.RelistInterval)
	defer t.Stop()
	for {
		d.relist(ctx)
		select {
		case <-ctx.Done():
			return nil
		case err := <-watchErr:
			return err
		case <-t.C:
		case <-d.trigger:
		}
	}
}

func (d *Daemon) poke() {
	select {
	case d.trigger <- struct{}{}:
	default:
	}
}

func (d *Daemon) watchAssignments(ctx context.Context, synced chan struct{}) error {
	ch, err := d.Assignments.Watch(ctx, d.Name+".>")
	if err != nil {
		return fmt.Errorf("watch assignments: %w", err)
	}
	once := false
	for e := range ch {
		switch e.Op {
		case bus.OpSynced:
			if !once {
				once = true
				close(synced)
			}
		case bus.OpPut:
			var pod manifests.Pod
			if err := json.Unmarshal(e.Value, &pod); err != nil {
				d.Log.Warn("skip undecodable assignment", "key", e.Key, "err", err)
				continue
			}
			d.mu.Lock()
			d.desired[pod.Namespace+"/"+pod.Name] = &pod
			d.mu.Unlock()
		case bus.OpDelete:
			rest := strings.TrimPrefix(e.Key, d.Name+".")
			ns, name, _ := strings.Cut(rest, ".")
			d.mu.Lock()
			delete(d.desired, ns+"/"+name)
			d.mu.Unlock()
		}
		if once {
			d.poke()
		}
	}
	return nil
}

// node builds this node's Node object.
func (d *Daemon) node(info RuntimeInfo, infoErr error) *manifests.Node {
	labels := map[string]string{
		"kubernetes.io/hostname": d.Name,
		"kubernetes.io/os":       runtime.GOOS,
		"kubernetes.io/arch":     runtime.GOARCH,
	}
	maps.Copy(labels, d.Labels)
	n := &manifests.Node{
		TypeMeta:   manifests.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: manifests.ObjectMeta{Name: d.Name, Labels: labels},
	}
	now := manifests.Now()
	ready := manifests.Condition{Type: "Ready", Status: manifests.ConditionTrue, Reason: "NodeReady", Message: "node daemon is posting ready status", LastHeartbeatTime: now}
	if infoErr != nil {
		ready = manifests.Condition{Type: "Ready", Status: manifests.ConditionFalse, Reason: "RuntimeUnavailable", Message: infoErr.Error(), LastHeartbeatTime: now}
	} else {
		res := manifests.ResourceList{
			"cpu":    manifests.Quantity(strconv.Itoa(info.CPUs)),
			"memory": manifests.Quantity(strconv.FormatInt(info.MemoryBytes, 10)),
			"pods":   "110",
		}
		n.Status.Capacity = res
		n.Status.Allocatable = res
		n.Status.NodeInfo = manifests.NodeSystemInfo{OperatingSystem: info.OS, Architecture: info.Arch,
			ContainerRuntimeVersion: info.Name + "://" + info.Version, KubeletVersion: "capstan"}
	}
	n.Status.Addresses = []manifests.NodeAddress{{Type: "InternalIP", Address: d.Address}, {Type: "Hostname", Address: d.Name}}
	n.Status.Conditions = []manifests.Condition{ready}
	return n
}

func (d *Daemon) heartbeat(ctx context.Context) {
	var last manifests.Node
	var lastTransition *manifests.Time
	var lastErr string
	for {
		info, err := d.Runtime.Info(ctx)
		if ctx.Err() != nil {
			return
		}
		errText := ""
		if err != nil {
			errText = err.Error()
		}
		if errText != lastErr {
			if err != nil {
				d.Log.Error("container runtime unavailable; pods keep running", "err", err)
			} else if lastErr != "" {
				d.Log.Info("container runtime available again")
			}
			lastErr = errText
		}
		d.mu.Lock()
		d.runtimeOK = err == nil
		d.mu.Unlock()
		n := d.node(info, err)
		if old := manifests.FindCondition(last.Status.Conditions, "Ready"); old != nil && old.Status == n.Status.Conditions[0].Status {
			n.Status.Conditions[0].LastTransitionTime = lastTransition
		} else {
			n.Status.Conditions[0].LastTransitionTime = manifests.Now()
			lastTransition = n.Status.Conditions[0].LastTransitionTime
		}
		if b, err := json.Marshal(n); err == nil {
			if _, err := d.Nodes.Put(ctx, d.Name, b); err != nil && ctx.Err() == nil {
				d.Log.Warn("heartbeat", "err", err)
			} else {
				last = *n
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.HeartbeatInterval):
		}
	}
}

// PodName is the runtime name of a pod.
func PodName(p *manifests.Pod) string {
	uid := p.UID
	if len(uid) > 8 {
		uid = uid[:8]
	}
	return p.Namespace + "_" + p.Name + "_" + uid
}

// SpecHash is the hash of what a runtime pod runs; a pod whose spec changed
// is recreated.
func SpecHash(p *manifests.Pod) string { return manifests.Hash(p.Spec) }

// relist compares the runtime with the assignments and starts the work.
func (d *Daemon) relist(ctx context.Context) {
	d.mu.Lock()
	ok := d.runtimeOK
	d.mu.Unlock()
	if !ok {
		return // the heartbeat logs it; nothing running is touched
	}
	pods, err := d.Runtime.ListPods(ctx, map[string]string{LabelNode: d.Name})
	if err != nil {
		if ctx.Err() == nil {
			d.Log.Debug("list runtime pods", "err", err)
		}
		return
	}
	byUID := map[string]*PodInfo{}
	for i := range pods {
		byUID[pods[i].Labels[LabelUID]] = &pods[i]
	}
	d.mu.Lock()
	desired := maps.Clone(d.desired)
	d.mu.Unlock()
	wanted := map[string]bool{}
	for _, pod := range desired {
		wanted[pod.UID] = true
	}
	// Host ports of runtime pods on their way out stay taken until they
	// are gone: two pods publishing one port at once confuse the port
	// forwarding rules of both.
	busy := map[string]bool{}
	for i := range pods {
		if rp := &pods[i]; !wanted[rp.Labels[LabelUID]] || rp.Labels[LabelSpecHash] != d.specHashOf(desired, rp) {
			for p := range strings.SplitSeq(rp.Labels[LabelHostPorts], ",") {
				busy[p] = p != ""
			}
		}
	}
	now := time.Now()
	for key, pod := range desired {
		rp := byUID[pod.UID]
		if rp != nil && rp.Labels[LabelSpecHash] != SpecHash(pod) {
			d.spawn(ctx, rp.ID, func(ctx context.Context) { d.removePod(ctx, rp, pod, "spec changed") })
			rp = nil
		} else if rp == nil && portsBusy(pod, busy) {
			d.Log.Debug("waiting for host ports held by a stopping pod", "pod", key)
		} else if d.needsWork(pod, rp, now) {
			d.spawn(ctx, pod.UID, func(ctx context.Context) { d.syncPod(ctx, pod, rp) })
		}
		d.report(ctx, key, pod, rp, now)
	}
	for i := range pods {
		rp := &pods[i]
		if !wanted[rp.Labels[LabelUID]] {
			d.spawn(ctx, rp.ID, func(ctx context.Context) { d.removePod(ctx, rp, nil, "no longer assigned") })
		}
	}
	// Reports of pods no longer assigned go once their runtime pod is gone.
	d.mu.Lock()
	var stale []string
	for key := range d.reported {
		if _, ok := desired[key]; !ok {
			stale = append(stale, key)
		}
	}
	d.mu.Unlock()
	for _, key := range stale {
		ns, name, _ := strings.Cut(key, "/")
		if err := d.Status.Delete(ctx, manifests.AssignmentKey(d.Name, ns, name), 0); err == nil || errors.Is(err, bus.ErrNotFound) {
			d.mu.Lock()
			delete(d.reported, key)
			d.mu.Unlock()
		}
	}
}

// specHashOf returns the spec hash of the desired pod a runtime pod runs,
// or "" when no desired pod has its uid.
func (d *Daemon) specHashOf(desired map[string]*manifests.Pod, rp *PodInfo) string {
	for _, p := range desired {
		if p.UID == rp.Labels[LabelUID] {
			return SpecHash(p)
		}
	}
	return ""
}

// hostPorts lists the host ports a pod publishes, as "tcp/8080".
func hostPorts(pod *manifests.Pod) []string {
	var out []string
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				proto := strings.ToLower(p.Protocol)
				if proto == "" {
					proto = "tcp"
				}
				out = append(out, fmt.Sprintf("%s/%d", proto, p.HostPort))
			}
		}
	}
	return out
}

func portsBusy(pod *manifests.Pod, busy map[string]bool) bool {
	for _, p := range hostPorts(pod) {
		if busy[p] {
			return true
		}
	}
	return false
}

// spawn runs fn for id unless work for id is already running. Work is
// cancelled with the daemon: whatever it left half done, the next relist
// after a restart finishes.
func (d *Daemon) spawn(ctx context.Context, id string, fn func(ctx context.Context)) {
	d.mu.Lock()
	if d.inflight[id] || len(d.inflight) >= d.MaxParallel {
		d.mu.Unlock()
		return // the next relist tries again
	}
	d.inflight[id] = true
	d.mu.Unlock()
	d.wg.Go(func() {
		fn(ctx)
		d.mu.Lock()
		delete(d.inflight, id)
		d.mu.Unlock()
		d.poke()
	})
}

func (d *Daemon) needsWork(pod *manifests.Pod, rp *PodInfo, now time.Time) bool {
	if rp == nil {
		return true
	}
	for _, c := range pod.Spec.Containers {
		p := planContainer(instances(rp, c.Name), pod.Spec.RestartPolicy, d.known(pod.UID, c.Name), now)
		if p.create || p.start != "" || len(p.remove) > 0 {
			return true
		}
	}
	return false
}

func (d *Daemon) known(uid, container string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attempts[uid+"/"+container]
}

func (d *Daemon) setWaiting(pod *manifests.Pod, container string, w *manifests.ContainerStateWaiting) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.waiting[pod.UID]
	if w == nil {
		delete(m, container)
		return
	}
	if m == nil {
		m = map[string]manifests.ContainerStateWaiting{}
		d.waiting[pod.UID] = m
	}
	m[container] = *w
}

func (d *Daemon) syncPod(ctx context.Context, pod *manifests.Pod, rp *PodInfo) {
	log := d.Log.With("pod", pod.Namespace+"/"+pod.Name)
	for _, c := range pod.Spec.Containers {
		ok, err := d.Runtime.ImageExists(ctx, c.Image)
		switch {
		case err != nil:
			log.Warn("check image", "image", c.Image, "err", err)
			return
		case !ok:
			msg := fmt.Sprintf("image %q is not present on node %s and cannot be pulled", c.Image, d.Name)
			if d.waitingReason(pod.UID, c.Name) != "ErrImageNeverPull" {
				log.Warn("image missing", "image", c.Image)
				d.event(ctx, pod, "Warning", "ErrImageNeverPull", msg)
			}
			d.setWaiting(pod, c.Name, &manifests.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: msg})
			return
		}
		d.setWaiting(pod, c.Name, nil)
	}
	podID := ""
	if rp != nil {
		podID = rp.ID
	} else {
		id, err := d.Runtime.CreatePod(ctx, d.podConfig(pod))
		if errors.Is(err, ErrConflict) {
			// Created by an earlier sync that a relist did not show yet.
			if found, lerr := d.Runtime.ListPods(ctx, map[string]string{LabelNode: d.Name, LabelUID: pod.UID}); lerr == nil && len(found) == 1 {
				rp = &found[0]
				id, err = rp.ID, nil
			}
		}
		if err != nil {
			log.Warn("create pod", "err", err)
			d.event(ctx, pod, "Warning", "FailedCreatePod", err.Error())
			return
		}
		podID = id
		if rp == nil {
			rp = &PodInfo{ID: id}
			log.Info("pod created", "runtime_pod", id)
		}
	}
	now := time.Now()
	for _, c := range pod.Spec.Containers {
		plan := planContainer(instances(rp, c.Name), pod.Spec.RestartPolicy, d.known(pod.UID, c.Name), now)
		for _, id := range plan.remove {
			_ = d.Runtime.RemoveContainer(ctx, id)
		}
		id := plan.start
		if plan.create {
			var err error
			id, err = d.Runtime.CreateContainer(ctx, podID, d.containerConfig(pod, &c, plan.attempt))
			if err != nil {
				log.Warn("create container", "container", c.Name, "err", err)
				d.setWaiting(pod, c.Name, &manifests.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()})
				d.event(ctx, pod, "Warning", "Failed", fmt.Sprintf("create container %s: %v", c.Name, err))
				continue
			}
			d.mu.Lock()
			d.attempts[pod.UID+"/"+c.Name] = plan.attempt
			d.mu.Unlock()
		}
		if id == "" {
			continue
		}
		if err := d.Runtime.StartContainer(ctx, id); err != nil {
			log.Warn("start container", "container", c.Name, "err", err)
			d.setWaiting(pod, c.Name, &manifests.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()})
			d.event(ctx, pod, "Warning", "Failed", fmt.Sprintf("start container %s: %v", c.Name, err))
			continue
		}
		d.setWaiting(pod, c.Name, nil)
		verb := "Started container " + c.Name
		if plan.attempt > 0 {
			verb = fmt.Sprintf("Restarted container %s (restart %d)", c.Name, plan.attempt)
		}
		d.event(ctx, pod, "Normal", "Started", verb)
	}
}

func (d *Daemon) waitingReason(uid, container string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting[uid][container].Reason
}

func (d *Daemon) removePod(ctx context.Context, rp *PodInfo, pod *manifests.Pod, why string) {
	grace := 30 * time.Second
	if pod != nil && pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	} else if g, err := strconv.Atoi(rp.Labels["capstan.grace"]); err == nil {
		grace = time.Duration(g) * time.Second
	}
	d.Log.Info("removing pod", "pod", rp.Labels[LabelPod], "runtime_pod", rp.ID, "reason", why)
	if err := d.Runtime.RemovePod(ctx, rp.ID, grace); err != nil {
		d.Log.Warn("remove pod", "runtime_pod", rp.ID, "err", err)
	}
	d.mu.Lock()
	uid := rp.Labels[LabelUID]
	delete(d.waiting, uid)
	for k := range d.attempts {
		if strings.HasPrefix(k, uid+"/") && pod == nil {
			delete(d.attempts, k)
		}
	}
	d.mu.Unlock()
}

func (d *Daemon) podLabels(pod *manifests.Pod) map[string]string {
	l := maps.Clone(pod.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[LabelPod] = pod.Namespace + "/" + pod.Name
	l[LabelNode] = d.Name
	l[LabelUID] = pod.UID
	return l
}

func (d *Daemon) podConfig(pod *manifests.Pod) PodConfig {
	l := d.podLabels(pod)
	l[LabelSpecHash] = SpecHash(pod)
	grace := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	l["capstan.grace"] = strconv.FormatInt(grace, 10)
	if ports := hostPorts(pod); len(ports) > 0 {
		l[LabelHostPorts] = strings.Join(ports, ",")
	}
	cfg := PodConfig{Name: PodName(pod), Hostname: pod.Spec.Hostname, Labels: l}
	if cfg.Hostname == "" {
		cfg.Hostname = pod.Name
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := strings.ToLower(p.Protocol)
			if proto == "" {
				proto = "tcp"
			}
			cfg.Ports = append(cfg.Ports, PortMapping{HostIP: p.HostIP, HostPort: uint16(p.HostPort), ContainerPort: uint16(p.ContainerPort), Protocol: proto})
		}
	}
	return cfg
}

func (d *Daemon) containerConfig(pod *manifests.Pod, c *manifests.Container, attempt int) ContainerConfig {
	l := d.podLabels(pod)
	l[LabelContainer] = c.Name
	l[LabelAttempt] = strconv.Itoa(attempt)
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return ContainerConfig{
		Name:          fmt.Sprintf("%s_%s_%d", PodName(pod), c.Name, attempt),
		Image:         c.Image,
		Command:       c.Command,
		Args:          c.Args,
		Env:           env,
		WorkingDir:    c.WorkingDir,
		Labels:        l,
		MemoryLimit:   c.Resources.Limits.MemoryBytes(),
		CPULimitMilli: c.Resources.Limits.MilliCPU(),
	}
}

// report writes the pod's status when it changed.
func (d *Daemon) report(ctx context.Context, key string, pod *manifests.Pod, rp *PodInfo, now time.Time) {
	d.mu.Lock()
	prev, had := d.reported[key]
	waiting := maps.Clone(d.waiting[pod.UID])
	d.mu.Unlock()
	var prevStatus *manifests.PodStatus
	if had && prev.uid == pod.UID {
		prevStatus = &prev.status
	}
	st := podStatus(pod, rp, prevStatus, waiting, d.Address, now)
	h := manifests.Hash(st)
	if had && prev.hash == h && prev.uid == pod.UID {
		return
	}
	st.ObservedAt = manifests.NewTime(now)
	b, err := json.Marshal(manifests.PodStatusReport{UID: pod.UID, Node: d.Name, Status: st})
	if err != nil {
		return
	}
	if _, err := d.Status.Put(ctx, manifests.AssignmentKey(d.Name, pod.Namespace, pod.Name), b); err != nil {
		if ctx.Err() == nil {
			d.Log.Warn("report status", "pod", key, "err", err)
		}
		return
	}
	st.ObservedAt = nil
	d.mu.Lock()
	d.reported[key] = reportedStatus{hash: h, status: st, uid: pod.UID}
	d.mu.Unlock()
}

func (d *Daemon) event(ctx context.Context, pod *manifests.Pod, typ, reason, msg string) {
	if d.Events == nil {
		return
	}
	ev := manifests.Event{Time: manifests.Now(), Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, Type: typ, Reason: reason, Message: msg, Source: "node/" + d.Name}
	if err := d.Events.Record(ctx, ev); err != nil {
		d.Log.Debug("record event", "err", err)
	}
}
