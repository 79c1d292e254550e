package bus

import (
	"context"
	"errors"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// Sentinel errors every Store returns, tested with errors.Is.
var (
	// ErrNotFound: the key does not exist (or was deleted).
	ErrNotFound = errors.New("bus: key not found")
	// ErrExists: Create found the key already present.
	ErrExists = errors.New("bus: key exists")
	// ErrConflict: Update or Delete was given a revision that is no longer
	// the key's latest; re-read and retry.
	ErrConflict = errors.New("bus: revision conflict")
)

// Op is what a watch event did to a key.
type Op int

// Watch operations.
const (
	OpPut Op = iota
	OpDelete
	// OpSynced marks the end of the initial values of a watch: every event
	// before it was state that existed when the watch began.
	OpSynced
)

// Entry is one key's value at one revision.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	Op       Op
	Time     time.Time
}

// Store is a versioned key-value store with compare-and-set writes and
// watches. Keys are dot-separated tokens; patterns use NATS wildcards
// ("*" one token, ">" the rest). Every method is safe for concurrent use.
type Store interface {
	// Get returns the latest value of key, or ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// Create writes key only if it does not exist, else ErrExists.
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update writes key only if its latest revision is rev, else ErrConflict.
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	// Put writes key unconditionally: for state only its owner writes
	// (heartbeats, a node's pod status).
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	// Delete removes key; with rev > 0 only if rev is still the latest
	// revision (else ErrConflict). Deleting a missing key is not an error.
	Delete(ctx context.Context, key string, rev uint64) error
	// List returns the live entries whose keys match pattern.
	List(ctx context.Context, pattern string) ([]Entry, error)
	// Watch sends the current entries matching pattern, then one OpSynced
	// entry, then every change, until ctx ends; then it closes the channel.
	Watch(ctx context.Context, pattern string) (<-chan Entry, error)
}

// Events records and reads object events (what `describe` shows).
type Events interface {
	Record(ctx context.Context, ev manifests.Event) error
	// List returns the events of one object, oldest first.
	List(ctx context.Context, kind, namespace, name string) ([]manifests.Event, error)
}

// Audit appends and reads sync attempt records.
type Audit interface {
	Append(ctx context.Context, rec manifests.AuditRecord) error
	// List returns the records of one source ("" for all), oldest first,
	// those at or after since.
	List(ctx context.Context, source string, since time.Time) ([]manifests.AuditRecord, error)
}

// Bucket names, as in docs/ARCHITECTURE.md.
const (
	BucketObjects     = "objects"
	BucketAssignments = "assignments"
	BucketStatus      = "status"
	BucketNodes       = "nodes"
	BucketLeases      = "leases"
	// BucketNotified remembers which notices were sent where, so a
	// restarted control plane does not send one again.
	BucketNotified = "notified"
	// BucketIdentities holds who has credentials on the bus: join
	// tokens, nodes and people, with their public keys and revocations.
	BucketIdentities = "identities"
)
