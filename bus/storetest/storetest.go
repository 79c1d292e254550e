package storetest

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
)

// waitFor bounds every wait for a watch event.
const waitFor = 10 * time.Second

// Run runs the contract against stores made by newStore, one per subtest.
// newStore should register its own cleanup with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) bus.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s bus.Store)
	}{
		{"CreateExists", testCreateExists},
		{"UpdateCAS", testUpdateCAS},
		{"Put", testPut},
		{"DeleteThenGet", testDeleteThenGet},
		{"DeleteStaleRevision", testDeleteStaleRevision},
		{"DeleteMissing", testDeleteMissing},
		{"CreateAfterDelete", testCreateAfterDelete},
		{"ListPatterns", testListPatterns},
		{"DottedLastToken", testDottedLastToken},
		{"WatchInitialSyncedChanges", testWatch},
		{"WatchEmptyRangeSynced", testWatchEmpty},
		{"WatchClosesOnCancel", testWatchCloses},
		{"RacingUpdates", testRacingUpdates},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func isErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
}

func testCreateExists(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	rev, err := s.Create(ctx, "Pod.default.web", []byte("a"))
	noErr(t, err)
	if rev == 0 {
		t.Fatal("Create returned revision 0")
	}
	_, err = s.Create(ctx, "Pod.default.web", []byte("b"))
	isErr(t, err, bus.ErrExists)
	e, err := s.Get(ctx, "Pod.default.web")
	noErr(t, err)
	if string(e.Value) != "a" || e.Revision != rev || e.Key != "Pod.default.web" {
		t.Fatalf("Get = %+v, want value a at revision %d", e, rev)
	}
}

func testUpdateCAS(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	r1, err := s.Create(ctx, "Deployment.default.web", []byte("1"))
	noErr(t, err)
	r2, err := s.Update(ctx, "Deployment.default.web", []byte("2"), r1)
	noErr(t, err)
	if r2 <= r1 {
		t.Fatalf("revision did not grow: %d then %d", r1, r2)
	}
	_, err = s.Update(ctx, "Deployment.default.web", []byte("stale"), r1)
	isErr(t, err, bus.ErrConflict)
	_, err = s.Update(ctx, "Deployment.default.missing", []byte("x"), r2)
	isErr(t, err, bus.ErrConflict)
	e, err := s.Get(ctx, "Deployment.default.web")
	noErr(t, err)
	if string(e.Value) != "2" || e.Revision != r2 {
		t.Fatalf("Get = %q@%d, want 2@%d", e.Value, e.Revision, r2)
	}
}

func testPut(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	r1, err := s.Put(ctx, "node1", []byte("a"))
	noErr(t, err)
	r2, err := s.Put(ctx, "node1", []byte("b"))
	noErr(t, err)
	if r2 <= r1 {
		t.Fatalf("revision did not grow: %d then %d", r1, r2)
	}
	e, err := s.Get(ctx, "node1")
	noErr(t, err)
	if string(e.Value) != "b" || e.Revision != r2 {
		t.Fatalf("Get = %q@%d, want b@%d", e.Value, e.Revision, r2)
	}
}

func testDeleteThenGet(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	_, err := s.Get(ctx, "Pod.default.none")
	isErr(t, err, bus.ErrNotFound)
	rev, err := s.Create(ctx, "Pod.default.web", []byte("a"))
	noErr(t, err)
	noErr(t, s.Delete(ctx, "Pod.default.web", rev))
	_, err = s.Get(ctx, "Pod.default.web")
	isErr(t, err, bus.ErrNotFound)
	list, err := s.List(ctx, "Pod.>")
	noErr(t, err)
	if len(list) != 0 {
		t.Fatalf("List after delete = %v, want none", keys(list))
	}
}

func testDeleteStaleRevision(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	r1, err := s.Create(ctx, "Pod.default.web", []byte("a"))
	noErr(t, err)
	_, err = s.Update(ctx, "Pod.default.web", []byte("b"), r1)
	noErr(t, err)
	isErr(t, s.Delete(ctx, "Pod.default.web", r1), bus.ErrConflict)
	if _, err := s.Get(ctx, "Pod.default.web"); err != nil {
		t.Fatalf("key gone after a conflicting delete: %v", err)
	}
	noErr(t, s.Delete(ctx, "Pod.default.web", 0))
	_, err = s.Get(ctx, "Pod.default.web")
	isErr(t, err, bus.ErrNotFound)
}

