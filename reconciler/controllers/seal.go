package controllers

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/capstan-io/capstan/bus/secrets"
	"github.com/capstan-io/capstan/manifests"
)

// errNoNodeKey: the node has published no age key, so it cannot be handed
// Secrets.
var errNoNodeKey = errors.New("node has no age key")

// sealSecrets seals the Secrets of an assignment to its node's published
// age key (bus.SealSecrets), so that no Secret value is ever on the bus in
// plain text. Without a key, the Secrets are withheld.
func (a *assigner) sealSecrets(out *manifests.Assignment, node string) error {
	if len(out.Secrets) == 0 {
		return nil
	}
	recipient := ""
	if c, ok := a.nodes.Get(node); ok {
		recipient = c.Obj.GetObjectMeta().Annotations[manifests.AnnotationAgeRecipient]
	}
	if recipient == "" {
		out.Secrets = nil
		return fmt.Errorf("seal secrets for node %s: %w", node, errNoNodeKey)
	}
	if err := secrets.Seal(out, recipient); err != nil {
		out.Secrets = nil
		return fmt.Errorf("node %s: %w", node, err)
	}
	return nil
}

// assignmentDigest identifies an assignment's content: sealing gives new
// ciphertext each time, so the ciphertext is left out (SecretsDigest stands
// for it).
//
// An assignment without sealed Secrets (most) is digested as it is: the
// encoding is deterministic, and decoding and re-encoding every assignment
// the watch delivers cost more than the control plane's writes.
func assignmentDigest(value []byte) digest {
	if bytes.Contains(value, []byte(`"sealedSecrets":`)) {
		var a manifests.Assignment
		if json.Unmarshal(value, &a) == nil {
			a.SealedSecrets = nil
			if b, err := json.Marshal(a); err == nil {
				value = b
			}
		}
	}
	return digest(sha256.Sum256(value))
}

// digest is an assignment's digest, held for every bound pod: an array,
// so that it is no second allocation per pod.
type digest [sha256.Size]byte

// decrypted is the Secret as a node receives it: decrypted when it was
// committed encrypted. One that cannot be decrypted is left out, as a
// missing Secret is (the node reports the pod's containers waiting), with
// a warning that never quotes its content.
func (a *assigner) decrypted(sec *manifests.Secret) (manifests.Secret, bool) {
	if len(sec.Sops) == 0 {
		return *sec, true
	}
	plain, err := secrets.Decrypt(a.sops, sec)
	if err != nil {
		a.log.Warn("cannot decrypt SOPS secret for an assignment", "secret", sec.Namespace+"/"+sec.Name, "err", err)
		return manifests.Secret{}, false
	}
	return *plain, true
}
