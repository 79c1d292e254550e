package writeback

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/gitops"
)

// TestGitWriteRequestRefused: the control plane's commit writer refuses a
// malformed request by its fault, before reading anything.
func TestGitWriteRequestRefused(t *testing.T) {
	w := &Server{Log: slog.New(slog.DiscardHandler)} // no bus: nothing may be read
	cases := map[string]string{
		`{"kind":"Deployment","name":"web","replicas":2,"author":"A <a@example.com>","content":"x"}`: `unknown field "content"`,
		`{"kind":"Deployment","name":"web","author":"A <a@example.com>"}`:                            "exactly one of replicas and undo",
		`{"kind":"Deployment","name":"web","replicas":2,"undo":true,"author":"A <a@example.com>"}`:   "exactly one of replicas and undo",
		`{"kind":"Deployment","name":"web","replicas":-1,"author":"A <a@example.com>"}`:              "replicas -1",
		`{"kind":"Pod","name":"web","replicas":2,"author":"A <a@example.com>"}`:                      "cannot scale a Pod",
		`{"kind":"StatefulSet","name":"web","undo":true,"author":"A <a@example.com>"}`:               "cannot roll back a StatefulSet",
		`{"kind":"Deployment","name":"web","replicas":2,"author":"nobody"}`:                          `author "nobody"`,
		`{"kind":"Deployment","replicas":2,"author":"A <a@example.com>"}`:                            "no object name",
		`not json`: "bad request",
	}
	for body, want := range cases {
		rep := w.handle(t.Context(), []byte(body), "")
		if !strings.Contains(rep.Error, want) || !strings.HasPrefix(rep.Error, "bad request: ") || rep.Commit != "" {
			t.Errorf("%s: reply %+v, want an error with %q", body, rep, want)
		}
	}
}

// auditSlice is a bus.Audit in memory.
type auditSlice []manifests.AuditRecord

func (a *auditSlice) Append(_ context.Context, rec manifests.AuditRecord) error {
	*a = append(*a, rec)
	return nil
}

func (a *auditSlice) List(context.Context, string, time.Time) ([]manifests.AuditRecord, error) {
	return *a, nil
}

// TestGitWriteRecorded: a pushed commit is recorded as a write-back by
// the author the request names.
func TestGitWriteRecorded(t *testing.T) {
	var audit auditSlice
	w := &Server{Audit: &audit, Log: slog.New(slog.DiscardHandler)}
	n := int32(3)
	w.record(t.Context(), "Sam <sam@example.com>", Change{Kind: "Deployment", Name: "web", Replicas: &n, Author: "Sam <sam@example.com>"},
		Reply{Result: Result{Commit: "abc123", Message: "scale deployment/web to 3 replicas"}, source: "apps"})
	w.record(t.Context(), "Sam <sam@example.com>", Change{Kind: "Deployment", Namespace: "shop", Name: "api", Undo: true},
		Reply{Result: Result{Commit: "def456", Message: "roll back deployment/api to revision 1"}, source: "apps"})
	if len(audit) != 2 {
		t.Fatalf("%d records", len(audit))
	}
	r := audit[0]
	if r.Action != manifests.ActionWriteBack || r.Actor != "Sam <sam@example.com>" || r.Source != "apps" || r.Revision != "abc123" ||
		r.Result != gitops.ResultCommitted || len(r.Changes) != 1 || r.Changes[0].Namespace != "default" || r.Changes[0].Fields[0] != "spec.replicas" {
		t.Fatalf("scale record %+v", r)
	}
	if c := audit[1].Changes[0]; c.Namespace != "shop" || c.Name != "api" || c.Fields[0] != "spec.template" {
		t.Fatalf("undo record %+v", audit[1])
	}
}

// TestRequestServe: a request crosses a production-configured bus to the
// server, which checks who signed it, and back; a refusal comes back as
// a UserError.
func TestRequestServe(t *testing.T) {
	b := natsauthtest.Start(t)
	srv := &Server{Objects: b.ControlPlane.Objects, Verify: b.Setup.Authority.VerifyRequest, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, b.ControlPlane.NC) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	creds, err := natsauth.ParseCreds([]byte(b.Config(t, natsauth.RoleOperator, "operator-1").Creds))
	if err != nil {
		t.Fatal(err)
	}
	nc := b.Raw(t, natsauth.RoleOperator, "operator-1")
	n := int32(2)
	ch := Change{Kind: "Deployment", Namespace: "default", Name: "web", Replicas: &n, Author: "Sam <sam@example.com>"}
	var rep Reply
	testwait.For(t, 10*time.Second, "the server's subscription", func() error {
		rep, err = Request(t.Context(), nc, &creds, ch)
		if err != nil && strings.Contains(err.Error(), "no control plane on this bus writes commits") {
			return err
		}
		return nil
	})
	var ue UserError
	if !errors.As(err, &ue) || ue.Msg != `deployment "web" not found` || rep.Error != ue.Msg || rep.Commit != "" {
		t.Errorf("operator: %+v, %v; want deployment \"web\" not found", rep, err)
	}

	// Unsigned: the server does not know who asks.
	_, err = Request(t.Context(), nc, nil, ch)
	if !errors.As(err, &ue) || !strings.HasPrefix(ue.Msg, natsauth.ErrUnsigned.Error()) {
		t.Errorf("unsigned: %v, want a refusal", err)
	}
}
