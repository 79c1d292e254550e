package node_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/node"
)

// TestStreamsDenied: a viewer asking a node for logs or exec is told at
// once that its identity may not, not that no node answered.
func TestStreamsDenied(t *testing.T) {
	t.Parallel()
	b := natsauthtest.Start(t)
	viewer := b.Raw(t, natsauth.RoleViewer, "vic")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := node.FetchLogs(ctx, viewer, "n1", node.LogRequest{Namespace: "default", Pod: "p"}, io.Discard); !errors.Is(err, node.ErrDenied) {
		t.Errorf("logs as a viewer: %v, want ErrDenied", err)
	}
	if _, err := node.RemoteExec(ctx, viewer, "n1", node.ExecRequest{Namespace: "default", Pod: "p", Command: []string{"true"}}, io.Discard, io.Discard); !errors.Is(err, node.ErrDenied) {
		t.Errorf("exec as a viewer: %v, want ErrDenied", err)
	}
}
