package git

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/sources"
)

// Signature policy modes.
const (
	// VerifyHead: the commit applied must be signed by a trusted key.
	VerifyHead = "head"
	// VerifyAll: every commit since the last verified one must be.
	VerifyAll = "all"
)

// ErrSignature is wrapped by the error of a revision that a signature
// policy rejects (inside a *sources.RejectedError).
var ErrSignature = errors.New("git: commit signature rejected")

// sshNamespace is the namespace git signs commits in (gpg.format=ssh).
const sshNamespace = "git"

// VerifyOptions is a source's commit signature policy.
type VerifyOptions struct {
	// Mode is VerifyHead or VerifyAll. With VerifyAll, the commits between
	// the last verified head (see SetApplied) and the new head are all
	// checked; the first head a source ever verifies is checked alone.
	Mode string
	// Keys returns the trusted keys. It is called at every verification,
	// so keys can be rotated without a restart; KeyFiles reads files.
	Keys func() (*Keyring, error)
}

// Keyring is a set of trusted public keys: OpenPGP and SSH.
type Keyring struct {
	pgp openpgp.EntityList
	ssh []sshKey
}

type sshKey struct {
	key     ssh.PublicKey
	comment string
}

// Len is the number of keys.
func (k *Keyring) Len() int { return len(k.pgp) + len(k.ssh) }

// ParseKeys reads trusted keys. A blob holds armored OpenPGP public key
// blocks ("-----BEGIN PGP PUBLIC KEY BLOCK-----", any number) and SSH
// public keys one per line outside them, as in authorized_keys or git's
// allowed_signers ("principal ssh-ed25519 AAAA... comment"); blank lines
// and lines starting with # are skipped.
func ParseKeys(blobs ...[]byte) (*Keyring, error) {
	k := &Keyring{}
	for i, b := range blobs {
		rest, err := k.addPGP(b)
		if err != nil {
			return nil, fmt.Errorf("keys %d: %w", i+1, err)
		}
		if err := k.addSSH(rest); err != nil {
			return nil, fmt.Errorf("keys %d: %w", i+1, err)
		}
	}
	if k.Len() == 0 {
		return nil, errors.New("no trusted keys")
	}
	return k, nil
}

// addPGP reads the OpenPGP key blocks of b and returns what is outside
// them, each block replaced by as many newlines so line numbers hold.
func (k *Keyring) addPGP(b []byte) ([]byte, error) {
	begin, end := []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----"), []byte("-----END PGP PUBLIC KEY BLOCK-----")
	var out []byte
	for {
		i := bytes.Index(b, begin)
		if i < 0 {
			return append(out, b...), nil
		}
		j := bytes.Index(b[i:], end)
		if j < 0 {
			return nil, errors.New("unterminated OpenPGP public key block")
		}
		block := b[i : i+j+len(end)]
		// ReadArmoredKeyRing reads one armored block: each in turn.
		el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(block))
		if err != nil {
			return nil, fmt.Errorf("OpenPGP public key: %w", err)
		}
		k.pgp = append(k.pgp, el...)
		out = append(out, b[:i]...)
		out = append(out, bytes.Repeat([]byte("\n"), bytes.Count(block, []byte("\n")))...)
		b = b[i+len(block):]
	}
}

func (k *Keyring) addSSH(b []byte) error {
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// ParseAuthorizedKey skips a leading options field, which is where
		// an allowed_signers principal stands.
		pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return fmt.Errorf("line %d: not an SSH public key or an OpenPGP key block: %w", n+1, err)
		}
		k.ssh = append(k.ssh, sshKey{key: pub, comment: comment})
	}
	return nil
}

// KeyFiles returns a VerifyOptions.Keys that reads the files at every call.
func KeyFiles(paths ...string) func() (*Keyring, error) {
	return func() (*Keyring, error) {
		blobs := make([][]byte, 0, len(paths))
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("trusted keys: %w", err)
			}
			blobs = append(blobs, b)
		}
		k, err := ParseKeys(blobs...)
		if err != nil {
			return nil, fmt.Errorf("trusted keys %s: %w", strings.Join(paths, ", "), err)
		}
		return k, nil
	}
}

