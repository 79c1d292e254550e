package cache_test

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
	"github.com/capstan-io/capstan/reconciler/cache"
)

// TestCacheTakesItsOwnWritesBack writes pods through a real in-process
// bus: an object written with UpdateEchoed is cached as the very object
// written, with the write's revision, and encodes as what the bus holds;
// a failed write is forgotten, and someone else's write is decoded.
func TestCacheTakesItsOwnWritesBack(t *testing.T) {
	conn := natsauthtest.Start(t).ControlPlane
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	oc := cache.New(conn.Objects, slog.New(slog.DiscardHandler))
	go func() { _ = oc.Run(ctx) }()
	<-oc.Synced()

	pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "c", Image: "busybox"}}}}
	rev, err := cache.CreateObject(ctx, conn.Objects, pod)
	if err != nil {
		t.Fatal(err)
	}
	key := manifests.KeyOf(pod)
	cached := waitCached(t, oc, key, rev)

	// A bind as the scheduler writes it: a shallow copy with a node.
	bind := *cached.Obj.(*manifests.Pod)
	bind.Spec.NodeName = "n1"
	rev, err = cache.UpdateEchoed(ctx, conn.Objects, oc, &bind, cached.Rev)
	if err != nil {
		t.Fatal(err)
	}
	cached = waitCached(t, oc, key, rev)
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
	enc, err := cache.Encode(cached.Obj)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, stored.Value) {
		t.Fatalf("the cached object encodes as\n%s\nthe bus holds\n%s", enc, stored.Value)
	}

	// A write on a stale revision fails and leaves nothing waiting.
	stale := *cached.Obj.(*manifests.Pod)
	stale.Spec.NodeName = "n2"
	if _, err := cache.UpdateEchoed(ctx, conn.Objects, oc, &stale, cached.Rev-1); !errors.Is(err, bus.ErrConflict) {
		t.Fatalf("a write on a stale revision: %v, want a conflict", err)
	}
	if n := cache.PendingEchoes(oc); n != 0 {
		t.Fatalf("%d writes still expected after the failed one", n)
	}

	// Someone else's write is decoded.
	other := *cached.Obj.(*manifests.Pod)
	other.Labels = map[string]string{"app": "web", "tier": "front"}
	rev, err = cache.UpdateObject(ctx, conn.Objects, &other, cached.Rev)
	if err != nil {
		t.Fatal(err)
	}
	cached = waitCached(t, oc, key, rev)
	if cached.Obj == manifests.Object(&other) || cached.Obj.GetObjectMeta().Labels["tier"] != "front" {
		t.Fatalf("another writer's pod is cached as %+v", cached.Obj.GetObjectMeta())
	}
}

// waitCached waits until the cache holds key at revision rev or later.
func waitCached(t *testing.T, oc *cache.Cache, key string, rev uint64) *cache.Cached {
	t.Helper()
	var c *cache.Cached
	testwait.For(t, 10*time.Second, fmt.Sprintf("the cache reaches %s at revision %d", key, rev), func() error {
		got, ok := oc.Get(key)
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
