package atrest

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/capstan-io/capstan/bus"
)

// Result is what a rotation (or a pass of Converge) did.
type Result struct {
	// Key is the current key's id.
	Key string `json:"key"`
	// Reencrypted counts the Secrets written again under Key.
	Reencrypted int `json:"reencrypted"`
	// Unreadable lists the Secrets left as they were because a value
	// would not decrypt (the sync writes them again from Git).
	Unreadable []string `json:"unreadable,omitempty"`
	// Dropped lists the keys removed from the key file.
	Dropped []string `json:"dropped,omitempty"`
	// Kept lists the old keys still in the key file: a value still uses
	// them.
	Kept []string `json:"kept,omitempty"`
}

// maxAttempts bounds the retries of one Secret's re-encryption that lost a
// race with another writer.
const maxAttempts = 10

// Rotate makes a new key current (written to the key file before any
// value uses it), re-encrypts every Secret with it and drops the old keys
// once no value uses them (Converge). A Secret's plain text is unchanged,
// so nothing derived from it (assignments, their digests) is rewritten.
func (s *Store) Rotate(ctx context.Context) (Result, error) {
	s.rotating.Lock()
	defer s.rotating.Unlock()
	id, key, err := s.keys.generate()
	if err != nil {
		return Result{}, err
	}
	if err := s.keys.save(s.keys.render(id, key, nil)); err != nil {
		return Result{}, err
	}
	s.writes.Lock() // no write with the old key is in flight after this
	err = s.keys.install(id, key)
	s.writes.Unlock()
	if err != nil {
		return Result{}, err
	}
	s.log.Info("secrets key rotated: re-encrypting every Secret", "key", id)
	return s.converge(ctx)
}

// Converge re-encrypts every Secret not wholly under the current key
// (those an older Capstan wrote in plain text, those a rotation did not
// reach) and drops the old keys no value uses. The control plane runs it
// when it starts.
func (s *Store) Converge(ctx context.Context) (Result, error) {
	s.rotating.Lock()
	defer s.rotating.Unlock()
	return s.converge(ctx)
}

func (s *Store) converge(ctx context.Context) (Result, error) {
	res := Result{Key: s.keys.Current()}
	entries, err := s.inner.List(ctx, keyPrefix+">")
	if err != nil {
		return res, fmt.Errorf("list secrets: %w", err)
	}
	for _, e := range entries {
		done, err := s.reencrypt(ctx, e.Key)
		switch {
		case errors.Is(err, errUnreadable):
			res.Unreadable = append(res.Unreadable, e.Key)
		case err != nil:
			return res, fmt.Errorf("re-encrypt %s: %w", e.Key, err)
		case done:
			res.Reencrypted++
		}
	}
	res.Dropped, res.Kept, err = s.dropUnused(ctx)
	return res, err
}

// errUnreadable: a Secret with a value that does not decrypt.
var errUnreadable = errors.New("a value does not decrypt")

// reencrypt writes one Secret again under the current key, unless it is
// already; a lost race is retried from a fresh read.
func (s *Store) reencrypt(ctx context.Context, key string) (bool, error) {
	for attempt := 1; ; attempt++ {
		e, err := s.inner.Get(ctx, key)
		if errors.Is(err, bus.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		ids, err := keyIDs(e.Value)
		if err != nil {
			return false, nil // not a Secret: nothing of ours
		}
		cur := s.keys.Current()
		if !slices.ContainsFunc(ids, func(id string) bool { return id != cur }) {
			return false, nil
		}
		o := s.openSecret(key, e.Value)
		if len(o.bad) > 0 {
			return false, errUnreadable
		}
		_, err = s.Update(ctx, key, o.value, e.Revision)
		if errors.Is(err, bus.ErrConflict) && attempt < maxAttempts {
			continue
		}
		return err == nil, err
	}
}

// dropUnused removes from the key file (then from memory) the old keys
// that no stored value uses, and returns them and the old keys kept.
func (s *Store) dropUnused(ctx context.Context) (dropped, kept []string, err error) {
	entries, err := s.inner.List(ctx, keyPrefix+">")
	if err != nil {
		return nil, nil, fmt.Errorf("list secrets: %w", err)
	}
	used := map[string]bool{}
	for _, e := range entries {
		ids, _ := keyIDs(e.Value)
		for _, id := range ids {
			used[id] = true
		}
	}
	old := s.keys.IDs()[1:]
	for _, id := range old {
		if used[id] {
			kept = append(kept, id)
		} else {
			dropped = append(dropped, id)
		}
	}
	if len(dropped) == 0 {
		return nil, kept, nil
	}
	if err := s.keys.save(s.keys.render("", nil, dropped)); err != nil {
		return nil, kept, err
	}
	s.keys.drop(dropped)
	return dropped, kept, nil
}
