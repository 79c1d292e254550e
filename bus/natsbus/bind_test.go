package natsbus

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/internal/testwait"
)

// logLine is a log's writer that closes seen at the first line holding
// want.
type logLine struct {
	want string
	once sync.Once
	seen chan struct{}
}

func (l *logLine) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(l.want)) {
		l.once.Do(func() { close(l.seen) })
	}
	return len(p), nil
}

// TestBind checks that a client of a bus the control plane set up binds
// to its buckets without the right to create or change streams, and that
// before the set-up it is told so, by name.
func TestBind(t *testing.T) {
	t.Parallel()
	// A server with two users: the control plane's, and a node's that may
	// use JetStream but not create, update or delete a stream.
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "cp", Password: "cp-pass"},
			{Username: "node", Password: "node-pass", Permissions: &server.Permissions{Publish: &server.SubjectPermission{
				Allow: []string{">"},
				Deny:  []string{"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>"},
			}}},
		},
	})
	require_NoError(t, err)
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := ns.ClientURL()
	node := Options{User: "node", Password: "node-pass", Bind: true}

	_, err = Connect(testCtx(t), url, node)
	if !errors.Is(err, ErrNotSetUp) || !strings.Contains(err.Error(), "objects") || !strings.Contains(err.Error(), "assignments-15") {
		t.Fatalf("binding before the set-up: got %v, want ErrNotSetUp naming the buckets", err)
	}
	// Without Bind the node would create the buckets: it may not.
	short, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
	defer cancel()
	if c, err := Connect(short, url, Options{User: "node", Password: "node-pass"}); err == nil {
		c.Close()
		t.Fatal("the node user created the buckets: the permissions test nothing")
	}

	// A bound client started first waits for the control plane, and
	// says so.
	waiting := &logLine{want: "waiting for the control plane", seen: make(chan struct{})}
	bound := make(chan *Conn, 1)
	go func() {
		c, err := ConnectBound(testCtx(t), url, Options{User: "node", Password: "node-pass", Logger: slog.New(slog.NewTextHandler(waiting, nil))})
		if err != nil {
			t.Errorf("ConnectBound: %v", err)
		}
		bound <- c
	}()
	testwait.For(t, 10*time.Second, "ConnectBound waiting for the control plane", func() error {
		select {
		case <-waiting.seen:
			return nil
		case <-bound:
			t.Fatal("ConnectBound returned before the set-up")
			return nil
		default:
			return errors.New("not waiting yet")
		}
	})
	cp, err := Connect(testCtx(t), url, Options{User: "cp", Password: "cp-pass"})
	require_NoError(t, err)
	t.Cleanup(cp.Close)
	var nc *Conn
	select {
	case nc = <-bound:
	case <-time.After(30 * time.Second):
		t.Fatal("ConnectBound did not connect once the buckets were set up")
	}
	if nc == nil {
		t.FailNow()
	}
	t.Cleanup(nc.Close)

	// Both see one store.
	ctx := testCtx(t)
	if _, err := nc.Status.Put(ctx, "n1.default.web", []byte("running")); err != nil {
		t.Fatal(err)
	}
	if e, err := cp.Status.Get(ctx, "n1.default.web"); err != nil || string(e.Value) != "running" {
		t.Fatalf("the control plane reads %v, %v", e, err)
	}
	if _, err := cp.Assignments.Put(ctx, "n1.default.web", []byte("pod")); err != nil {
		t.Fatal(err)
	}
	if e, err := nc.Assignments.Get(ctx, "n1.default.web"); err != nil || string(e.Value) != "pod" {
		t.Fatalf("the node reads %v, %v", e, err)
	}
	if _, err := nc.Objects.Get(ctx, "Pod.default.none"); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("got %v, want not found", err)
	}
}
