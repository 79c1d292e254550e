// Package events records Kubernetes-style events for the objects the
// controllers work on, off their hot paths: an event is best effort and
// costs a bus round trip, which a scheduler binding thousands of pods a
// second cannot wait for.
//
// It owns: the recording queue. It may import bus and manifests only.
package events

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// Recorder queues events and writes them from Run. Before Run starts it
// writes each at once. A nil Recorder, or one without a stream, drops them.
type Recorder struct {
	events  bus.Events
	source  string
	log     *slog.Logger
	ch      chan manifests.Event
	running atomic.Bool
}

// NewRecorder records to stream ev, naming source as the events' source.
func NewRecorder(ev bus.Events, source string, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{events: ev, source: source, log: log, ch: make(chan manifests.Event, 4096)}
}

// Event records an event for obj, best effort.
func (r *Recorder) Event(ctx context.Context, obj manifests.Object, typ, reason, msg string) {
	if r == nil || r.events == nil {
		return
	}
	m := obj.GetObjectMeta()
	ev := manifests.Event{Time: manifests.Now(), Kind: obj.GetTypeMeta().Kind, Namespace: m.Namespace, Name: m.Name,
		Type: typ, Reason: reason, Message: msg, Source: r.source}
	if !r.running.Load() {
		if err := r.events.Record(ctx, ev); err != nil {
			r.log.Debug("record event", "err", err)
		}
		return
	}
	select {
	case r.ch <- ev:
	default:
		r.log.Debug("event dropped: recorder busy", "reason", reason)
	}
}

// Run writes queued events until ctx ends.
func (r *Recorder) Run(ctx context.Context) error {
	if r == nil || r.events == nil {
		return nil
	}
	r.running.Store(true)
	defer r.running.Store(false)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-r.ch:
			if err := r.events.Record(ctx, ev); err != nil && ctx.Err() == nil {
				r.log.Debug("record event", "err", err)
			}
		}
	}
}
