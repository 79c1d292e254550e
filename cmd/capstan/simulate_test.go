//go:build !serveronly

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
)

// TestSimulatedNodes runs three hollow nodes against a real bus: each
// registers Ready, runs the pod assigned to it (any image, after the start
// delay), reports it Running, and reports the assignment as seen.
func TestSimulatedNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bus := natsauthtest.Start(t)
	conn := bus.ControlPlane
	config := filepath.Join(t.TempDir(), "config")
	if err := bus.Config(t, natsauth.RoleAdmin, "sim").Save(config); err != nil {
		t.Fatal(err)
	}
	seen := make(chan seenReport, 4)
	sub, err := conn.NC.Subscribe(SeenSubject, func(m *nats.Msg) {
		var r seenReport
		if json.Unmarshal(m.Data, &r) == nil {
			seen <- r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- runSimulated(runCtx, slog.New(slog.DiscardHandler), simOptions{count: 3, perConn: 2, prefix: "hollow",
			startDelay: 50 * time.Millisecond, relist: 200 * time.Millisecond, reportSeen: true, dataDir: t.TempDir(), server: bus.URL, config: config})
	}()
	poll := func(what string, fn func() error) {
		t.Helper()
		testwait.For(t, 30*time.Second, what, fn)
	}
	for i := range 3 {
		name := fmt.Sprintf("hollow-%04d", i)
		poll(name+" Ready", func() error {
			e, err := conn.Nodes.Get(ctx, name)
			if err != nil {
				return err
			}
			var n manifests.Node
			if err := json.Unmarshal(e.Value, &n); err != nil {
				return err
			}
			if !manifests.IsNodeReady(&n) || n.Labels["capstan.io/simulated"] != "true" {
				return fmt.Errorf("node %s: %+v", name, n.Status.Conditions)
			}
			return nil
		})
	}
	pod := manifests.Pod{TypeMeta: manifests.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default", UID: "0123456789abcdef"},
		Spec:       manifests.PodSpec{NodeName: "hollow-0001", Containers: []manifests.Container{{Name: "c", Image: "registry.invalid/any:1", Command: []string{"sleep", "1"}}}}}
	b, err := json.Marshal(manifests.Assignment{Pod: pod})
	if err != nil {
		t.Fatal(err)
	}
	key := manifests.AssignmentKey("hollow-0001", "default", "p")
	if _, err := conn.Assignments.Put(ctx, key, b); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-seen:
		if r.Key != key || r.Seen.Before(r.Written) {
			t.Fatalf("seen report %+v", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no seen report")
	}
	poll("pod Running", func() error {
		e, err := conn.Status.Get(ctx, key)
		if err != nil {
			return err
		}
		var rep manifests.PodStatusReport
		if err := json.Unmarshal(e.Value, &rep); err != nil {
			return err
		}
		if rep.Status.Phase != manifests.PodRunning || rep.Node != "hollow-0001" {
			return fmt.Errorf("report %s", strings.TrimSpace(string(e.Value)))
		}
		return nil
	})
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runSimulated: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("simulated nodes did not stop")
	}
}
