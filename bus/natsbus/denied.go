package natsbus

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// ErrPermission is returned when the server's permissions refuse an
// operation to this connection's identity.
var ErrPermission = errors.New("permission denied by the bus")

// publishDenied reads the subject out of the server's protocol error for
// a refused publish. A refused publish has no reply: the server says so
// on the connection, and nats.go passes it to the error handler (with
// ErrPermissionViolation) while the request waits; this is how an
// operation learns it was refused instead of timing out.
var publishDenied = regexp.MustCompile(`(?i)Permissions Violation for Publish to "([^"]+)"`)

// denials lets operations in flight hear that the server refused their
// publish.
type denials struct {
	mu      sync.Mutex
	waiters map[*denialWaiter]struct{}
}

type denialWaiter struct {
	match  func(subject string) bool
	cancel context.CancelCauseFunc
}

// guard derives a context that ends with ErrPermission when the server
// refuses a publish to a subject match accepts. Call done when the
// operation ends; wrap turns its error into ErrPermission when that was
// the cause.
func (d *denials) guard(ctx context.Context, match func(string) bool) (context.Context, func(error) error) {
	return d.guardKeep(ctx, match, false)
}

// guardKeep is guard whose context, with keep, is not cancelled when the
// operation succeeds: for a watch, which lives as long as its context.
func (d *denials) guardKeep(ctx context.Context, match func(string) bool, keep bool) (context.Context, func(error) error) {
	if d == nil {
		return ctx, func(err error) error { return err }
	}
	ctx, cancel := context.WithCancelCause(ctx)
	w := &denialWaiter{match: match, cancel: cancel}
	d.mu.Lock()
	if d.waiters == nil {
		d.waiters = map[*denialWaiter]struct{}{}
	}
	d.waiters[w] = struct{}{}
	d.mu.Unlock()
	return ctx, func(err error) error {
		d.mu.Lock()
		delete(d.waiters, w)
		d.mu.Unlock()
		cause := context.Cause(ctx)
		if err != nil || !keep {
			cancel(nil)
		}
		if err != nil && errors.Is(cause, ErrPermission) {
			return cause
		}
		return err
	}
}

// heard is called with every asynchronous error of the connection.
func (d *denials) heard(err error) {
	if d == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	m := publishDenied.FindStringSubmatch(err.Error())
	if m == nil {
		return
	}
	subject := m[1]
	d.mu.Lock()
	defer d.mu.Unlock()
	for w := range d.waiters {
		if w.match(subject) {
			w.cancel(fmt.Errorf("%w: publish to %s", ErrPermission, subject))
		}
	}
}

// exactly matches one subject.
func exactly(subject string) func(string) bool {
	return func(s string) bool { return s == subject }
}

// consumerOf matches the creation of a consumer of stream filtered by
// filter (or unfiltered).
func consumerOf(stream, filter string) func(string) bool {
	prefix := "$JS.API.CONSUMER.CREATE." + stream
	return func(s string) bool {
		return s == prefix || (strings.HasPrefix(s, prefix+".") && (strings.HasSuffix(s, "."+filter) || strings.Count(s, ".") == strings.Count(prefix, ".")+1))
	}
}

// PublishChecked publishes m and flushes, waiting at most timeout. The
// server answers the flush after it has processed the publish, so a
// refusal of m's subject has arrived by then: PublishChecked returns
// ErrPermission instead of leaving the caller to wait for a reply that
// never comes. For connections made without natsbus (a request to a
// node or to the control plane).
func PublishChecked(nc *nats.Conn, m *nats.Msg, timeout time.Duration) error {
	before := nc.LastError()
	if err := nc.PublishMsg(m); err != nil {
		return err
	}
	if err := nc.FlushTimeout(timeout); err != nil {
		return err
	}
	if err := nc.LastError(); err != nil && err != before && errors.Is(err, nats.ErrPermissionViolation) {
		if r := publishDenied.FindStringSubmatch(err.Error()); r != nil && r[1] == m.Subject {
			return fmt.Errorf("%w: publish to %s", ErrPermission, m.Subject)
		}
	}
	return nil
}
