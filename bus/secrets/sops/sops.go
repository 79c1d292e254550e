// Package sops reads and writes SOPS documents (YAML and JSON) whose data
// key is kept for age recipients, and only those: it speaks the file format
// of sops 3.x without its library, which links the clients of every cloud
// key service (AWS, GCP, Azure, Vault, gRPC...) that Capstan never uses.
//
// A SOPS document is the plain document with some of its values replaced
// by ENC[...] ciphertext (value.go) and a top-level sops mapping holding
// the data key for each recipient (keys.go), the rule saying which values
// are encrypted, the time of the last change and a MAC over the values.
// Files that use sops' features beyond these (PGP or cloud keys only,
// Shamir key groups, comment regexes) are refused with a clear error.
package sops

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"regexp"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
)

// sopsVersion is written in the metadata of the documents Encrypt writes:
// the sops release whose format they follow (sops reads it as a semver).
const sopsVersion = "3.13.3"

// dataKeySize: the data key is an AES-256 key.
const dataKeySize = 32

// ErrMACMismatch: the values are not those that were encrypted (one was
// altered, removed, added, reordered or moved to another key), or the MAC
// or its timestamp was altered.
var ErrMACMismatch = errors.New("MAC mismatch: the document was changed after it was encrypted")

// Format is a document's syntax: "yaml" or "json".
type Format string

// The formats sops stores structured documents in.
const (
	YAML Format = "yaml"
	JSON Format = "json"
)

func (f Format) load(in []byte) ([]mapping, error) {
	switch f {
	case YAML:
		return loadYAML(in)
	case JSON:
		return loadJSON(in)
	}
	return nil, fmt.Errorf("sops: unknown format %q", string(f))
}

func (f Format) emit(docs []mapping) ([]byte, error) {
	if f == JSON {
		return emitJSON(docs)
	}
	return emitYAML(docs)
}

// Rules say which values are encrypted. A document has at most one of the
// four (sops refuses more); with none, the default is UnencryptedSuffix
// "_unencrypted". A value is tested through every key on its path, so a
// rule matching a mapping's key covers all the values under it.
type Rules struct {
	UnencryptedSuffix string // values under a key ending so stay plain
	EncryptedSuffix   string // only values under a key ending so are encrypted
	UnencryptedRegex  string // values under a key matching stay plain
	EncryptedRegex    string // only values under a key matching are encrypted
	// MACOnlyEncrypted makes the MAC cover the encrypted values only, so
	// that plain ones may be edited without the key.
	MACOnlyEncrypted bool
}

// defaultUnencryptedSuffix is the rule of a document that states none.
const defaultUnencryptedSuffix = "_unencrypted"

// compiled is Rules ready to test paths.
type compiled struct {
	Rules
	unencrypted, encrypted *regexp.Regexp
}

func (r Rules) compile() (*compiled, error) {
	set := 0
	for _, s := range []string{r.UnencryptedSuffix, r.EncryptedSuffix, r.UnencryptedRegex, r.EncryptedRegex} {
		if s != "" {
			set++
		}
	}
	switch {
	case set > 1:
		return nil, errors.New("more than one of unencrypted_suffix, encrypted_suffix, unencrypted_regex, encrypted_regex")
	case set == 0:
		r.UnencryptedSuffix = defaultUnencryptedSuffix
	}
	c := &compiled{Rules: r}
	var err error
	if r.UnencryptedRegex != "" {
		if c.unencrypted, err = regexp.Compile(r.UnencryptedRegex); err != nil {
			return nil, fmt.Errorf("unencrypted_regex: %w", err)
		}
	}
	if r.EncryptedRegex != "" {
		if c.encrypted, err = regexp.Compile(r.EncryptedRegex); err != nil {
			return nil, fmt.Errorf("encrypted_regex: %w", err)
		}
	}
	return c, nil
}

// encrypts says whether the value (or comment) at path is encrypted.
func (c *compiled) encrypts(path []string) bool {
	onPath := func(match func(string) bool) bool { return slices.ContainsFunc(path, match) }
	switch {
	case c.UnencryptedSuffix != "":
		return !onPath(func(k string) bool { return strings.HasSuffix(k, c.UnencryptedSuffix) })
	case c.EncryptedSuffix != "":
		return onPath(func(k string) bool { return strings.HasSuffix(k, c.EncryptedSuffix) })
	case c.unencrypted != nil:
		return !onPath(c.unencrypted.MatchString)
	case c.encrypted != nil:
		return onPath(c.encrypted.MatchString)
	}
	return true
}

