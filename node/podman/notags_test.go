//go:build !remote

package podman_test

import (
	"os"
	"testing"
)

// Without the remote build tag the Runtime is not compiled; say so rather
// than pass silently.
func TestContract(t *testing.T) {
	msg := `node/podman's Runtime needs -tags "remote exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper containers_image_openpgp"`
	if os.Getenv("CAPSTAN_REQUIRE_PODMAN") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
