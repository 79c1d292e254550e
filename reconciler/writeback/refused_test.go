package writeback

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
)

// A viewer may not ask for a write-back: the bus refuses the request and
// the CLI says so at once, not after the write's two-minute timeout.
func TestRequestRefusedForViewers(t *testing.T) {
	b := natsauthtest.Start(t)
	creds, err := natsauth.ParseCreds([]byte(b.Config(t, natsauth.RoleViewer, "viewer-1").Creds))
	if err != nil {
		t.Fatal(err)
	}
	nc := b.Raw(t, natsauth.RoleViewer, "viewer-1")
	n := int32(2)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = Request(ctx, nc, &creds, Change{Kind: "Deployment", Namespace: "default", Name: "web", Replicas: &n, Author: "Vi <vi@example.com>"})
	var ue UserError
	if !errors.As(err, &ue) || !strings.Contains(ue.Msg, "may not ask for a write-back") {
		t.Fatalf("viewer: %v, want the refusal", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the refusal came only when the request timed out")
	}
}
