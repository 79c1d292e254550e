//go:build serveronly

package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/capstan-io/capstan/bus/natsbus"
)

// nodeStack has no node flags in this build: it runs no node.
type nodeStack struct {
	sharedStack
}

// runNode is not in the serveronly build (bin/capstan-server), which has
// no command that runs a node: it links no Podman bindings.
func (f *stackFlags) runNode(context.Context, *group, *natsbus.Conn, *slog.Logger) (func() error, error) {
	return nil, errors.New("this build (capstan-server) runs no node: use capstan up or capstan-node")
}
