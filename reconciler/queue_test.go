package reconciler

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
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

func TestCacheIndexesFollowChanges(t *testing.T) {
	c := NewCache(nil, nil)
	owner := manifests.OwnerReference{Kind: "ReplicaSet", Name: "rs", UID: "u1", Controller: true}
	pod := func(node string, owners ...manifests.OwnerReference) *manifests.Pod {
		return &manifests.Pod{TypeMeta: manifests.TypeMeta{Kind: "Pod"},
			ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default", OwnerReferences: owners},
			Spec:       manifests.PodSpec{NodeName: node}}
	}
	c.set("Pod.default.p", pod("", owner), 1)
	if len(c.Owned("u1", "Pod")) != 1 || len(c.Owned("u1", "ReplicaSet")) != 0 || len(c.OnNode("n1")) != 0 {
		t.Fatal("a new pod is not indexed by its owner only")
	}
	c.set("Pod.default.p", pod("n1", owner), 2) // bound
	if len(c.OnNode("n1")) != 1 || len(c.Owned("u1", "")) != 1 {
		t.Fatal("a bound pod is not indexed by its node")
	}
	c.set("Pod.default.p", pod("n2"), 3) // orphaned and moved
	if len(c.OnNode("n1")) != 0 || len(c.OnNode("n2")) != 1 || len(c.Owned("u1", "")) != 0 {
		t.Fatal("indexes keep an object's old owner or node")
	}
	c.set("Pod.default.p", nil, 4)
	if len(c.OnNode("n2")) != 0 {
		t.Fatal("a deleted pod stays indexed")
	}
	if _, ok := c.Get("Pod.default.p"); ok {
		t.Fatal("a deleted pod stays cached")
	}
}

func TestParseControllers(t *testing.T) {
	all, err := ParseControllers(nil)
	if err != nil || len(all) != len(ControllerNames()) {
		t.Fatalf("empty list: %v, %v", all, err)
	}
	for _, n := range ControllerNames() {
		if !all[n] {
			t.Errorf("empty list leaves %s out", n)
		}
	}
	got, err := ParseControllers([]string{"*", "-scheduler", "-nodelifecycle"})
	if err != nil {
		t.Fatal(err)
	}
	if got["scheduler"] || got["nodelifecycle"] || !got["replicaset"] || !got["gc"] {
		t.Errorf("*,-scheduler,-nodelifecycle: %v", got)
	}
	only, err := ParseControllers([]string{"scheduler"})
	if err != nil || len(only) != 1 || !only["scheduler"] {
		t.Errorf("scheduler alone: %v, %v", only, err)
	}
	if _, err := ParseControllers([]string{"*", "-shceduler"}); err == nil || !strings.Contains(err.Error(), `"-shceduler"`) {
		t.Errorf("a misspelt name: %v", err)
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
	q := NewQueue()
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

// A resync is spread over its period: each slot re-queues a part of the
// keys, and the slots together re-queue every key once.
func TestResyncIsSpreadOverSlots(t *testing.T) {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "Pod.default.web-" + strconv.Itoa(i)
	}
	c := &controller{queue: NewQueue(), resync: func(keep func(string) bool) []string {
		var out []string
		for _, k := range keys {
			if keep(k) {
				out = append(out, k)
			}
		}
		return out
	}}
	defer c.queue.Close()
	const slots = 10
	seen := map[string]int{}
	for slot := range uint32(slots) {
		resyncSlot([]*controller{c}, slot, slots)
		n := c.queue.Len()
		if n == 0 || n > 3*len(keys)/slots {
			t.Fatalf("slot %d re-queued %d of %d keys", slot, n, len(keys))
		}
		for c.queue.Len() > 0 {
			k, _ := c.queue.Get()
			seen[k]++
			c.queue.Done(k)
		}
	}
	for _, k := range keys {
		if seen[k] != 1 {
			t.Fatalf("%s re-queued %d times over the period", k, seen[k])
		}
	}
	if got := resyncSlots(500 * time.Millisecond); got != 1 {
		t.Fatalf("a period under a second is %d slots, want 1", got)
	}
	if got := resyncSlots(30 * time.Second); got != 10 {
		t.Fatalf("30s is %d slots, want 10", got)
	}
}
