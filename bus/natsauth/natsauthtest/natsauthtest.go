// Package natsauthtest starts, inside a test, a NATS server configured
// as Capstan's production bus (operator mode, TLS, the authority's
// identities), and connects to it as any role; StartCluster starts
// several, routed to one another over TLS.
package natsauthtest

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
)

// Bus is a running server with its trust material; the control plane's
// connection has set up the buckets.
type Bus struct {
	Setup  *natsauth.Setup
	Server *natsbus.Server
	URL    string
	// ControlPlane is connected as the control plane, with credentials
	// read at every reconnection (RenewControlPlane).
	ControlPlane *natsbus.Conn
	dataDir      string
	cp           atomic.Pointer[natsauth.Creds]
}

// Start starts the server in a temporary directory; it stops at the end
// of the test.
func Start(t testing.TB) *Bus {
	t.Helper()
	dir := t.TempDir()
	setup, err := natsauth.Prepare(dir, natsauth.ServerHosts("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natsbus.NewServer(natsbus.ServerOptions{DataDir: filepath.Join(dir, "bus", "js"), Port: -1, ConfigFile: setup.ConfigFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	b := &Bus{Setup: setup, Server: srv, URL: srv.ClientURL(), dataDir: dir}
	if err := b.RenewControlPlane(); err != nil {
		t.Fatal(err)
	}
	b.ControlPlane = connectControlPlane(t, setup, b.URL, &b.cp)
	return b
}

// connectControlPlane connects to url as the control plane, with the
// credentials in cp read at every reconnection; it closes at the end of
// the test.
func connectControlPlane(t testing.TB, setup *natsauth.Setup, url string, cp *atomic.Pointer[natsauth.Creds]) *natsbus.Conn {
	t.Helper()
	ca, err := setup.PKI.CAPEM()
	if err != nil {
		t.Fatal(err)
	}
	nopts, err := natsauth.ClientOptionsFunc(ca, func() (natsauth.Creds, error) { return *cp.Load(), nil })
	if err != nil {
		t.Fatal(err)
	}
	c, err := natsbus.Connect(context.Background(), url, natsbus.Options{NATSOptions: nopts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// RenewControlPlane issues the control plane's credentials with the
// current signing key (as the control plane does after a rotation) and,
// once connected, reconnects with them.
func (b *Bus) RenewControlPlane() error {
	c, err := b.Setup.Authority.NewCreds("control-plane", natsauth.RoleControlPlane, 0)
	if err != nil {
		return err
	}
	b.cp.Store(&c)
	if b.ControlPlane != nil {
		return b.ControlPlane.NC.ForceReconnect()
	}
	return nil
}

// Config makes a client config for a new identity.
func (b *Bus) Config(t testing.TB, role, name string) *natsauth.ClientConfig {
	t.Helper()
	cfg, err := b.Setup.ClientConfig(b.URL, name, role)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Connect connects a new identity of role named name through natsbus
// (binding to the buckets unless it is the control plane).
func (b *Bus) Connect(t testing.TB, role, name string, opts natsbus.Options) *natsbus.Conn {
	t.Helper()
	cfg := b.Config(t, role, name)
	nopts, err := cfg.Options()
	if err != nil {
		t.Fatal(err)
	}
	opts.NATSOptions = append(opts.NATSOptions, nopts...)
	opts.Bind = role != natsauth.RoleControlPlane
	if role == natsauth.RoleNode {
		opts.EventWriter = name
	}
	c, err := natsbus.Connect(context.Background(), b.URL, opts)
	if err != nil {
		t.Fatalf("connect as %s %s: %v", role, name, err)
	}
	t.Cleanup(c.Close)
	return c
}

// Raw connects a new identity with nats.go alone.
func (b *Bus) Raw(t testing.TB, role, name string) *nats.Conn {
	t.Helper()
	cfg := b.Config(t, role, name)
	nopts, err := cfg.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(b.URL, nopts...)
	if err != nil {
		t.Fatalf("connect as %s %s: %v", role, name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
