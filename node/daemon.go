package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/secrets"
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
	// DataDir holds the pods' volumes, under pods/<uid>/volumes/<name>
	// (see volumes.go); pods with emptyDir or projected volumes need it.
	DataDir string
	// ClusterDNS is the address of the cluster's DNS server (the data
	// plane's) that pods resolve with, with the search list of
	// ClusterDomain (default cluster.local); empty leaves pods the
	// runtime's default resolvers.
	ClusterDNS, ClusterDomain string

	// HeartbeatInterval between Node status writes (default 10 s).
	HeartbeatInterval time.Duration
	// RelistInterval between runtime relists (default 1 s).
	RelistInterval time.Duration
	// MaxParallel bounds the pods started or stopped at once (default 8).
	MaxParallel int
	// UsageInterval between samples of the pods' resource use (default
	// 15 s); each report's usage is the rate between two samples.
	UsageInterval time.Duration
	// TerminationDelay is how long a pod marked for deletion is reported
	// not ready (reason Terminating) before its preStop hooks run and its
	// containers get SIGTERM (default 1 s; negative for none): the time
	// for the endpoints change to reach every node's proxy, so no new
	// connection goes to a pod that is stopping. The grace period starts
	// after it. A pod deleted with a grace period of 0 gets no delay.
	TerminationDelay time.Duration

	mu       sync.Mutex
	desired  map[string]*manifests.Pod // "<ns>/<name>" -> pod
	objects  map[string]podObjects     // "<ns>/<name>" -> its assignment's ConfigMaps and Secrets
	volMu    sync.Mutex                // serialises writes of pod volumes
	inflight map[string]time.Time      // pod uid or runtime pod id -> busy since
	quiet    map[string]*time.Timer    // pod uid -> the poke that ends its first report's wait
	blocked  map[string]bool           // pod uid -> its last sync stopped at a missing reference or image
	backlog  []waitingSync             // pods the last relist wanted synced while MaxParallel were busy
	attempts map[string]int            // "<uid>/<container>" -> highest attempt seen
	waiting  map[string]map[string]manifests.ContainerStateWaiting
	reported map[string]reportedStatus // "<ns>/<name>" -> last report
	// specs remembers the pods run here by "<uid>/<spec hash>", so that a
	// pod no longer assigned (or replaced) is stopped with its hooks.
	specs map[string]*manifests.Pod
	// specHashes caches the spec hash of each assigned pod (relist).
	specHashes map[*manifests.Pod]string
	// probers stops the prober of a container instance, by its runtime ID;
	// probeResults holds what each prober found.
	probers      map[string]context.CancelFunc
	probeResults map[string]probeResult
	// usage is the last measured use per pod uid; cpuSamples the last
	// sample per container, to take rates from.
	usage      map[string]*manifests.PodUsage
	cpuSamples map[string]ContainerStats
	// removed holds the uids of terminating pods whose runtime pod this
	// daemon stopped and removed (or never had): reported as removed.
	removed   map[string]bool
	runtimeOK bool

	// Drift (drift.go): the pods' drift policies by "<ns>/<name>", the
	// runtime containers this daemon created or adopted (with when), and
	// the changes found per pod uid.
	driftPolicy map[string]*manifests.PodDriftPolicy
	ours        map[string]time.Time
	adopted     bool
	drift       map[string][]driftEntry

	trigger chan struct{}
	wg      sync.WaitGroup
	relists atomic.Int64 // relists run: a test waits for a few (export_test.go)

	identity *age.X25519Identity // seals the Secrets handed to this node
}

type reportedStatus struct {
	hash       string
	removed    bool
	status     manifests.PodStatus
	uid        string
	observedAt *manifests.Time
	usage      *manifests.PodUsage
}

// DefaultHeartbeatInterval is how often a Daemon whose HeartbeatInterval
// is zero posts its status; a control plane's node grace period must be
// longer.
const DefaultHeartbeatInterval = 10 * time.Second

