package natsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ServerConfig is the part of a nats-server configuration that makes a
// server trust this authority: operator mode with the full account
// resolver (account JWTs pushed at run time, so a revocation needs no
// restart) and TLS with the bus's certificate. The embedded server loads
// exactly this; an external cluster's servers include it (`capstan auth
// server-config`). It writes the operator JWT beside the seeds; the
// resolver keeps its files in resolverDir.
func (a *Authority) ServerConfig(pki PKI, resolverDir string) (string, error) {
	op, err := a.OperatorJWT()
	if err != nil {
		return "", err
	}
	opPath := filepath.Join(a.dir, OperatorJWTFile)
	if err := writeFile(opPath, []byte(op), 0o644); err != nil {
		return "", err
	}
	sys, err := a.SystemAccountJWT()
	if err != nil {
		return "", err
	}
	acc, err := a.AccountJWT()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Capstan's bus: NATS operator mode (JWT identities) and TLS.\n")
	fmt.Fprintf(&b, "operator: %q\n", opPath)
	fmt.Fprintf(&b, "system_account: %s\n", a.SystemAccountKey())
	// timeout: how long a server asks its peers for an account it lacks.
	// Capstan's accounts are preloaded on every server, so an unknown one
	// (forged credentials) is refused after it; the default 1.9 s left a
	// refusal racing the client's 2 s connect timeout.
	fmt.Fprintf(&b, "resolver: {\n  type: full\n  dir: %q\n  allow_delete: false\n  interval: \"2m\"\n  timeout: \"500ms\"\n}\n", resolverDir)
	fmt.Fprintf(&b, "resolver_preload: {\n  %s: %q\n  %s: %q\n}\n", a.SystemAccountKey(), sys, a.AccountKey(), acc)
	fmt.Fprintf(&b, "tls: {\n  cert_file: %q\n  key_file: %q\n  timeout: 5\n}\n", pki.ServerCertPath(), pki.ServerKeyPath())
	return b.String(), nil
}

// PushAccount sends the account JWT as it stands to the servers, through
// a connection of the system account (SystemUser): they apply it at once,
// closing the connections of revoked users.
func (a *Authority) PushAccount(ctx context.Context, sys *nats.Conn) error {
	acc, err := a.AccountJWT()
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	msg, err := sys.RequestWithContext(ctx, "$SYS.REQ.CLAIMS.UPDATE", []byte(acc))
	if err != nil {
		return fmt.Errorf("push the account to the bus: %w", err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("push the account to the bus: %w", err)
	}
	if resp.Error != nil {
		return fmt.Errorf("push the account to the bus: %s", resp.Error.Description)
	}
	return nil
}

// ErrNoCredentials is returned when a client has no credentials to use.
var ErrNoCredentials = errors.New("no credentials")
