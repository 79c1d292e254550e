package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/memstore"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// A handler registered after the cache started, as the second user of a
// shared cache does, is told of every object held, then of changes.
func TestLateHandlerSeesWhatIsHeld(t *testing.T) {
	store := memstore.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	put := func(name string) {
		cm := &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default"}}
		manifests.SetKind(cm)
		if _, err := cache.CreateObject(ctx, store, cm); err != nil {
			t.Fatal(err)
		}
	}
	put("a")
	put("b")
	c := cache.New(store, nil)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Synced()

	var mu sync.Mutex
	seen := map[string]bool{}
	c.AddHandler(func(key string, old, cur manifests.Object) {
		mu.Lock()
		defer mu.Unlock()
		seen[key] = cur != nil
	})
	put("c")
	testwait.For(t, 10*time.Second, "the late handler sees a, b and c", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range []string{"a", "b", "c"} {
			if !seen[manifests.Key("ConfigMap", "default", n)] {
				return fmt.Errorf("not told of %s: %v", n, seen)
			}
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
