package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/memstore"
	"github.com/capstan-io/capstan/internal/testwait"
)

// flaky wraps a store whose watches can be cut, as a lost NATS consumer is.
type flaky struct {
	bus.Store
	mu      sync.Mutex
	cancels []context.CancelFunc
}

func (f *flaky) Watch(ctx context.Context, pattern string) (<-chan bus.Entry, error) {
	wctx, cancel := context.WithCancel(ctx)
	f.mu.Lock()
	f.cancels = append(f.cancels, cancel)
	f.mu.Unlock()
	return f.Store.Watch(wctx, pattern)
}

func (f *flaky) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.cancels {
		c()
	}
	f.cancels = nil
}

func TestReflectSurvivesALostWatch(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &flaky{Store: memstore.New()}
	mustPut := func(k string) {
		if _, err := s.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	mustPut("a.1")
	mustPut("a.2")

	var mu sync.Mutex
	state := map[string]bool{}
	var events []bus.Entry
	done := make(chan struct{})
	go func() {
		_ = bus.Reflect(ctx, s, "a.>", nil, func(e bus.Entry) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
			switch e.Op {
			case bus.OpPut:
				state[e.Key] = true
			case bus.OpDelete:
				delete(state, e.Key)
			}
		})
		close(done)
	}()
	wait := func(what string, ok func() bool) {
		t.Helper()
		testwait.For(t, 5*time.Second, what, func() error {
			mu.Lock()
			defer mu.Unlock()
			if !ok() {
				return fmt.Errorf("events %+v", events)
			}
			return nil
		})
	}
	wait("initial state", func() bool { return state["a.1"] && state["a.2"] && len(events) == 3 })

	// While no watch runs, a.1 goes and a.3 comes.
	s.cut()
	if err := s.Delete(ctx, "a.1", 0); err != nil {
		t.Fatal(err)
	}
	mustPut("a.3")
	wait("state after the watch came back", func() bool { return !state["a.1"] && state["a.2"] && state["a.3"] })
	mu.Lock()
	puts := 0
	synced := 0
	for _, e := range events {
		if e.Key == "a.2" && e.Op == bus.OpPut {
			puts++
		}
		if e.Op == bus.OpSynced {
			synced++
		}
	}
	mu.Unlock()
	if puts != 1 {
		t.Fatalf("unchanged a.2 reported %d times, want once", puts)
	}
	if synced != 1 {
		t.Fatalf("OpSynced sent %d times, want once", synced)
	}
	cancel()
	<-done
}
