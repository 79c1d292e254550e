package git

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"

	"github.com/capstan-io/capstan/manifests"
)

// writeKeys makes an OpenPGP and an SSH signing key in Go: their private
// key files, and their public keys as a source trusts them.
func writeKeys(t *testing.T, name string) (pgpFile, sshFile, pgpPub, sshPub string) {
	t.Helper()
	dir := t.TempDir()
	e, err := openpgp.NewEntity(name, "", strings.ToLower(name)+"@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var priv, pub bytes.Buffer
	w, _ := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	if err := e.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w, _ = armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	pgpFile = filepath.Join(dir, "pgp.asc")
	if err := os.WriteFile(pgpFile, priv.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(sk, name)
	if err != nil {
		t.Fatal(err)
	}
	sshFile = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(sshFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pk)
	return pgpFile, sshFile, pub.String(), string(ssh.MarshalAuthorizedKey(sp))
}

func loadSigner(t *testing.T, path string) gogit.Signer {
	t.Helper()
	s, _, err := LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// setReplicasTo is an edit: apps/web.yaml says replicas: n.
func setReplicasTo(n string) func(*gogit.Repository, string) ([]string, error) {
	return func(_ *gogit.Repository, dir string) ([]string, error) {
		return []string{"apps/web.yaml"}, os.WriteFile(filepath.Join(dir, "apps", "web.yaml"), []byte("replicas: "+n+"\n"), 0o644)
	}
}

// TestWriteUnderSignaturePolicy: Write pushes to the source's branch; a
// source that verifies signatures gets commits signed with OpenPGP or SSH
// by a key it trusts, and refuses unsigned or untrusted ones before any
// push.
func TestWriteUnderSignaturePolicy(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("init", map[string]string{"apps/web.yaml": "replicas: 1\n"})
	bare := bareClone(t, r)
	pgpFile, sshFile, pgpPub, sshPub := writeKeys(t, "Trusted")
	otherPGP, _, _, _ := writeKeys(t, "Stranger")
	keys := func() (*Keyring, error) { return ParseKeys([]byte(pgpPub), []byte(sshPub)) }
	s := newSource(t, Options{URL: bare, Branch: "main", Verify: &VerifyOptions{Mode: VerifyHead, Keys: keys}})
	if !s.Verifies() {
		t.Fatal("Verifies() = false with a policy")
	}
	if sp := s.Spec(); sp.Verify == nil || sp.Verify.Mode != VerifyHead {
		t.Fatalf("Spec().Verify = %+v, want mode head", sp.Verify)
	}
	ctx := t.Context()
	who := object.Signature{Name: "Sam Scaler", Email: "sam@example.com", When: time.Now()}
	headOf := func() string {
		repo, err := gogit.PlainOpen(bare)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := repo.Reference(plumbing.NewBranchReferenceName("main"), true)
		if err != nil {
			t.Fatal(err)
		}
		return ref.Hash().String()
	}
	before := headOf()

	_, err := s.Write(ctx, WriteRequest{Edit: setReplicasTo("2"), Message: "scale", Author: who})
	if !errors.Is(err, ErrWouldBeRejected) || !strings.Contains(err.Error(), "no signing key") {
		t.Fatalf("unsigned: %v, want ErrWouldBeRejected naming the missing key", err)
	}
	_, err = s.Write(ctx, WriteRequest{Edit: setReplicasTo("2"), Message: "scale", Author: who, Signer: loadSigner(t, otherPGP)})
	if !errors.Is(err, ErrWouldBeRejected) || !strings.Contains(err.Error(), "untrusted key") {
		t.Fatalf("untrusted key: %v, want ErrWouldBeRejected", err)
	}
	if headOf() != before {
		t.Fatal("a refused commit was pushed")
	}

	for i, key := range []string{pgpFile, sshFile} {
		n := string(rune('3' + i))
		res, err := s.Write(ctx, WriteRequest{Edit: setReplicasTo(n), Message: "scale web to " + n + "\n", Author: who, Signer: loadSigner(t, key)})
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(key), err)
		}
		if res.Branch != "main" || headOf() != res.Commit {
			t.Fatalf("%s: wrote %+v, bare main at %s", filepath.Base(key), res, headOf())
		}
		rev, err := s.Fetch(ctx, "")
		if err != nil {
			t.Fatalf("fetch the written commit: %v", err)
		}
		if rev.ID != res.Commit || rev.Signature == nil || rev.Signature.Status != manifests.SignatureVerified ||
			rev.Author.Name != "Sam Scaler" || fileData(rev, "apps/web.yaml") != "replicas: "+n+"\n" {
			t.Fatalf("%s: fetched %s signature %+v author %+v", filepath.Base(key), rev.ID, rev.Signature, rev.Author)
		}
	}
	// The real git reads the commit as written.
	if out := r.git("-C", bare, "log", "-1", "--format=%an <%ae> %s"); out != "Sam Scaler <sam@example.com> scale web to 4" {
		t.Errorf("git log: %q", out)
	}

	// Writing what is already there commits nothing.
	if _, err := s.Write(ctx, WriteRequest{Edit: setReplicasTo("4"), Message: "again", Author: who, Signer: loadSigner(t, sshFile)}); !errors.Is(err, ErrNoChange) {
		t.Fatalf("no change: %v, want ErrNoChange", err)
	}
	tagged := newSource(t, Options{URL: bare, Tag: "v1"})
	if _, err := tagged.Write(ctx, WriteRequest{Edit: setReplicasTo("5"), Author: who}); !errors.Is(err, ErrNotBranch) {
		t.Fatalf("tag source: %v, want ErrNotBranch", err)
	}
}

// TestWriteRetriesWhenBranchMoves: a push that lost a race is redone on
// a fresh clone, keeping the other commit.
func TestWriteRetriesWhenBranchMoves(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("init", map[string]string{"apps/web.yaml": "replicas: 1\n", "other": "a\n"})
	bare := bareClone(t, r)
	s := newSource(t, Options{URL: bare, Branch: "main"})
	calls := 0
	res, err := s.Write(t.Context(), WriteRequest{Message: "scale", Author: object.Signature{Name: "A", Email: "a@example.com", When: time.Now()},
		Edit: func(repo *gogit.Repository, dir string) ([]string, error) {
			calls++
			if calls == 1 { // someone pushes meanwhile
				r.commit("other change", map[string]string{"other": "b\n"})
				r.git("push", "-q", bare, "main")
			}
			return setReplicasTo("2")(repo, dir)
		}})
	if err != nil || calls != 2 {
		t.Fatalf("Write: %v after %d edits, want success after 2", err, calls)
	}
	if parent := r.git("-C", bare, "log", "-1", "--format=%s", res.Commit+"~1"); parent != "other change" {
		t.Fatalf("the commit's parent is %q, want the other change", parent)
	}
}

func TestLoadSignerRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, _, pgpPub, _ := writeKeys(t, "Pub")
	pk, sk, _ := ed25519.GenerateKey(rand.Reader)
	_ = pk
	block, err := ssh.MarshalPrivateKeyWithPassphrase(sk, "", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"public.asc": []byte(pgpPub), "protected": pem.EncodeToMemory(block), "junk": []byte("hello\n")}
	want := map[string]string{"public.asc": "public key", "protected": "passphrase", "junk": "neither"}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadSigner(p); err == nil || !strings.Contains(err.Error(), want[name]) {
			t.Errorf("%s: %v, want an error saying %q", name, err, want[name])
		}
	}
	if _, _, err := LoadSigner(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file loads")
	}
}
