package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"

	"github.com/capstan-io/capstan/manifests"
)

// Secrets cross the bus sealed: the control plane seals an assignment's
// Secrets with age to its node's public key, and only that node opens them.

// Seal seals a.Secrets to recipient (an age X25519 public key) into
// a.SealedSecrets and a.SecretsDigest, and clears a.Secrets. An assignment
// without Secrets is left as it is.
func Seal(a *manifests.Assignment, recipient string) error {
	if len(a.Secrets) == 0 {
		return nil
	}
	r, err := age.ParseX25519Recipient(recipient)
	if err != nil {
		return fmt.Errorf("seal secrets: %w", err)
	}
	plain, err := json.Marshal(a.Secrets)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		return fmt.Errorf("seal secrets: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return fmt.Errorf("seal secrets: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("seal secrets: %w", err)
	}
	a.SealedSecrets = buf.Bytes()
	a.SecretsDigest = manifests.Hash(string(plain) + recipient)
	a.Secrets = nil
	return nil
}

// Open opens a.SealedSecrets with the node's identity into
// a.Secrets, replacing them. On error it leaves a as it was.
func Open(a *manifests.Assignment, id age.Identity) error {
	if len(a.SealedSecrets) == 0 {
		return nil
	}
	r, err := age.Decrypt(bytes.NewReader(a.SealedSecrets), id)
	if err != nil {
		return fmt.Errorf("open sealed secrets: %w", err)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("open sealed secrets: %w", err)
	}
	// A fresh slice: decoding into a.Secrets would merge into what it held
	// and leave it half-filled on error.
	var secrets []manifests.Secret
	if err := json.Unmarshal(plain, &secrets); err != nil {
		return fmt.Errorf("open sealed secrets: %w", err)
	}
	a.Secrets = secrets
	a.SealedSecrets = nil
	return nil
}

// Decrypter opens a Secret committed encrypted (sops.Decrypter is one);
// it never returns the plain values in its error.
type Decrypter interface {
	Decrypt(sec *manifests.Secret) (*manifests.Secret, error)
}

// ErrNoKey: a SOPS Secret, and no age identity to decrypt it with.
var ErrNoKey = errors.New("no SOPS age identity: give --sops-age-key-file or set SOPS_AGE_KEY_FILE")

// Decrypt returns sec decrypted by d: a Secret committed plain as it is,
// an encrypted one with no d ErrNoKey.
func Decrypt(d Decrypter, sec *manifests.Secret) (*manifests.Secret, error) {
	if len(sec.Sops) == 0 {
		return sec, nil
	}
	if d == nil {
		return nil, ErrNoKey
	}
	return d.Decrypt(sec)
}
