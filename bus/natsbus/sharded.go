package natsbus

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"

	"github.com/capstan-io/capstan/bus"
)

// AssignmentShards is how many buckets hold the pod assignments
// (assignments-0 ... assignments-15), a node's keys all in the one its
// name hashes to.
//
// Why: every node watches its own keys (<node>.>) with a filtered
// consumer, and JetStream finds a filtered consumer's next message by
// walking the stream from its last one (nats-server's
// msgBlock.firstMatching), past every other node's assignments written in
// between. In one bucket that walk is O(nodes) per delivered assignment,
// the bus's largest cost in a burst (docs/BENCHMARKS.md). Sixteen buckets
// cut the walk sixteenfold; every process must agree on the number, so it
// is fixed.
const AssignmentShards = 16

// AssignmentsBucket names the i-th assignments bucket.
func AssignmentsBucket(i int) string { return fmt.Sprintf("%s-%d", bus.BucketAssignments, i) }

var _ bus.Store = (*Sharded)(nil)

// Sharded is a bus.Store over several buckets: a key lives in the bucket
// its first dot-separated token hashes to. Revisions are those of the
// key's own bucket, so CAS works per key as in one bucket; revisions of
// keys in different buckets are not comparable.
type Sharded struct {
	shards []*KV
}

// NewSharded returns a store over kvs, which must be the same buckets in
// the same order in every process.
func NewSharded(kvs []*KV) *Sharded { return &Sharded{shards: kvs} }

// Shards returns the buckets, in order.
func (s *Sharded) Shards() []*KV { return s.shards }

// ShardOf returns the index of the bucket that holds keys whose first
// token is first (for assignments, a node name).
func ShardOf(first string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(first))
	return int(h.Sum32() % uint32(n))
}

func (s *Sharded) shard(key string) *KV {
	first, _, _ := strings.Cut(key, ".")
	return s.shards[ShardOf(first, len(s.shards))]
}

// literalShard returns the one bucket pattern can match, or nil when its
// first token is a wildcard.
func (s *Sharded) literalShard(pattern string) *KV {
	first, _, _ := strings.Cut(pattern, ".")
	if first == "*" || first == ">" {
		return nil
	}
	return s.shard(pattern)
}

func (s *Sharded) Get(ctx context.Context, key string) (bus.Entry, error) {
	return s.shard(key).Get(ctx, key)
}

func (s *Sharded) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	return s.shard(key).Create(ctx, key, value)
}

func (s *Sharded) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	return s.shard(key).Update(ctx, key, value, rev)
}

func (s *Sharded) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return s.shard(key).Put(ctx, key, value)
}

func (s *Sharded) Delete(ctx context.Context, key string, rev uint64) error {
	return s.shard(key).Delete(ctx, key, rev)
}

// List returns the live entries matching pattern: in revision order within
// a bucket, bucket after bucket.
func (s *Sharded) List(ctx context.Context, pattern string) ([]bus.Entry, error) {
	if kv := s.literalShard(pattern); kv != nil {
		return kv.List(ctx, pattern)
	}
	var out []bus.Entry
	for _, kv := range s.shards {
		es, err := kv.List(ctx, pattern)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}

// Watch is KV.Watch across the buckets pattern can match: their current
// entries, one OpSynced once every bucket has sent its own, then every
// change. The channel closes when every bucket's watch has ended.
func (s *Sharded) Watch(ctx context.Context, pattern string) (<-chan bus.Entry, error) {
	if kv := s.literalShard(pattern); kv != nil {
		return kv.Watch(ctx, pattern)
	}
	ctx, cancel := context.WithCancel(ctx)
	ins := make([]<-chan bus.Entry, len(s.shards))
	for i, kv := range s.shards {
		ch, err := kv.Watch(ctx, pattern)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("watch %s of bucket %d: %w", pattern, i, err)
		}
		ins[i] = ch
	}
	out := make(chan bus.Entry, watchBuffer)
	var mu sync.Mutex
	unsynced := len(ins)
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Go(func() {
			// A bucket whose watch ends ends them all: a merged watch
			// missing one bucket would be silently incomplete.
			defer cancel()
			for e := range in {
				if e.Op == bus.OpSynced {
					mu.Lock()
					unsynced--
					last := unsynced == 0
					mu.Unlock()
					if !last {
						continue
					}
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() {
		wg.Wait()
		cancel()
		close(out)
	}()
	return out, nil
}
