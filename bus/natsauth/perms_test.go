package natsauth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/manifests"
)

// TestPermissions checks, against a real server with the production
// configuration, what every role may and may not do on the bus. A denied
// operation must fail with natsbus.ErrPermission, not time out.
func TestPermissions(t *testing.T) {
	t.Parallel()
	b := natsauthtest.Start(t)
	ctx := context.Background()
	cp := b.ControlPlane
	// Two nodes: n1 is the one under test; n2's keys must stay out of its
	// reach, and n3 shares n1's assignments bucket.
	n1, n2 := "n1", "n2"
	var n3 string
	for i := 0; n3 == ""; i++ {
		name := "m" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if natsbus.ShardOf(name, natsbus.AssignmentShards) == natsbus.ShardOf(n1, natsbus.AssignmentShards) {
			n3 = name
		}
	}
	for _, k := range []string{n1 + ".default.p1", n2 + ".default.p2", n3 + ".default.p3"} {
		if _, err := cp.Assignments.Put(ctx, k, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"Pod.default.p1", "Service.default.web", "Secret.default.db", "EndpointSlice.default.web-1"} {
		if _, err := cp.Objects.Put(ctx, k, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}

	conns := map[string]*natsbus.Conn{
		"admin":    b.Connect(t, natsauth.RoleAdmin, "alice", natsbus.Options{}),
		"operator": b.Connect(t, natsauth.RoleOperator, "bob", natsbus.Options{}),
		"viewer":   b.Connect(t, natsauth.RoleViewer, "carol", natsbus.Options{}),
		"node":     b.Connect(t, natsauth.RoleNode, n1, natsbus.Options{}),
	}

	type op struct {
		name string
		do   func(ctx context.Context, c *natsbus.Conn) error
	}
	put := func(s func(*natsbus.Conn) bus.Store, key string) func(context.Context, *natsbus.Conn) error {
		return func(ctx context.Context, c *natsbus.Conn) error {
			_, err := s(c).Put(ctx, key, []byte(`{}`))
			return err
		}
	}
	get := func(s func(*natsbus.Conn) bus.Store, key string) func(context.Context, *natsbus.Conn) error {
		return func(ctx context.Context, c *natsbus.Conn) error { _, err := s(c).Get(ctx, key); return err }
	}
	watch := func(s func(*natsbus.Conn) bus.Store, pattern string) func(context.Context, *natsbus.Conn) error {
		return func(ctx context.Context, c *natsbus.Conn) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch, err := s(c).Watch(ctx, pattern)
			if err != nil {
				return err
			}
			for e := range ch {
				if e.Op == bus.OpSynced {
					return nil
				}
			}
			return errors.New("watch closed before it synced")
		}
	}
	objects := func(c *natsbus.Conn) bus.Store { return c.Objects }
	assignments := func(c *natsbus.Conn) bus.Store { return c.Assignments }
	status := func(c *natsbus.Conn) bus.Store { return c.Status }
	nodes := func(c *natsbus.Conn) bus.Store { return c.Nodes }
	publish := func(subject string) func(context.Context, *natsbus.Conn) error {
		return func(ctx context.Context, c *natsbus.Conn) error { return publishChecked(ctx, c.NC, subject) }
	}
	subscribe := func(subject string) func(context.Context, *natsbus.Conn) error {
		return func(ctx context.Context, c *natsbus.Conn) error { return subscribeChecked(ctx, c.NC, subject) }
	}
	event := func(c *natsbus.Conn) error {
		return c.Events.Record(ctx, manifests.Event{Kind: "Pod", Namespace: "default", Name: "p1", Reason: "Test"})
	}
	ops := []op{
		{"put a Pod into objects", put(objects, "Pod.default.evil")},
		{"read a Pod", get(objects, "Pod.default.p1")},
		{"read a Service", get(objects, "Service.default.web")},
		{"watch the EndpointSlices", watch(objects, "EndpointSlice.>")},
		{"watch every object", watch(objects, ">")},
		{"watch n1's assignments", watch(assignments, n1+".>")},
		{"read n1's assignment", get(assignments, n1+".default.p1")},
		{"watch n2's assignments", watch(assignments, n2+".>")},
		{"read n2's assignment", get(assignments, n2+".default.p2")},
		{"watch n3's assignments (n1's bucket)", watch(assignments, n3+".>")},
		{"write n1's assignment", put(assignments, n1+".default.p9")},
		{"write n1's status", put(status, n1+".default.p1")},
		{"write n2's status", put(status, n2+".default.p2")},
		{"write n1's Node", put(nodes, n1)},
		{"write n2's Node", put(nodes, n2)},
		{"record an event", func(ctx context.Context, c *natsbus.Conn) error { return event(c) }},
		{"forge n2's event", publish(natsbus.EventsSubjectOf(n2)[:len("capstan.events.")] + "default.Pod.p1." + n2)},
		{"append to the audit stream", func(ctx context.Context, c *natsbus.Conn) error {
			return c.Audit.Append(ctx, manifests.AuditRecord{Source: "root", Revision: "x", Result: "Applied"})
		}},
		{"read the audit stream", func(ctx context.Context, c *natsbus.Conn) error {
			_, err := c.Audit.List(ctx, "", time.Time{})
			return err
		}},
		{"request a git write-back", publish(natsauth.SubjectGitWrite)},
		{"ask n1 for logs", publish("capstan.logs." + n1)},
		{"ask n1 to exec", publish("capstan.exec." + n1)},
		{"issue credentials", publish(natsauth.AdminSubject(natsauth.VerbCredentialsCreate))},
		{"reveal a Secret", publish("capstan.secrets.reveal")},
		{"serve n1's logs", subscribe("capstan.logs." + n1)},
		{"serve n2's exec", subscribe("capstan.exec." + n2)},
		{"serve the git write-back", subscribe(natsauth.SubjectGitWrite)},
		{"serve joins", subscribe(natsauth.SubjectJoin)},
		{"read another's inbox", subscribe("_INBOX.control-plane.>")},
		{"delete the objects bucket", publish("$JS.API.STREAM.DELETE.KV_objects")},
		{"purge the objects bucket", publish("$JS.API.STREAM.PURGE.KV_objects")},
		{"change the audit stream", publish("$JS.API.STREAM.UPDATE.audit")},
		{"create a stream", publish("$JS.API.STREAM.CREATE.evil")},
	}
	// allowed[op] lists the roles that may; every other role must be refused.
	allowed := map[string][]string{
		"put a Pod into objects":               {"admin"},
		"read a Pod":                           {"admin", "operator", "viewer"},
		"read a Service":                       {"admin", "operator", "viewer", "node"},
		"watch the EndpointSlices":             {"admin", "operator", "viewer", "node"},
		"watch every object":                   {"admin", "operator", "viewer"},
		"watch n1's assignments":               {"admin", "operator", "viewer", "node"},
		"read n1's assignment":                 {"admin", "operator", "viewer", "node"},
		"watch n2's assignments":               {"admin", "operator", "viewer"},
		"read n2's assignment":                 {"admin", "operator", "viewer"},
		"watch n3's assignments (n1's bucket)": {"admin", "operator", "viewer"},
		"write n1's assignment":                {},
		"write n1's status":                    {"admin", "node"},
		"write n2's status":                    {"admin"},
		"write n1's Node":                      {"admin", "node"},
		"write n2's Node":                      {"admin"},
		"record an event":                      {"admin", "node"},
		"forge n2's event":                     {"admin"},
		"append to the audit stream":           {},
		"read the audit stream":                {"admin", "operator", "viewer"},
		"request a git write-back":             {"admin", "operator"},
		"ask n1 for logs":                      {"admin", "operator"},
		"ask n1 to exec":                       {"admin", "operator"},
		"issue credentials":                    {"admin"},
		"reveal a Secret":                      {"admin"},
		"serve n1's logs":                      {"admin", "node"},
		"serve n2's exec":                      {"admin"},
		"serve the git write-back":             {"admin"},
		"serve joins":                          {"admin"},
		"read another's inbox":                 {"admin"},
		"delete the objects bucket":            {},
		"purge the objects bucket":             {},
		"change the audit stream":              {},
		"create a stream":                      {},
	}
	for _, o := range ops {
		for _, role := range []string{"admin", "operator", "viewer", "node"} {
			want := false
			for _, r := range allowed[o.name] {
				want = want || r == role
			}
			t.Run(role+"/"+o.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				start := time.Now()
				err := o.do(ctx, conns[role])
				switch {
				case want && err != nil && !errors.Is(err, bus.ErrNotFound):
					t.Errorf("%s should be allowed: %v", role, err)
				case !want && err == nil:
					t.Errorf("%s was allowed: the server must refuse it", role)
				case !want && !errors.Is(err, natsbus.ErrPermission):
					t.Errorf("%s refused after %s with %v, want natsbus.ErrPermission", role, time.Since(start).Round(time.Millisecond), err)
				}
			})
		}
	}
}

// publishChecked publishes to subject and reports the server's refusal:
// a refused publish is announced asynchronously, so it flushes and then
// waits for either the refusal or a round trip that proves there was none.
func publishChecked(ctx context.Context, nc *nats.Conn, subject string) error {
	m := nats.NewMsg(subject)
	m.Data = []byte("{}")
	return natsbus.PublishChecked(nc, m, 5*time.Second)
}

func subscribeChecked(ctx context.Context, nc *nats.Conn, subject string) error {
	before := nc.LastError()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.FlushWithContext(ctx); err != nil {
		return err
	}
	// The server answers the flush after the subscription, so a refusal
	// has arrived: on the connection, or on the subscription.
	if err := nc.LastError(); err != nil && err != before && errors.Is(err, nats.ErrPermissionViolation) &&
		strings.Contains(err.Error(), `"`+subject+`"`) {
		return natsbus.ErrPermission
	}
	if _, err := sub.NextMsg(200 * time.Millisecond); errors.Is(err, nats.ErrPermissionViolation) {
		return natsbus.ErrPermission
	}
	return nil
}
