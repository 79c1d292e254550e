package sources

import (
	"context"
	"errors"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// ErrUnchanged is returned by Fetch when the source's head is still the
// revision the caller already has: nothing to do.
var ErrUnchanged = errors.New("sources: revision unchanged")

// Source is where desired state comes from: a git repository, a directory.
// Every method is safe for concurrent use.
type Source interface {
	// Spec describes the source. Its URL never holds credentials.
	Spec() manifests.SourceSpec
	// Fetch returns the current revision with its manifest files (.yaml,
	// .yml, .json, .cue under the source's path). When the head is still
	// known (a revision ID the caller already applied or rejected), it
	// returns ErrUnchanged without reading any file.
	Fetch(ctx context.Context, known string) (*Revision, error)
	// Run sends on changed whenever the source may have moved (a poll tick
	// with jitter, a filesystem notification, an explicit trigger) until ctx
	// ends. It never blocks on a full channel: a pending signal is enough.
	Run(ctx context.Context, changed chan<- struct{}) error
}

// Revision is one version of a source's content.
type Revision struct {
	// ID is the full commit hash for git, a content hash for a directory.
	ID        string
	Author    Signature
	Committer Signature
	Message   string
	Files     []manifests.File
	// Signature is the head commit's signature check, for a source with a
	// signature policy; nil without one.
	Signature *manifests.CommitSignature
}

// RejectedError is returned by Fetch for a revision the source refuses to
// hand over (a commit its signature policy rejects). Revision describes
// the refused head, without files; the caller records it and keeps the
// last good revision running.
type RejectedError struct {
	Revision *Revision
	Err      error
}

func (e *RejectedError) Error() string { return e.Err.Error() }

// Unwrap returns the reason.
func (e *RejectedError) Unwrap() error { return e.Err }

// Signature is who made a commit, and when.
type Signature struct {
	Name  string
	Email string
	When  time.Time
}

// String formats the signature as "Name <email>".
func (s Signature) String() string {
	if s.Name == "" && s.Email == "" {
		return ""
	}
	return s.Name + " <" + s.Email + ">"
}