func testDeleteMissing(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	noErr(t, s.Delete(ctx, "Pod.default.never", 0))
}

func testCreateAfterDelete(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	_, err := s.Create(ctx, "Pod.default.web", []byte("a"))
	noErr(t, err)
	noErr(t, s.Delete(ctx, "Pod.default.web", 0))
	_, err = s.Create(ctx, "Pod.default.web", []byte("b"))
	noErr(t, err)
	e, err := s.Get(ctx, "Pod.default.web")
	noErr(t, err)
	if string(e.Value) != "b" {
		t.Fatalf("Get = %q, want b", e.Value)
	}
}

func testListPatterns(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	for _, k := range []string{
		"Deployment.default.web", "Deployment.prod.api", "Pod.default.web-1",
		"Pod.default.web-2", "Pod.prod.api-1", "DeploymentX.default.x",
	} {
		_, err := s.Put(ctx, k, []byte(k))
		noErr(t, err)
	}
	noErr(t, s.Delete(ctx, "Pod.default.web-2", 0))
	for _, tc := range []struct {
		pattern string
		want    []string
	}{
		{"Deployment.>", []string{"Deployment.default.web", "Deployment.prod.api"}},
		{"Pod.default.*", []string{"Pod.default.web-1"}},
		{"*.prod.*", []string{"Deployment.prod.api", "Pod.prod.api-1"}},
		{"Service.>", nil},
	} {
		list, err := s.List(ctx, tc.pattern)
		noErr(t, err)
		got := keys(list)
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.pattern, got, tc.want)
		}
		for _, e := range list {
			if string(e.Value) != e.Key || e.Revision == 0 {
				t.Errorf("List(%q) entry %+v: wrong value or revision", tc.pattern, e)
			}
		}
	}
}

func testDottedLastToken(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	rev, err := s.Create(ctx, "Pod.default.web.v1", []byte("a"))
	noErr(t, err)
	_, err = s.Put(ctx, "Pod.default.web", []byte("b"))
	noErr(t, err)
	e, err := s.Get(ctx, "Pod.default.web.v1")
	noErr(t, err)
	if e.Revision != rev {
		t.Fatalf("Get revision = %d, want %d", e.Revision, rev)
	}
	list, err := s.List(ctx, "Pod.default.>")
	noErr(t, err)
	got := keys(list)
	slices.Sort(got)
	if want := []string{"Pod.default.web", "Pod.default.web.v1"}; !slices.Equal(got, want) {
		t.Fatalf("List(Pod.default.>) = %v, want %v", got, want)
	}
	list, err = s.List(ctx, "Pod.default.*")
	noErr(t, err)
	if got := keys(list); !slices.Equal(got, []string{"Pod.default.web"}) {
		t.Fatalf("List(Pod.default.*) = %v, want [Pod.default.web]", got)
	}
}

