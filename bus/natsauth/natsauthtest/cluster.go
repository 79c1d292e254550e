package natsauthtest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
)

// Cluster is n production-configured servers on loopback, routed to one
// another over TLS and sharing one trust (natsauth.CopyTrust), with the
// control plane connected to all of them.
type Cluster struct {
	Members []*Member
	// ControlPlane is connected as the control plane to every member's
	// URL; it has set up the buckets (R3 with three members).
	ControlPlane *natsbus.Conn
	cp           atomic.Pointer[natsauth.Creds]
}

// Member is one server of a Cluster.
type Member struct {
	Setup   *natsauth.Setup
	DataDir string
	// URL is the client URL, ClusterURL the one peers route to; both
	// stay the same across a restart.
	URL, ClusterURL string
	// Log records the server's log lines, across restarts.
	Log  *LogRecorder
	opts natsbus.ServerOptions
	mu   sync.Mutex
	srv  *natsbus.Server // nil while stopped
}

// StartCluster starts n servers named member-0 and so on, each in a
// temporary directory, and waits until JetStream has a leader; they stop at
// the end of the test.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ports := FreePorts(t, 2*n)
	c := &Cluster{}
	var routes []string
	for i := range n {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[n+i]))
	}
	for i := range n {
		dir := t.TempDir()
		if i > 0 {
			if err := natsauth.CopyTrust(c.Members[0].DataDir, dir); err != nil {
				t.Fatal(err)
			}
		}
		setup, err := natsauth.PrepareCluster(dir, natsauth.ServerHosts("127.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		m := &Member{Setup: setup, DataDir: dir, Log: &LogRecorder{}, URL: "nats://127.0.0.1:" + strconv.Itoa(ports[i]), ClusterURL: routes[i]}
		m.opts = natsbus.ServerOptions{
			DataDir:     filepath.Join(dir, "bus", "js"),
			Port:        ports[i],
			ServerName:  fmt.Sprintf("member-%d", i),
			ConfigFile:  setup.ConfigFile,
			Logger:      slog.New(m.Log),
			ClusterPort: ports[n+i],
			Routes:      routes,
		}
		c.Members = append(c.Members, m)
	}
	// A member's Start returns once a majority is up: start them together.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.Members {
		wg.Go(func() { errs[i] = m.start() })
	}
	wg.Wait()
	for _, m := range c.Members {
		t.Cleanup(m.Stop)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	creds, err := c.Members[0].Setup.Authority.NewCreds("control-plane", natsauth.RoleControlPlane, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.cp.Store(&creds)
	c.ControlPlane = connectControlPlane(t, c.Members[0].Setup, c.URLs(), &c.cp)
	return c
}

// URLs is the members' client URLs, comma-separated.
func (c *Cluster) URLs() string {
	var urls []string
	for _, m := range c.Members {
		urls = append(urls, m.URL)
	}
	return strings.Join(urls, ",")
}

// Member returns the member named name, or nil.
func (c *Cluster) Member(name string) *Member {
	for _, m := range c.Members {
		if m.opts.ServerName == name {
			return m
		}
	}
	return nil
}

// Name is the member's server name.
func (m *Member) Name() string { return m.opts.ServerName }

// Server is the running server, or nil while the member is stopped.
func (m *Member) Server() *natsbus.Server {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.srv
}

func (m *Member) start() error {
	srv, err := natsbus.NewServer(m.opts)
	if err != nil {
		return err
	}
	if err := srv.Start(context.Background()); err != nil {
		return fmt.Errorf("%s: %w", m.Name(), err)
	}
	m.mu.Lock()
	m.srv = srv
	m.mu.Unlock()
	return nil
}

// Stop shuts the member's server down; it keeps its data dir.
func (m *Member) Stop() {
	m.mu.Lock()
	srv := m.srv
	m.srv = nil
	m.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
	}
}

// Restart starts a stopped member again, on its data dir and ports; it
// returns once the server knows JetStream's leader.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	if err := m.start(); err != nil {
		t.Fatal(err)
	}
}

// FreePorts returns n distinct loopback TCP ports free a moment ago: for
// servers that must keep their ports across a restart, or be named in
// their peers' routes before they start.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// LogRecorder is a slog handler that keeps the messages logged to it.
type LogRecorder struct {
	mu    sync.Mutex
	lines []string
}

// Enabled, Handle, WithAttrs and WithGroup make it a slog.Handler.
func (r *LogRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *LogRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, rec.Message)
	return nil
}
func (r *LogRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *LogRecorder) WithGroup(string) slog.Handler      { return r }

// Count returns how many lines recorded contain sub.
func (r *LogRecorder) Count(sub string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}
