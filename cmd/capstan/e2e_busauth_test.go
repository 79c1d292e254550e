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

	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
)

const pinnedPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: pinned
  labels: {app: pinned}
spec:
  nodeSelector:
    kubernetes.io/hostname: %s
  containers:
  - name: main
    image: localhost/capstan-demo:latest
    command: ["sleep", "3600"]
`

// TestE2EBusIdentities runs the bus as a user does: capstan up with its
// identities; a client without credentials is refused; a second node
// joins with a token and runs a pod; that node's own credentials can
// neither write desired state nor read the first node's assignments; an
// orphan Pod written behind the sync's back with admin credentials is
// removed and recorded; revoking the second node closes its connection
// and refuses it.
func TestE2EBusIdentities(t *testing.T) {
	e := newE2E(t)
	nodeB := e.node + "-b"
	e.repo.write("pinned.yaml", fmt.Sprintf(pinnedPodYAML, nodeB))
	e.repo.commit("a pod for the second node")
	e.startUpWith(e.repo.dir, "--dataplane=false")

	// No credentials, plain text: refused by the server.
	if nc, err := nats.Connect(e.url, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a client without TLS or credentials was let in")
	}
	cfg, err := natsauth.LoadClientConfig(os.Getenv("CAPSTAN_CONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, []byte(cfg.CA), 0o644); err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(e.url, nats.RootCAs(caFile), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a TLS client without credentials was let in")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("a TLS client without credentials: %v, want an authorization violation", err)
	}
	_, stderr, err := cliRun(t.Context(), "get", "pods", "--server", e.url, "--config", filepath.Join(t.TempDir(), "none"))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("the CLI without a config: %v %s, want one line naming the missing config", err, stderr)
	}

	// The second node joins with a token and runs its pod.
	b := e.startStoppableNode(nodeB) // token create, then node --token
	e.waitPod("pinned", 90*time.Second, "Running on "+nodeB, func(p lifecyclePodJSON) error {
		if p.Spec.NodeName != nodeB || p.Status.Phase != "Running" {
			return fmt.Errorf("pod on %q, %s", p.Spec.NodeName, p.Status.Phase)
		}
		return nil
	})
	nodeDir := nodeDataDir(t, b)
	nb := connectAsNode(t, e.url, nodeDir, nodeB)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := nb.Objects.Put(ctx, "Pod.default.evil", []byte(`{"apiVersion":"v1","kind":"Pod"}`)); !errors.Is(err, natsbus.ErrPermission) {
		t.Errorf("node %s put a Pod into objects: %v, want ErrPermission", nodeB, err)
	}
	if _, err := nb.Assignments.List(ctx, e.node+".>"); !errors.Is(err, natsbus.ErrPermission) {
		t.Errorf("node %s read node %s's assignments: %v, want ErrPermission", nodeB, e.node, err)
	}
	if mine, err := nb.Assignments.List(ctx, nodeB+".>"); err != nil || len(mine) != 1 {
		t.Errorf("node %s's own assignments: %d, %v; want its pod", nodeB, len(mine), err)
	}

	// An orphan behind the sync's back, with admin credentials: removed
	// and recorded.
	admin, err := natsbus.Connect(ctx, e.url, adminBus(t, natsbus.Options{Name: "e2e-admin", Bind: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	orphan := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"orphan","namespace":"default"},"spec":{"containers":[{"name":"c","image":"localhost/capstan-demo:latest","command":["sleep","3600"]}]}}`
	if _, err := admin.Objects.Put(ctx, "Pod.default.orphan", []byte(orphan)); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 30*time.Second, "the orphan Pod removed and recorded", func() error {
		if _, err := admin.Objects.Get(ctx, "Pod.default.orphan"); err == nil {
			return errors.New("still in the objects bucket")
		}
		out, _, err := e.cli("history")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "orphan") || !strings.Contains(out, "drift") {
			return fmt.Errorf("history does not record it:\n%s", out)
		}
		return nil
	})

	// Revoked: the node's connection is closed, and it is refused.
	out, stderr, err := e.cli("node", "revoke", nodeB)
	if err != nil {
		t.Fatalf("capstan node revoke: %v %s", err, stderr)
	}
	if !strings.Contains(out, "revoked node/"+nodeB) {
		t.Errorf("capstan node revoke said %q", out)
	}
	checkFor(t, 20*time.Second, "the revoked node disconnected", func() error {
		if nb.NC.IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	if _, err := natsbus.Connect(ctx, e.url, nodeBusOptions(t, nodeDir, nodeB)); err == nil {
		t.Error("the revoked node's credentials were let in again")
	} else if msg := natsauth.Explain(err, e.url).Error(); !strings.Contains(msg, "refused these credentials") {
		t.Errorf("a revoked node is told %q", msg)
	}
	history, _, _ := e.cli("history")
	if !strings.Contains(history, "node-join") || !strings.Contains(history, "node-revoked") {
		t.Errorf("history lacks the join or the revocation:\n%s", history)
	}
}

// nodeDataDir finds the data dir a stoppable node runs in, from its log.
func nodeDataDir(t *testing.T, n *stoppableNode) string {
	t.Helper()
	for line := range strings.Lines(n.out.String()) {
		if _, rest, ok := strings.Cut(line, " creds="); ok {
			path, _, _ := strings.Cut(rest, " ")
			return filepath.Dir(path)
		}
	}
	t.Fatalf("node %s's log does not say where its credentials are:\n%s", n.name, n.out.String())
	return ""
}

func nodeBusOptions(t *testing.T, dir, name string) natsbus.Options {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, nodeCredsFile))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := natsauth.ParseCreds(b)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, nodeCAFile))
	if err != nil {
		t.Fatal(err)
	}
	nopts, err := natsauth.ClientOptions(ca, creds)
	if err != nil {
		t.Fatal(err)
	}
	return natsbus.Options{Name: "e2e-as-" + name, Bind: true, EventWriter: name, NATSOptions: append(nopts, nats.MaxReconnects(0))}
}

// connectAsNode connects with a node's own credentials, kept in its data dir.
func connectAsNode(t *testing.T, url, dir, name string) *natsbus.Conn {
	t.Helper()
	c, err := natsbus.Connect(context.Background(), url, nodeBusOptions(t, dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