// checkVerifyOptions is New's check of a policy.
func checkVerifyOptions(v *VerifyOptions) error {
	if v == nil {
		return nil
	}
	if v.Mode != VerifyHead && v.Mode != VerifyAll {
		return fmt.Errorf("verify mode %q: want %q or %q", v.Mode, VerifyHead, VerifyAll)
	}
	if v.Keys == nil {
		return errors.New("verify: no trusted keys")
	}
	return nil
}

// VerifyCommit checks c's signature (OpenPGP or SSH, as git writes them in
// the gpgsig header) against the keyring.
func VerifyCommit(c *object.Commit, k *Keyring) manifests.CommitSignature {
	sig := strings.TrimSpace(c.PGPSignature)
	if sig == "" {
		return manifests.CommitSignature{Status: manifests.SignatureUnsigned}
	}
	var payload plumbing.MemoryObject
	if err := c.EncodeWithoutSignature(&payload); err != nil {
		return manifests.CommitSignature{Status: manifests.SignatureInvalid, Signer: err.Error()}
	}
	r, _ := payload.Reader()
	defer r.Close()
	switch {
	case strings.HasPrefix(sig, "-----BEGIN SSH SIGNATURE-----"):
		return k.verifySSH(r, sig)
	case strings.HasPrefix(sig, "-----BEGIN PGP SIGNATURE-----"):
		return k.verifyPGP(r, sig)
	}
	// An X.509 (gpgsm) signature, or something else.
	return manifests.CommitSignature{Status: manifests.SignatureInvalid}
}

func (k *Keyring) verifySSH(payload io.Reader, armored string) manifests.CommitSignature {
	sig, err := sshsig.Unarmor([]byte(armored))
	if err != nil {
		return manifests.CommitSignature{Status: manifests.SignatureInvalid}
	}
	fp := ssh.FingerprintSHA256(sig.PublicKey)
	for _, t := range k.ssh {
		if ssh.FingerprintSHA256(t.key) != fp {
			continue
		}
		if err := sshsig.Verify(payload, sig, t.key, sig.HashAlgorithm, sshNamespace); err != nil {
			return manifests.CommitSignature{Status: manifests.SignatureInvalid, Key: fp, Signer: t.comment}
		}
		return manifests.CommitSignature{Status: manifests.SignatureVerified, Key: fp, Signer: t.comment}
	}
	return manifests.CommitSignature{Status: manifests.SignatureUntrusted, Key: fp}
}

func (k *Keyring) verifyPGP(payload io.Reader, armored string) manifests.CommitSignature {
	signer, err := openpgp.CheckArmoredDetachedSignature(k.pgp, payload, strings.NewReader(armored), nil)
	if err == nil {
		out := manifests.CommitSignature{Status: manifests.SignatureVerified, Key: strings.ToUpper(fmt.Sprintf("%x", signer.PrimaryKey.Fingerprint))}
		if id := signer.PrimaryIdentity(); id != nil {
			out.Signer = id.Name
		}
		return out
	}
	key := pgpIssuer(armored)
	if errors.Is(err, pgperrors.ErrUnknownIssuer) {
		return manifests.CommitSignature{Status: manifests.SignatureUntrusted, Key: key}
	}
	return manifests.CommitSignature{Status: manifests.SignatureInvalid, Key: key}
}

// pgpIssuer reads the issuer of an armored signature: its fingerprint, or
// its key ID; "" when unreadable.
func pgpIssuer(armored string) string {
	block, err := armor.Decode(strings.NewReader(armored))
	if err != nil {
		return ""
	}
	p, err := packet.Read(block.Body)
	if err != nil {
		return ""
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return ""
	}
	if len(sig.IssuerFingerprint) > 0 {
		return strings.ToUpper(fmt.Sprintf("%x", sig.IssuerFingerprint))
	}
	if sig.IssuerKeyId != nil {
		return fmt.Sprintf("%016X", *sig.IssuerKeyId)
	}
	return ""
}

// verifier is the signature policy's state in a Source.
type verifier struct {
	opts *VerifyOptions
	// base is the last head verified (or applied, from SetApplied): with
	// VerifyAll, the commits after it are checked.
	base plumbing.Hash
}

