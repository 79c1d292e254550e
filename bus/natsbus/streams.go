package natsbus

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

var (
	_ bus.Events = (*Events)(nil)
	_ bus.Audit  = (*Audit)(nil)
)

// Events is bus.Events over the events stream: one subject per object,
// capstan.events.<namespace or _>.<kind>.<name>, each token made safe by
// token. It is safe for concurrent use.
type Events struct {
	js   jetstream.JetStream
	deny *denials
	// limit bounds what List returns (the stream keeps as many per object
	// and writer).
	limit int
	// writer is the last token of the subjects Record publishes on.
	writer string
}

// Record publishes ev, stamping it with the current time when it has none.
func (e *Events) Record(ctx context.Context, ev manifests.Event) error {
	if ev.Time == nil {
		ev.Time = manifests.Now()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	subj := eventSubject(ev.Kind, ev.Namespace, ev.Name, e.writer)
	ctx, done := e.deny.guard(ctx, exactly(subj))
	_, err = e.js.Publish(ctx, subj, data)
	if err = done(err); err != nil {
		return fmt.Errorf("record event of %s %s/%s: %w", ev.Kind, ev.Namespace, ev.Name, err)
	}
	return nil
}

// List returns the last events of one object (at most the stream's
// per-object limit), oldest first.
func (e *Events) List(ctx context.Context, kind, namespace, name string) ([]manifests.Event, error) {
	cfg := jetstream.OrderedConsumerConfig{
		// Every writer's events, and those written before writers were
		// named.
		FilterSubjects: []string{eventObjectSubject(kind, namespace, name) + ".*", eventObjectSubject(kind, namespace, name)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	var out []manifests.Event
	err := readStream(ctx, e.js, e.deny, StreamEvents, cfg, func(data []byte) error {
		var ev manifests.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return err
		}
		// Two names can share a subject token; the JSON has the real one.
		if ev.Kind == kind && ev.Namespace == namespace && ev.Name == name {
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list events of %s %s/%s: %w", kind, namespace, name, err)
	}
	if e.limit > 0 && len(out) > e.limit {
		out = out[len(out)-e.limit:]
	}
	return out, nil
}

// Audit is bus.Audit over the audit stream: capstan.audit.<source>. It is
// safe for concurrent use.
type Audit struct {
	js   jetstream.JetStream
	deny *denials
}

// Append publishes rec, stamping it with the current time when it has none.
func (a *Audit) Append(ctx context.Context, rec manifests.AuditRecord) error {
	if rec.Time == nil {
		rec.Time = manifests.Now()
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("append audit record: %w", err)
	}
	subj := auditSubject(rec.Source)
	ctx, done := a.deny.guard(ctx, exactly(subj))
	_, err = a.js.Publish(ctx, subj, data)
	if err = done(err); err != nil {
		return fmt.Errorf("append audit record of %s: %w", rec.Source, err)
	}
	return nil
}

// List returns the records of source ("" for all) stored at or after since
// (the zero time for all), oldest first.
func (a *Audit) List(ctx context.Context, source string, since time.Time) ([]manifests.AuditRecord, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if source != "" {
		cfg.FilterSubjects = []string{auditSubject(source)}
	}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	var out []manifests.AuditRecord
	err := readStream(ctx, a.js, a.deny, StreamAudit, cfg, func(data []byte) error {
		var rec manifests.AuditRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			return err
		}
		if source == "" || rec.Source == source {
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list audit records of %q: %w", source, err)
	}
	return out, nil
}

// readStream passes fn every message cfg selects from stream, in order, up
// to the last one stored when the read began.
func readStream(ctx context.Context, js jetstream.JetStream, deny *denials, stream string, cfg jetstream.OrderedConsumerConfig, fn func([]byte) error) (err error) {
	ctx, done := deny.guard(ctx, func(s string) bool { return strings.HasPrefix(s, "$JS.API.CONSUMER.CREATE."+stream+".") })
	defer func() { err = done(err) }()
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	// The consumer exists now; what it had pending then is what we read.
	if info := cons.CachedInfo(); info == nil || info.NumPending == 0 {
		return nil
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		md, err := msg.Metadata()
		if err != nil {
			return err
		}
		if err := fn(msg.Data()); err != nil {
			return fmt.Errorf("decode message %d: %w", md.Sequence.Stream, err)
		}
		if md.NumPending == 0 {
			return nil
		}
	}
}
