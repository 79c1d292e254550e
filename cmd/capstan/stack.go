package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/capstan-io/capstan/node/dataplane"
)

// sharedStack are the flags the control plane and the node daemon both
// have. stackFlags, which configure the long-running commands, hold them
// through nodeStack (stack_podman.go; in the serveronly build,
// stack_serveronly.go), and in the full and serveronly builds the control
// plane's flags too (stack_full.go; stack_nodeonly.go has the node's alone).
type sharedStack struct {
	dataDir       string
	serviceCIDR   *pflag.Flag
	serviceCIDRv6 string // "auto", "none" or a range: see v6Range
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "capstan")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "capstan")
	}
	return ".capstan"
}

// serviceCIDRv6Flag adds --service-cidr-v6 once (up has both the control
// plane's and the data plane's flags).
func (f *stackFlags) serviceCIDRv6Flag(cmd *cobra.Command) {
	if cmd.Flags().Lookup("service-cidr-v6") == nil {
		cmd.Flags().StringVar(&f.serviceCIDRv6, "service-cidr-v6", "auto", "IPv6 range of the Services' second (dual-stack) cluster IPs: \"auto\" is "+
			dataplane.DefaultServiceCIDRv6+" where this host has IPv6, \"none\" turns IPv6 off (must match between the control plane and the nodes)")
	}
}

// v6Range resolves --service-cidr-v6: "" when IPv6 is off.
func (f *stackFlags) v6Range() string {
	switch f.serviceCIDRv6 {
	case "auto":
		if dataplane.HostHasIPv6() {
			return dataplane.DefaultServiceCIDRv6
		}
		return ""
	case "none":
		return ""
	}
	return f.serviceCIDRv6
}

// group runs parts until the first fails or ctx ends, then cancels the
// others and waits for them.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
	log    *slog.Logger
}

func newGroup(ctx context.Context, log *slog.Logger) *group {
	ctx, cancel := context.WithCancel(ctx)
	return &group{ctx: ctx, cancel: cancel, log: log}
}

func (g *group) Go(name string, fn func(context.Context) error) {
	g.wg.Go(func() {
		err := fn(g.ctx)
		if err != nil && g.ctx.Err() == nil {
			g.once.Do(func() { g.err = fmt.Errorf("%s: %w", name, err) })
			g.log.Error("stopped", "part", name, "err", err)
			g.cancel()
		}
	})
}

func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}
