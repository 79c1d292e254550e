//go:build !nodeonly

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/gitops"
)

func historyRecords() []manifests.AuditRecord {
	at := func(s string) *manifests.Time { t, _ := time.Parse(time.RFC3339, s); return manifests.NewTime(t) }
	return []manifests.AuditRecord{
		{Action: manifests.ActionSync, Source: "root", Revision: "0123456789abcdef0123", Author: "Ada <ada@example.com>",
			Message: "deploy web\n\nbody", Time: at("2025-06-01T10:00:00Z"), Result: gitops.ResultApplied,
			Changes: []manifests.ObjectChange{{Action: "created", Kind: "Deployment", Namespace: "default", Name: "web"}}},
		// Written before records had an action: a sync.
		{Source: "root", Revision: "fedcba9876543210fedc", Author: "Ada <ada@example.com>", Time: at("2025-06-01T10:01:00Z"),
			Result: gitops.ResultRejected, Errors: []string{"web.yaml:3:1: bad"}},
		{Action: manifests.ActionDrift, Actor: gitops.ActorControlPlane, Source: "", Time: at("2025-06-01T10:02:00Z"),
			Result: gitops.ResultDriftCorrected, Message: "Pod default/evil was written outside any sync (bus revision 42 at 2025-06-01T10:01:59Z, writer unknown), no controller owns it, and it claims no source: deleted",
			Changes: []manifests.ObjectChange{{Action: "deleted", Kind: "Pod", Namespace: "default", Name: "evil"}}},
		{Action: manifests.ActionWriteBack, Actor: "Sam <sam@example.com>", Source: "apps", Revision: "aaaabbbbccccdddd", Time: at("2025-06-01T10:03:00Z"),
			Result: gitops.ResultCommitted, Message: "scale deployment/web to 3 replicas",
			Changes: []manifests.ObjectChange{{Action: gitops.ActionCommitted, Kind: "Deployment", Namespace: "default", Name: "web", Fields: []string{"spec.replicas"}}}},
		{Action: manifests.ActionCredentialsIssued, Actor: "admin:alice", Subject: "operator:bob", Time: at("2025-06-01T10:04:00Z"),
			Result: gitops.ResultIssued},
	}
}

// TestHistoryOutput: sync records print the commit's author;
// the others name their action and actor (and subject).
func TestHistoryOutput(t *testing.T) {
	var b bytes.Buffer
	if err := printHistory(&b, historyRecords(), "table"); err != nil {
		t.Fatal(err)
	}
	want := `2025-06-01T10:00:00Z  root  0123456789ab  Applied  Ada <ada@example.com>
    deploy web
    created deployment default/web

2025-06-01T10:01:00Z  root  fedcba987654  Rejected  Ada <ada@example.com>
    error: web.yaml:3:1: bad

2025-06-01T10:02:00Z  <none>  <none>  DriftCorrected  drift by control-plane
    Pod default/evil was written outside any sync (bus revision 42 at 2025-06-01T10:01:59Z, writer unknown), no controller owns it, and it claims no source: deleted
    deleted pod default/evil

2025-06-01T10:03:00Z  apps  aaaabbbbcccc  Committed  write-back by Sam <sam@example.com>
    scale deployment/web to 3 replicas
    committed deployment default/web: spec.replicas

2025-06-01T10:04:00Z  <none>  <none>  Issued  credentials-issued by admin:alice for operator:bob
`
	if b.String() != want {
		t.Fatalf("history:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	if err := printHistory(&b, historyRecords(), "json"); err != nil {
		t.Fatal(err)
	}
	var h struct{ Items []manifests.AuditRecord }
	if err := json.Unmarshal(b.Bytes(), &h); err != nil || len(h.Items) != 5 || h.Items[2].Action != "drift" || h.Items[2].Actor != "control-plane" ||
		h.Items[4].Subject != "operator:bob" {
		t.Fatalf("json: %v %+v", err, h.Items)
	}
}

// TestObjectHistoryOutput: `history pod/NAME` shows a drift removal of that
// pod with its actor; sync rows keep their columns, ACTOR empty.
func TestObjectHistoryOutput(t *testing.T) {
	recs := historyRecords()
	var b bytes.Buffer
	pod := objectRef{Kind: "Pod", Namespace: "default", Name: "evil"}
	if err := printObjectHistory(&b, pod, objectHistory(recs, pod), "table"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "TIME REVISION RESULT ACTION AUTHOR ACTOR MESSAGE FIELDS" {
		t.Fatalf("history pod/evil:\n%s", b.String())
	}
	if got := strings.Fields(lines[1]); len(got) < 7 || got[0] != "2025-06-01T10:02:00Z" || got[1] != "<none>" || got[2] != "DriftCorrected" ||
		got[3] != "deleted" || got[4] != "<none>" || got[5] != "control-plane" || got[6] != "(drift)" {
		t.Fatalf("row %q", lines[1])
	}

	b.Reset()
	web := objectRef{Kind: "Deployment", Namespace: "default", Name: "web"}
	if err := printObjectHistory(&b, web, objectHistory(recs, web), "table"); err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(strings.Join(strings.Fields(lines[1]), " "), "created Ada <ada@example.com> <none> deploy web") ||
		!strings.Contains(lines[2], "committed") || !strings.Contains(lines[2], "Sam <sam@example.com> (write-back)") ||
		!strings.HasSuffix(lines[2], "spec.replicas") {
		t.Fatalf("history deployment/web:\n%s", b.String())
	}

	b.Reset()
	if err := printObjectHistory(&b, pod, objectHistory(recs, pod), "json"); err != nil {
		t.Fatal(err)
	}
	var h struct{ Items []objectChangeRecord }
	if err := json.Unmarshal(b.Bytes(), &h); err != nil || len(h.Items) != 1 || h.Items[0].RecordAction != "drift" || h.Items[0].Actor != "control-plane" ||
		h.Items[0].Action != "deleted" {
		t.Fatalf("json: %v %+v", err, h.Items)
	}
}
