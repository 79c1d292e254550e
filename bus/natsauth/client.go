package natsauth

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"
)

// Creds are a user's JWT and nkey seed: what a standard NATS .creds file
// holds.
type Creds struct {
	JWT  string
	Seed []byte
}

// File is the standard .creds text.
func (c Creds) File() ([]byte, error) { return jwt.FormatUserConfig(c.JWT, c.Seed) }

// PublicKey is the user's public key, read from the JWT.
func (c Creds) PublicKey() (string, error) {
	uc, err := jwt.DecodeUserClaims(c.JWT)
	if err != nil {
		return "", err
	}
	return uc.Subject, nil
}

// ParseCreds reads a .creds file's text. Its errors never quote it.
func ParseCreds(b []byte) (Creds, error) {
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil || tok == "" {
		return Creds{}, errors.New("not a NATS credentials file (no user JWT)")
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return Creds{}, errors.New("not a NATS credentials file (the user JWT does not decode)")
	}
	kp, err := jwt.ParseDecoratedUserNKey(b)
	if err != nil {
		return Creds{}, errors.New("not a NATS credentials file (no user nkey seed)")
	}
	pub, err := kp.PublicKey()
	if err != nil || pub != uc.Subject {
		return Creds{}, errors.New("credentials file: the seed is not the JWT's key")
	}
	seed, err := kp.Seed()
	if err != nil {
		return Creds{}, err
	}
	return Creds{JWT: tok, Seed: seed}, nil
}

// Claims decodes the JWT.
func (c Creds) Claims() (*jwt.UserClaims, error) { return jwt.DecodeUserClaims(c.JWT) }

// sign signs data with the seed.
func (c Creds) sign(data []byte) ([]byte, error) {
	kp, err := nkeys.FromSeed(c.Seed)
	if err != nil {
		return nil, err
	}
	defer kp.Wipe()
	return kp.Sign(data)
}

// ClientConfig is what a client needs to reach the bus: where it is, the
// CA its certificate comes from, and the client's credentials. `capstan
// up` and `capstan credentials create` write it; the CLI reads it.
type ClientConfig struct {
	// Server is one or more comma-separated NATS URLs.
	Server string `yaml:"server"`
	// Name and Role are the identity's, for messages.
	Name string `yaml:"name,omitempty"`
	Role string `yaml:"role,omitempty"`
	// CA is the bus CA's certificate, PEM.
	CA string `yaml:"ca"`
	// Creds is the .creds file's text.
	Creds string `yaml:"creds"`
}

// DefaultConfigPath is where the CLI's config is when neither --config
// nor CAPSTAN_CONFIG says: <user config dir>/capstan/config.
func DefaultConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		if home, herr := os.UserHomeDir(); herr == nil {
			dir = filepath.Join(home, ".config")
		} else {
			dir = "."
		}
	}
	return filepath.Join(dir, "capstan", "config")
}

// LoadClientConfig reads a config file. Its errors say which file and
// what is wrong, never its secrets.
func LoadClientConfig(path string) (*ClientConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist (capstan up and capstan server write it; set --config or CAPSTAN_CONFIG for another)", ErrNoCredentials, path)
		}
		return nil, fmt.Errorf("credentials: %w", err)
	}
	var c ClientConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: not a Capstan client config", path)
	}
	if c.Creds == "" || c.CA == "" {
		return nil, fmt.Errorf("%s: a Capstan client config needs ca and creds", path)
	}
	if _, err := ParseCreds([]byte(c.Creds)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// Save writes the config to path, readable by its owner only.
func (c *ClientConfig) Save(path string) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	head := "# Capstan client config: the bus, its CA and your credentials. Keep it private.\n"
	return writeFile(path, append([]byte(head), b...), 0o600)
}

// Options are the nats.go options that connect with this config: TLS
// trusting the bus CA only, and the credentials.
func (c *ClientConfig) Options() ([]nats.Option, error) {
	creds, err := ParseCreds([]byte(c.Creds))
	if err != nil {
		return nil, err
	}
	return ClientOptions([]byte(c.CA), creds)
}

