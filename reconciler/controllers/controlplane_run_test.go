package controllers

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/memstore"
	"github.com/capstan-io/capstan/internal/testwait"
)

// watchedStore remembers the context of every watch.
type watchedStore struct {
	*memstore.Store
	mu   sync.Mutex
	ctxs []context.Context
}

func (w *watchedStore) Watch(ctx context.Context, pattern string) (<-chan bus.Entry, error) {
	w.mu.Lock()
	w.ctxs = append(w.ctxs, ctx)
	w.mu.Unlock()
	return w.Store.Watch(ctx, pattern)
}

// A part that fails stops the control plane as one: Run returns the
// failure, after cancelling and waiting for every other part.
func TestControlPlaneFailsAsOne(t *testing.T) {
	objects := &watchedStore{Store: memstore.New()}
	boom := errors.New("boom")
	cp := &ControlPlane{Objects: objects, Nodes: memstore.New(), Assignments: memstore.New(), Status: memstore.New(),
		testPart: func(ctx context.Context) error { return boom }}
	done := make(chan error, 1)
	go func() { done <- cp.Run(context.Background()) }()
	var err error
	testwait.For(t, 10*time.Second, "Run returns", func() error {
		select {
		case err = <-done:
			return nil
		default:
			return errors.New("still running")
		}
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the failing part's error", err)
	}
	objects.mu.Lock()
	defer objects.mu.Unlock()
	if len(objects.ctxs) == 0 {
		t.Fatal("the objects cache never watched")
	}
	for _, ctx := range objects.ctxs {
		if ctx.Err() == nil {
			t.Error("Run returned while the objects watch still ran")
		}
	}
}
