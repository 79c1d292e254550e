package workqueue

import (
	"context"
	"iter"
	"maps"
	"sync"
	"time"
)

// Queue is a keyed work queue: a key added while queued is queued once; a
// key being processed is not handed to a second worker, and is queued again
// after Done if it was added meanwhile. Failed keys are retried after an
// exponential back-off per key. It is safe for concurrent use.
type Queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	order      []string
	queued     PeakMap[string, bool]
	processing map[string]bool
	dirty      map[string]bool
	failures   map[string]int
	timers     map[string]*pending
	closed     bool

	// BaseDelay and MaxDelay bound the per-key back-off.
	BaseDelay, MaxDelay time.Duration
}

// PeakMap is a map that gives a burst's room back: a Go map keeps the
// size of its peak, and a burst puts every pod of the cluster in the
// queues and the scheduler's maps for a moment. Emptied after holding
// more than shrinkAfter keys, it starts anew.
type PeakMap[K comparable, V any] struct {
	m    map[K]V
	peak int
}

// shrinkAfter is the peak past which an emptied PeakMap starts anew.
const shrinkAfter = 1024

// Set sets k to v.
func (p *PeakMap[K, V]) Set(k K, v V) {
	if p.m == nil {
		p.m = map[K]V{}
	}
	p.m[k] = v
	p.peak = max(p.peak, len(p.m))
}

// Get returns k's value.
func (p *PeakMap[K, V]) Get(k K) (V, bool) {
	v, ok := p.m[k]
	return v, ok
}

// Del deletes k, and reports whether the map started anew.
func (p *PeakMap[K, V]) Del(k K) bool {
	delete(p.m, k)
	if len(p.m) == 0 && p.peak > shrinkAfter {
		p.m, p.peak = nil, 0
		return true
	}
	return false
}

// Len is the number of keys.
func (p *PeakMap[K, V]) Len() int { return len(p.m) }

// Keys iterates over the keys.
func (p *PeakMap[K, V]) Keys() iter.Seq[K] { return maps.Keys(p.m) }

// New returns an empty queue with a back-off from 100 ms to 30 s.
func New() *Queue {
	q := &Queue{
		processing: map[string]bool{},
		dirty:      map[string]bool{},
		failures:   map[string]int{},
		timers:     map[string]*pending{},
		BaseDelay:  100 * time.Millisecond,
		MaxDelay:   30 * time.Second,
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key now.
func (q *Queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *Queue) addLocked(key string) {
	if q.closed {
		return
	}
	if q.processing[key] {
		q.dirty[key] = true
		return
	}
	if _, ok := q.queued.Get(key); ok {
		return
	}
	q.queued.Set(key, true)
	q.order = append(q.order, key)
	q.cond.Signal()
}

// pending is a delayed add.
type pending struct {
	timer *time.Timer
	at    time.Time
}

// AddAfter queues key after d, unless an add already pending for key comes
// sooner: the earliest wins.
func (q *Queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	at := time.Now().Add(d)
	if p, ok := q.timers[key]; ok {
		if !p.at.After(at) {
			return
		}
		p.timer.Stop()
	}
	p := &pending{at: at}
	p.timer = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.timers[key] == p {
			delete(q.timers, key)
		}
		q.addLocked(key)
	})
	q.timers[key] = p
}

// Retry queues key again after its back-off, which doubles on each call
// until Forget.
func (q *Queue) Retry(key string) {
	q.mu.Lock()
	n := q.failures[key]
	q.failures[key] = n + 1
	q.mu.Unlock()
	d := q.BaseDelay << min(n, 20)
	if d > q.MaxDelay || d <= 0 {
		d = q.MaxDelay
	}
	q.AddAfter(key, d)
}

// Forget resets key's back-off.
func (q *Queue) Forget(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, key)
}

// Get blocks until a key is ready or the queue is closed (ok false).
func (q *Queue) Get() (key string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	key, q.order = q.order[0], q.order[1:]
	if q.queued.Del(key) {
		q.order = nil // and the order's array, as long as the burst
	}
	q.processing[key] = true
	return key, true
}

// Done marks key processed; if it was added meanwhile it is queued again.
func (q *Queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] {
		delete(q.dirty, key)
		q.addLocked(key)
	}
}

// Len returns the number of queued keys.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// Close wakes every Get with ok false and stops pending timers.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, p := range q.timers {
		p.timer.Stop()
	}
	q.cond.Broadcast()
}

// RunWorkers runs n workers calling fn for each key until ctx ends, and
// returns after they exit. An error from fn retries the key with back-off;
// success forgets its back-off.
func (q *Queue) RunWorkers(ctx context.Context, n int, fn func(ctx context.Context, key string) error, onErr func(key string, err error)) {
	go func() {
		<-ctx.Done()
		q.Close()
	}()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				key, ok := q.Get()
				if !ok {
					return
				}
				if err := fn(ctx, key); err != nil {
					if ctx.Err() == nil {
						if onErr != nil {
							onErr(key, err)
						}
						q.Retry(key)
					}
				} else {
					q.Forget(key)
				}
				q.Done(key)
			}
		})
	}
	wg.Wait()
}
