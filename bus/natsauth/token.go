package natsauth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
)

// tokenPrefix starts every join token, naming its format.
const tokenPrefix = "capstan-join-v1."

// JoinToken is what `capstan token create` prints: everything a new node
// needs to ask for its own credentials once. It carries a bootstrap user
// (allowed only to publish the join request, expiring with the token),
// the token's id and secret, and the hash of the bus CA, which the node
// pins before it sends anything.
type JoinToken struct {
	ID     string `json:"i"`
	Secret string `json:"s"`
	CAHash string `json:"c"`
	JWT    string `json:"j"`
	Seed   string `json:"k"`
}

// String is the token on one line.
func (t JoinToken) String() string {
	b, _ := json.Marshal(t)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// Creds are the bootstrap user's credentials.
func (t JoinToken) Creds() Creds { return Creds{JWT: t.JWT, Seed: []byte(t.Seed)} }

// Expires is when the token's bootstrap user expires (zero if never).
func (t JoinToken) Expires() time.Time {
	uc, err := jwt.DecodeUserClaims(t.JWT)
	if err != nil || uc.Expires == 0 {
		return time.Time{}
	}
	return time.Unix(uc.Expires, 0)
}

// errBadToken is the one error a malformed token gets: it never quotes
// the token.
var errBadToken = errors.New("not a Capstan join token (capstan token create prints one)")

// ParseJoinToken reads a token printed by String.
func ParseJoinToken(s string) (JoinToken, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), tokenPrefix)
	if !ok {
		return JoinToken{}, errBadToken
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return JoinToken{}, errBadToken
	}
	var t JoinToken
	if err := json.Unmarshal(b, &t); err != nil {
		return JoinToken{}, errBadToken
	}
	if t.ID == "" || len(t.Secret) < 32 || len(t.CAHash) != 64 || t.JWT == "" || t.Seed == "" {
		return JoinToken{}, errBadToken
	}
	if _, err := hex.DecodeString(t.CAHash); err != nil {
		return JoinToken{}, errBadToken
	}
	uc, err := jwt.DecodeUserClaims(t.JWT)
	if err != nil || RoleOf(uc) != RoleJoin {
		return JoinToken{}, errBadToken
	}
	if _, err := ParseCreds(mustCredsFile(t.Creds())); err != nil {
		return JoinToken{}, errBadToken
	}
	return t, nil
}

func mustCredsFile(c Creds) []byte {
	b, _ := c.File()
	return b
}

// randomString is n random bytes, URL-safe base64.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// randomHex is n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
