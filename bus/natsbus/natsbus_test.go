package natsbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/storetest"
	"github.com/capstan-io/capstan/manifests"
)

func require_NoError(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startServer runs an embedded server on a free port in dir.
func startServer(t testing.TB, dir string, syncAlways bool) *Server {
	t.Helper()
	s, err := NewServer(ServerOptions{DataDir: dir, Port: -1, SyncAlways: syncAlways})
	require_NoError(t, err)
	require_NoError(t, s.Start(testCtx(t)))
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t testing.TB, s *Server, opts Options) *Conn {
	t.Helper()
	c, err := Connect(testCtx(t), s.ClientURL(), opts)
	require_NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func TestContract(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir(), false)
	c := connect(t, srv, Options{})
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) bus.Store {
		kv, err := c.JS.CreateKeyValue(testCtx(t), jetstream.KeyValueConfig{
			Bucket:  fmt.Sprintf("contract%d", n.Add(1)),
			Storage: jetstream.FileStorage,
		})
		require_NoError(t, err)
		return NewKV(kv)
	})
}

// The sharded store keeps the contract, with its keys spread over the
// buckets (storetest's keys have several first tokens).
func TestShardedContract(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir(), false)
	c := connect(t, srv, Options{})
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) bus.Store {
		kvs := make([]*KV, 3)
		for i := range kvs {
			kv, err := c.JS.CreateKeyValue(testCtx(t), jetstream.KeyValueConfig{
				Bucket:  fmt.Sprintf("sharded%d-%d", n.Add(1), i),
				Storage: jetstream.FileStorage,
			})
			require_NoError(t, err)
			kvs[i] = NewKV(kv)
		}
		return NewSharded(kvs)
	})
}

// A node's keys share a bucket, and the buckets share the keys.
func TestShardOf(t *testing.T) {
	t.Parallel()
	per := map[int]int{}
	for i := range 1000 {
		per[ShardOf(fmt.Sprintf("sim-%04d", i), AssignmentShards)]++
	}
	if len(per) != AssignmentShards {
		t.Fatalf("1000 nodes fill %d of %d buckets", len(per), AssignmentShards)
	}
	for i, n := range per {
		if n < 1000/AssignmentShards/2 {
			t.Errorf("bucket %d holds %d of 1000 nodes", i, n)
		}
	}
	c := connect(t, startServer(t, t.TempDir(), false), Options{})
	ctx := testCtx(t)
	_, err := c.Assignments.Put(ctx, "node-a.default.web", []byte("x"))
	require_NoError(t, err)
	want := AssignmentsBucket(ShardOf("node-a", AssignmentShards))
	kv, err := c.JS.KeyValue(ctx, want)
	require_NoError(t, err)
	if _, err := kv.Get(ctx, "node-a.default.web"); err != nil {
		t.Errorf("node-a's assignment is not in %s: %v", want, err)
	}
}

// A failed Update must be a conflict, not "exists": JetStream reports both
// with the same code.
func TestConflictIsNotExists(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, t.TempDir(), false), Options{})
	ctx := testCtx(t)
	rev, err := c.Objects.Create(ctx, "Pod.default.web", []byte("a"))
	require_NoError(t, err)
	_, err = c.Objects.Update(ctx, "Pod.default.web", []byte("b"), rev)
	require_NoError(t, err)
	_, err = c.Objects.Update(ctx, "Pod.default.web", []byte("c"), rev)
	if !errors.Is(err, bus.ErrConflict) || errors.Is(err, bus.ErrExists) {
		t.Fatalf("stale Update error = %v, want ErrConflict only", err)
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		t.Fatalf("stale Update error %v does not keep the API error", err)
	}
	_, err = c.Objects.Create(ctx, "Pod.default.web", []byte("d"))
	if !errors.Is(err, bus.ErrExists) || errors.Is(err, bus.ErrConflict) {
		t.Fatalf("Create of an existing key error = %v, want ErrExists only", err)
	}
}

