package bus

import (
	"context"
	"log/slog"
	"time"
)

// Reflect mirrors the keys matching pattern into fn, like Watch, but
// survives the watch ending while ctx is live (a lost consumer after a NATS
// reconnect, a restarted server): it watches again with a capped back-off,
// and once the new watch has delivered its initial values it reports as
// deleted every key that vanished in between. fn sees each key's revisions
// in order and never the same revision twice, and one OpSynced entry after
// the first complete listing. Reflect returns when ctx ends.
func Reflect(ctx context.Context, s Store, pattern string, log *slog.Logger, fn func(Entry)) error {
	known := knownRevisions{}
	return ReflectInto(ctx, s, pattern, log, known, func(e Entry) {
		switch e.Op {
		case OpPut:
			known[e.Key] = e.Revision
		case OpDelete:
			delete(known, e.Key)
		}
		fn(e)
	})
}

// Revisions is what a reflected consumer holds: the revision of each key
// it took. A consumer that keeps them anyway (a cache) hands them to
// ReflectInto, which then keeps no copy of its own: at tens of thousands
// of pods, a map of every key is megabytes.
type Revisions interface {
	// Revision is the revision held for key, if any.
	Revision(key string) (uint64, bool)
	// Known lists every key held with its revision; fn may be called to
	// delete some of them while the caller ranges over the result.
	Known() map[string]uint64
}

// knownRevisions is Reflect's own Revisions.
type knownRevisions map[string]uint64

func (k knownRevisions) Revision(key string) (uint64, bool) { rev, ok := k[key]; return rev, ok }
func (k knownRevisions) Known() map[string]uint64           { return k }

// ReflectInto is Reflect for a consumer that holds the revisions itself:
// fn must leave held saying, for each key, the revision of the last put
// it took, and nothing for a key it deleted. A put fn skips (an entry it
// cannot use) is given again after the next re-watch.
func ReflectInto(ctx context.Context, s Store, pattern string, log *slog.Logger, held Revisions, fn func(Entry)) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	syncedOnce := false
	backoff := 100 * time.Millisecond
	for {
		ch, err := s.Watch(ctx, pattern)
		if err == nil {
			seen := map[string]bool{}
			synced := false
			for e := range ch {
				switch e.Op {
				case OpSynced:
					if synced {
						continue // one listing per watch
					}
					synced = true
					for k, rev := range held.Known() {
						if !seen[k] {
							fn(Entry{Key: k, Op: OpDelete, Revision: rev})
						}
					}
					seen = nil // it was for the listing: at 30,000 pods, a megabyte
					if !syncedOnce {
						syncedOnce = true
						fn(e)
					}
					backoff = 100 * time.Millisecond
				case OpPut:
					if !synced {
						seen[e.Key] = true
					}
					if rev, ok := held.Revision(e.Key); ok && rev == e.Revision {
						continue
					}
					fn(e)
				case OpDelete:
					if _, ok := held.Revision(e.Key); !ok {
						continue
					}
					fn(e)
				}
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("watch ended; watching again", "pattern", pattern, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}
