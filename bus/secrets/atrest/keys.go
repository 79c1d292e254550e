package atrest

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// KeyFileName is the key file's name in the control plane's data dir.
const KeyFileName = "secrets.key"

// keySize is AES-256's.
const keySize = 32

// validID is what a key id may be: it is written into every ciphertext,
// between colons.
var validID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Keyring holds the keys of a key file: the first is current (every value
// is encrypted with it), the others are only read with. It is safe for
// concurrent use.
type Keyring struct {
	path string // "" keeps the keys in memory only (tests)

	mu    sync.RWMutex
	ids   []string // ids[0] is current
	aeads map[string]cipher.AEAD
	raw   map[string][]byte
}

// NewKeyring makes a keyring of one new key, kept in memory only.
func NewKeyring() (*Keyring, error) {
	k := &Keyring{aeads: map[string]cipher.AEAD{}, raw: map[string][]byte{}}
	id, key, err := k.generate()
	if err != nil {
		return nil, err
	}
	return k, k.install(id, key)
}

// LoadKeyFile reads the key file at path, creating it (0600, one new key)
// when it is missing. A file others may read is refused.
func LoadKeyFile(path string) (*Keyring, error) {
	k := &Keyring{path: path, aeads: map[string]cipher.AEAD{}, raw: map[string][]byte{}}
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		id, key, err := k.generate()
		if err != nil {
			return nil, err
		}
		if err := k.install(id, key); err != nil {
			return nil, err
		}
		if err := k.save(k.render("", nil, nil)); err != nil {
			return nil, err
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secrets key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secrets key file %s: mode %04o lets others read it: chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets key file: %w", err)
	}
	if err := k.parse(b); err != nil {
		return nil, fmt.Errorf("secrets key file %s: %w", path, err)
	}
	return k, nil
}

// parse reads lines of "<id> <base64 of 32 bytes>"; blank lines and #
// comments are skipped.
func (k *Keyring) parse(b []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return fmt.Errorf("line %d: want \"<id> <base64 key>\"", n)
		}
		if !validID.MatchString(f[0]) {
			return fmt.Errorf("line %d: key id %q: use letters, digits, '.', '_' and '-'", n, f[0])
		}
		key, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil || len(key) != keySize {
			return fmt.Errorf("line %d: key %s is not %d bytes in base64", n, f[0], keySize)
		}
		if _, dup := k.raw[f[0]]; dup {
			return fmt.Errorf("line %d: key id %s given twice", n, f[0])
		}
		if err := k.put(f[0], key); err != nil {
			return err
		}
		k.ids = append(k.ids, f[0])
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(k.ids) == 0 {
		return errors.New("no key in it")
	}
	return nil
}

func (k *Keyring) put(id string, key []byte) error {
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	k.aeads[id], k.raw[id] = aead, key
	return nil
}

// Current is the id of the key values are encrypted with.
func (k *Keyring) Current() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.ids[0]
}

// IDs lists the key ids, the current one first.
func (k *Keyring) IDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return slices.Clone(k.ids)
}

// current returns the current key and its id.
func (k *Keyring) current() (string, cipher.AEAD) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.ids[0], k.aeads[k.ids[0]]
}

// aead returns the key of id, if the keyring holds it.
func (k *Keyring) aead(id string) (cipher.AEAD, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	a, ok := k.aeads[id]
	return a, ok
}

// generate makes a new random key and its id: the time it was made,
// unique in the keyring.
func (k *Keyring) generate() (string, []byte, error) {
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return "", nil, err
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	base := "k" + time.Now().UTC().Format("20060102T150405Z")
	id := base
	for n := 2; k.raw[id] != nil; n++ {
		id = fmt.Sprintf("%s-%d", base, n)
	}
	return id, key, nil
}

// install makes key the current one, in memory.
func (k *Keyring) install(id string, key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.put(id, key); err != nil {
		return err
	}
	k.ids = slices.Insert(k.ids, 0, id)
	return nil
}

// drop removes keys (never the current one), in memory.
func (k *Keyring) drop(ids []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, id := range ids {
		if id == k.ids[0] {
			continue
		}
		delete(k.aeads, id)
		delete(k.raw, id)
		k.ids = slices.DeleteFunc(k.ids, func(x string) bool { return x == id })
	}
}

// render is the key file's content: the keyring with newID (if not "")
// first, without the ids in drop.
func (k *Keyring) render(newID string, newKey []byte, drop []string) []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var b bytes.Buffer
	b.WriteString("# Capstan's keys of Secrets at rest (docs/ARCHITECTURE.md): <id> <base64 AES-256 key>.\n")
	b.WriteString("# The first encrypts; the others only decrypt. Keep this file (0600) with the bus's data.\n")
	if newID != "" {
		fmt.Fprintf(&b, "%s %s\n", newID, base64.StdEncoding.EncodeToString(newKey))
	}
	for i, id := range k.ids {
		if i > 0 && slices.Contains(drop, id) {
			continue
		}
		fmt.Fprintf(&b, "%s %s\n", id, base64.StdEncoding.EncodeToString(k.raw[id]))
	}
	return b.Bytes()
}

// save writes the key file whole (a new file renamed over the old), 0600.
func (k *Keyring) save(content []byte) error {
	if k.path == "" {
		return nil
	}
	dir := filepath.Dir(k.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(k.path)+".*")
	if err != nil {
		return fmt.Errorf("secrets key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(content)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), k.path)
	}
	if err != nil {
		return fmt.Errorf("secrets key file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename itself
		d.Close()
	}
	return nil
}
