package natsauth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Headers of a signed request: the sender's user JWT, the time, and the
// sender's nkey signature over the subject, the time and the payload's
// hash. The server's permissions say who may send a request; the
// signature tells the control plane who did, for the history.
const (
	HeaderCredentials = "Capstan-Credentials"
	HeaderTime        = "Capstan-Time"
	HeaderSignature   = "Capstan-Signature"
)

// maxSkew bounds how old (or how far ahead) a signed request may be.
const maxSkew = 2 * time.Minute

// Identity is who sent a verified request.
type Identity struct {
	Name, Role, Key string
}

// String is "role:name", as the history shows it.
func (i Identity) String() string { return i.Role + ":" + i.Name }

// Sign adds the signed-request headers to m.
func Sign(m *nats.Msg, creds Creds) error {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	sig, err := creds.sign(signedBytes(m.Subject, now, m.Data))
	if err != nil {
		return fmt.Errorf("sign the request: %w", err)
	}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header.Set(HeaderCredentials, creds.JWT)
	m.Header.Set(HeaderTime, now)
	m.Header.Set(HeaderSignature, base64.RawURLEncoding.EncodeToString(sig))
	return nil
}

// ErrUnsigned is returned by VerifyRequest for a request without a
// valid signature.
var ErrUnsigned = errors.New("the request is not signed by a valid Capstan identity")

// VerifyRequest checks m's signature against the credentials it carries,
// and those against the authority (issued here, not expired or revoked).
func (a *Authority) VerifyRequest(m *nats.Msg) (Identity, error) {
	if m.Header == nil {
		return Identity{}, ErrUnsigned
	}
	uc, err := a.Verify(m.Header.Get(HeaderCredentials))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrUnsigned, err)
	}
	at := m.Header.Get(HeaderTime)
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: no time", ErrUnsigned)
	}
	if d := time.Since(t); d > maxSkew || d < -maxSkew {
		return Identity{}, fmt.Errorf("%w: signed at %s, more than %s from now (check the clocks)", ErrUnsigned, at, maxSkew)
	}
	sig, err := base64.RawURLEncoding.DecodeString(m.Header.Get(HeaderSignature))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: bad signature", ErrUnsigned)
	}
	pk, err := nkeys.FromPublicKey(uc.Subject)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: bad key", ErrUnsigned)
	}
	if err := pk.Verify(signedBytes(m.Subject, at, m.Data), sig); err != nil {
		return Identity{}, fmt.Errorf("%w: bad signature", ErrUnsigned)
	}
	return Identity{Name: uc.Name, Role: RoleOf(uc), Key: uc.Subject}, nil
}

func signedBytes(subject, at string, data []byte) []byte {
	sum := sha256.Sum256(data)
	return []byte(subject + "\n" + at + "\n" + hex.EncodeToString(sum[:]))
}

func natsMsg(subject string, data []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = data
	return m
}