func TestBucketsAndStreams(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, t.TempDir(), false), Options{})
	ctx := testCtx(t)
	for _, name := range []string{bus.BucketObjects, AssignmentsBucket(0), AssignmentsBucket(AssignmentShards - 1), bus.BucketStatus, bus.BucketNodes, bus.BucketLeases, bus.BucketNotified} {
		kv, err := c.JS.KeyValue(ctx, name)
		require_NoError(t, err)
		st, err := kv.Status(ctx)
		require_NoError(t, err)
		info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
		if info.Config.Storage != jetstream.FileStorage {
			t.Errorf("bucket %s storage = %v, want file", name, info.Config.Storage)
		}
		wantTTL := time.Duration(0)
		switch name {
		case bus.BucketLeases:
			wantTTL = DefaultLeaseTTL
		case bus.BucketNotified:
			wantTTL = 30 * 24 * time.Hour
		}
		if st.TTL() != wantTTL {
			t.Errorf("bucket %s TTL = %v, want %v", name, st.TTL(), wantTTL)
		}
	}
	audit, err := c.JS.Stream(ctx, StreamAudit)
	require_NoError(t, err)
	if cfg := audit.CachedInfo().Config; cfg.MaxAge != 0 || cfg.MaxBytes != DefaultAuditMaxBytes || cfg.Storage != jetstream.FileStorage {
		t.Errorf("audit stream config: max age %v, max bytes %d, storage %v", cfg.MaxAge, cfg.MaxBytes, cfg.Storage)
	}
	events, err := c.JS.Stream(ctx, StreamEvents)
	require_NoError(t, err)
	if cfg := events.CachedInfo().Config; cfg.MaxAge != DefaultEventsMaxAge || cfg.MaxMsgsPerSubject != DefaultEventsPerObject {
		t.Errorf("events stream config: max age %v, per subject %d", cfg.MaxAge, cfg.MaxMsgsPerSubject)
	}
	// Connecting again with the same options updates nothing and fails nothing.
	c2, err := Connect(ctx, c.NC.ConnectedUrl(), Options{})
	require_NoError(t, err)
	c2.Close()
}

// A bus an older Capstan wrote keeps its one assignments bucket until the
// control plane drops it; the sharded buckets stay.
func TestDropLegacy(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, t.TempDir(), false), Options{})
	ctx := testCtx(t)
	old, err := c.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketAssignments})
	require_NoError(t, err)
	_, err = old.Put(ctx, "n1.default.web", []byte("{}"))
	require_NoError(t, err)
	dropped, err := c.DropLegacy(ctx)
	require_NoError(t, err)
	if !slices.Equal(dropped, []string{bus.BucketAssignments}) {
		t.Fatalf("dropped %v, want the assignments bucket", dropped)
	}
	if _, err := c.JS.KeyValue(ctx, bus.BucketAssignments); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("the legacy bucket is still there: %v", err)
	}
	if _, err := c.JS.KeyValue(ctx, AssignmentsBucket(0)); err != nil {
		t.Fatalf("a sharded assignments bucket went with it: %v", err)
	}
	if dropped, err := c.DropLegacy(ctx); err != nil || len(dropped) != 0 {
		t.Fatalf("dropping again: %v, %v; want nothing and no error", dropped, err)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, t.TempDir(), false), Options{EventsPerObject: 5})
	ctx := testCtx(t)
	record := func(kind, ns, name, reason string) {
		t.Helper()
		require_NoError(t, c.Events.Record(ctx, manifests.Event{Kind: kind, Namespace: ns, Name: name, Type: "Normal", Reason: reason}))
	}
	// "web.v1" and "web=2Ev1" share a subject token; the JSON tells them apart.
	for i := range 8 {
		record("Pod", "default", "web.v1", fmt.Sprint("r", i))
	}
	record("Pod", "default", "web=2Ev1", "other")
	record("Pod", "default", "web", "plain")
	record("Node", "", "n1", "ready")

	evs, err := c.Events.List(ctx, "Pod", "default", "web.v1")
	require_NoError(t, err)
	var reasons []string
	for _, ev := range evs {
		reasons = append(reasons, ev.Reason)
		if ev.Time == nil {
			t.Errorf("event %s has no time", ev.Reason)
		}
	}
	if want := []string{"r3", "r4", "r5", "r6", "r7"}; !slices.Equal(reasons, want) {
		t.Fatalf("events of web.v1 = %v, want the last five %v", reasons, want)
	}
	evs, err = c.Events.List(ctx, "Node", "", "n1")
	require_NoError(t, err)
	if len(evs) != 1 || evs[0].Reason != "ready" {
		t.Fatalf("events of node n1 = %+v", evs)
	}
	evs, err = c.Events.List(ctx, "Pod", "default", "none")
	require_NoError(t, err)
	if len(evs) != 0 {
		t.Fatalf("events of a pod without any = %+v", evs)
	}
}

func TestAudit(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, t.TempDir(), false), Options{})
	ctx := testCtx(t)
	appendRec := func(source, rev string) {
		t.Helper()
		require_NoError(t, c.Audit.Append(ctx, manifests.AuditRecord{Source: source, Revision: rev, Result: "Applied"}))
	}
	revs := func(recs []manifests.AuditRecord) []string {
		var out []string
		for _, r := range recs {
			out = append(out, r.Source+"@"+r.Revision)
		}
		return out
	}
	all, err := c.Audit.List(ctx, "", time.Time{})
	require_NoError(t, err)
	if len(all) != 0 {
		t.Fatalf("empty audit lists %v", revs(all))
	}
	appendRec("apps", "1")
	appendRec("infra.prod", "1")
	since := time.Now()
	appendRec("apps", "2")
	appendRec("infra.prod", "2")

	all, err = c.Audit.List(ctx, "", time.Time{})
	require_NoError(t, err)
	if want := []string{"apps@1", "infra.prod@1", "apps@2", "infra.prod@2"}; !slices.Equal(revs(all), want) {
		t.Fatalf("all records = %v, want %v", revs(all), want)
	}
	got, err := c.Audit.List(ctx, "infra.prod", time.Time{})
	require_NoError(t, err)
	if want := []string{"infra.prod@1", "infra.prod@2"}; !slices.Equal(revs(got), want) {
		t.Fatalf("infra.prod records = %v, want %v", revs(got), want)
	}
	got, err = c.Audit.List(ctx, "", since)
	require_NoError(t, err)
	if want := []string{"apps@2", "infra.prod@2"}; !slices.Equal(revs(got), want) {
		t.Fatalf("records since = %v, want %v", revs(got), want)
	}
	got, err = c.Audit.List(ctx, "apps", since)
	require_NoError(t, err)
	if want := []string{"apps@2"}; !slices.Equal(revs(got), want) {
		t.Fatalf("apps records since = %v, want %v", revs(got), want)
	}
	got, err = c.Audit.List(ctx, "", time.Now().Add(time.Hour))
	require_NoError(t, err)
	if len(got) != 0 {
		t.Fatalf("records from the future = %v", revs(got))
	}
}

