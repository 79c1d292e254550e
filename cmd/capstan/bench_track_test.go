//go:build bench && linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
)

// benchPod is what the benchmarks read of a pod on the bus.
type benchPod struct {
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

// podTimes is when the bus first stored a pod, its bind and its Running
// status (server timestamps of the writes), and when the watch delivered
// the Running status.
type podTimes struct {
	Created, Bound, Running time.Time
	RunningSeen             time.Time
	Node                    string
}

// podTracker follows the pods of the objects bucket through one watch and
// wakes waiters whose condition becomes true.
type podTracker struct {
	mu      sync.Mutex
	pods    map[string]*benchPod // key -> latest
	times   map[string]*podTimes
	waiters []*waiter
	synced  chan struct{}
}

type waiter struct {
	pred    func(p *benchPod) bool
	want    int
	matched map[string]bool // keys of the pods pred holds for
	at      time.Time
	done    chan struct{}
}

// trackPods starts a tracker on store (the objects bucket) until ctx ends.
func trackPods(t *testing.T, ctx context.Context, store bus.Store) *podTracker {
	t.Helper()
	ch, err := store.Watch(ctx, "Pod.>")
	if err != nil {
		t.Fatalf("watch pods: %v", err)
	}
	tr := &podTracker{pods: map[string]*benchPod{}, times: map[string]*podTimes{}, synced: make(chan struct{})}
	go func() {
		for e := range ch {
			tr.apply(e)
		}
	}()
	select {
	case <-tr.synced:
	case <-time.After(time.Minute):
		t.Fatal("pod watch did not sync")
	}
	return tr
}

func (tr *podTracker) apply(e bus.Entry) {
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch e.Op {
	case bus.OpSynced:
		select {
		case <-tr.synced:
		default:
			close(tr.synced)
		}
		return
	case bus.OpDelete:
		delete(tr.pods, e.Key)
	case bus.OpPut:
		p, ok := tr.read(e)
		if !ok {
			return
		}
		tr.pods[e.Key] = p
		pt := tr.times[e.Key]
		if pt == nil {
			pt = &podTimes{Created: e.Time}
			tr.times[e.Key] = pt
		}
		if p.Spec.NodeName != "" && pt.Bound.IsZero() {
			pt.Bound, pt.Node = e.Time, p.Spec.NodeName
		}
		if p.Status.Phase == "Running" && pt.Running.IsZero() {
			pt.Running, pt.RunningSeen = e.Time, now
		}
	}
	// Each waiter counts its matching pods incrementally: re-counting
	// every pod on every event made the harness the busiest process of
	// the scale session (quadratic in the pods).
	kept := tr.waiters[:0]
	for _, w := range tr.waiters {
		if p := tr.pods[e.Key]; p != nil && w.pred(p) {
			w.matched[e.Key] = true
		} else {
			delete(w.matched, e.Key)
		}
		if len(w.matched) == w.want {
			w.at = now
			close(w.done)
			continue
		}
		kept = append(kept, w)
	}
	tr.waiters = kept
}

// read returns what the tracker keeps of the pod e holds. Only a pod's
// first version is decoded; a later one (its bind, its status) is scanned
// for its node and phase, the only fields the benchmarks read that
// change, so that the harness takes little of the CPU the processes
// measured share with it (docs/BENCHMARKS.md).
func (tr *podTracker) read(e bus.Entry) (*benchPod, bool) {
	prev := tr.pods[e.Key]
	if prev == nil {
		var p benchPod
		if json.Unmarshal(e.Value, &p) != nil {
			return nil, false
		}
		return &p, true
	}
	p := *prev
	p.Spec.NodeName = jsonString(e.Value, `"nodeName":"`)
	p.Status.Phase = jsonString(e.Value, `"phase":"`)
	return &p, true
}

// jsonString returns the string after the first occurrence of prefix (a
// key and the opening quote) in a pod's JSON, or "". spec.nodeName and
// status.phase are the only keys of a pod with those names, and their
// values hold no escapes.
func jsonString(data []byte, prefix string) string {
	_, rest, ok := bytes.Cut(data, []byte(prefix))
	if !ok {
		return ""
	}
	v, _, _ := bytes.Cut(rest, []byte(`"`))
	return string(v)
}

// wait returns the time at which the watch delivered the event that made
// the count of pods matching pred reach want (now, if it already is).
func (tr *podTracker) wait(t *testing.T, total time.Duration, what string, pred func(p *benchPod) bool, want int) time.Time {
	t.Helper()
	tr.mu.Lock()
	w := &waiter{pred: pred, want: want, matched: map[string]bool{}, done: make(chan struct{})}
	for k, p := range tr.pods {
		if pred(p) {
			w.matched[k] = true
		}
	}
	if len(w.matched) == want {
		tr.mu.Unlock()
		return time.Now()
	}
	tr.waiters = append(tr.waiters, w)
	tr.mu.Unlock()
	select {
	case <-w.done:
		return w.at
	case <-time.After(total):
		tr.mu.Lock()
		summary := tr.summaryLocked()
		tr.mu.Unlock()
		t.Fatalf("%s: not within %s; pods: %s", what, total, summary)
	}
	return time.Time{}
}

func (tr *podTracker) summaryLocked() string {
	phases := map[string]int{}
	for _, p := range tr.pods {
		ph := p.Status.Phase
		if ph == "" {
			ph = "none"
		}
		if p.Spec.NodeName == "" {
			ph += "/unbound"
		}
		phases[ph]++
	}
	return fmt.Sprintf("%d pods %v", len(tr.pods), phases)
}

// snapshot returns a copy of the times of the pods matching keep.
func (tr *podTracker) snapshot(keep func(key string) bool) map[string]podTimes {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := map[string]podTimes{}
	for k, v := range tr.times {
		if keep(k) {
			out[k] = *v
		}
	}
	return out
}

func hasLabel(p *benchPod, k, v string) bool { return p.Metadata.Labels[k] == v }

func onNodePrefix(p *benchPod, prefix string) bool { return strings.HasPrefix(p.Spec.NodeName, prefix) }
