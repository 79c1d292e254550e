package gitops

import (
	"context"
	"fmt"

	"github.com/capstan-io/capstan/sources"
)

// appliedSetter is a source that checks every commit since the last
// applied one (sources/git with a signature policy in mode "all"): it is
// told the applied revision recorded on the bus, so a restart does not
// skip the commits pushed meanwhile.
type appliedSetter interface {
	SetApplied(id string)
}

// tellApplied gives the source the applied revision, if it wants it.
func (s *Syncer) tellApplied() {
	if a, ok := s.Source.(appliedSetter); ok && s.appliedID != "" {
		a.SetApplied(s.appliedID)
	}
}

// rejected records a revision the source refused (a commit its signature
// policy rejects) the way an invalid revision is: once per revision, in
// the audit stream (with the signature check), the Source's status and an
// event. The last good revision keeps running; a full pass re-applies it.
func (s *Syncer) rejected(ctx context.Context, rej *sources.RejectedError, full bool) error {
	rev := rej.Revision
	if rev.ID != s.attempted {
		msg := rej.Error()
		s.attempted = rev.ID
		s.lastErr = msg
		s.Log.Warn("revision rejected", "revision", rev.ID, "err", msg)
		s.audit(ctx, rev, ResultRejected, []string{msg}, nil)
		s.writeStatus(ctx, rev.ID, msg)
		s.event(ctx, "Warning", "RevisionRejected", fmt.Sprintf("revision %s rejected: %s", short(rev.ID), msg))
	}
	if full && s.applied != nil {
		return s.resyncApplied(ctx)
	}
	return nil
}
