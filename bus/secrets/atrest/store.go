// Package atrest keeps the values of Secrets encrypted in the objects
// bucket, as Kubernetes' aesgcm provider does for etcd: Store wraps the
// control plane's bus.Store and encrypts each value of a Secret's data and
// stringData with AES-256-GCM when it writes a Secret.* key, and decrypts
// when it reads one, so the control plane works on plain text while every
// other bus client sees ciphertext. Metadata and the values' key names
// stay readable. Only the control plane holds the key file; it serves
// Secret values to admins (capstan.secrets.reveal) and rotates the key
// (capstan.secrets.rotate) on request (serve.go).
package atrest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// Prefix starts every encrypted value: Prefix, the key id, ":", then the
// 12-byte nonce and the sealed value (raw in data, base64 in stringData).
const Prefix = "capstan:enc:aesgcm:v1:"

// keyPrefix is what the keys of Secrets start with in the objects bucket.
const keyPrefix = "Secret."

// IsCiphertext says whether a stored value is one Store encrypted.
func IsCiphertext(v []byte) bool { return bytes.HasPrefix(v, []byte(Prefix)) }

// Store is a bus.Store whose Secrets are encrypted at rest; every other key
// passes through unchanged. Create it with New.
type Store struct {
	inner bus.Store
	keys  *Keyring
	log   *slog.Logger

	// writes is held shared by each write of a Secret from encrypting to
	// the write's answer, and alone to change the current key: once a new
	// key is current, no write made with the old one is still in flight.
	writes sync.RWMutex
	// rotating serialises rotations and the re-encryption passes.
	rotating sync.Mutex
}

var _ bus.Store = (*Store)(nil)

// New wraps inner (the objects bucket) with keys. A nil log discards.
func New(inner bus.Store, keys *Keyring, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{inner: inner, keys: keys, log: log}
}

// Keys is the store's keyring.
func (s *Store) Keys() *Keyring { return s.keys }

func isSecret(key string) bool { return strings.HasPrefix(key, keyPrefix) }

// Get reads key, its Secret values decrypted.
func (s *Store) Get(ctx context.Context, key string) (bus.Entry, error) {
	e, err := s.inner.Get(ctx, key)
	if err == nil && isSecret(key) {
		e.Value = s.plain(key, e.Value)
	}
	return e, err
}

// Create writes a new key, its Secret values encrypted.
func (s *Store) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if !isSecret(key) {
		return s.inner.Create(ctx, key, value)
	}
	s.writes.RLock()
	defer s.writes.RUnlock()
	ct, err := s.seal(key, value)
	if err != nil {
		return 0, err
	}
	return s.inner.Create(ctx, key, ct)
}

// Update writes key at revision rev, its Secret values encrypted.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if !isSecret(key) {
		return s.inner.Update(ctx, key, value, rev)
	}
	s.writes.RLock()
	defer s.writes.RUnlock()
	ct, err := s.seal(key, value)
	if err != nil {
		return 0, err
	}
	return s.inner.Update(ctx, key, ct, rev)
}

// Put writes key, its Secret values encrypted.
func (s *Store) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if !isSecret(key) {
		return s.inner.Put(ctx, key, value)
	}
	s.writes.RLock()
	defer s.writes.RUnlock()
	ct, err := s.seal(key, value)
	if err != nil {
		return 0, err
	}
	return s.inner.Put(ctx, key, ct)
}

// Delete deletes key.
func (s *Store) Delete(ctx context.Context, key string, rev uint64) error {
	return s.inner.Delete(ctx, key, rev)
}

// List lists the entries matching pattern, Secret values decrypted.
func (s *Store) List(ctx context.Context, pattern string) ([]bus.Entry, error) {
	entries, err := s.inner.List(ctx, pattern)
	for i, e := range entries {
		if isSecret(e.Key) {
			entries[i].Value = s.plain(e.Key, e.Value)
		}
	}
	return entries, err
}

// Watch watches pattern, Secret values decrypted. A pattern that cannot
// match a Secret is the inner store's watch itself.
func (s *Store) Watch(ctx context.Context, pattern string) (<-chan bus.Entry, error) {
	in, err := s.inner.Watch(ctx, pattern)
	if err != nil || !mayMatchSecrets(pattern) {
		return in, err
	}
	out := make(chan bus.Entry, 256)
	go func() {
		defer close(out)
		for e := range in {
			if e.Op == bus.OpPut && isSecret(e.Key) {
				e.Value = s.plain(e.Key, e.Value)
			}
			select {
			case out <- e:
			case <-ctx.Done():
				for range in { // the inner watch closes as ctx ended
				}
				return
			}
		}
	}()
	return out, nil
}

// mayMatchSecrets says whether a pattern's first token may be "Secret".
func mayMatchSecrets(pattern string) bool {
	first, _, _ := strings.Cut(pattern, ".")
	return first == "Secret" || first == "*" || first == ">"
}

// secretAD is the additional data of one value: the Secret's namespace
// and name (from its key), the field and the value's key, so a value moved
// to another Secret, field or key does not decrypt.
func secretAD(key, field, name string) []byte {
	_, ns, obj, _ := manifests.SplitKey(key)
	return []byte("capstan.io/secret\x00" + ns + "\x00" + obj + "\x00" + field + "\x00" + name)
}