// macOnlyEncryptedInit starts the hash of a MAC over encrypted values only,
// so that it never equals the MAC over all the values: SHA-256("sops").
var macOnlyEncryptedInit = sha256.Sum256([]byte("sops"))

// walker encrypts or decrypts a document's values in document order and
// hashes them into the MAC as sops does: every value that is not a comment
// (null and empty values add nothing), or with MACOnlyEncrypted only the
// encrypted ones, as plain text (plainBytes).
type walker struct {
	rules   *compiled
	key     []byte
	mac     hash.Hash
	encrypt bool
}

func newWalker(rules *compiled, key []byte, encrypt bool) *walker {
	w := &walker{rules: rules, key: key, mac: sha512.New(), encrypt: encrypt}
	if rules.MACOnlyEncrypted {
		w.mac.Write(macOnlyEncryptedInit[:])
	}
	return w
}

// sum is the MAC: the hash in upper-case hex.
func (w *walker) sum() string {
	return fmt.Sprintf("%X", w.mac.Sum(nil))
}

// with returns path extended by key, never sharing path's array.
func with(path []string, key string) []string {
	return append(path[:len(path):len(path)], key)
}

func (w *walker) mapping(m mapping, path []string) error {
	for i := range m {
		e := &m[i]
		if e.comment != nil {
			if err := w.comment(e.comment, path); err != nil {
				return err
			}
			continue
		}
		v, err := w.value(e.value, with(path, e.key))
		if err != nil {
			return err
		}
		e.value = v
	}
	return nil
}

// sequence walks a list's items at the list's own path: indices are not
// part of the path.
func (w *walker) sequence(s sequence, path []string) error {
	for i, v := range s {
		if c, ok := v.(*comment); ok {
			if w.encrypt && w.rules.encrypts(path) {
				// sops writes an encrypted comment of a list as an item,
				// ENC[...,type:comment], which decrypts back to a comment.
				enc, err := seal(w.key, c, additionalData(path))
				if err != nil {
					return fmt.Errorf("comment in %s: %w", pathName(path), err)
				}
				s[i] = enc
				continue
			}
			if err := w.comment(c, path); err != nil {
				return err
			}
			continue
		}
		v, err := w.value(v, path)
		if err != nil {
			return err
		}
		s[i] = v
	}
	return nil
}

func (w *walker) value(v any, path []string) (any, error) {
	switch v := v.(type) {
	case mapping:
		return v, w.mapping(v, path)
	case sequence:
		return v, w.sequence(v, path)
	case nil:
		return nil, nil
	}
	if w.encrypt {
		return w.sealValue(v, path)
	}
	return w.openValue(v, path)
}

func (w *walker) sealValue(v any, path []string) (any, error) {
	plain, _, err := plainBytes(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pathName(path), err)
	}
	encrypted := w.rules.encrypts(path)
	if encrypted || !w.rules.MACOnlyEncrypted {
		w.mac.Write(plain)
	}
	if !encrypted {
		return v, nil
	}
	s, err := seal(w.key, v, additionalData(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pathName(path), err)
	}
	return s, nil
}

func (w *walker) openValue(v any, path []string) (any, error) {
	if w.rules.encrypts(path) {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s: a plain %T where the document's rule wants an encrypted value", pathName(path), v)
		}
		var err error
		if v, err = open(w.key, s, additionalData(path)); err != nil {
			if err == errAuth {
				return nil, fmt.Errorf("%w (the value of %s does not authenticate at that key)", ErrMACMismatch, pathName(path))
			}
			return nil, fmt.Errorf("%s: %w", pathName(path), err)
		}
		if _, ok := v.(*comment); ok {
			// A value whose ciphertext says it is a comment counts as one.
			return v, nil
		}
	} else if w.rules.MACOnlyEncrypted {
		return v, nil
	}
	plain, _, err := plainBytes(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pathName(path), err)
	}
	w.mac.Write(plain)
	return v, nil
}

// comment encrypts or decrypts a comment under the rule of its place (the
// path of the mapping or list that holds it). Comments are not in the MAC,
// and one that does not decrypt is kept as it is, as sops keeps comments
// written before it encrypted them.
func (w *walker) comment(c *comment, path []string) error {
	if !w.rules.encrypts(path) {
		return nil
	}
	if w.encrypt {
		s, err := seal(w.key, c, additionalData(path))
		if err != nil {
			return fmt.Errorf("comment in %s: %w", pathName(path), err)
		}
		c.text = s
		return nil
	}
	v, err := open(w.key, c.text, additionalData(path))
	if err != nil {
		return nil
	}
	// sops writes a decrypted comment on a line of its own, even one that
	// followed a value: so does this package, so that both print the same.
	switch v := v.(type) {
	case *comment:
		c.text, c.inline = v.text, false
	case string:
		c.text, c.inline = v, false
	}
	return nil
}

