package runtimetest

import (
	"os"
	"os/exec"
	"testing"
)

// RequirePodman gates the Podman tier (node/podman's tests, the end-to-end
// tests): it skips the test with -short, the fast tier, and when podman is
// not installed, unless CAPSTAN_REQUIRE_PODMAN=1 (make test), when a
// missing podman fails it.
func RequirePodman(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Podman: not in the -short tier")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		if os.Getenv("CAPSTAN_REQUIRE_PODMAN") == "1" {
			t.Fatalf("podman is required (CAPSTAN_REQUIRE_PODMAN=1) but not installed: %v; run scripts/install-deps.sh", err)
		}
		t.Skipf("podman is not installed (%v); run scripts/install-deps.sh, or set CAPSTAN_REQUIRE_PODMAN=1 to fail instead", err)
	}
}
