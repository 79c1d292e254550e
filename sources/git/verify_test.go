package git

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/sources"
)

// gpgKey is an OpenPGP key made by the real gpg in its own home.
type gpgKey struct {
	home, fpr, armored string
}

func newGPGKey(t *testing.T, uid string) gpgKey {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg not installed")
	}
	// gpg-agent's socket path must be short: a home under /tmp, not the
	// test's long temp dir.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		os.RemoveAll(home)
	})
	gpg := func(args ...string) string {
		cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return string(out)
	}
	gpg("--quick-gen-key", uid, "ed25519", "sign", "never")
	var fpr string
	for _, l := range strings.Split(gpg("--with-colons", "--list-keys", uid), "\n") {
		if f := strings.Split(l, ":"); f[0] == "fpr" {
			fpr = f[9]
			break
		}
	}
	if fpr == "" {
		t.Fatal("no fingerprint for the new gpg key")
	}
	return gpgKey{home: home, fpr: fpr, armored: gpg("--armor", "--export", fpr)}
}

// sshKey is an SSH key made by the real ssh-keygen.
type sshKeyPair struct {
	priv, pub string
}

func newSSHKey(t *testing.T, comment string) sshKeyPair {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	priv := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", priv).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(priv + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return sshKeyPair{priv: priv, pub: string(pub)}
}

// commitSigned commits files with the real git, signed by the key: a
// gpgKey (OpenPGP) or an sshKeyPair (gpg.format=ssh).
func (r *repo) commitSigned(msg string, files map[string]string, key any) string {
	r.t.Helper()
	r.write(files)
	r.git("add", "-A")
	args := []string{"-c", "commit.gpgsign=true"}
	switch k := key.(type) {
	case gpgKey:
		r.t.Setenv("GNUPGHOME", k.home)
		args = append(args, "-c", "gpg.format=openpgp", "-c", "user.signingkey="+k.fpr)
	case sshKeyPair:
		args = append(args, "-c", "gpg.format=ssh", "-c", "user.signingkey="+k.priv)
	}
	r.git(append(args, "commit", "-q", "--allow-empty", "-m", msg)...)
	return r.git("rev-parse", "HEAD")
}