func (d *Daemon) defaults() {
	if d.HeartbeatInterval == 0 {
		d.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if d.RelistInterval == 0 {
		d.RelistInterval = time.Second
	}
	if d.MaxParallel == 0 {
		d.MaxParallel = 8
	}
	if d.UsageInterval == 0 {
		d.UsageInterval = 15 * time.Second
	}
	if d.TerminationDelay == 0 {
		d.TerminationDelay = time.Second
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Address == "" {
		d.Address = "127.0.0.1"
	}
	d.Log = d.Log.With("node", d.Name)
	d.desired = map[string]*manifests.Pod{}
	d.inflight = map[string]time.Time{}
	d.quiet = map[string]*time.Timer{}
	d.blocked = map[string]bool{}
	d.attempts = map[string]int{}
	d.waiting = map[string]map[string]manifests.ContainerStateWaiting{}
	d.reported = map[string]reportedStatus{}
	d.specs = map[string]*manifests.Pod{}
	d.probers = map[string]context.CancelFunc{}
	d.probeResults = map[string]probeResult{}
	d.usage = map[string]*manifests.PodUsage{}
	d.cpuSamples = map[string]ContainerStats{}
	d.removed = map[string]bool{}
	d.driftPolicy = map[string]*manifests.PodDriftPolicy{}
	d.ours = map[string]time.Time{}
	d.drift = map[string][]driftEntry{}
	d.trigger = make(chan struct{}, 1)
}

// Run runs the daemon until ctx ends; it returns after its goroutines exit.
// Stopping it stops no pod.
func (d *Daemon) Run(ctx context.Context) error {
	if strings.ContainsAny(d.Name, ". *>") || d.Name == "" {
		return fmt.Errorf("node name %q: must be a DNS label", d.Name)
	}
	d.defaults()
	id, err := secrets.LoadIdentity(d.DataDir)
	if err != nil {
		return err
	}
	d.identity = id
	ctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); d.wg.Wait() }()

	d.wg.Go(func() { d.heartbeat(ctx) })
	d.wg.Go(func() { d.sampleUsage(ctx) })
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
		d.relists.Add(1)
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
	d.mu.Lock()
	if d.objects == nil {
		d.objects = map[string]podObjects{}
	}
	d.mu.Unlock()
	once := false
	for e := range ch {
		switch e.Op {
		case bus.OpSynced:
			if !once {
				once = true
				close(synced)
				d.wg.Go(func() { d.sweepPodDirs(ctx) })
			}
		case bus.OpPut:
			a, err := decodeAssignment(e.Value)
			if err != nil {
				d.Log.Warn("skip undecodable assignment", "key", e.Key, "err", err)
				continue
			}
			if d.identity != nil {
				if err := secrets.Open(a, d.identity); err != nil {
					// Sealed to another key (a data dir lost): the pod
					// reports its Secrets missing until they are sealed
					// again to the key this node publishes.
					d.Log.Warn("cannot open the secrets of an assignment", "key", e.Key, "err", err)
					a.SealedSecrets = nil
				}
			}
			pod, objs := &a.Pod, newPodObjects(a)
			key := pod.Namespace + "/" + pod.Name
			d.mu.Lock()
			d.desired[key] = pod
			d.objects[key] = objs
			d.driftPolicy[key] = a.Drift
			d.mu.Unlock()
			// A changed ConfigMap or Secret reaches the files of the
			// running pod, without a restart.
			d.refreshVolumes(ctx, pod, objs)
		case bus.OpDelete:
			rest := strings.TrimPrefix(e.Key, d.Name+".")
			ns, name, _ := strings.Cut(rest, ".")
			d.mu.Lock()
			delete(d.desired, ns+"/"+name)
			delete(d.objects, ns+"/"+name)
			delete(d.driftPolicy, ns+"/"+name)
			d.mu.Unlock()
		}
		if once {
			d.poke()
		}
	}
	return nil
}

