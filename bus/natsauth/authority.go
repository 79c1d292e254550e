package natsauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Files of an Authority, in its directory.
const (
	operatorSeedFile = "operator.nk"
	systemSeedFile   = "system-account.nk"
	accountSeedFile  = "account.nk"
	signingSeedsFile = "signing-keys.nk" // one seed a line, the current first
	revocationsFile  = "revocations.json"
	OperatorJWTFile  = "operator.jwt"
)

// AccountName is the name of the account every Capstan identity is in.
const AccountName = "capstan"

// TagRole is the prefix of the tag carrying a user's role.
const TagRole = "capstan-role:"

// Authority holds the keys at the root of a bus's trust: the NATS
// operator, the system account (the server's own), and Capstan's account
// with its signing keys and revocations. It signs the account JWT and
// every user's. Its methods are safe for concurrent use.
type Authority struct {
	dir string

	operator, system, account nkeys.KeyPair

	mu          sync.Mutex
	signing     []nkeys.KeyPair // the current first
	revocations map[string]int64
}

// LoadOrCreateAuthority reads the authority kept in dir, creating it (0600
// seeds) when dir holds none.
func LoadOrCreateAuthority(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	a := &Authority{dir: dir, revocations: map[string]int64{}}
	var err error
	if a.operator, err = loadOrCreateSeed(filepath.Join(dir, operatorSeedFile), nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.system, err = loadOrCreateSeed(filepath.Join(dir, systemSeedFile), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.account, err = loadOrCreateSeed(filepath.Join(dir, accountSeedFile), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.signing, err = loadSigningKeys(filepath.Join(dir, signingSeedsFile)); err != nil {
		return nil, err
	}
	if len(a.signing) == 0 {
		if err := a.RotateSigningKey(); err != nil {
			return nil, err
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, revocationsFile)); err == nil {
		if err := json.Unmarshal(b, &a.revocations); err != nil {
			return nil, fmt.Errorf("%s: %w", revocationsFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return a, nil
}

// Dir is where the authority keeps its files.
func (a *Authority) Dir() string { return a.dir }

// AccountKey is the public key of Capstan's account.
func (a *Authority) AccountKey() string { return mustPublic(a.account) }

// SystemAccountKey is the public key of the system account.
func (a *Authority) SystemAccountKey() string { return mustPublic(a.system) }

// SigningKeys are the public keys users may be signed with, the current
// one first.
func (a *Authority) SigningKeys() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, len(a.signing))
	for i, k := range a.signing {
		out[i] = mustPublic(k)
	}
	return out
}

// OperatorJWT is the operator's self-signed JWT, naming the system account.
func (a *Authority) OperatorJWT() (string, error) {
	oc := jwt.NewOperatorClaims(mustPublic(a.operator))
	oc.Name = "capstan"
	oc.SystemAccount = a.SystemAccountKey()
	return oc.Encode(a.operator)
}

// SystemAccountJWT is the system account's JWT.
func (a *Authority) SystemAccountJWT() (string, error) {
	ac := jwt.NewAccountClaims(a.SystemAccountKey())
	ac.Name = "SYS"
	return ac.Encode(a.operator)
}

// AccountJWT is Capstan's account JWT as it stands: JetStream enabled, the
// signing keys, and every revocation. Push it to the servers
// (PushAccount) after a change.
func (a *Authority) AccountJWT() (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ac := jwt.NewAccountClaims(a.AccountKey())
	ac.Name = AccountName
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	for _, k := range a.signing {
		ac.SigningKeys.Add(mustPublic(k))
	}
	for pub, at := range a.revocations {
		ac.RevokeAt(pub, time.Unix(at, 0))
	}
	return ac.Encode(a.operator)
}

// RotateSigningKey makes a new signing key current. The old ones stay
// valid, so identities they signed keep working, until RetireSigningKeys.
func (a *Authority) RotateSigningKey() error {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	keys := append([]nkeys.KeyPair{kp}, a.signing...)
	if err := saveSigningKeys(filepath.Join(a.dir, signingSeedsFile), keys); err != nil {
		return err
	}
	a.signing = keys
	return nil
}

// RetireSigningKeys drops every signing key but the current one: users
// they signed are refused once the account JWT is pushed.
func (a *Authority) RetireSigningKeys() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := saveSigningKeys(filepath.Join(a.dir, signingSeedsFile), a.signing[:1]); err != nil {
		return err
	}
	a.signing = a.signing[:1]
	return nil
}

// Revoke revokes a user's key from now on. Push the account JWT for the
// servers to close its connections.
func (a *Authority) Revoke(userKey string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revocations[userKey] = time.Now().Unix()
	b, err := json.MarshalIndent(a.revocations, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(a.dir, revocationsFile), b, 0o600)
}

// Revoked reports whether a user key is revoked.
func (a *Authority) Revoked(userKey string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.revocations[userKey]
	return ok
}

// User describes an identity to issue.
type User struct {
	// Name is the identity's name (a node's name for a node).
	Name string
	// Role is one of the Role constants.
	Role string
	// Key is the user's public nkey; the seed stays with its holder.
	Key string
	// TTL bounds the credentials' life; 0 means no expiry.
	TTL time.Duration
}

// Issue signs a user JWT for u, with its role's permissions, using the
// current signing key.
func (a *Authority) Issue(u User) (string, error) {
	if !nkeys.IsValidPublicUserKey(u.Key) {
		return "", errors.New("issue credentials: not a user public key")
	}
	perms, err := Permissions(u.Role, u.Name)
	if err != nil {
		return "", fmt.Errorf("issue credentials for %s: %w", u.Name, err)
	}
	uc := jwt.NewUserClaims(u.Key)
	uc.Name = u.Name
	uc.IssuerAccount = a.AccountKey()
	uc.Permissions = perms
	uc.Tags.Add(TagRole + u.Role)
	if u.TTL > 0 {
		uc.Expires = time.Now().Add(u.TTL).Unix()
	}
	a.mu.Lock()
	signer := a.signing[0]
	a.mu.Unlock()
	return uc.Encode(signer)
}

// NewCreds makes a key pair for a user and issues it: the whole .creds
// file, for identities made where their holder's file is written (the
// control plane's own, the admin config of `capstan up`).
func (a *Authority) NewCreds(name, role string, ttl time.Duration) (Creds, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Creds{}, err
	}
	pub := mustPublic(kp)
	tok, err := a.Issue(User{Name: name, Role: role, Key: pub, TTL: ttl})
	if err != nil {
		return Creds{}, err
	}
	seed, _ := kp.Seed()
	return Creds{JWT: tok, Seed: seed}, nil
}

// SystemUser makes credentials of a user in the system account, for
// pushing account JWTs to the servers.
func (a *Authority) SystemUser() (Creds, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Creds{}, err
	}
	uc := jwt.NewUserClaims(mustPublic(kp))
	uc.Name = "capstan-control-plane"
	tok, err := uc.Encode(a.system)
	if err != nil {
		return Creds{}, err
	}
	seed, _ := kp.Seed()
	return Creds{JWT: tok, Seed: seed}, nil
}

// Verify checks that a user JWT was signed by this account (a current
// signing key), is not expired and not revoked, and returns its claims.
func (a *Authority) Verify(userJWT string) (*jwt.UserClaims, error) {
	uc, err := jwt.DecodeUserClaims(userJWT)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	if !slices.Contains(a.SigningKeys(), uc.Issuer) {
		return nil, errors.New("credentials: not issued by this bus")
	}
	if uc.IssuerAccount != "" && uc.IssuerAccount != a.AccountKey() {
		return nil, errors.New("credentials: of another account")
	}
	if uc.Expires > 0 && time.Now().Unix() > uc.Expires {
		return nil, errors.New("credentials: expired")
	}
	if a.Revoked(uc.Subject) {
		return nil, errors.New("credentials: revoked")
	}
	return uc, nil
}

// RoleOf is the role a user's JWT carries.
func RoleOf(uc *jwt.UserClaims) string {
	for _, t := range uc.Tags {
		if r, ok := strings.CutPrefix(t, TagRole); ok {
			return r
		}
	}
	return ""
}

func mustPublic(kp nkeys.KeyPair) string {
	pub, err := kp.PublicKey()
	if err != nil {
		panic(err) // a key pair made or read by this package always has one
	}
	return pub
}

func loadOrCreateSeed(path string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
		if err != nil {
			return nil, fmt.Errorf("%s: not an nkey seed", path)
		}
		return kp, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	kp, err := create()
	if err != nil {
		return nil, err
	}
	seed, _ := kp.Seed()
	return kp, writeFile(path, append(seed, '\n'), 0o600)
}

func loadSigningKeys(path string) ([]nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []nkeys.KeyPair
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		kp, err := nkeys.FromSeed([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("%s: not an nkey seed", path)
		}
		out = append(out, kp)
	}
	return out, nil
}

func saveSigningKeys(path string, keys []nkeys.KeyPair) error {
	var b []byte
	for _, k := range keys {
		seed, err := k.Seed()
		if err != nil {
			return err
		}
		b = append(append(b, seed...), '\n')
	}
	return writeFile(path, b, 0o600)
}