func keyring(t *testing.T, blobs ...string) *Keyring {
	t.Helper()
	var bs [][]byte
	for _, b := range blobs {
		bs = append(bs, []byte(b))
	}
	k, err := ParseKeys(bs...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func commitObject(t *testing.T, dir, hash string) *object.Commit {
	t.Helper()
	repo, err := gogit.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyCommit(t *testing.T) {
	alice := newGPGKey(t, "Alice <alice@example.com>")
	mallory := newGPGKey(t, "Mallory <mallory@example.com>")
	bob := newSSHKey(t, "bob@example.com")
	eve := newSSHKey(t, "eve@example.com")
	r := newRepo(t, "main")
	unsigned := r.commit("unsigned", map[string]string{"a.yaml": "x: 1\n"})
	byAlice := r.commitSigned("by alice", map[string]string{"a.yaml": "x: 2\n"}, alice)
	byMallory := r.commitSigned("by mallory", map[string]string{"a.yaml": "x: 3\n"}, mallory)
	byBob := r.commitSigned("by bob", map[string]string{"a.yaml": "x: 4\n"}, bob)
	byEve := r.commitSigned("by eve", map[string]string{"a.yaml": "x: 5\n"}, eve)

	trusted := keyring(t, alice.armored, "# the team\n\nbob@example.com "+bob.pub)
	bobFP := strings.Fields(sshFingerprint(t, bob.pub))[1]
	tests := []struct {
		name, commit string
		want         manifests.CommitSignature
	}{
		{"unsigned", unsigned, manifests.CommitSignature{Status: "unsigned"}},
		{"openpgp trusted", byAlice, manifests.CommitSignature{Status: "verified", Key: alice.fpr, Signer: "Alice <alice@example.com>"}},
		{"openpgp untrusted", byMallory, manifests.CommitSignature{Status: "untrusted", Key: mallory.fpr}},
		{"ssh trusted", byBob, manifests.CommitSignature{Status: "verified", Key: bobFP, Signer: "bob@example.com"}},
		{"ssh untrusted", byEve, manifests.CommitSignature{Status: "untrusted", Key: strings.Fields(sshFingerprint(t, eve.pub))[1]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := VerifyCommit(commitObject(t, r.dir, tt.commit), trusted)
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}

	// A signature moved onto another commit (the same tree and parents, a
	// different message) does not verify: invalid, not untrusted.
	for name, signed := range map[string]string{"openpgp": byAlice, "ssh": byBob} {
		t.Run("tampered "+name, func(t *testing.T) {
			c := commitObject(t, r.dir, signed)
			c.Message = "not what was signed\n"
			got := VerifyCommit(c, trusted)
			if got.Status != manifests.SignatureInvalid || got.Key == "" {
				t.Errorf("got %+v, want invalid with the key", got)
			}
		})
	}
}

// sshFingerprint is ssh-keygen's own fingerprint of a public key: "256
// SHA256:... comment (ED25519)".
func sshFingerprint(t *testing.T, pub string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "k.pub")
	if err := os.WriteFile(f, []byte(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-l", "-f", f).Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	bob := newSSHKey(t, "bob")
	for _, tt := range []struct {
		name string
		in   []string
		n    int
		err  string
	}{
		{"authorized_keys", []string{bob.pub + "\n" + bob.pub}, 2, ""},
		{"allowed_signers", []string{"bob@example.com " + bob.pub}, 1, ""},
		{"empty", []string{"# nothing\n"}, 0, "no trusted keys"},
		{"garbage", []string{"not a key"}, 0, "line 1"},
		{"broken pgp", []string{"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n-----END PGP PUBLIC KEY BLOCK-----\n"}, 0, "OpenPGP"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var bs [][]byte
			for _, s := range tt.in {
				bs = append(bs, []byte(s))
			}
			k, err := ParseKeys(bs...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want error with %q", err, tt.err)
				}
				return
			}
			if err != nil || k.Len() != tt.n {
				t.Fatalf("got %v keys, err %v; want %d", k, err, tt.n)
			}
		})
	}
}

func TestFetchVerifyHead(t *testing.T) {
	alice := newGPGKey(t, "Alice <alice@example.com>")
	bob := newSSHKey(t, "bob@example.com")
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(alice.armored+"\n"+bob.pub), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t, "main")
	signed := r.commitSigned("signed", map[string]string{"a.yaml": "x: 1\n"}, alice)
	s := newSource(t, Options{URL: r.dir, Verify: &VerifyOptions{Mode: VerifyHead, Keys: KeyFiles(keys)}})
	rev := fetch(t, s, "")
	if rev.ID != signed || rev.Signature == nil || rev.Signature.Status != "verified" || rev.Signature.Key != alice.fpr {
		t.Fatalf("got %s %+v, want %s verified by %s", rev.ID, rev.Signature, signed, alice.fpr)
	}

	unsigned := r.commit("sneaky", map[string]string{"a.yaml": "x: 2\n"})
	_, err := s.Fetch(context.Background(), signed)
	var rej *sources.RejectedError
	if !errors.As(err, &rej) || !errors.Is(err, ErrSignature) {
		t.Fatalf("got %v, want a rejection", err)
	}
	if rej.Revision.ID != unsigned || rej.Revision.Message != "sneaky" || rej.Revision.Signature.Status != "unsigned" || len(rej.Revision.Files) != 0 {
		t.Errorf("rejected revision %+v", rej.Revision)
	}
	if !strings.Contains(err.Error(), unsigned[:12]) || !strings.Contains(err.Error(), "is not signed") {
		t.Errorf("error %q does not say which commit and why", err)
	}

	// Head mode checks the head only: a signed commit on top is accepted.
	top := r.commitSigned("signed on top", nil, bob)
	rev = fetch(t, s, unsigned)
	if rev.ID != top || rev.Signature.Status != "verified" || rev.Signature.Signer != "bob@example.com" {
		t.Fatalf("got %s %+v, want %s verified", rev.ID, rev.Signature, top)
	}
}

func TestFetchVerifyAll(t *testing.T) {
	alice := newGPGKey(t, "Alice <alice@example.com>")
	keys := func() (*Keyring, error) { return ParseKeys([]byte(alice.armored)) }
	r := newRepo(t, "main")
	r.commit("unsigned history before the policy", map[string]string{"a.yaml": "x: 0\n"})
	base := r.commitSigned("first signed", map[string]string{"a.yaml": "x: 1\n"}, alice)

	for _, cache := range []bool{false, true} {
		opts := Options{URL: bareClone(t, r), Verify: &VerifyOptions{Mode: VerifyAll, Keys: keys}}
		if cache {
			opts.CacheDir = t.TempDir()
		}
		s := newSource(t, opts)
		// The first head is checked alone: history before it is not.
		if rev := fetch(t, s, ""); rev.ID != base || rev.Signature.Status != "verified" {
			t.Fatalf("cache %v: first fetch %s %+v", cache, rev.ID, rev.Signature)
		}
	}

	// Every commit after the applied one is checked: an unsigned commit
	// under a signed head is refused, and named.
	s := newSource(t, Options{URL: r.dir, CacheDir: t.TempDir(), Verify: &VerifyOptions{Mode: VerifyAll, Keys: keys}})
	s.SetApplied(base) // as the syncer does after a restart
	a1 := r.commitSigned("signed 2", map[string]string{"a.yaml": "x: 2\n"}, alice)
	middle := r.commit("unsigned in the middle", map[string]string{"a.yaml": "x: 3\n"})
	head := r.commitSigned("signed 4", map[string]string{"a.yaml": "x: 4\n"}, alice)
	_, err := s.Fetch(context.Background(), "")
	var rej *sources.RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("got %v, want a rejection", err)
	}
	if rej.Revision.ID != head || rej.Revision.Signature.Commit != middle || rej.Revision.Signature.Status != "unsigned" {
		t.Errorf("rejection %+v %+v", rej.Revision, rej.Revision.Signature)
	}
	if !strings.Contains(err.Error(), middle[:12]) || strings.Contains(err.Error(), a1[:12]) {
		t.Errorf("error %q should name %s only", err, middle[:12])
	}

	// Once the unsigned commit is reverted by a new signed history (a
	// force-push onto the last good commit), the new head passes.
	r.git("reset", "-q", "--hard", a1)
	good := r.commitSigned("signed 3", map[string]string{"a.yaml": "x: 5\n"}, alice)
	if rev := fetch(t, s, ""); rev.ID != good || rev.Signature.Status != "verified" {
		t.Fatalf("got %s %+v, want %s", rev.ID, rev.Signature, good)
	}
}

func TestNewRejectsBadPolicy(t *testing.T) {
	t.Parallel()
	for _, v := range []*VerifyOptions{{Mode: "some"}, {Mode: VerifyHead}} {
		if _, err := New(Options{URL: t.TempDir(), Verify: v}, nil); err == nil {
			t.Errorf("New accepted %+v", v)
		}
	}
}
