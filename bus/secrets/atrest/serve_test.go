package atrest

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// natsServer starts a server with an admin, who may publish anywhere, and
// a viewer, who may not publish to capstan.secrets.> (bus/natsauth's
// roles), and returns its URL.
func natsServer(t *testing.T) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "admin", Password: "admin-pass"},
			{Username: "viewer", Password: "viewer-pass", Permissions: &server.Permissions{Publish: &server.SubjectPermission{
				Allow: []string{">"}, Deny: []string{"capstan.secrets.>"}}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return ns.ClientURL()
}

func connectAs(t *testing.T, url, user, pass string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(user, pass))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestRevealAndRotateOverNATS(t *testing.T) {
	url := natsServer(t)
	s, _ := newStore(t)
	ctx := testCtx(t)
	plain := secretJSON(t, "prod", "db", map[string]string{"password": "pw-over-nats"}, nil)
	if _, err := s.Create(ctx, "Secret.prod.db", plain); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "Secret.default.other", secretJSON(t, "default", "other", map[string]string{"k": "v"}, nil)); err != nil {
		t.Fatal(err)
	}
	admin := connectAs(t, url, "admin", "admin-pass")
	viewer := connectAs(t, url, "viewer", "viewer-pass")

	// Before the control plane serves, a request is refused at once.
	if _, err := Reveal(ctx, admin, RevealRequest{Namespace: "prod", Name: "db"}); !errors.Is(err, ErrRefused) {
		t.Fatalf("no responders: %v, want ErrRefused", err)
	}

	cp := connectAs(t, url, "admin", "admin-pass")
	stop, err := s.Subscribe(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop serving: %v", err)
		}
	})
	if err := cp.Flush(); err != nil { // the subscriptions reached the server
		t.Fatal(err)
	}

	got, err := Reveal(ctx, admin, RevealRequest{Namespace: "prod", Name: "db"})
	if err != nil || len(got) != 1 || string(got[0].Data["password"]) != "pw-over-nats" || got[0].ResourceVersion == "" {
		t.Fatalf("reveal as admin: %v %+v", err, got)
	}
	all, err := Reveal(ctx, admin, RevealRequest{})
	if err != nil || len(all) != 2 {
		t.Fatalf("reveal all: %v, %d secrets", err, len(all))
	}
	if _, err := Reveal(ctx, admin, RevealRequest{Namespace: "*"}); err == nil {
		t.Fatal("a wildcard namespace was taken")
	}

	// A viewer is refused by the server, and told so before the timeout.
	start := time.Now()
	if _, err := Reveal(ctx, viewer, RevealRequest{Namespace: "prod", Name: "db"}); !errors.Is(err, ErrRefused) {
		t.Fatalf("reveal as viewer: %v, want ErrRefused", err)
	}
	if _, err := RequestRotate(ctx, viewer); !errors.Is(err, ErrRefused) {
		t.Fatalf("rotate as viewer: %v, want ErrRefused", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("refusals took %s: they waited for the timeout", d)
	}

	old := s.Keys().Current()
	res, err := RequestRotate(ctx, admin)
	if err != nil || res.Key == old || res.Reencrypted != 2 || len(res.Dropped) != 1 {
		t.Fatalf("rotate as admin: %+v %v", res, err)
	}
	if e, _ := s.Get(ctx, "Secret.prod.db"); string(e.Value) != string(plain) {
		t.Fatalf("after rotation: %s", e.Value)
	}
}
