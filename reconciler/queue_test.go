package reconciler

import (
	"context"
	"errors"
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
