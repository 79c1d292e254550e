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
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	known := map[string]uint64{} // key -> revision fn has seen
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
					synced = true
					for k, rev := range known {
						if !seen[k] {
							delete(known, k)
							fn(Entry{Key: k, Op: OpDelete, Revision: rev})
						}
					}
					if !syncedOnce {
						syncedOnce = true
						fn(e)
					}
					backoff = 100 * time.Millisecond
				case OpPut:
					if !synced {
						seen[e.Key] = true
					}
					if known[e.Key] == e.Revision {
						continue
					}
					known[e.Key] = e.Revision
					fn(e)
				case OpDelete:
					if _, ok := known[e.Key]; !ok {
						continue
					}
					delete(known, e.Key)
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
