package workqueue

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestQueueDeduplicatesAndSerialisesKeys(t *testing.T) {
	q := New()
	q.Add("a")
	q.Add("a")
	q.Add("b")
	if q.Len() != 2 {
		t.Fatalf("len %d, want 2", q.Len())
	}
	k, _ := q.Get()
	q.Add(k) // added while processing: handed out again only after Done
	k2, _ := q.Get()
	if k2 == k {
		t.Fatal("a key being processed was handed to a second worker")
	}
	q.Done(k2)
	q.Done(k)
	k3, _ := q.Get()
	if k3 != k {
		t.Fatalf("re-added key not queued again after Done: got %q", k3)
	}
	q.Close()
	if _, ok := q.Get(); ok {
		t.Fatal("Get after Close returned a key")
	}
}

func TestQueueRetriesWithBackoff(t *testing.T) {
	q := New()
	q.BaseDelay = 10 * time.Millisecond
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		q.RunWorkers(ctx, 2, func(ctx context.Context, key string) error {
			if calls.Add(1) < 4 {
				return errors.New("not yet")
			}
			cancel()
			return nil
		}, nil)
	})
	q.Add("k")
	wg.Wait()
	if calls.Load() != 4 {
		t.Fatalf("%d calls, want 4 (three failures, then success)", calls.Load())
	}
}

func TestQueueAddAfterKeepsTheSoonerAdd(t *testing.T) {
	q := New()
	defer q.Close()
	q.AddAfter("k", 20*time.Millisecond)
	q.AddAfter("k", time.Hour) // must not postpone the sooner add
	got := make(chan string, 1)
	go func() {
		k, _ := q.Get()
		got <- k
	}()
	select {
	case k := <-got:
		if k != "k" {
			t.Fatalf("got %q", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a later AddAfter postponed a sooner one")
	}
}

// A queue a burst filled gives its room back once it has drained: at
// tens of thousands of pods every controller's queue holds every pod for
// a moment, and a Go map keeps the size of its peak.
func TestQueueGivesBackABurstsRoom(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	q := New()
	defer q.Close()
	before := heap()
	for i := range 100_000 {
		q.Add("Pod.default.web-" + strconv.Itoa(i))
	}
	full := heap()
	for q.Len() > 0 {
		k, _ := q.Get()
		q.Done(k)
	}
	after := heap()
	t.Logf("heap: %d KiB empty, %d KiB with 100,000 keys queued, %d KiB drained", before>>10, full>>10, after>>10)
	if full < before+2<<20 {
		t.Fatalf("100,000 queued keys took only %d KiB: the measure is broken", (full-before)>>10)
	}
	if after > before+512<<10 {
		t.Fatalf("the drained queue still holds %d KiB", (after-before)>>10)
	}
	q.Add("a") // and it still works
	if k, _ := q.Get(); k != "a" {
		t.Fatalf("got %q after the shrink", k)
	}
}
