package git

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	gogit "github.com/go-git/go-git/v5"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// LoadSigner reads a private key that signs commits: an armored OpenPGP
// private key ("-----BEGIN PGP PRIVATE KEY BLOCK-----"), or an SSH private
// key (OpenSSH or PEM), signing as git does with gpg.format=ssh. The key
// must not be passphrase-protected: keep its file readable by its owner
// only. It returns the signer and the key's fingerprint. Errors never hold
// the key.
func LoadSigner(path string) (gogit.Signer, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("signing key: %w", err)
	}
	if bytes.Contains(b, []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----")) {
		return pgpSigner(path, b)
	}
	if bytes.Contains(b, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		return nil, "", fmt.Errorf("signing key %s: an OpenPGP public key; give the private key (gpg --armor --export-secret-keys)", path)
	}
	k, err := ssh.ParsePrivateKey(b)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, "", fmt.Errorf("signing key %s: protected by a passphrase, which is not supported: give an unprotected copy readable only by this user", path)
	case err != nil:
		return nil, "", fmt.Errorf("signing key %s: neither an armored OpenPGP private key nor an SSH private key: %w", path, err)
	}
	return sshSigner{k}, ssh.FingerprintSHA256(k.PublicKey()), nil
}

func pgpSigner(path string, b []byte) (gogit.Signer, string, error) {
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	if err != nil {
		return nil, "", fmt.Errorf("signing key %s: OpenPGP: %w", path, err)
	}
	for _, e := range el {
		k, ok := e.SigningKey(time.Now())
		if !ok || k.PrivateKey == nil {
			continue
		}
		if k.PrivateKey.Encrypted {
			return nil, "", fmt.Errorf("signing key %s: protected by a passphrase, which is not supported: give an unprotected copy readable only by this user", path)
		}
		return openpgpSigner{e}, strings.ToUpper(fmt.Sprintf("%x", e.PrimaryKey.Fingerprint)), nil
	}
	return nil, "", fmt.Errorf("signing key %s: no OpenPGP private key that can sign", path)
}

type openpgpSigner struct{ e *openpgp.Entity }

func (s openpgpSigner) Sign(message io.Reader) ([]byte, error) {
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, s.e, message, nil); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// sshSigner signs as `git commit -S` with gpg.format=ssh: an armored
// SSHSIG over the commit, in git's namespace.
type sshSigner struct{ k ssh.Signer }

func (s sshSigner) Sign(message io.Reader) ([]byte, error) {
	sig, err := sshsig.Sign(message, s.k, sshsig.HashSHA512, sshNamespace)
	if err != nil {
		return nil, err
	}
	return sshsig.Armor(sig), nil
}