// pathName names a place in a document for errors: keys are plain text in
// a SOPS document, values never are.
func pathName(path []string) string {
	if len(path) == 0 {
		return "the top level"
	}
	return strings.Join(path, ".")
}

// Encrypt encrypts a plain document for age recipients (at least one) the
// way `sops --encrypt --age R1,R2 ...` does with rules: it picks a random
// data key, encrypts the values the rules select, and appends the sops
// mapping with the data key for each recipient and the MAC over the values
// (all of them, or with MACOnlyEncrypted the encrypted ones).
func Encrypt(format Format, plain []byte, recipients []string, rules Rules) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, errors.New("no age recipient")
	}
	docs, err := format.load(plain)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, errors.New("the document is empty")
	}
	for _, d := range docs {
		if _, ok := d.lookup(metadataKey); ok {
			return nil, errors.New("the document is already encrypted: it has a top-level sops key")
		}
	}
	c, err := rules.compile()
	if err != nil {
		return nil, err
	}
	dataKey := make([]byte, dataKeySize)
	if _, err := rand.Read(dataKey); err != nil {
		return nil, fmt.Errorf("random data key: %w", err)
	}
	// The default rule is written out, as sops writes it.
	md := metadata{rules: c.Rules, version: sopsVersion}
	for _, s := range recipients {
		s = strings.TrimSpace(s)
		r, err := parseRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("age recipient %q: %w", s, err)
		}
		enc, err := wrapKey(dataKey, r)
		if err != nil {
			return nil, fmt.Errorf("encrypt the data key to %s: %w", s, err)
		}
		md.age = append(md.age, ageKey{recipient: s, enc: enc})
	}
	w := newWalker(c, dataKey, true)
	for _, d := range docs {
		if err := w.mapping(d, nil); err != nil {
			return nil, err
		}
	}
	// The MAC is encrypted like a value, bound to the timestamp.
	md.lastModified = time.Now().UTC().Format(time.RFC3339)
	if md.mac, err = seal(dataKey, w.sum(), md.lastModified); err != nil {
		return nil, err
	}
	meta := md.mapping()
	for i := range docs {
		docs[i] = append(docs[i], entry{key: metadataKey, value: meta})
	}
	return format.emit(docs)
}

// Decrypt decrypts a SOPS document with age identities and returns it in
// plain text, in its own format (YAML indented by four as sops writes it,
// JSON by tabs), without the sops mapping and with the comments it had.
// The MAC is checked: a document whose values were changed in any way
// since it was encrypted is refused with ErrMACMismatch. A document none of
// ids can open gets a *NoKeyError. No error holds plain text.
func Decrypt(format Format, doc []byte, ids []age.Identity) ([]byte, error) {
	docs, err := format.load(doc)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, errors.New("sops metadata not found: the document is empty")
	}
	raw, ok := docs[0].lookup(metadataKey)
	if !ok {
		return nil, errors.New("sops metadata not found: no top-level sops key")
	}
	md, err := parseMetadata(raw)
	if err != nil {
		return nil, fmt.Errorf("sops metadata: %w", err)
	}
	c, err := md.rules.compile()
	if err != nil {
		return nil, fmt.Errorf("sops metadata: %w", err)
	}
	lastModified, err := time.Parse(time.RFC3339, md.lastModified)
	if err != nil {
		return nil, fmt.Errorf("sops metadata: lastmodified: %w", err)
	}
	dataKey, err := unwrapKey(md.age, ids)
	if err != nil {
		return nil, err
	}
	w := newWalker(c, dataKey, false)
	for i := range docs {
		docs[i] = docs[i].without(metadataKey)
		if err := w.mapping(docs[i], nil); err != nil {
			return nil, err
		}
	}
	// The MAC is bound to the timestamp as sops formats it (RFC 3339,
	// whole seconds), which is how it wrote it.
	stored, err := open(dataKey, md.mac, lastModified.Format(time.RFC3339))
	if s, ok := stored.(string); err != nil || !ok || !hmac.Equal([]byte(s), []byte(w.sum())) {
		return nil, ErrMACMismatch
	}
	out, err := format.emit(docs)
	if err != nil {
		return nil, errors.New("emit the decrypted document")
	}
	return out, nil
}
