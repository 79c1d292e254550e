// Package gittest holds test helpers about git that several packages'
// tests share: signing keys made with the real tools.
package gittest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// OpenPGPKey makes an ed25519 OpenPGP signing key for uid ("Name <email>")
// with the real gpg, in a GNUPGHOME of its own that it sets for the rest
// of the test (so the test's git commands sign with it), and returns its
// fingerprint and armored public key. Without gpg the test is skipped.
func OpenPGPKey(t testing.TB, uid string) (fpr, armored string) {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg not installed")
	}
	home, err := os.MkdirTemp("", "gpg") // the agent's socket path must be short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		os.RemoveAll(home)
	})
	t.Setenv("GNUPGHOME", home)
	gpg := func(args ...string) string {
		out, err := exec.Command("gpg", append([]string{"--batch", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...).Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return string(out)
	}
	gpg("--quick-gen-key", uid, "ed25519", "sign", "never")
	for _, l := range strings.Split(gpg("--with-colons", "--list-keys"), "\n") {
		if f := strings.Split(l, ":"); f[0] == "fpr" {
			fpr = f[9]
			break
		}
	}
	if fpr == "" {
		t.Fatal("gpg listed no fingerprint for the key it made")
	}
	return fpr, gpg("--armor", "--export", fpr)
}
