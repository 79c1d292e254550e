package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/capstan-io/capstan/bus"
)

var _ bus.Store = (*KV)(nil)

// watchBuffer is the capacity of a Watch channel. A reader slower than the
// writers blocks the bucket's watcher, never loses an entry: the server
// holds what the client has not taken.
const watchBuffer = 256

// KV is a bus.Store over one JetStream key-value bucket. Revisions are the
// bucket stream's sequence numbers. It is safe for concurrent use.
type KV struct {
	kv jetstream.KeyValue
	// deny tells operations that the server refused them.
	deny *denials
}

// NewKV wraps a bucket.
func NewKV(kv jetstream.KeyValue) *KV { return &KV{kv: kv} }

// key guards an operation that publishes to key's subject.
func (s *KV) key(ctx context.Context, key string) (context.Context, func(error) error) {
	return s.deny.guard(ctx, exactly("$KV."+s.kv.Bucket()+"."+key))
}

// consumer guards the creation of a watcher over pattern; the context
// stays the watcher's.
func (s *KV) consumer(ctx context.Context, pattern string) (context.Context, func(error) error) {
	b := s.kv.Bucket()
	return s.deny.guardKeep(ctx, consumerOf("KV_"+b, "$KV."+b+"."+pattern), true)
}

// Bucket returns the underlying bucket, for what bus.Store does not cover.
func (s *KV) Bucket() jetstream.KeyValue { return s.kv }

// Get returns the latest value of key, or bus.ErrNotFound.
func (s *KV) Get(ctx context.Context, key string) (bus.Entry, error) {
	ctx, done := s.deny.guard(ctx, exactly("$JS.API.DIRECT.GET.KV_"+s.kv.Bucket()+".$KV."+s.kv.Bucket()+"."+key))
	e, err := s.kv.Get(ctx, key)
	if err = done(err); err != nil {
		return bus.Entry{}, fmt.Errorf("get %s: %w", key, mapErr(err, nil))
	}
	return toEntry(e), nil
}

// Create writes key only if it does not exist (or was deleted), else
// bus.ErrExists.
func (s *KV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, done := s.key(ctx, key)
	rev, err := s.kv.Create(ctx, key, value)
	if err = done(err); err != nil {
		return 0, fmt.Errorf("create %s: %w", key, mapErr(err, bus.ErrExists))
	}
	return rev, nil
}

// Update writes key only if its latest revision is rev, else
// bus.ErrConflict. A rev of 0 always conflicts: JetStream would read it as
// "only if the key never existed", which is Create's job.
func (s *KV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if rev == 0 {
		return 0, fmt.Errorf("update %s at revision 0: %w", key, bus.ErrConflict)
	}
	ctx, done := s.key(ctx, key)
	nrev, err := s.kv.Update(ctx, key, value, rev)
	if err = done(err); err != nil {
		return 0, fmt.Errorf("update %s at revision %d: %w", key, rev, mapErr(err, bus.ErrConflict))
	}
	return nrev, nil
}

// Put writes key unconditionally.
func (s *KV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, done := s.key(ctx, key)
	rev, err := s.kv.Put(ctx, key, value)
	if err = done(err); err != nil {
		return 0, fmt.Errorf("put %s: %w", key, mapErr(err, nil))
	}
	return rev, nil
}

// Delete writes a delete marker for key; with rev > 0 only if rev is still
// the latest revision, else bus.ErrConflict.
func (s *KV) Delete(ctx context.Context, key string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev > 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	ctx, done := s.key(ctx, key)
	if err := done(s.kv.Delete(ctx, key, opts...)); err != nil {
		return fmt.Errorf("delete %s at revision %d: %w", key, rev, mapErr(err, bus.ErrConflict))
	}
	return nil
}

