package memstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/bus"
)

var _ bus.Store = (*Store)(nil)

// ErrInvalidKey is returned for an empty key, an empty token, or a key with
// a wildcard or whitespace in it.
var ErrInvalidKey = errors.New("memstore: invalid key")

// ErrInvalidPattern is returned for a pattern that is not a valid NATS
// subject filter.
var ErrInvalidPattern = errors.New("memstore: invalid pattern")

// record is the latest revision of one key; a deleted key keeps a record
// (a tombstone) so that compare-and-set sees the deletion's revision.
type record struct {
	value   []byte
	rev     uint64
	deleted bool
	time    time.Time
}

// Store is an in-memory bus.Store. Create one with New.
type Store struct {
	mu       sync.Mutex
	rev      uint64
	data     map[string]*record
	watchers map[*watcher]struct{}
	now      func() time.Time
}

// New returns an empty Store.
func New() *Store {
	return &Store{
		data:     make(map[string]*record),
		watchers: make(map[*watcher]struct{}),
		now:      time.Now,
	}
}

// Get returns the latest value of key, or bus.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (bus.Entry, error) {
	if err := validKey(key); err != nil {
		return bus.Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.data[key]
	if !ok || r.deleted {
		return bus.Entry{}, fmt.Errorf("get %s: %w", key, bus.ErrNotFound)
	}
	return entry(key, r, bus.OpPut), nil
}

// Create writes key only if it does not exist, else bus.ErrExists.
func (s *Store) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.data[key]; ok && !r.deleted {
		return 0, fmt.Errorf("create %s: %w", key, bus.ErrExists)
	}
	return s.write(key, value, false), nil
}

// Update writes key only if its latest revision is rev, else
// bus.ErrConflict. A rev of 0 always conflicts: use Create for new keys.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.data[key]
	if rev == 0 || !ok || r.rev != rev {
		return 0, fmt.Errorf("update %s at revision %d: %w", key, rev, bus.ErrConflict)
	}
	return s.write(key, value, false), nil
}

// Put writes key unconditionally.
func (s *Store) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(key, value, false), nil
}

// Delete removes key; with rev > 0 only if rev is still its latest revision
// (else bus.ErrConflict). Deleting a missing key with rev 0 does nothing.
func (s *Store) Delete(ctx context.Context, key string, rev uint64) error {
	if err := validKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.data[key]
	if rev > 0 && (!ok || r.rev != rev) {
		return fmt.Errorf("delete %s at revision %d: %w", key, rev, bus.ErrConflict)
	}
	if !ok || (r.deleted && rev == 0) {
		return nil
	}
	s.write(key, nil, true)
	return nil
}

// List returns the live entries whose keys match pattern, in revision order.
func (s *Store) List(ctx context.Context, pattern string) ([]bus.Entry, error) {
	toks, err := parsePattern(pattern)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot(toks), nil
}

// Watch sends the live entries matching pattern in revision order, then one
// OpSynced entry, then every change, until ctx ends; then it closes the
// channel.
func (s *Store) Watch(ctx context.Context, pattern string) (<-chan bus.Entry, error) {
	toks, err := parsePattern(pattern)
	if err != nil {
		return nil, err
	}
	w := &watcher{pattern: toks, signal: make(chan struct{}, 1)}
	s.mu.Lock()
	// The snapshot and the registration happen under one lock, so the
	// watcher sees every later write exactly once.
	w.queue = append(s.snapshot(toks), bus.Entry{Op: bus.OpSynced})
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	w.notify()

	out := make(chan bus.Entry, 64)
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.watchers, w)
			s.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.signal:
			}
			for _, e := range w.take() {
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// write records a new revision of key and queues it for matching watchers.
// The caller holds s.mu.
func (s *Store) write(key string, value []byte, deleted bool) uint64 {
	s.rev++
	r := &record{value: slices.Clone(value), rev: s.rev, deleted: deleted, time: s.now()}
	s.data[key] = r
	op := bus.OpPut
	if deleted {
		op = bus.OpDelete
	}
	var toks []string
	for w := range s.watchers {
		if toks == nil {
			toks = strings.Split(key, ".")
		}
		if match(w.pattern, toks) {
			w.push(entry(key, r, op))
		}
	}
	return s.rev
}

// snapshot returns the live entries matching pattern in revision order. The
// caller holds s.mu.
func (s *Store) snapshot(pattern []string) []bus.Entry {
	var out []bus.Entry
	for k, r := range s.data {
		if r.deleted || !match(pattern, strings.Split(k, ".")) {
			continue
		}
		out = append(out, entry(k, r, bus.OpPut))
	}
	slices.SortFunc(out, func(a, b bus.Entry) int { return cmp.Compare(a.Revision, b.Revision) })
	return out
}

func entry(key string, r *record, op bus.Op) bus.Entry {
	return bus.Entry{Key: key, Value: slices.Clone(r.value), Revision: r.rev, Op: op, Time: r.time}
}

// watcher is one Watch's unbounded queue. signal has room for one wake-up,
// which is all a reader needs to drain the queue.
type watcher struct {
	pattern []string
	signal  chan struct{}

	mu    sync.Mutex
	queue []bus.Entry
}

func (w *watcher) push(e bus.Entry) {
	w.mu.Lock()
	w.queue = append(w.queue, e)
	w.mu.Unlock()
	w.notify()
}

func (w *watcher) notify() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *watcher) take() []bus.Entry {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

// validKey accepts what a JetStream KV accepts as a key, minus wildcards.
func validKey(key string) error {
	if key == "" || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '=' || c == '/' || c == '.'
		if !ok {
			return fmt.Errorf("%w: %q", ErrInvalidKey, key)
		}
	}
	return nil
}

func parsePattern(p string) ([]string, error) {
	if p == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidPattern)
	}
	toks := strings.Split(p, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return nil, fmt.Errorf("%w: %q", ErrInvalidPattern, p)
		case t == ">" && i != len(toks)-1:
			return nil, fmt.Errorf("%w: %q: > must be last", ErrInvalidPattern, p)
		case t != "*" && t != ">" && strings.ContainsAny(t, "*> \t\r\n"):
			return nil, fmt.Errorf("%w: %q", ErrInvalidPattern, p)
		}
	}
	return toks, nil
}

// match reports whether the key tokens match the pattern tokens.
func match(pattern, key []string) bool {
	for i, p := range pattern {
		if p == ">" {
			return len(key) > i
		}
		if i >= len(key) || (p != "*" && p != key[i]) {
			return false
		}
	}
	return len(key) == len(pattern)
}
