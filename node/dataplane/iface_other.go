//go:build !linux

package dataplane

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
)

// Interface holds the data plane's addresses on a local link; only Linux
// has it.
type Interface struct {
	Name  string
	Owned []netip.Prefix
	Log   *slog.Logger
}

// Sync fails outside Linux.
func (i *Interface) Sync(context.Context, []netip.Addr) error {
	return errors.New("dataplane: local addresses need Linux (netlink)")
}

// Delete does nothing outside Linux.
func (i *Interface) Delete() error { return nil }