// SetApplied tells the source the revision last applied, so that a policy
// with mode VerifyAll checks every commit after it (a restarted control
// plane passes the applied revision it recorded). It does nothing without
// a policy, or once the source has verified a head itself.
func (s *Source) SetApplied(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.verify != nil && s.verify.base.IsZero() && plumbing.IsHash(id) {
		s.verify.base = plumbing.NewHash(id)
	}
}

// verifyHead applies the policy to head, fetched into st: it returns the
// head's signature check, or a *sources.RejectedError naming the commit
// refused and why.
func (s *Source) verifyHead(head *object.Commit) (*manifests.CommitSignature, error) {
	if s.verify == nil {
		return nil, nil
	}
	keys, err := s.verify.opts.Keys()
	if err != nil {
		return nil, err // a configuration problem: retried, not a rejection
	}
	commits := []*object.Commit{head}
	if s.verify.opts.Mode == VerifyAll && !s.verify.base.IsZero() && s.verify.base != head.Hash {
		if commits, err = commitsSince(head, s.verify.base); err != nil {
			return nil, err
		}
		if commits == nil {
			s.logger.Warn("last verified revision is not in the fetched history; verifying the head only", "base", s.verify.base.String())
			commits = []*object.Commit{head}
		}
	}
	headSig := VerifyCommit(head, keys)
	for _, c := range commits {
		sig := headSig
		if c.Hash != head.Hash {
			sig = VerifyCommit(c, keys)
			sig.Commit = c.Hash.String()
		}
		if sig.Status == manifests.SignatureVerified {
			continue
		}
		rev := &sources.Revision{ID: head.Hash.String(), Author: signature(head.Author), Committer: signature(head.Committer),
			Message: strings.TrimRight(head.Message, "\n"), Signature: &sig}
		return nil, &sources.RejectedError{Revision: rev, Err: fmt.Errorf("%w: %s", ErrSignature, describe(c, sig))}
	}
	s.verify.base = head.Hash
	return &headSig, nil
}

// describe says why a commit's signature was refused.
func describe(c *object.Commit, sig manifests.CommitSignature) string {
	what := "commit " + c.Hash.String()[:12]
	if subject, _, _ := strings.Cut(c.Message, "\n"); subject != "" {
		what += fmt.Sprintf(" (%q)", subject)
	}
	switch sig.Status {
	case manifests.SignatureUnsigned:
		return what + " is not signed"
	case manifests.SignatureUntrusted:
		if sig.Key == "" {
			return what + " is signed by a key the source does not trust"
		}
		return what + " is signed by untrusted key " + sig.Key
	}
	if sig.Key != "" {
		return what + " has a bad signature (key " + sig.Key + ")"
	}
	return what + " has a bad or unreadable signature"
}

// commitsSince returns the commits reachable from head and not from base,
// head first; nil when base is not in head's history (a shallow fetch, or
// a rewritten history).
func commitsSince(head *object.Commit, base plumbing.Hash) ([]*object.Commit, error) {
	// A commit reads its parents from the storer it came from, so base is
	// found by walking head's history rather than by a lookup.
	var baseCommit *object.Commit
	err := object.NewCommitPreorderIter(head, nil, nil).ForEach(func(c *object.Commit) error {
		if c.Hash == base {
			baseCommit = c
			return storer.ErrStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("walk history of %s: %w", head.Hash, err)
	}
	if baseCommit == nil {
		return nil, nil
	}
	seen := map[plumbing.Hash]bool{}
	err = object.NewCommitPreorderIter(baseCommit, nil, nil).ForEach(func(c *object.Commit) error {
		seen[c.Hash] = true
		return nil
	})
	if err != nil && !errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("walk history of %s: %w", base, err)
	}
	var out []*object.Commit
	queue := []*object.Commit{head}
	seen[head.Hash] = true
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		out = append(out, c)
		err := c.Parents().ForEach(func(p *object.Commit) error {
			if !seen[p.Hash] {
				seen[p.Hash] = true
				queue = append(queue, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read parents of %s: %w", c.Hash, err)
		}
	}
	return out, nil
}