func testWatch(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	ra, err := s.Put(ctx, "Pod.default.a", []byte("a1"))
	noErr(t, err)
	rb, err := s.Put(ctx, "Pod.default.b", []byte("b1"))
	noErr(t, err)
	_, err = s.Put(ctx, "Node.n1", []byte("n"))
	noErr(t, err)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx, "Pod.>")
	noErr(t, err)

	initial := map[string]uint64{}
	for {
		e := next(t, ch)
		if e.Op == bus.OpSynced {
			break
		}
		if e.Op != bus.OpPut {
			t.Fatalf("initial entry %+v is not a put", e)
		}
		initial[e.Key] = e.Revision
	}
	if want := map[string]uint64{"Pod.default.a": ra, "Pod.default.b": rb}; !mapsEqual(initial, want) {
		t.Fatalf("initial values = %v, want %v", initial, want)
	}

	rc, err := s.Put(ctx, "Pod.default.c", []byte("c1"))
	noErr(t, err)
	_, err = s.Put(ctx, "Node.n2", []byte("ignored"))
	noErr(t, err)
	noErr(t, s.Delete(ctx, "Pod.default.a", ra))
	rb2, err := s.Update(ctx, "Pod.default.b", []byte("b2"), rb)
	noErr(t, err)

	want := []struct {
		key string
		op  bus.Op
	}{{"Pod.default.c", bus.OpPut}, {"Pod.default.a", bus.OpDelete}, {"Pod.default.b", bus.OpPut}}
	var last uint64
	for i, w := range want {
		e := next(t, ch)
		if e.Key != w.key || e.Op != w.op {
			t.Fatalf("change %d = %s op %d, want %s op %d", i, e.Key, e.Op, w.key, w.op)
		}
		if e.Revision <= last {
			t.Fatalf("change %d revision %d not after %d", i, e.Revision, last)
		}
		last = e.Revision
		switch i {
		case 0:
			if e.Revision != rc || string(e.Value) != "c1" {
				t.Fatalf("put c = %q@%d, want c1@%d", e.Value, e.Revision, rc)
			}
		case 2:
			if e.Revision != rb2 || string(e.Value) != "b2" {
				t.Fatalf("update b = %q@%d, want b2@%d", e.Value, e.Revision, rb2)
			}
		}
	}
}

func testWatchEmpty(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	_, err := s.Put(ctx, "Pod.default.a", []byte("a"))
	noErr(t, err)
	ch, err := s.Watch(ctx, "Service.>")
	noErr(t, err)
	if e := next(t, ch); e.Op != bus.OpSynced {
		t.Fatalf("first entry of an empty watch = %+v, want OpSynced", e)
	}
	_, err = s.Put(ctx, "Service.default.x", []byte("x"))
	noErr(t, err)
	if e := next(t, ch); e.Key != "Service.default.x" || e.Op != bus.OpPut {
		t.Fatalf("entry after put = %+v", e)
	}
}

func testWatchCloses(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	wctx, cancel := context.WithCancel(ctx)
	ch, err := s.Watch(wctx, ">")
	noErr(t, err)
	if e := next(t, ch); e.Op != bus.OpSynced {
		t.Fatalf("first entry = %+v, want OpSynced", e)
	}
	// Changes nobody reads must not keep the watch open.
	for i := range 300 {
		_, err := s.Put(ctx, "k"+strconv.Itoa(i), []byte("v"))
		noErr(t, err)
	}
	cancel()
	Closes(t, ch)
}

// Closes drains a watch whose context has ended and fails the test unless
// its channel closes within 10 s, as every Store's watch must.
func Closes(t testing.TB, ch <-chan bus.Entry) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after its context ended")
		}
	}
}

func testRacingUpdates(t *testing.T, s bus.Store) {
	ctx := ctxT(t)
	const key, workers, each = "counter", 8, 25
	_, err := s.Create(ctx, key, []byte("0"))
	noErr(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				if err := increment(ctx, s, key); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e, err := s.Get(ctx, key)
	noErr(t, err)
	if got, want := string(e.Value), strconv.Itoa(workers*each); got != want {
		t.Fatalf("counter = %s, want %s: an update was lost", got, want)
	}
}

// increment is the read-CAS-retry loop every writer of shared state uses.
func increment(ctx context.Context, s bus.Store, key string) error {
	for {
		e, err := s.Get(ctx, key)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(string(e.Value))
		if err != nil {
			return err
		}
		_, err = s.Update(ctx, key, []byte(strconv.Itoa(n+1)), e.Revision)
		if errors.Is(err, bus.ErrConflict) {
			continue
		}
		return err
	}
}

func next(t *testing.T, ch <-chan bus.Entry) bus.Entry {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed early")
		}
		return e
	case <-time.After(waitFor):
		t.Fatal("no watch entry within " + waitFor.String())
	}
	panic("unreachable")
}

func keys(list []bus.Entry) []string {
	var out []string
	for _, e := range list {
		out = append(out, e.Key)
	}
	return out
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
