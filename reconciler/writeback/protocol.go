package writeback

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/capstan-io/capstan/bus/natsauth"
)

// Subject is the request subject of the control plane's commit writer;
// one control plane answers each request (a queue group).
const Subject = natsauth.SubjectGitWrite

// Timeout bounds one write: clone, edit, commit, push.
const Timeout = 2 * time.Minute

// Change asks for one commit: exactly one of Replicas and Undo.
type Change struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Replicas is the new spec.replicas (scale).
	Replicas *int32 `json:"replicas,omitempty"`
	// Undo rolls a Deployment back to ToRevision, 0 for the previous one.
	Undo       bool  `json:"undo,omitempty"`
	ToRevision int64 `json:"toRevision,omitempty"`
	// Author is who asks, "Name <email>": the commit's author and
	// committer.
	Author string `json:"author"`
}

// Result is the commit written, or why there is none.
type Result struct {
	Commit  string `json:"commit,omitempty"`
	File    string `json:"file,omitempty"` // repository-relative
	Where   string `json:"where,omitempty"`
	Message string `json:"message,omitempty"` // the commit's subject
	// Done says there was nothing to commit (undo to the current
	// template).
	Done string `json:"done,omitempty"`
}

// Reply is the control plane's answer to a Change: the Result, or the
// Error refusing it.
type Reply struct {
	Result
	Error string `json:"error,omitempty"`

	source string // the source written to, for the audit record
}

// UserError refuses a write in words for the person who asked, who can
// act on them: the CLI prints "error: " and Msg and exits 1; the control
// plane answers with Msg as the Reply's Error.
type UserError struct {
	Msg string
}

func (e UserError) Error() string { return e.Msg }

func refuse(format string, args ...any) error {
	return UserError{Msg: fmt.Sprintf(format, args...)}
}

// Check refuses a malformed request, before anything is read.
func (c Change) Check() error {
	switch {
	case c.Name == "":
		return errors.New("no object name")
	case (c.Replicas != nil) == c.Undo:
		return errors.New("ask for exactly one of replicas and undo")
	case c.Replicas != nil && *c.Replicas < 0:
		return fmt.Errorf("replicas %d: want N >= 0", *c.Replicas)
	case c.Replicas != nil && !slices.Contains([]string{"Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"}, c.Kind):
		return fmt.Errorf("cannot scale a %s", c.Kind)
	case c.Undo && c.Kind != "Deployment":
		return fmt.Errorf("cannot roll back a %s", c.Kind)
	case c.Undo && c.ToRevision < 0:
		return fmt.Errorf("revision %d: want N >= 0", c.ToRevision)
	}
	_, err := parseAuthor(c.Author)
	return err
}

var authorRE = regexp.MustCompile(`^\s*(.*?)\s*<([^<>]+)>\s*$`)

// parseAuthor reads "Name <email>".
func parseAuthor(s string) (*object.Signature, error) {
	m := authorRE.FindStringSubmatch(s)
	if m == nil || m[1] == "" {
		return nil, fmt.Errorf("author %q: want \"Name <email>\"", s)
	}
	return &object.Signature{Name: m[1], Email: m[2], When: time.Now()}, nil
}
