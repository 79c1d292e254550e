package reconciler

import (
	"context"
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
	queued     map[string]bool
	processing map[string]bool
	dirty      map[string]bool
	failures   map[string]int
	timers     map[string]*pending
	closed     bool
	// peak is the most keys queued since queued was last made anew.
	peak int

	// BaseDelay and MaxDelay bound the per-key back-off.
	BaseDelay, MaxDelay time.Duration
}

// shrinkAfter is the peak of queued keys past which a queue that empties
// makes its map anew.
const shrinkAfter = 1024

// NewQueue returns an empty queue with a back-off from 100 ms to 30 s.
func NewQueue() *Queue {
	q := &Queue{
		queued:     map[string]bool{},
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
	if q.queued[key] {
		return
	}
	q.queued[key] = true
	q.peak = max(q.peak, len(q.queued))
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
	delete(q.queued, key)
	if len(q.queued) == 0 && q.peak > shrinkAfter {
		// A Go map keeps the room of its peak: a queue a burst filled
		// with every pod of the cluster would hold it for good.
		q.queued, q.peak, q.order = map[string]bool{}, 0, nil
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
