package gitops

import (
	"context"
	"errors"
	"fmt"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// Results of the audit records of actions, beside the sync's.
const (
	ResultCommitted = "Committed" // a write-back pushed its commit
	ResultIssued    = "Issued"
	ResultRevoked   = "Revoked"
	ResultJoined    = "Joined"
)

// ActionCommitted is the change of a write-back: a commit changes the
// object's declaring file (the sync applies it later).
const ActionCommitted = "committed"

// ActionRecord is a change that did not come from a sync, for the audit
// stream: who (Actor) did what (Action), to which objects or identity.
type ActionRecord struct {
	// Action is one of manifests' Action constants other than ActionSync.
	Action string
	// Actor is who did it: "admin:alice", "operator:bob", "node:n2",
	// "control-plane".
	Actor string
	// Subject is what a non-object action was about: the identity given
	// or denied credentials, the node that joined.
	Subject string
	// Source and Revision, when it concerns a source: a write-back's
	// source and its commit.
	Source, Revision string
	// Result defaults by Action: Committed, DriftCorrected, Issued,
	// Revoked, Joined.
	Result  string
	Message string
	Changes []manifests.ObjectChange
	Errors  []string
}

// defaultResults are the Results of actions that give none.
var defaultResults = map[string]string{
	manifests.ActionWriteBack:          ResultCommitted,
	manifests.ActionDrift:              ResultDriftCorrected,
	manifests.ActionCredentialsIssued:  ResultIssued,
	manifests.ActionCredentialsRevoked: ResultRevoked,
	manifests.ActionNodeJoin:           ResultJoined,
	manifests.ActionNodeRevoked:        ResultRevoked,
}

// RecordAction appends rec to the audit stream, stamped with the time:
// what `capstan history` shows beside the syncs. Syncs are the Syncer's
// to record; an action needs an actor.
func RecordAction(ctx context.Context, audit bus.Audit, rec ActionRecord) error {
	switch {
	case audit == nil:
		return errors.New("record action: no audit stream")
	case rec.Action == "" || rec.Action == manifests.ActionSync:
		return fmt.Errorf("record action: action %q: want one that is not a sync", rec.Action)
	case rec.Actor == "":
		return fmt.Errorf("record action %s: no actor", rec.Action)
	}
	if rec.Result == "" {
		rec.Result = defaultResults[rec.Action]
	}
	return audit.Append(ctx, manifests.AuditRecord{
		Action: rec.Action, Actor: rec.Actor, Subject: rec.Subject, Source: rec.Source, Revision: rec.Revision,
		Time: manifests.Now(), Result: rec.Result, Message: rec.Message, Changes: rec.Changes, Errors: rec.Errors,
	})
}
