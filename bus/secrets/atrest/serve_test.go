package atrest

import (
	"errors"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
)

func TestRevealAndRotateOverNATS(t *testing.T) {
	t.Parallel()
	// The production bus: an admin may ask for Secret values, a viewer
	// may not publish to capstan.secrets.>.
	b := natsauthtest.Start(t)
	s, _ := newStore(t)
	ctx := testCtx(t)
	plain := secretJSON(t, "prod", "db", map[string]string{"password": "pw-over-nats"}, nil)
	if _, err := s.Create(ctx, "Secret.prod.db", plain); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "Secret.default.other", secretJSON(t, "default", "other", map[string]string{"k": "v"}, nil)); err != nil {
		t.Fatal(err)
	}
	admin := b.Raw(t, natsauth.RoleAdmin, "admin")
	viewer := b.Raw(t, natsauth.RoleViewer, "viewer")

	// Before the control plane serves, a request is refused at once.
	if _, err := Reveal(ctx, admin, RevealRequest{Namespace: "prod", Name: "db"}); !errors.Is(err, ErrRefused) {
		t.Fatalf("no responders: %v, want ErrRefused", err)
	}

	cp := b.ControlPlane.NC
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