func TestLeaseExpires(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, t.TempDir(), false), Options{LeaseTTL: time.Second})
	ctx := testCtx(t)
	ch, err := c.Leases.Watch(ctx, ">")
	require_NoError(t, err)
	if e := <-ch; e.Op != bus.OpSynced {
		t.Fatalf("first entry = %+v", e)
	}
	_, err = c.Leases.Create(ctx, "scheduler", []byte("holder-1"))
	require_NoError(t, err)
	if e := <-ch; e.Op != bus.OpPut || e.Key != "scheduler" {
		t.Fatalf("entry after create = %+v", e)
	}
	select {
	case e := <-ch:
		if e.Op != bus.OpDelete || e.Key != "scheduler" {
			t.Fatalf("entry after expiry = %+v, want a delete", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lease expiry not watched")
	}
	_, err = c.Leases.Get(ctx, "scheduler")
	if !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("Get of an expired lease = %v, want ErrNotFound", err)
	}
	// A new holder can take it.
	_, err = c.Leases.Create(ctx, "scheduler", []byte("holder-2"))
	require_NoError(t, err)
}

func TestWatchEndsWhenConnectionCloses(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir(), false)
	c, err := Connect(testCtx(t), srv.ClientURL(), Options{})
	require_NoError(t, err)
	ch, err := c.Objects.Watch(context.Background(), ">")
	require_NoError(t, err)
	<-ch
	c.Close()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("entry after close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch channel still open after the connection closed")
	}
}

// A server restarted on the same data dir keeps the buckets and the audit.
func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := testCtx(t)

	srv, err := NewServer(ServerOptions{DataDir: dir, Port: -1})
	require_NoError(t, err)
	require_NoError(t, srv.Start(ctx))
	c, err := Connect(ctx, srv.ClientURL(), Options{})
	require_NoError(t, err)
	rev, err := c.Objects.Create(ctx, "Deployment.default.web", []byte(`{"replicas":3}`))
	require_NoError(t, err)
	_, err = c.Nodes.Put(ctx, "n1", []byte("ready"))
	require_NoError(t, err)
	require_NoError(t, c.Objects.Delete(ctx, "Deployment.default.gone", 0))
	require_NoError(t, c.Audit.Append(ctx, manifests.AuditRecord{Source: "apps", Revision: "abc123", Result: "Applied"}))
	c.Close()
	srv.Shutdown()

	srv = startServer(t, dir, false)
	c = connect(t, srv, Options{})
	e, err := c.Objects.Get(ctx, "Deployment.default.web")
	require_NoError(t, err)
	if string(e.Value) != `{"replicas":3}` || e.Revision != rev {
		t.Fatalf("object after restart = %q@%d, want @%d", e.Value, e.Revision, rev)
	}
	// Revisions keep growing from where they were.
	rev2, err := c.Objects.Update(ctx, "Deployment.default.web", []byte(`{"replicas":4}`), rev)
	require_NoError(t, err)
	if rev2 <= rev {
		t.Fatalf("revision after restart %d not after %d", rev2, rev)
	}
	if _, err := c.Nodes.Get(ctx, "n1"); err != nil {
		t.Fatalf("node after restart: %v", err)
	}
	recs, err := c.Audit.List(ctx, "apps", time.Time{})
	require_NoError(t, err)
	if len(recs) != 1 || recs[0].Revision != "abc123" {
		t.Fatalf("audit after restart = %+v", recs)
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", "_"},
		{"web-1", "web-1"},
		{"web.v1", "web=2Ev1"},
		{"a*b>c d", "a=2Ab=3Ec=20d"},
		{"x=y", "x=3Dy"},
		{"ünï", "=C3=BCn=C3=AF"},
	} {
		if got := token(tc.in); got != tc.want {
			t.Errorf("token(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := eventSubject("Pod", "", "a.b", "n1"); got != "capstan.events._.Pod.a=2Eb.n1" {
		t.Errorf("eventSubject = %q", got)
	}
}
