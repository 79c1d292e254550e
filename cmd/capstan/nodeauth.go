//go:build !serveronly

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/bus/natsauth"
)

// nodeIdentity returns the connection options of a node daemon: its own
// credentials from <data-dir>/node.creds (with the CA beside them), a
// --creds file, or, the first time, a join token exchanged for them.
// insecure connects without TLS or credentials (benchmarks, labs).
func nodeIdentity(ctx context.Context, dataDir, url, token, credsFile, nodeName string, insecure bool, log *slog.Logger) ([]nats.Option, error) {
	if insecure {
		log.Warn("connecting to the bus without TLS or credentials (--insecure-bus)")
		return nil, nil
	}
	credsPath := nodeCredsPath(dataDir, credsFile)
	caPath := filepath.Join(dataDir, nodeCAFile)
	if _, err := os.Stat(credsPath); errors.Is(err, os.ErrNotExist) && credsFile == "" {
		if token == "" {
			return nil, fmt.Errorf("this node has no credentials (%s): give --token TOKEN, printed by capstan token create on the control plane", credsPath)
		}
		tok, err := natsauth.ParseJoinToken(token)
		if err != nil {
			return nil, err
		}
		creds, ca, err := natsauth.Join(ctx, url, tok, nodeName)
		if err != nil {
			return nil, err
		}
		file, err := creds.File()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(caPath, ca, 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(credsPath, file, 0o600); err != nil {
			return nil, err
		}
		log.Info("joined the bus; this node's credentials are kept for later starts", "creds", credsPath, "ca", caPath)
	} else if token != "" {
		log.Info("this node already has credentials; the token is not used", "creds", credsPath)
	}
	b, err := os.ReadFile(credsPath)
	if err != nil {
		return nil, fmt.Errorf("node credentials: %w", err)
	}
	creds, err := natsauth.ParseCreds(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", credsPath, err)
	}
	if uc, _ := creds.Claims(); uc != nil && natsauth.RoleOf(uc) == natsauth.RoleNode && uc.Name != nodeName {
		return nil, fmt.Errorf("%s holds the credentials of node %q, not of --node-name %q", credsPath, uc.Name, nodeName)
	}
	ca, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("the bus CA certificate: %w", err)
	}
	// Read at every connection: renewCreds rewrites the file.
	return natsauth.ClientOptionsFunc(ca, natsauth.CredsFile(credsPath))
}

func nodeCredsPath(dataDir, credsFile string) string {
	if credsFile != "" {
		return credsFile
	}
	return filepath.Join(dataDir, nodeCredsFile)
}

// renewCreds has the control plane sign the node's key again now and
// every natsauth.RenewInterval, rewriting the credentials file when the
// signing key changed (a rotation); later connections use the new file.
func renewCreds(ctx context.Context, nc *nats.Conn, path string, log *slog.Logger) error {
	for {
		if err := renewOnce(ctx, nc, path); err != nil && ctx.Err() == nil {
			log.Warn("renew this node's credentials", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(natsauth.RenewInterval):
		}
	}
}

func renewOnce(ctx context.Context, nc *nats.Conn, path string) error {
	creds, err := natsauth.CredsFile(path)()
	if err != nil {
		return err
	}
	renewed, err := natsauth.Renew(ctx, nc, creds)
	if err != nil || renewed.JWT == creds.JWT {
		return err
	}
	old, _ := creds.Claims()
	cur, _ := renewed.Claims()
	if old != nil && cur != nil && old.Issuer == cur.Issuer {
		return nil // the same signer: nothing to rewrite
	}
	b, err := renewed.File()
	if err != nil {
		return err
	}
	return writePrivate(path, b)
}

// writePrivate replaces a file readable by its owner only, whole.
func writePrivate(path string, b []byte) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