// seal returns a Secret's stored form: every value encrypted with the
// current key. A value that looks encrypted already is encrypted again
// (the caller's plain text is whatever it gave).
func (s *Store) seal(key string, value []byte) ([]byte, error) {
	var sec manifests.Secret
	if err := json.Unmarshal(value, &sec); err != nil {
		return nil, fmt.Errorf("atrest: %s is not a Secret: %w", key, err)
	}
	if len(sec.Data) == 0 && len(sec.StringData) == 0 {
		return value, nil
	}
	id, aead := s.keys.current()
	encrypt := func(field, name string, v []byte) ([]byte, error) {
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(v)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, err
		}
		return aead.Seal(nonce, nonce, v, secretAD(key, field, name)), nil
	}
	if len(sec.Data) > 0 {
		data := make(map[string][]byte, len(sec.Data))
		for name, v := range sec.Data {
			ct, err := encrypt("data", name, v)
			if err != nil {
				return nil, err
			}
			data[name] = append([]byte(Prefix+id+":"), ct...)
		}
		sec.Data = data
	}
	if len(sec.StringData) > 0 {
		sd := make(map[string]string, len(sec.StringData))
		for name, v := range sec.StringData {
			ct, err := encrypt("stringData", name, []byte(v))
			if err != nil {
				return nil, err
			}
			sd[name] = Prefix + id + ":" + base64.StdEncoding.EncodeToString(ct)
		}
		sec.StringData = sd
	}
	return json.Marshal(&sec)
}

// errUnknownKey: a value encrypted with a key the keyring does not hold.
var errUnknownKey = errors.New("encrypted with a key the key file does not hold")

// open decrypts one stored value. A value that is not ciphertext (written
// before Secrets were encrypted) is its own plain text.
func (s *Store) open(key, field, name string, v []byte) (plain []byte, id string, err error) {
	if !IsCiphertext(v) {
		return v, "", nil
	}
	id, body, ok := strings.Cut(string(v[len(Prefix):]), ":")
	if !ok {
		return nil, "", errors.New("malformed ciphertext")
	}
	ct := []byte(body)
	if field == "stringData" {
		if ct, err = base64.StdEncoding.DecodeString(body); err != nil {
			return nil, id, errors.New("malformed ciphertext")
		}
	}
	aead, ok := s.keys.aead(id)
	if !ok {
		return nil, id, fmt.Errorf("key %s: %w", id, errUnknownKey)
	}
	if len(ct) < aead.NonceSize() {
		return nil, id, errors.New("malformed ciphertext")
	}
	n := aead.NonceSize()
	// An empty value opens to an empty slice, not nil, which JSON would
	// write as null.
	plain, err = aead.Open([]byte{}, ct[:n], ct[n:], secretAD(key, field, name))
	if err != nil {
		return nil, id, fmt.Errorf("key %s: the value does not authenticate (altered, or moved from another Secret)", id)
	}
	return plain, id, nil
}

// opened is a Secret's stored value read back.
type opened struct {
	value []byte   // the plain text of the whole object
	bad   []string // "data.NAME" of the values that would not decrypt
}

// prefix64 is how Prefix starts in base64, as it shows in a JSON data
// value: its first 21 bytes make 28 characters that do not depend on what
// follows.
var prefix64 = base64.StdEncoding.EncodeToString([]byte(Prefix))[:28]

// mayHoldCiphertext is false for a stored value with no encrypted value
// in it: one written before Secrets were encrypted, without values, or a
// SOPS Secret.
func mayHoldCiphertext(value []byte) bool {
	return bytes.Contains(value, []byte(prefix64)) || bytes.Contains(value, []byte(Prefix))
}

// openSecret decrypts the values of a stored Secret. Values that do not
// decrypt are left out (and listed): the sync writes them again from Git.
// A value that is not a Secret is returned as it is.
func (s *Store) openSecret(key string, value []byte) opened {
	if !mayHoldCiphertext(value) {
		return opened{value: value}
	}
	var sec manifests.Secret
	if err := json.Unmarshal(value, &sec); err != nil {
		return opened{value: value}
	}
	var o opened
	for _, f := range []struct {
		field string
		data  map[string][]byte
	}{{"data", sec.Data}, {"stringData", stringMap(sec.StringData)}} {
		for _, name := range slices.Sorted(maps.Keys(f.data)) {
			plain, _, err := s.open(key, f.field, name, f.data[name])
			if err != nil {
				o.bad = append(o.bad, f.field+"."+name)
				s.log.Warn("a Secret value does not decrypt: left out until the sync writes it again",
					"secret", key, "key", f.field+"."+name, "err", err)
				if f.field == "data" {
					delete(sec.Data, name)
				} else {
					delete(sec.StringData, name)
				}
				continue
			}
			if f.field == "data" {
				sec.Data[name] = plain
			} else {
				sec.StringData[name] = string(plain)
			}
		}
	}
	b, err := json.Marshal(&sec)
	if err != nil {
		return opened{value: value}
	}
	o.value = b
	return o
}

// keyIDs lists the key id of each value of a stored Secret, "" for a
// value in plain text.
func keyIDs(value []byte) ([]string, error) {
	var sec manifests.Secret
	if err := json.Unmarshal(value, &sec); err != nil {
		return nil, err
	}
	var ids []string
	for _, v := range sec.Data {
		ids = append(ids, valueKeyID(v))
	}
	for _, v := range sec.StringData {
		ids = append(ids, valueKeyID([]byte(v)))
	}
	return ids, nil
}

// valueKeyID is the key id of an encrypted value, "" for plain text.
func valueKeyID(v []byte) string {
	if !IsCiphertext(v) {
		return ""
	}
	id, _, _ := strings.Cut(string(v[len(Prefix):]), ":")
	return id
}

func stringMap(m map[string]string) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out
}

// plain is the plain text of a stored Secret.
func (s *Store) plain(key string, value []byte) []byte {
	return s.openSecret(key, value).value
}
