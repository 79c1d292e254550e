package git

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"

	"github.com/capstan-io/capstan/manifests"
)

// fuzzKeys are fixed keys and commits they signed, for the fuzz targets.
type fuzzKeys struct {
	sshPub, pgpPub []byte // authorized_keys line, armored public key
	sshFP, pgpFP   string // as VerifyCommit reports them
	sshCommit      *object.Commit
	pgpCommit      *object.Commit
}

// newFuzzKeys makes the keys from a fixed seed, so seeds do not change.
func newFuzzKeys(tb testing.TB) fuzzKeys {
	tb.Helper()
	rng := rand.NewChaCha8([32]byte{'c', 'a', 'p', 's', 't', 'a', 'n'})
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rng.Read(seed)
	sshKey, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		tb.Fatal(err)
	}
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	e, err := openpgp.NewEntity("Fuzz", "", "fuzz@example.com", &packet.Config{
		Rand: rng, Time: func() time.Time { return created }, Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		tb.Fatal(err)
	}
	var pgpPub bytes.Buffer
	w, err := armor.Encode(&pgpPub, openpgp.PublicKeyType, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	pgpPub.WriteString("\n")
	k := fuzzKeys{
		sshPub: append([]byte("fuzz@example.com "), ssh.MarshalAuthorizedKey(sshKey.PublicKey())...),
		pgpPub: pgpPub.Bytes(),
		sshFP:  ssh.FingerprintSHA256(sshKey.PublicKey()),
		pgpFP:  strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint)),
	}
	sign := func(s gogit.Signer) *object.Commit {
		who := object.Signature{Name: "Fuzz", Email: "fuzz@example.com", When: created}
		c := &object.Commit{Author: who, Committer: who, Message: "signed\n",
			TreeHash: plumbing.NewHash("0123456789abcdef0123456789abcdef01234567")}
		var payload plumbing.MemoryObject
		if err := c.EncodeWithoutSignature(&payload); err != nil {
			tb.Fatal(err)
		}
		r, _ := payload.Reader()
		defer r.Close()
		armored, err := s.Sign(r)
		if err != nil {
			tb.Fatal(err)
		}
		c.PGPSignature = string(armored)
		return c
	}
	k.sshCommit = sign(sshSigner{sshKey})
	k.pgpCommit = sign(fixedTimeSigner{e, created})
	for _, c := range []*object.Commit{k.sshCommit, k.pgpCommit} {
		if got := VerifyCommit(c, mustParseKeys(tb, k.sshPub, k.pgpPub)); got.Status != manifests.SignatureVerified {
			tb.Fatalf("the fuzz keys do not verify their own commit: %+v", got)
		}
	}
	return k
}

// fixedTimeSigner signs as openpgpSigner does, at a fixed time and with
// fixed randomness.
type fixedTimeSigner struct {
	e *openpgp.Entity
	t time.Time
}

func (s fixedTimeSigner) Sign(message io.Reader) ([]byte, error) {
	var b bytes.Buffer
	err := openpgp.ArmoredDetachSign(&b, s.e, message, &packet.Config{
		Time: func() time.Time { return s.t }, Rand: rand.NewChaCha8([32]byte{})})
	return b.Bytes(), err
}

func mustParseKeys(tb testing.TB, blobs ...[]byte) *Keyring {
	tb.Helper()
	k, err := ParseKeys(blobs...)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// FuzzParseKeys parses a fuzzed trusted-keys file (authorized_keys or
// allowed_signers lines and armored OpenPGP blocks). ParseKeys must not
// panic; it returns a keyring with keys or an error, never both nor
// neither. Checked against that keyring, a commit verifies only when the
// keyring holds its signer's key, and never once its message is changed.
func FuzzParseKeys(f *testing.F) {
	k := newFuzzKeys(f)
	f.Add(k.sshPub)
	f.Add(k.pgpPub)
	f.Add(append(append([]byte("# the team\n\n"), k.pgpPub...), k.sshPub...))
	f.Add(append(bytes.Clone(k.sshPub), k.sshPub...))
	f.Add([]byte("# nothing\n"))
	f.Add([]byte("not a key"))
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n"))

	f.Fuzz(func(t *testing.T, blob []byte) {
		ring, err := ParseKeys(blob)
		if err != nil {
			if ring != nil {
				t.Fatalf("a keyring and an error: %v", err)
			}
			return
		}
		if ring == nil || ring.Len() == 0 {
			t.Fatal("no keyring and no error, or an empty keyring")
		}
		holds := func(fp string) bool {
			for _, s := range ring.ssh {
				if ssh.FingerprintSHA256(s.key) == fp {
					return true
				}
			}
			for _, e := range ring.pgp {
				if strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint)) == fp {
					return true
				}
			}
			return false
		}
		for _, c := range []struct {
			commit *object.Commit
			fp     string
		}{{k.sshCommit, k.sshFP}, {k.pgpCommit, k.pgpFP}} {
			got := VerifyCommit(c.commit, ring)
			if got.Status == manifests.SignatureVerified && (got.Key != c.fp || !holds(c.fp)) {
				t.Fatalf("verified %+v without the signer's key %s in the keyring", got, c.fp)
			}
			changed := *c.commit
			changed.Message = "not what was signed\n"
			if got := VerifyCommit(&changed, ring); got.Status == manifests.SignatureVerified {
				t.Fatalf("a changed commit verified: %+v", got)
			}
		}
	})
}

// FuzzVerifyCommit checks a commit whose signature header (the gpgsig a
// repository holds) is fuzzed against a keyring of the signer's keys.
// VerifyCommit must not panic, and verifies only with a key of the keyring,
// and never a commit other than the one signed.
func FuzzVerifyCommit(f *testing.F) {
	k := newFuzzKeys(f)
	ring := mustParseKeys(f, k.sshPub, k.pgpPub)
	f.Add(k.sshCommit.PGPSignature)
	f.Add(k.pgpCommit.PGPSignature)
	f.Add("-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----\n")
	f.Add("-----BEGIN PGP SIGNATURE-----\n\n=AAAA\n-----END PGP SIGNATURE-----\n")
	f.Add("-----BEGIN SIGNED MESSAGE-----\n")

	f.Fuzz(func(t *testing.T, sig string) {
		c := *k.sshCommit
		c.PGPSignature = sig
		got := VerifyCommit(&c, ring)
		if got.Status == manifests.SignatureVerified && got.Key != k.sshFP && got.Key != k.pgpFP {
			t.Fatalf("verified with a key not in the keyring: %+v", got)
		}
		c.Message = "not what was signed\n"
		if got := VerifyCommit(&c, ring); got.Status == manifests.SignatureVerified {
			t.Fatalf("a changed commit verified: %+v", got)
		}
	})
}
