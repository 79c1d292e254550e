package secrets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
)

// IdentityFile holds the node's age key: the control plane seals the
// Secrets it hands this node to its public half.
const IdentityFile = "node-age.key"

// LoadIdentity reads the node's age identity from dataDir, making one on
// first start; with no dataDir the identity lives only in memory.
func LoadIdentity(dataDir string) (*age.X25519Identity, error) {
	if dataDir == "" {
		return age.GenerateX25519Identity()
	}
	path := filepath.Join(dataDir, IdentityFile)
	b, err := os.ReadFile(path)
	if err == nil {
		id, err := age.ParseX25519Identity(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("node identity %s: %w", path, err)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	if err := os.WriteFile(path, []byte(id.String()+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	return id, nil
}
