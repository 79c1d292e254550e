package node

import (
	"context"
	"fmt"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// Probes are run by the daemon, one goroutine per running container that
// has any (see prober), never by the runtime's own health checks: their
// results feed the pod's status (started, ready) and a failed liveness or
// startup probe restarts the container through the same kill and restart
// path as everything else.

// Probe kinds.
const (
	probeStartup   = "Startup"
	probeLiveness  = "Liveness"
	probeReadiness = "Readiness"
)

// probeSettings are a probe's timings with Kubernetes' defaults applied.
type probeSettings struct {
	initialDelay, period, timeout time.Duration
	success, failure              int
}

// settingsOf applies the defaults: period 10 s, timeout 1 s, success and
// failure thresholds 1 and 3. Liveness and startup probes always need one
// success, as in Kubernetes.
func settingsOf(kind string, p *manifests.Probe) probeSettings {
	s := probeSettings{
		initialDelay: time.Duration(p.InitialDelaySeconds) * time.Second,
		period:       10 * time.Second,
		timeout:      time.Second,
		success:      1,
		failure:      3,
	}
	if p.PeriodSeconds > 0 {
		s.period = time.Duration(p.PeriodSeconds) * time.Second
	}
	if p.TimeoutSeconds > 0 {
		s.timeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	if p.SuccessThreshold > 0 && kind == probeReadiness {
		s.success = int(p.SuccessThreshold)
	}
	if p.FailureThreshold > 0 {
		s.failure = int(p.FailureThreshold)
	}
	return s
}

// probeTracker is the state of one probe: its current result and the
// consecutive successes or failures that lead to a change.
type probeTracker struct {
	ok        bool
	successes int
	failures  int
}

// newTracker is a probe's state before its first run: liveness passes
// until proven failing; readiness and startup fail until proven passing.
func newTracker(kind string) probeTracker {
	return probeTracker{ok: kind == probeLiveness}
}

// observe folds one probe result into the tracker. The result turns to
// success after `success` consecutive successes and to failure after
// `failure` consecutive failures. It is pure.
func (t probeTracker) observe(ok bool, s probeSettings) probeTracker {
	if ok {
		t.successes++
		t.failures = 0
		if t.successes >= s.success {
			t.ok = true
		}
	} else {
		t.failures++
		t.successes = 0
		if t.failures >= s.failure {
			t.ok = false
		}
	}
	return t
}

// failedOut reports whether the probe has reached its failure threshold,
// which for liveness and startup probes means a restart.
func (t probeTracker) failedOut(s probeSettings) bool { return t.failures >= s.failure }

// probeResult is what a container's probes say for its status.
type probeResult struct {
	started bool // the startup probe passed, or there is none
	ready   bool // the readiness probe passes, or there is none
}

// probeSet is the probing state of one container instance: which probes
// it has, their trackers and when each runs next. Its methods are pure;
// the prober goroutine drives it.
type probeSet struct {
	probes   map[string]*manifests.Probe
	settings map[string]probeSettings
	trackers map[string]probeTracker
	next     map[string]time.Time
	started  bool
}

// newProbeSet plans the probes of a container that started at start.
func newProbeSet(c *manifests.Container, start time.Time) *probeSet {
	ps := &probeSet{probes: map[string]*manifests.Probe{}, settings: map[string]probeSettings{},
		trackers: map[string]probeTracker{}, next: map[string]time.Time{}}
	for kind, p := range map[string]*manifests.Probe{probeStartup: c.StartupProbe, probeLiveness: c.LivenessProbe, probeReadiness: c.ReadinessProbe} {
		if p == nil {
			continue
		}
		ps.probes[kind] = p
		ps.settings[kind] = settingsOf(kind, p)
		ps.trackers[kind] = newTracker(kind)
		ps.next[kind] = start.Add(ps.settings[kind].initialDelay)
	}
	ps.started = c.StartupProbe == nil
	return ps
}

// result is the container's probe result now.
func (ps *probeSet) result() probeResult {
	r := probeResult{started: ps.started, ready: ps.started}
	if t, ok := ps.trackers[probeReadiness]; ok {
		r.ready = ps.started && t.ok
	}
	return r
}

// active lists the probes that run in the current stage: only the startup
// probe until it passes, then liveness and readiness.
func (ps *probeSet) active() []string {
	if !ps.started {
		return []string{probeStartup}
	}
	var out []string
	for _, k := range []string{probeLiveness, probeReadiness} {
		if _, ok := ps.probes[k]; ok {
			out = append(out, k)
		}
	}
	return out
}

// due returns the active probe that runs next and when; ok is false when
// no probe is left to run.
func (ps *probeSet) due() (kind string, at time.Time, ok bool) {
	for _, k := range ps.active() {
		if !ok || ps.next[k].Before(at) {
			kind, at, ok = k, ps.next[k], true
		}
	}
	return kind, at, ok
}

// probeVerdict is what a probe result asks of the daemon.
type probeVerdict struct {
	changed bool   // the container's probeResult changed
	restart bool   // a liveness or startup probe failed out: restart it
	reason  string // why, for the events
}

// record folds the result of the probe of kind run at now into the set.
func (ps *probeSet) record(kind string, ok bool, msg string, now time.Time) probeVerdict {
	before := ps.result()
	s := ps.settings[kind]
	t := ps.trackers[kind].observe(ok, s)
	ps.trackers[kind] = t
	ps.next[kind] = now.Add(s.period)
	var v probeVerdict
	switch kind {
	case probeStartup:
		if t.ok {
			ps.started = true
			// Liveness and readiness start now, or after their own
			// initial delay from the container's start if that is later.
			for _, k := range []string{probeLiveness, probeReadiness} {
				if at, has := ps.next[k]; has && at.Before(now) {
					ps.next[k] = now
				}
			}
		} else if t.failedOut(s) {
			v.restart = true
			v.reason = fmt.Sprintf("Startup probe failed %d times: %s", t.failures, msg)
		}
	case probeLiveness:
		if !t.ok {
			v.restart = true
			v.reason = fmt.Sprintf("Liveness probe failed %d times: %s", t.failures, msg)
		}
	}
	v.changed = ps.result() != before
	return v
}

// prober probes one running container instance until ctx ends or the
// container is restarted. It is started and stopped by relist.
func (d *Daemon) prober(ctx context.Context, pod *manifests.Pod, c *manifests.Container, ci ContainerInfo, podIP string) {
	start := ci.StartedAt
	if start.IsZero() {
		start = time.Now()
	}
	ps := newProbeSet(c, start)
	d.setProbeResult(ci.ID, ps.result())
	log := d.Log.With("pod", pod.Namespace+"/"+pod.Name, "container", c.Name)
	for {
		kind, at, ok := ps.due()
		if !ok {
			<-ctx.Done()
			return
		}
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s := ps.settings[kind]
		pctx, cancel := context.WithTimeout(ctx, s.timeout)
		err := d.runHandler(pctx, handlerOfProbe(ps.probes[kind]), target{containerID: ci.ID, container: c, podIP: podIP})
		cancel()
		if ctx.Err() != nil {
			return
		}
		msg := ""
		if err != nil {
			msg = err.Error()
			log.Debug("probe failed", "probe", kind, "err", err)
			d.event(ctx, pod, "Warning", "Unhealthy", fmt.Sprintf("%s probe failed: %s", kind, msg))
		}
		v := ps.record(kind, err == nil, msg, time.Now())
		if v.changed {
			d.setProbeResult(ci.ID, ps.result())
			d.poke()
		}
		if v.restart {
			log.Info("restarting container", "reason", v.reason)
			grace := d.podGrace(pod)
			if g := ps.probes[kind].TerminationGracePeriodSeconds; g != nil {
				grace = time.Duration(*g) * time.Second
			}
			d.event(ctx, pod, "Normal", "Killing", fmt.Sprintf("Container %s failed %s probe, will be restarted", c.Name, kind))
			d.killContainer(ctx, pod, c, ci, podIP, grace)
			d.poke()
			return
		}
	}
}

func (d *Daemon) setProbeResult(id string, r probeResult) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.probers[id]; ok { // not stopped meanwhile
		d.probeResults[id] = r
	}
}

// hasProbes reports whether a container has any probe.
func hasProbes(c *manifests.Container) bool {
	return c.StartupProbe != nil || c.LivenessProbe != nil || c.ReadinessProbe != nil
}

// probeWanted is one prober relist wants running.
type probeWanted struct {
	pod   *manifests.Pod
	c     *manifests.Container
	ci    ContainerInfo
	podIP string
}

// syncProbers starts a prober for every wanted container instance that has
// none and stops those no longer wanted (their container stopped, or their
// pod goes), forgetting their results.
func (d *Daemon) syncProbers(ctx context.Context, want map[string]probeWanted) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, stop := range d.probers {
		if _, ok := want[id]; !ok {
			stop()
			delete(d.probers, id)
			delete(d.probeResults, id)
		}
	}
	for id, w := range want {
		if _, ok := d.probers[id]; ok {
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		d.probers[id] = cancel
		d.wg.Go(func() { d.prober(pctx, w.pod, w.c, w.ci, w.podIP) })
	}
}
