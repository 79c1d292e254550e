package reconciler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/schema"
	"github.com/capstan-io/capstan/sources/git"
)

// startBus starts an in-process NATS server configured as the production
// bus (operator-mode identities, TLS) and returns the control plane's
// connection to it: the code under test here is the control plane's.
func startBus(t *testing.T) *natsbus.Conn {
	t.Helper()
	return natsauthtest.Start(t).ControlPlane
}

// runSyncer runs a sync of r's main branch (named "root") on objects until
// the returned stop is called (or the test ends).
func runSyncer(t *testing.T, conn *natsbus.Conn, objects bus.Store, r *repo, resync time.Duration) (stop func()) {
	t.Helper()
	src, err := git.New(git.Options{URL: r.dir, Branch: "main", Interval: time.Hour}, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sy := &gitops.Syncer{Name: "root", Source: src, Load: schema.Load, Objects: objects, Audit: conn.Audit,
		Events: conn.Events, Log: logger(t), Resync: resync}
	done := make(chan struct{})
	go func() { _ = sy.Run(ctx); close(done) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func configMap(name, annotations string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n%sdata:\n  k: v\n", name, annotations)
}

const protected = "  annotations:\n    capstan.io/prune: disabled\n"

func exists(conn *natsbus.Conn, name string) (bool, error) {
	_, err := conn.Objects.Get(context.Background(), manifests.Key("ConfigMap", "default", name))
	if errors.Is(err, bus.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// auditOf returns the records of one revision.
func auditOf(conn *natsbus.Conn, rev string) ([]manifests.AuditRecord, error) {
	recs, err := conn.Audit.List(context.Background(), "root", time.Time{})
	if err != nil {
		return nil, err
	}
	var out []manifests.AuditRecord
	for _, r := range recs {
		if r.Revision == rev {
			out = append(out, r)
		}
	}
	return out, nil
}

func changeOf(rec manifests.AuditRecord, action, name string) bool {
	for _, c := range rec.Changes {
		if c.Action == action && c.Kind == "ConfigMap" && c.Name == name {
			return true
		}
	}
	return false
}

// TestPruneProtection: an object annotated capstan.io/prune: disabled
// outlives its removal from Git, is recorded once as kept, stays kept
// through resyncs and a restart of the sync, and is taken back when Git
// declares it again; an unprotected one is deleted.
func TestPruneProtection(t *testing.T) {
	t.Parallel()
	conn := startBus(t)
	r := newRepo(t)
	r.write("keep.yaml", configMap("keep", protected))
	r.write("drop.yaml", configMap("drop", ""))
	r.write("stay.yaml", configMap("stay", ""))
	r.commit("three config maps")
	stop := runSyncer(t, conn, conn.Objects, r, 300*time.Millisecond)
	testwait.For(t, 10*time.Second, "the three config maps", func() error {
		for _, n := range []string{"keep", "drop", "stay"} {
			if ok, err := exists(conn, n); !ok {
				return fmt.Errorf("%s missing (%v)", n, err)
			}
		}
		return nil
	})

	r.git("rm", "-q", "keep.yaml", "drop.yaml")
	removed := r.commit("remove keep and drop")
	testwait.For(t, 10*time.Second, "drop pruned", func() error {
		if ok, err := exists(conn, "drop"); ok || err != nil {
			return fmt.Errorf("drop still there (%v)", err)
		}
		return nil
	})
	var rec manifests.AuditRecord
	testwait.For(t, 10*time.Second, "the removal audited", func() error {
		recs, err := auditOf(conn, removed)
		if err != nil || len(recs) != 1 {
			return fmt.Errorf("records %+v, %v", recs, err)
		}
		rec = recs[0]
		return nil
	})
	if rec.Result != gitops.ResultApplied || !changeOf(rec, "kept", "keep") || !changeOf(rec, "deleted", "drop") || len(rec.Changes) != 2 {
		t.Fatalf("audit record %+v: want Applied, kept keep, deleted drop", rec)
	}
	holdKept := func(d time.Duration) {
		t.Helper()
		testwait.Holds(t, d, "the protected object is kept", func() error {
			if ok, err := exists(conn, "keep"); !ok {
				return fmt.Errorf("keep was pruned (%v)", err)
			}
			return nil
		})
		recs, err := auditOf(conn, removed)
		if err != nil || len(recs) != 1 {
			t.Fatalf("the kept object is reported again: %+v, %v", recs, err)
		}
	}
	holdKept(time.Second) // several full resyncs

	// A restart finds the kept object annotated with the source, but it is
	// no longer in the inventory: nothing is recorded again.
	stop()
	runSyncer(t, conn, conn.Objects, r, 300*time.Millisecond)
	holdKept(1500 * time.Millisecond)

	// Declared again, without the protection: the source takes it back,
	// and a later removal deletes it.
	r.write("keep.yaml", configMap("keep", ""))
	back := r.commit("declare keep again")
	testwait.For(t, 10*time.Second, "the restart audited", func() error {
		recs, err := auditOf(conn, back)
		if err != nil || len(recs) != 1 || recs[0].Result != gitops.ResultApplied {
			return fmt.Errorf("records %+v, %v", recs, err)
		}
		if !changeOf(recs[0], "updated", "keep") {
			return fmt.Errorf("keep not updated: %+v", recs[0])
		}
		return nil
	})
	r.git("rm", "-q", "keep.yaml")
	r.commit("remove keep again")
	testwait.For(t, 10*time.Second, "keep pruned once unprotected", func() error {
		if ok, err := exists(conn, "keep"); ok || err != nil {
			return fmt.Errorf("keep still there (%v)", err)
		}
		return nil
	})
	if ok, _ := exists(conn, "stay"); !ok {
		t.Fatal("stay was deleted")
	}
}

// failingDeletes fails Delete of keys containing match while fail > 0.
type failingDeletes struct {
	bus.Store
	match string
	fail  atomic.Int32
	tries atomic.Int32
}

func (f *failingDeletes) Delete(ctx context.Context, key string, rev uint64) error {
	if strings.Contains(key, f.match) {
		f.tries.Add(1)
		if f.fail.Add(-1) >= 0 {
			return errors.New("injected delete failure")
		}
	}
	return f.Store.Delete(ctx, key, rev)
}

// TestFailedDeleteIsRetried: a prune whose delete fails leaves the object
// in the inventory; the attempt is recorded as Failed and the delete is
// retried until it succeeds, then recorded as Applied.
func TestFailedDeleteIsRetried(t *testing.T) {
	t.Parallel()
	conn := startBus(t)
	store := &failingDeletes{Store: conn.Objects, match: "ConfigMap.default.drop"}
	r := newRepo(t)
	r.write("drop.yaml", configMap("drop", ""))
	r.write("stay.yaml", configMap("stay", ""))
	r.commit("two config maps")
	runSyncer(t, conn, store, r, 300*time.Millisecond)
	testwait.For(t, 10*time.Second, "drop synced", func() error {
		if ok, err := exists(conn, "drop"); !ok {
			return fmt.Errorf("drop missing (%v)", err)
		}
		return nil
	})
	store.fail.Store(2)
	r.git("rm", "-q", "drop.yaml")
	removed := r.commit("remove drop")
	testwait.For(t, 15*time.Second, "the delete retried", func() error {
		if ok, err := exists(conn, "drop"); ok || err != nil {
			return fmt.Errorf("drop still there after %d tries (%v)", store.tries.Load(), err)
		}
		return nil
	})
	if n := store.tries.Load(); n != 3 {
		t.Errorf("%d delete attempts, want 3 (two failures, then success)", n)
	}
	testwait.For(t, 10*time.Second, "the retried delete audited", func() error {
		recs, err := auditOf(conn, removed)
		if err != nil {
			return err
		}
		var results []string
		for _, r := range recs {
			results = append(results, r.Result)
		}
		if len(recs) < 2 || recs[0].Result != gitops.ResultFailed || !strings.Contains(strings.Join(recs[0].Errors, " "), "injected delete failure") {
			return fmt.Errorf("results %v: want Failed first", results)
		}
		last := recs[len(recs)-1]
		if last.Result != gitops.ResultApplied || !changeOf(last, "deleted", "drop") {
			return fmt.Errorf("results %v, last %+v: want Applied with drop deleted last", results, last)
		}
		return nil
	})
	if ok, _ := exists(conn, "stay"); !ok {
		t.Fatal("stay was deleted")
	}
}