// decodeAssignment reads an assignment; a bare pod (as control planes
// before assignments carried ConfigMaps and Secrets wrote) is read as an
// assignment of the pod alone.
func decodeAssignment(b []byte) (*manifests.Assignment, error) {
	var a manifests.Assignment
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	if a.Pod.Name == "" {
		var pod manifests.Pod
		if err := json.Unmarshal(b, &pod); err != nil {
			return nil, err
		}
		if pod.Name == "" {
			return nil, errors.New("assignment has no pod")
		}
		a = manifests.Assignment{Pod: pod}
	}
	return &a, nil
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
	if d.identity != nil {
		n.Annotations = map[string]string{manifests.AnnotationAgeRecipient: d.identity.Recipient().String()}
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
	listed := time.Now()
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
	// Each assigned pod's spec hash is computed once, when it comes, not
	// per pair a relist compares: hashing is a JSON encoding.
	hashes := make(map[string]string, len(desired)) // pod uid -> spec hash
	known := make(map[*manifests.Pod]string, len(desired))
	for _, pod := range desired {
		h, ok := d.specHashes[pod]
		if !ok {
			h = SpecHash(pod)
		}
		known[pod], hashes[pod.UID] = h, h
		d.specs[pod.UID+"/"+h] = pod
	}
	d.specHashes = known
	d.backlog = d.backlog[:0] // this relist decides again
	d.mu.Unlock()
	wanted := map[string]bool{}
	terminating := map[string]bool{}
	for _, pod := range desired {
		wanted[pod.UID] = true
		terminating[pod.UID] = pod.DeletionTimestamp != nil
	}
	d.checkDrift(ctx, desired, hashes, pods, listed) // containers changed outside Capstan (drift.go)
	// Host ports of runtime pods on their way out stay taken until they
	// are gone: two pods publishing one port at once confuse the port
	// forwarding rules of both.
	busy := map[string]bool{}
	for i := range pods {
		if rp := &pods[i]; !wanted[rp.Labels[LabelUID]] || terminating[rp.Labels[LabelUID]] || rp.Labels[LabelSpecHash] != hashes[rp.Labels[LabelUID]] {
			for p := range strings.SplitSeq(rp.Labels[LabelHostPorts], ",") {
				busy[p] = p != ""
			}
		}
	}
	now := time.Now()
	probes := map[string]probeWanted{}
	for key, pod := range desired {
		rp := byUID[pod.UID]
		if pod.DeletionTimestamp != nil {
			// Marked for deletion: stopped gracefully, never (re)started;
			// its probes stop.
			d.terminate(ctx, pod, rp)
			d.report(ctx, key, pod, rp, now)
			continue
		}
		if rp != nil && rp.Labels[LabelSpecHash] != hashes[pod.UID] {
			d.spawn(ctx, rp.ID, func(ctx context.Context) { d.removePod(ctx, rp, pod, "spec changed") })
			rp = nil
		} else if rp == nil && portsBusy(pod, busy) {
			d.Log.Debug("waiting for host ports held by a stopping pod", "pod", key)
		} else if deadlineExceeded(pod, rp, now) {
			if anyRunning(rp) {
				d.spawn(ctx, pod.UID, func(ctx context.Context) { d.killPod(ctx, pod, rp) })
			}
		} else {
			if d.needsWork(pod, rp, now) && d.spawn(ctx, pod.UID, func(ctx context.Context) { d.syncPod(ctx, pod, rp) }) {
				d.mu.Lock()
				d.backlog = append(d.backlog, waitingSync{key: key, pod: pod, rp: rp})
				d.mu.Unlock()
			}
			wantProbes(pod, rp, probes)
		}
		d.report(ctx, key, pod, rp, now)
	}
	d.syncProbers(ctx, probes)
	for i := range pods {
		rp := &pods[i]
		if !wanted[rp.Labels[LabelUID]] {
			d.spawn(ctx, rp.ID, func(ctx context.Context) { d.removePod(ctx, rp, nil, "no longer assigned") })
		}
	}
	// Reports of pods no longer assigned are deleted at once: the Pod
	// object is gone (graceful deletion waited for this node to report the
	// runtime pod removed), so nothing reads them.
	d.mu.Lock()
	var stale []string
	for key := range d.reported {
		if _, ok := desired[key]; !ok {
			stale = append(stale, key)
		}
	}
	for uid := range d.removed {
		if !wanted[uid] {
			delete(d.removed, uid)
		}
	}
	// Specs of pods neither assigned nor running are forgotten.
	for k := range d.specs {
		uid, _, _ := strings.Cut(k, "/")
		if !wanted[uid] && byUID[uid] == nil {
			delete(d.specs, k)
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

// anyRunning reports whether a runtime pod has a running container.
func anyRunning(rp *PodInfo) bool {
	for _, c := range rp.Containers {
		if c.State == StateRunning {
			return true
		}
	}
	return false
}

// wantProbes adds the running app containers of a pod that have probes.
// Probes that need the pod's address wait until the runtime reports it.
func wantProbes(pod *manifests.Pod, rp *PodInfo, into map[string]probeWanted) {
	if rp == nil {
		return
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if !hasProbes(c) {
			continue
		}
		inst := instances(rp, c.Name)
		if len(inst) == 0 || inst[len(inst)-1].State != StateRunning {
			continue
		}
		if rp.IP == "" && needsAddress(c) {
			continue
		}
		last := inst[len(inst)-1]
		into[last.ID] = probeWanted{pod: pod, c: c, ci: last, podIP: rp.IP}
	}
}

// needsAddress reports whether a container's probes reach it over the
// network at the pod's address.
func needsAddress(c *manifests.Container) bool {
	for _, p := range []*manifests.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if p == nil {
			continue
		}
		if (p.HTTPGet != nil && p.HTTPGet.Host == "") || (p.TCPSocket != nil && p.TCPSocket.Host == "") {
			return true
		}
	}
	return false
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
func (d *Daemon) spawn(ctx context.Context, id string, fn func(ctx context.Context)) (full bool) {
	d.mu.Lock()
	if _, busy := d.inflight[id]; busy || len(d.inflight) >= d.MaxParallel {
		d.mu.Unlock()
		return !busy // the next relist tries again
	}
	d.inflight[id] = time.Now()
	d.mu.Unlock()
	d.wg.Go(func() {
		fn(ctx)
		d.mu.Lock()
		delete(d.inflight, id)
		if t := d.quiet[id]; t != nil {
			t.Stop() // the poke below ends the wait
			delete(d.quiet, id)
		}
		next, ok := d.nextWaiting()
		// A sync stopped by a missing ConfigMap or image waits for the
		// next relist tick or assignment change: poking here retried it
		// back to back.
		blocked := d.blocked[id]
		delete(d.blocked, id)
		d.mu.Unlock()
		if ok {
			d.spawn(ctx, next.pod.UID, func(ctx context.Context) { d.syncPod(ctx, next.pod, next.rp) })
		}
		if !blocked {
			d.poke()
		}
	})
	return false
}

// waitingSync is a pod the last relist wanted to sync while MaxParallel
// were busy.
type waitingSync struct {
	key string
	pod *manifests.Pod
	rp  *PodInfo
}

// nextWaiting takes the first pod waiting for a slot that is still
// assigned as it was (d.mu held). A slot that frees starts it at once
// rather than idling until the next relist (docs/BENCHMARKS.md).
func (d *Daemon) nextWaiting() (waitingSync, bool) {
	for len(d.backlog) > 0 {
		w := d.backlog[0]
		d.backlog = d.backlog[1:]
		if _, busy := d.inflight[w.pod.UID]; d.desired[w.key] == w.pod && !busy {
			return w, true
		}
	}
	return waitingSync{}, false
}

func (d *Daemon) needsWork(pod *manifests.Pod, rp *PodInfo, now time.Time) bool {
	if rp == nil {
		return true
	}
	for _, st := range planPod(pod, rp, func(c string) int { return d.known(pod.UID, c) }, now) {
		if st.acts() {
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
	block := func() {
		d.mu.Lock()
		d.blocked[pod.UID] = true
		d.mu.Unlock()
	}
	if !d.preparePod(ctx, pod) { // ConfigMaps, Secrets and volumes (volumes.go)
		block()
		return
	}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		ok, err := d.Runtime.ImageExists(ctx, c.Image)
		switch {
		case err != nil:
			log.Warn("check image", "image", c.Image, "err", err)
			block()
			return
		case !ok:
			msg := fmt.Sprintf("image %q is not present on node %s and cannot be pulled", c.Image, d.Name)
			if d.waitingReason(pod.UID, c.Name) != "ErrImageNeverPull" {
				log.Warn("image missing", "image", c.Image)
				d.event(ctx, pod, "Warning", "ErrImageNeverPull", msg)
			}
			d.setWaiting(pod, c.Name, &manifests.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: msg})
			block()
			return
		}
		d.setWaiting(pod, c.Name, nil)
	}
	podID := ""
	if rp != nil {
		podID = rp.ID
	} else {
		id, err := d.Runtime.CreatePod(ctx, publishAll(pod, d.podConfig(pod)))
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
	for _, step := range planPod(pod, rp, func(c string) int { return d.known(pod.UID, c) }, now) {
		c, plan := step.c, step.plan
		for _, id := range plan.remove {
			_ = d.Runtime.RemoveContainer(ctx, id)
		}
		id := plan.start
		if plan.create {
			cfg := d.containerConfig(pod, c, plan.attempt)
			if step.init {
				cfg.Labels[LabelInit] = "true"
			}
			var err error
			id, err = d.Runtime.CreateContainer(ctx, podID, cfg)
			if err != nil {
				log.Warn("create container", "container", c.Name, "err", err)
				d.setWaiting(pod, c.Name, &manifests.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()})
				d.event(ctx, pod, "Warning", "Failed", fmt.Sprintf("create container %s: %v", c.Name, err))
				continue
			}
			d.mu.Lock()
			d.attempts[pod.UID+"/"+c.Name] = plan.attempt
			d.ours[id] = time.Now()
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
		if step.init {
			verb = "Started init container " + c.Name
		}
		if plan.attempt > 0 {
			verb = fmt.Sprintf("Restarted container %s (restart %d)", c.Name, plan.attempt)
		}
		d.event(ctx, pod, "Normal", "Started", verb)
		if !step.init && c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
			d.postStart(ctx, pod, c, id, d.podIP(ctx, pod, rp))
		}
	}
}

// podIP returns a pod's address, asking the runtime when the relist that
// found the pod had none (the pod was just created).
func (d *Daemon) podIP(ctx context.Context, pod *manifests.Pod, rp *PodInfo) string {
	if rp != nil && rp.IP != "" {
		return rp.IP
	}
	found, err := d.Runtime.ListPods(ctx, map[string]string{LabelNode: d.Name, LabelUID: pod.UID})
	if err != nil || len(found) != 1 {
		return ""
	}
	return found[0].IP
}

func (d *Daemon) waitingReason(uid, container string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting[uid][container].Reason
}

// removePod stops a runtime pod and removes it. pod is the desired pod
// when its spec changed, nil when it is no longer assigned. The containers
// stop as the spec that created them says (preStop hooks within the
// grace period), when the daemon still knows it.
func (d *Daemon) removePod(ctx context.Context, rp *PodInfo, pod *manifests.Pod, why string) {
	uid := rp.Labels[LabelUID]
	d.mu.Lock()
	spec := d.specs[uid+"/"+rp.Labels[LabelSpecHash]]
	d.mu.Unlock()
	grace := 30 * time.Second
	switch {
	case spec != nil:
		grace = d.podGrace(spec)
	case pod != nil && pod.Spec.TerminationGracePeriodSeconds != nil:
		grace = d.podGrace(pod)
	default:
		if g, err := strconv.Atoi(rp.Labels["capstan.grace"]); err == nil {
			grace = time.Duration(g) * time.Second
		}
	}
	d.stopAndRemove(ctx, rp, pod, why, grace)
}

// terminate stops a pod marked for deletion, once: it waits the
// TerminationDelay (the pod is reported not ready meanwhile), then stops
// its containers with their preStop hooks within the deletion's grace
// period and removes the runtime pod; the next report says it was
// removed, and the control plane deletes the Pod. A pod with no runtime
// pod (never started here, or already removed) is removed at once, unless
// it is being created right now.
func (d *Daemon) terminate(ctx context.Context, pod *manifests.Pod, rp *PodInfo) {
	if rp == nil {
		d.mu.Lock()
		if _, busy := d.inflight[pod.UID]; !busy {
			d.removed[pod.UID] = true
		}
		d.mu.Unlock()
		return
	}
	grace := d.podGrace(pod)
	if g := pod.DeletionGracePeriodSeconds; g != nil {
		grace = time.Duration(max(*g, 0)) * time.Second
	}
	delay := max(d.TerminationDelay, 0)
	if grace == 0 {
		delay = 0
	}
	d.spawn(ctx, pod.UID, func(ctx context.Context) {
		d.Log.Info("terminating pod", "pod", pod.Namespace+"/"+pod.Name, "delay", delay, "grace", grace)
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.stopAndRemove(ctx, rp, nil, "deleted", grace)
		if ctx.Err() != nil {
			return
		}
		if left, err := d.Runtime.ListPods(ctx, map[string]string{LabelNode: d.Name, LabelUID: pod.UID}); err != nil || len(left) > 0 {
			return // the next relist tries again
		}
		d.mu.Lock()
		d.removed[pod.UID] = true
		d.mu.Unlock()
	})
}

// stopAndRemove stops a runtime pod's containers within grace (with their
// preStop hooks, when the daemon knows the spec) and removes the pod. pod
// is the desired pod when its spec changed, nil when it goes for good.
func (d *Daemon) stopAndRemove(ctx context.Context, rp *PodInfo, pod *manifests.Pod, why string, grace time.Duration) {
	uid := rp.Labels[LabelUID]
	d.mu.Lock()
	spec := d.specs[uid+"/"+rp.Labels[LabelSpecHash]]
	d.mu.Unlock()
	d.Log.Info("removing pod", "pod", rp.Labels[LabelPod], "runtime_pod", rp.ID, "reason", why)
	if hasPreStop(spec) {
		// Each container with its hook, in parallel; the pod's grace
		// covers hooks and stop alike, so the removal itself kills
		// whatever is left.
		d.stopPodContainers(ctx, spec, rp, grace)
		grace = 0
	}
	if err := d.Runtime.RemovePod(ctx, rp.ID, grace); err != nil {
		d.Log.Warn("remove pod", "runtime_pod", rp.ID, "err", err)
	}
	d.removePodFiles(ctx, rp, pod) // volumes.go
	d.mu.Lock()
	delete(d.waiting, uid)
	for k := range d.attempts {
		if strings.HasPrefix(k, uid+"/") && pod == nil {
			delete(d.attempts, k)
		}
	}
	if pod == nil {
		delete(d.usage, uid)
	}
	d.mu.Unlock()
}

// killPod stops the running containers of a pod that exceeded its
// activeDeadlineSeconds; the pod stays, Failed, until it is deleted.
func (d *Daemon) killPod(ctx context.Context, pod *manifests.Pod, rp *PodInfo) {
	d.Log.Info("pod exceeded its active deadline", "pod", pod.Namespace+"/"+pod.Name)
	d.event(ctx, pod, "Normal", "DeadlineExceeded", fmt.Sprintf("Pod was active on the node longer than the specified deadline (%ds)", *pod.Spec.ActiveDeadlineSeconds))
	d.stopPodContainers(ctx, pod, rp, d.podGrace(pod))
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
	cfg.HostAliases = hostAliases(pod, cfg.Hostname)
	if d.ClusterDNS != "" {
		// Kubernetes' ClusterFirst: short names ("web", "web.default")
		// resolve through the search list, ndots:5 tries it first.
		domain := strings.TrimSuffix(d.ClusterDomain, ".")
		if domain == "" {
			domain = "cluster.local"
		}
		ns := pod.Namespace
		if ns == "" {
			ns = "default"
		}
		cfg.DNS = DNSConfig{Servers: []string{d.ClusterDNS},
			Searches: []string{ns + ".svc." + domain, "svc." + domain, domain}, Options: []string{"ndots:5"}}
	}
	return cfg
}

func (d *Daemon) containerConfig(pod *manifests.Pod, c *manifests.Container, attempt int) ContainerConfig {
	l := d.podLabels(pod)
	l[LabelContainer] = c.Name
	l[LabelAttempt] = strconv.Itoa(attempt)
	l[LabelContainerHash] = ContainerHash(c)
	// preparePod has checked that every reference resolves; a ConfigMap
	// or Secret deleted since shows at the next sync.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	env, _, skipped, err := resolveEnv(pod, c, d.podObjectsOf(pod), d.downwardOf(ctx, pod))
	if err != nil {
		d.Log.Warn("resolve environment", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "err", err)
	}
	if len(skipped) > 0 {
		msg := fmt.Sprintf("keys from envFrom that are not valid environment variable names were skipped: %s", strings.Join(skipped, ", "))
		d.event(ctx, pod, "Warning", "InvalidEnvironmentVariableNames", msg)
	}
	return ContainerConfig{
		Name:          containerName(pod, c.Name, attempt),
		Image:         c.Image,
		Command:       expandAll(c.Command, env),
		Args:          expandAll(c.Args, env),
		Env:           env,
		WorkingDir:    c.WorkingDir,
		Labels:        l,
		MemoryLimit:   c.Resources.Limits.MemoryBytes(),
		CPULimitMilli: c.Resources.Limits.MilliCPU(),
		Mounts:        d.mounts(pod, c),
	}
}

// report writes the pod's status when it changed, or its usage when a new
// sample came. The usage is kept out of the status's hash, and a write for
// usage alone keeps the status as it was (ObservedAt included), so readers
// of the status see no change.
func (d *Daemon) report(ctx context.Context, key string, pod *manifests.Pod, rp *PodInfo, now time.Time) {
	d.mu.Lock()
	prev, had := d.reported[key]
	obs := observed{waiting: maps.Clone(d.waiting[pod.UID]), probes: map[string]probeResult{}, hostIP: d.Address,
		terminating: pod.DeletionTimestamp != nil}
	removed := d.removed[pod.UID]
	if rp != nil {
		for _, c := range rp.Containers {
			if r, ok := d.probeResults[c.ID]; ok {
				obs.probes[c.ID] = r
			}
		}
	}
	usage := d.usage[pod.UID]
	d.mu.Unlock()
	had = had && prev.uid == pod.UID
	if !had && !removed && !obs.terminating && d.startingQuietly(pod.UID, now) {
		return
	}
	var prevStatus *manifests.PodStatus
	if had {
		prevStatus = &prev.status
	}
	st := podStatus(pod, rp, prevStatus, obs, now)
	st.Drift = d.driftStatus(pod.UID)
	if removed && had {
		// Nothing runs any more: the last status stands, marked removed.
		st = prev.status
	}
	// Most relists find nothing new: a deep comparison (a few µs) spares
	// them the hash (a JSON encoding). Equal values encode alike, so it
	// only skips what the hash would have skipped.
	if had && prev.removed == removed && sameUsage(prev.usage, usage) && reflect.DeepEqual(prev.status, st) {
		return
	}
	h := manifests.Hash(st)
	if removed {
		h += "/removed"
	}
	if had && prev.hash == h && sameUsage(prev.usage, usage) {
		return
	}
	observedAt := manifests.NewTime(now)
	if had && prev.hash == h {
		observedAt = prev.observedAt
	}
	st.ObservedAt = observedAt
	b, err := json.Marshal(manifests.PodStatusReport{UID: pod.UID, Node: d.Name, Status: st, Usage: usage, Removed: removed})
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
	d.reported[key] = reportedStatus{hash: h, removed: removed, status: st, uid: pod.UID, observedAt: observedAt, usage: usage}
	d.mu.Unlock()
}

// firstReportDelay is how long a new pod's first status waits for its
// start to end. A pod that starts within it is reported once, Running,
// instead of Pending (ContainerCreating) and Running a moment later,
// saving a status write and the mirror's Pod write per pod
// (docs/BENCHMARKS.md). A start that takes longer (an image pull) is
// reported ContainerCreating once the delay is over; one that fails is
// reported as soon as it has. A pod waiting for a start slot is reported
// at once: its wait has no bound.
const firstReportDelay = time.Second

// startingQuietly reports whether the first status of the pod with uid
// waits: its first start is under way and began under firstReportDelay
// ago. The relist is poked when the delay ends, by one timer per start,
// not per relist: relists run on every start's end, and a timer armed by
// each would keep them going back to back.
func (d *Daemon) startingQuietly(uid string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	since, busy := d.inflight[uid]
	if !busy || len(d.waiting[uid]) > 0 {
		return false // a pod waiting for a reason says so at once
	}
	left := firstReportDelay - now.Sub(since)
	if left <= 0 {
		return false
	}
	if d.quiet[uid] == nil {
		d.quiet[uid] = time.AfterFunc(left, d.poke)
	}
	return true
}

// usageRefresh is how old the usage a pod's report holds may grow while
// new samples show the same values: the autoscaler counts samples up to
// two minutes old (reconciler's hpaUsageMaxAge).
const usageRefresh = time.Minute

// sameUsage reports whether the sample cur needs no write: it has the
// values of the one written last, and that one is recent enough, so an
// idle pod's report is not rewritten at every sample for its timestamp.
func sameUsage(written, cur *manifests.PodUsage) bool {
	switch {
	case written == cur:
		return true
	case written == nil || cur == nil || written.Time == nil || cur.Time == nil:
		return false
	}
	return written.CPUMilli == cur.CPUMilli && written.MemoryBytes == cur.MemoryBytes && cur.Time.Sub(written.Time.Time) < usageRefresh
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

// sampleUsage measures the running containers' CPU and memory use every
// UsageInterval, for the reports' usage.
func (d *Daemon) sampleUsage(ctx context.Context) {
	t := time.NewTicker(d.UsageInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		ok := d.runtimeOK
		d.mu.Unlock()
		if !ok {
			continue
		}
		if err := d.measure(ctx); err != nil && ctx.Err() == nil {
			d.Log.Debug("sample usage", "err", err)
		}
	}
}

// measure takes one sample of every running container on the node and
// updates each pod's usage.
func (d *Daemon) measure(ctx context.Context) error {
	pods, err := d.Runtime.ListPods(ctx, map[string]string{LabelNode: d.Name})
	if err != nil {
		return err
	}
	var ids []string
	for _, p := range pods {
		for _, c := range p.Containers {
			if c.State == StateRunning {
				ids = append(ids, c.ID)
			}
		}
	}
	cur, err := d.Runtime.Stats(ctx, ids)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	prev := d.cpuSamples
	d.cpuSamples = cur
	for _, p := range pods {
		uid := p.Labels[LabelUID]
		if u, ok := usageOf(p, prev, cur); ok {
			d.usage[uid] = u
		}
	}
	return nil
}

// usageOf sums a pod's use over its running containers: memory from the
// current sample, CPU as the rate between the previous sample and this one.
// ok is false while some running container has no two samples yet. It is
// pure.
func usageOf(p PodInfo, prev, cur map[string]ContainerStats) (*manifests.PodUsage, bool) {
	u := &manifests.PodUsage{}
	var at time.Time
	n := 0
	for _, c := range p.Containers {
		s, ok := cur[c.ID]
		if !ok {
			continue
		}
		before, ok := prev[c.ID]
		if !ok || !s.Time.After(before.Time) || s.CPUNanos < before.CPUNanos {
			return nil, false
		}
		n++
		u.MemoryBytes += int64(s.MemoryBytes)
		u.CPUMilli += int64(float64(s.CPUNanos-before.CPUNanos) / float64(s.Time.Sub(before.Time).Nanoseconds()) * 1000)
		if s.Time.After(at) {
			at = s.Time
		}
	}
	if n == 0 {
		return nil, false
	}
	u.Time = manifests.NewTime(at)
	return u, true
}

// publishAll adds to a pod's configuration a mapping for each declared
// container port without a hostPort, on a host port the runtime picks
// (HostPort 0). Every declared port is then reachable at the node's
// address, which is what a Service's endpoints are (node address and host
// port); the node reports the mappings in the pod's status.hostPorts.
func publishAll(pod *manifests.Pod, cfg PodConfig) PodConfig {
	have := map[string]bool{}
	for _, p := range cfg.Ports {
		have[fmt.Sprintf("%s/%d", p.Protocol, p.ContainerPort)] = true
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			proto := strings.ToLower(p.Protocol)
			if proto == "" {
				proto = "tcp"
			}
			k := fmt.Sprintf("%s/%d", proto, p.ContainerPort)
			if p.HostPort != 0 || have[k] {
				continue
			}
			have[k] = true
			cfg.Ports = append(cfg.Ports, PortMapping{ContainerPort: uint16(p.ContainerPort), Protocol: proto})
		}
	}
	return cfg
}