// ClientOptions connect over TLS trusting caPEM only, as the user in
// creds, with replies in the user's own inbox.
func ClientOptions(caPEM []byte, creds Creds) ([]nats.Option, error) {
	return ClientOptionsFunc(caPEM, func() (Creds, error) { return creds, nil })
}

// CredsFile reads a .creds file at every call: for a connection whose
// credentials are renewed on disk while it runs.
func CredsFile(path string) func() (Creds, error) {
	return func() (Creds, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return Creds{}, err
		}
		return ParseCreds(b)
	}
}

// ClientOptionsFunc is ClientOptions with credentials read at every
// (re)connection, so renewed ones are used once the connection is made
// again. The identity (for the inbox) is the first call's.
func ClientOptionsFunc(caPEM []byte, get func() (Creds, error)) ([]nats.Option, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the bus CA certificate does not parse")
	}
	creds, err := get()
	if err != nil {
		return nil, err
	}
	uc, err := creds.Claims()
	if err != nil {
		return nil, errors.New("the credentials' JWT does not decode")
	}
	role := ""
	for _, t := range uc.Tags {
		if r, ok := strings.CutPrefix(t, TagRole); ok {
			role = r
		}
	}
	opts := []nats.Option{
		nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}),
		nats.UserJWT(func() (string, error) {
			c, err := get()
			return c.JWT, err
		}, func(nonce []byte) ([]byte, error) {
			c, err := get()
			if err != nil {
				return nil, err
			}
			return c.sign(nonce)
		}),
	}
	if role != RoleControlPlane && role != RoleAdmin && uc.Name != "" {
		opts = append(opts, nats.CustomInboxPrefix(InboxPrefix(role, uc.Name)))
	}
	return opts, nil
}

// PinnedTLS trusts the CA whose certificate hashes to caHash (CAHash),
// found in the server's handshake: how a joining node, which has only a
// token, checks that it talks to its bus. The chain is verified with the
// standard library against that CA, for the server name dialled.
func PinnedTLS(caHash string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		var found []byte
		pool := x509.NewCertPool()
		for _, c := range cs.PeerCertificates {
			sum := sha256.Sum256(c.Raw)
			if hex.EncodeToString(sum[:]) == caHash {
				pool.AddCert(c)
				found = c.Raw
			}
		}
		if found == nil {
			return errors.New("the bus's certificate is not from the CA the join token names")
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no server certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: cs.ServerName, Roots: pool, Intermediates: inter})
		return err
	}
	return cfg
}

// Explain turns a connection error into one line in the user's words:
// what was refused and what to do, never NATS internals.
func Explain(err error, where string) error {
	if err == nil {
		return nil
	}
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var opErr *net.OpError
	msg := err.Error()
	switch {
	case errors.Is(err, ErrNoCredentials):
		return err
	case errors.As(err, &unknown):
		return fmt.Errorf("the bus at %s presented a certificate from another CA: these credentials are for another bus", where)
	case errors.As(err, &host):
		return fmt.Errorf("the bus at %s presented a certificate that does not name %s (add it with --tls-san)", where, host.Host)
	case errors.As(err, &invalid):
		return fmt.Errorf("the bus at %s presented an invalid certificate (%s)", where, invalid.Detail)
	case errors.Is(err, nats.ErrAuthExpired):
		return fmt.Errorf("the bus at %s refused these credentials: they have expired", where)
	case errors.Is(err, nats.ErrAuthRevoked):
		return fmt.Errorf("the bus at %s refused these credentials: they were revoked", where)
	case errors.Is(err, nats.ErrAuthorization), strings.Contains(strings.ToLower(msg), "authorization violation"):
		return fmt.Errorf("the bus at %s refused these credentials (revoked, expired, or for another bus)", where)
	case strings.Contains(msg, "join token"):
		return err
	case strings.Contains(msg, "tls: first record does not look like a TLS handshake"),
		errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("the NATS server at %s does not speak TLS: it is not a Capstan bus (or an old one)", where)
	case errors.Is(err, nats.ErrNoServers), errors.As(err, &opErr):
		return fmt.Errorf("cannot reach the Capstan bus at %s (is capstan up or capstan server running?)", where)
	}
	return fmt.Errorf("cannot connect to the Capstan bus at %s: %v", where, err)
}