// List returns the live entries whose keys match pattern, in revision order.
// It reads them with one watcher (the server streams the latest message of
// each key), much faster than listing the keys and getting each one
// (BenchmarkList, docs/BENCHMARKS.md).
func (s *KV) List(ctx context.Context, pattern string) (_ []bus.Entry, err error) {
	b := s.kv.Bucket()
	wctx, done := s.deny.guard(ctx, consumerOf("KV_"+b, "$KV."+b+"."+pattern))
	defer func() { err = done(err) }()
	w, err := s.kv.Watch(wctx, pattern, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", pattern, mapErr(done(err), nil))
	}
	defer stopWatcher(w)
	var out []bus.Entry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list %s: watcher closed", pattern)
			}
			if e == nil {
				return out, nil
			}
			out = append(out, toEntry(e))
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s: %w", pattern, ctx.Err())
		}
	}
}

// listByKeys is List done the other way, kept for BenchmarkList.
func (s *KV) listByKeys(ctx context.Context, pattern string) ([]bus.Entry, error) {
	kl, err := s.kv.ListKeysFiltered(ctx, pattern)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, mapErr(err, nil)
	}
	defer kl.Stop()
	var out []bus.Entry
	for k := range kl.Keys() {
		e, err := s.Get(ctx, k)
		if errors.Is(err, bus.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Watch sends the live entries matching pattern, then one OpSynced entry,
// then every change (OpPut, or OpDelete for a delete, a purge or an expiry),
// until ctx ends; then it stops the watcher and closes the channel.
func (s *KV) Watch(ctx context.Context, pattern string) (<-chan bus.Entry, error) {
	// The watcher's context only covers its creation. Not IgnoreDeletes:
	// that would hide later deletions too.
	wctx, done := s.consumer(ctx, pattern)
	w, err := s.kv.Watch(wctx, pattern)
	if err = done(err); err != nil {
		return nil, fmt.Errorf("watch %s: %w", pattern, mapErr(err, nil))
	}
	out := make(chan bus.Entry, watchBuffer)
	go func() {
		defer close(out)
		defer stopWatcher(w)
		// Deletes are ignored only until the initial values are done: a
		// deleted key is not a current entry, but its deletion later is a
		// change.
		synced := false
		for {
			var e bus.Entry
			select {
			case <-ctx.Done():
				return
			case kve, ok := <-w.Updates():
				if !ok {
					// The connection was closed; nothing more will come.
					return
				}
				switch {
				case kve == nil:
					synced = true
					e = bus.Entry{Op: bus.OpSynced}
				case !synced && kve.Operation() != jetstream.KeyValuePut:
					continue
				default:
					e = toEntry(kve)
				}
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// stopWatcher stops w and drains it until the client closes its channel, so
// that the subscription's callback, which blocks on a full channel, can
// finish.
func stopWatcher(w jetstream.KeyWatcher) {
	_ = w.Stop()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case _, ok := <-w.Updates():
			if !ok {
				return
			}
		case <-timeout.C:
			return
		}
	}
}

// PurgeDeletes removes delete markers older than olderThan (and the
// history behind them), which otherwise stay in the bucket forever. Run it
// now and then on buckets with churn (pods, assignments, status).
func (s *KV) PurgeDeletes(ctx context.Context, olderThan time.Duration) error {
	if err := s.kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(olderThan)); err != nil {
		return fmt.Errorf("purge deletes of %s: %w", s.kv.Bucket(), err)
	}
	return nil
}

func toEntry(e jetstream.KeyValueEntry) bus.Entry {
	op := bus.OpPut
	if e.Operation() != jetstream.KeyValuePut {
		op = bus.OpDelete
	}
	return bus.Entry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(), Op: op, Time: e.Created()}
}

// mapErr turns JetStream's errors into bus sentinels by identity and API
// error code, never by message text; a failed compare-and-set becomes cas
// (ErrExists for Create, ErrConflict for Update and Delete), since JetStream
// reports both with the same code. The original error stays in the chain.
func mapErr(err, cas error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("%w (%w)", bus.ErrNotFound, err)
	case cas != nil && isWrongLastSequence(err):
		return fmt.Errorf("%w (%w)", cas, err)
	}
	return err
}

// isWrongLastSequence reports a failed compare-and-set: code 10071, or
// 10164 which replicated streams send instead.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}
