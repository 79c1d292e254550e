package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
)

// TestExternalBusIdentities runs Capstan on a NATS server that an operator
// configured, as the README says: its configuration includes what
// `capstan auth server-config` prints; `capstan server --nats-url` then
// runs with the same identities: clients without credentials are refused,
// the admin config works, a node joins with a token and is held to its
// own keys.
func TestExternalBusIdentities(t *testing.T) {
	dataDir, natsDir := t.TempDir(), t.TempDir()
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	url := "nats://" + listen
	t.Setenv("CAPSTAN_CONFIG", filepath.Join(t.TempDir(), "config"))

	out, stderr, err := cliRun(t.Context(), "auth", "server-config", "--data-dir", dataDir, "--listen", listen)
	if err != nil {
		t.Fatalf("capstan auth server-config: %v: %s", err, stderr)
	}
	if err := os.WriteFile(filepath.Join(natsDir, "capstan.conf"), []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf("server_name: ops-1\nhost: 127.0.0.1\nport: %d\njetstream {\n  store_dir: %q\n}\ninclude ./capstan.conf\n", port, filepath.Join(natsDir, "js"))
	if err := os.WriteFile(filepath.Join(natsDir, "nats.conf"), []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(filepath.Join(natsDir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("the operator's server did not start")
	}

	repo := newGitRepo(t)
	repo.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: external\ndata:\n  a: b\n")
	repo.commit("a config map")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() {
		done <- Run(ctx, []string{"server", "--nats-url", url, "--data-dir", dataDir, "--repo", repo.dir, "--poll-interval", "1h"}, logs, logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("capstan server: %v", err)
		}
		if t.Failed() {
			t.Logf("capstan server:\n%s", logs.String())
		}
	})
	checkFor(t, 30*time.Second, "the ConfigMap applied, through the admin config", func() error {
		out, _, err := cliRun(ctx, "get", "configmaps")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "external") {
			return fmt.Errorf("get configmaps: %q", out)
		}
		return nil
	})

	if nc, err := nats.Connect(url, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("the operator's server let in a client without TLS or credentials")
	}
	token, stderr, err := cliRun(ctx, "token", "create")
	if err != nil {
		t.Fatalf("capstan token create: %v: %s", err, stderr)
	}
	tok, err := natsauth.ParseJoinToken(token)
	if err != nil {
		t.Fatal(err)
	}
	creds, ca, err := natsauth.Join(ctx, url, tok, "ext-node")
	if err != nil {
		t.Fatal(err)
	}
	nopts, err := natsauth.ClientOptions(ca, creds)
	if err != nil {
		t.Fatal(err)
	}
	node, err := natsbus.Connect(ctx, url, natsbus.Options{Bind: true, EventWriter: "ext-node", NATSOptions: nopts})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if _, err := node.Nodes.Put(ctx, "ext-node", []byte(`{}`)); err != nil {
		t.Errorf("the node writes its own record: %v", err)
	}
	if _, err := node.Objects.Put(ctx, "ConfigMap.default.external", []byte(`{}`)); !errors.Is(err, natsbus.ErrPermission) {
		t.Errorf("the node wrote desired state: %v, want ErrPermission", err)
	}
}
