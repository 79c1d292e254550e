package natsauth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/internal/testwait"
)

// TestCluster runs three production-configured members on loopback: a
// stranger with its own CA is refused, and the bus outlives the member its
// client is connected to, which catches up when it comes back.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of three")
	}
	start := time.Now()
	c := natsauthtest.StartCluster(t, 3)
	t.Logf("cluster up and set up in %s", time.Since(start))
	ctx := context.Background()
	cp := c.ControlPlane

	for _, name := range []string{"KV_" + bus.BucketObjects, "KV_" + natsbus.AssignmentsBucket(0), natsbus.StreamEvents, natsbus.StreamAudit} {
		st, err := cp.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("%s has %d replicas, want 3", name, r)
		}
	}

	// A stranger routes to every member: one with a CA of its own, one
	// without TLS. Each is refused in the handshake and never leads.
	refused := func() int {
		n := 0
		for _, m := range c.Members {
			n += m.Log.Count("TLS route handshake error")
		}
		return n
	}
	var routes []string
	for _, m := range c.Members {
		routes = append(routes, m.ClusterURL)
	}
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"a stranger with its own CA cannot join", true}, {"a stranger without TLS cannot join", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := natsbus.ServerOptions{
				DataDir: filepath.Join(dir, "bus", "js"), Port: -1, ServerName: "stranger",
				Logger: slog.New(&natsauthtest.LogRecorder{}), ClusterPort: natsauthtest.FreePorts(t, 1)[0], Routes: routes,
			}
			if tc.tls { // its own operator and CA
				setup, err := natsauth.PrepareCluster(dir, natsauth.ServerHosts("127.0.0.1"))
				if err != nil {
					t.Fatal(err)
				}
				opts.ConfigFile = setup.ConfigFile
			}
			srv, err := natsbus.NewServer(opts)
			if err != nil {
				t.Fatal(err)
			}
			before := refused()
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			err = srv.Start(sctx)
			if err == nil || !strings.Contains(err.Error(), "no JetStream leader") {
				t.Fatalf("the stranger started: %v", err)
			}
			testwait.For(t, 10*time.Second, "the members refuse the stranger's routes", func() error {
				if n := refused() - before; n < len(c.Members) {
					return fmt.Errorf("%d refused routes logged", n)
				}
				return nil
			})
			for _, m := range c.Members {
				var want []string
				for _, o := range c.Members {
					if o != m {
						want = append(want, o.Name())
					}
				}
				if got := m.Server().Peers(); !slices.Equal(got, want) {
					t.Errorf("%s is routed to %v, want %v", m.Name(), got, want)
				}
			}
		})
	}

	t.Run("a member goes and comes back", func(t *testing.T) {
		put := func(key, value string) uint64 {
			t.Helper()
			var rev uint64
			testwait.For(t, 30*time.Second, "write "+key, func() error {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				var err error
				rev, err = cp.Objects.Put(pctx, key, []byte(value))
				return err
			})
			return rev
		}
		get := func(s bus.Store, key, want string) error {
			gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			e, err := s.Get(gctx, key)
			if err != nil {
				return err
			}
			if string(e.Value) != want {
				return fmt.Errorf("%s is %q, want %q", key, e.Value, want)
			}
			return nil
		}
		put("before", "1")
		// A read is a direct get, which any replica may answer: one a
		// write has not reached yet says the key is missing. On R3 a
		// read right after a write is eventually, not at once, the write.
		testwait.For(t, 10*time.Second, "read", func() error { return get(cp.Objects, "before", "1") })

		victim := c.Member(cp.NC.ConnectedServerName())
		if victim == nil {
			t.Fatalf("connected to %q, no member", cp.NC.ConnectedServerName())
		}
		stopped := time.Now()
		victim.Stop()
		testwait.For(t, 30*time.Second, "the client reconnects to another member", func() error {
			if name := cp.NC.ConnectedServerName(); !cp.NC.IsConnected() || name == victim.Name() {
				return fmt.Errorf("connected %v to %q", cp.NC.IsConnected(), name)
			}
			return nil
		})
		rev := put("while-down", "2")
		testwait.For(t, 30*time.Second, "read without "+victim.Name(), func() error {
			return errors.Join(get(cp.Objects, "before", "1"), get(cp.Objects, "while-down", "2"))
		})
		t.Logf("wrote and read %s after stopping %s", time.Since(stopped), victim.Name())

		restarted := time.Now()
		victim.Restart(t)
		acc := victim.Setup.Authority.AccountKey()
		testwait.For(t, 30*time.Second, victim.Name()+" catches up", func() error {
			seq, ok := victim.Server().LastSeq(acc, "KV_"+bus.BucketObjects)
			if !ok || seq < rev {
				return fmt.Errorf("its copy of the objects is at %d (has one: %v), want %d", seq, ok, rev)
			}
			return nil
		})
		t.Logf("%s caught up %s after its restart", victim.Name(), time.Since(restarted))

		ca, err := victim.Setup.PKI.CAPEM()
		if err != nil {
			t.Fatal(err)
		}
		creds, err := victim.Setup.Authority.NewCreds("reader", natsauth.RoleControlPlane, 0)
		if err != nil {
			t.Fatal(err)
		}
		nopts, err := natsauth.ClientOptionsFunc(ca, func() (natsauth.Creds, error) { return creds, nil })
		if err != nil {
			t.Fatal(err)
		}
		r, err := natsbus.Connect(ctx, victim.URL, natsbus.Options{NATSOptions: nopts, Bind: true})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if name := r.NC.ConnectedServerName(); name != victim.Name() {
			t.Fatalf("reader connected to %s, want %s", name, victim.Name())
		}
		testwait.For(t, 10*time.Second, "read from "+victim.Name(), func() error { return get(r.Objects, "while-down", "2") })
	})
}
