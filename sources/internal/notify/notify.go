// Package notify holds the wake-up loop the source implementations share: a
// signal at start, a poll timer with jitter, explicit triggers, and
// filesystem events coalesced over a short window. Signals are sent without
// blocking: a pending one is enough, because the receiver always fetches the
// source's current state rather than acting on the signal's content.
package notify

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Coalesce is how long after a relevant filesystem event the loop signals.
// Events within it share one signal: git updates a ref through a lock file
// and a rename, and an editor saves through a temporary file, each several
// events for one change.
const Coalesce = 50 * time.Millisecond

// Send sends on ch without blocking; if a signal is already pending it does
// nothing.
func Send(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Jitter returns d moved at random by up to frac of itself either way, so
// many sources started together do not poll in step.
func Jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 || frac <= 0 {
		return d
	}
	return d + time.Duration((rand.Float64()*2-1)*frac*float64(d))
}

// Loop is one run of a source's wake-up loop. Its zero value is not usable:
// Interval must be positive.
type Loop struct {
	// Interval is the mean time between polls; each wait is jittered by 10%.
	Interval time.Duration
	// Trigger, if not nil, forces a signal whenever it receives.
	Trigger <-chan struct{}
	// Watcher, if not nil, is read for events; the loop does not close it.
	Watcher *fsnotify.Watcher
	// Relevant reports whether an event may mean the source changed. It is
	// called on the loop's goroutine and may add watches. Nil means every
	// event is relevant.
	Relevant func(fsnotify.Event) bool
	// Logger receives watcher errors.
	Logger *slog.Logger
}

// Run sends on changed once at start (so a change made between the caller's
// last fetch and the loop starting is not missed), after every poll interval,
// on every trigger, and within Coalesce of a relevant filesystem event, until
// ctx ends. It never blocks on changed, starts no goroutine, and returns nil
// when ctx ends.
func (l *Loop) Run(ctx context.Context, changed chan<- struct{}) error {
	logger := l.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	Send(changed)

	poll := time.NewTimer(Jitter(l.Interval, 0.1))
	defer poll.Stop()
	coalesce := time.NewTimer(Coalesce)
	coalesce.Stop()
	defer coalesce.Stop()
	pending := false

	var events <-chan fsnotify.Event
	var errs <-chan error
	if l.Watcher != nil {
		events, errs = l.Watcher.Events, l.Watcher.Errors
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			Send(changed)
			poll.Reset(Jitter(l.Interval, 0.1))
		case <-l.Trigger:
			Send(changed)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// Relevant sees every event, since it may add watches. Signal
			// Coalesce after the first event of a burst, not after the last:
			// a steady stream of events must not hold signals back.
			relevant := l.Relevant == nil || l.Relevant(ev)
			if relevant && !pending {
				pending = true
				coalesce.Reset(Coalesce)
			}
		case <-coalesce.C:
			pending = false
			Send(changed)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			logger.Warn("filesystem watch error", "err", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost; one of them may have been a change.
				Send(changed)
			}
		}
	}
}
