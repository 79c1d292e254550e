package reconciler

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestQueueDeduplicatesAndSerialisesKeys(t *testing.T) {
	q := NewQueue()
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
	q := NewQueue()
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

func TestChangedFields(t *testing.T) {
	a := []byte(`{"spec":{"replicas":1,"template":{"spec":{"containers":[{"image":"a","name":"c"}]}}},"metadata":{"name":"x"}}`)
	b := []byte(`{"spec":{"replicas":2,"template":{"spec":{"containers":[{"image":"b","name":"c"}]}},"paused":true},"metadata":{"name":"x"}}`)
	got := ChangedFields(a, b)
	want := []string{"spec.paused", "spec.replicas", "spec.template.spec.containers[0].image"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestQueueAddAfterKeepsTheSoonerAdd(t *testing.T) {
	q := NewQueue()
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
