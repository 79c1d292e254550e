package reconciler_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler"
)

// TestCacheTakesItsOwnWritesBack writes pods through a real in-process
// bus: an object written with UpdateEchoed is cached as the very object
// written, with the write's revision, and encodes as what the bus holds;
// a failed write is forgotten, and someone else's write is decoded.
func TestCacheTakesItsOwnWritesBack(t *testing.T) {
	conn := natsauthtest.Start(t).ControlPlane
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cache := reconciler.NewCache(conn.Objects, slog.New(slog.DiscardHandler))
	go func() { _ = cache.Run(ctx) }()
	<-cache.Synced()

	pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "c", Image: "busybox"}}}}
	rev, err := reconciler.CreateObject(ctx, conn.Objects, pod)
	if err != nil {
		t.Fatal(err)
	}
	key := manifests.KeyOf(pod)
	cached := waitCached(t, cache, key, rev)

	// A bind as the scheduler writes it: a shallow copy with a node.
	bind := *cached.Obj.(*manifests.Pod)
	bind.Spec.NodeName = "n1"
	rev, err = reconciler.UpdateEchoed(ctx, conn.Objects, cache, &bind, cached.Rev)
	if err != nil {
		t.Fatal(err)
	}
	cached = waitCached(t, cache, key, rev)
	if cached.Obj != manifests.Object(&bind) {
		t.Fatal("the cache decoded its own write instead of taking the object written")
	}
	if got := cached.Obj.GetObjectMeta().ResourceVersion; got != strconv.FormatUint(rev, 10) {
		t.Fatalf("resourceVersion %q, want %d", got, rev)
	}
	stored, err := conn.Objects.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := reconciler.Encode(cached.Obj)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, stored.Value) {
		t.Fatalf("the cached object encodes as\n%s\nthe bus holds\n%s", enc, stored.Value)
	}

	// A write on a stale revision fails and leaves nothing waiting.
	stale := *cached.Obj.(*manifests.Pod)
	stale.Spec.NodeName = "n2"
	if _, err := reconciler.UpdateEchoed(ctx, conn.Objects, cache, &stale, cached.Rev-1); !errors.Is(err, bus.ErrConflict) {
		t.Fatalf("a write on a stale revision: %v, want a conflict", err)
	}
	if n := reconciler.PendingEchoes(cache); n != 0 {
		t.Fatalf("%d writes still expected after the failed one", n)
	}

	// Someone else's write is decoded.
	other := *cached.Obj.(*manifests.Pod)
	other.Labels = map[string]string{"app": "web", "tier": "front"}
	rev, err = reconciler.UpdateObject(ctx, conn.Objects, &other, cached.Rev)
	if err != nil {
		t.Fatal(err)
	}
	cached = waitCached(t, cache, key, rev)
	if cached.Obj == manifests.Object(&other) || cached.Obj.GetObjectMeta().Labels["tier"] != "front" {
		t.Fatalf("another writer's pod is cached as %+v", cached.Obj.GetObjectMeta())
	}
}

// waitCached waits until the cache holds key at revision rev or later.
func waitCached(t *testing.T, cache *reconciler.Cache, key string, rev uint64) *reconciler.Cached {
	t.Helper()
	var c *reconciler.Cached
	testwait.For(t, 10*time.Second, fmt.Sprintf("the cache reaches %s at revision %d", key, rev), func() error {
		got, ok := cache.Get(key)
		if !ok {
			return errors.New("not cached")
		}
		if got.Rev < rev {
			return fmt.Errorf("cached at revision %d", got.Rev)
		}
		c = got
		return nil
	})
	return c
}
