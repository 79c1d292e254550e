package manifestfile

import (
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"a.yaml", true},
		{"a.YML", true},
		{"dir/b.json", true},
		{"dir/sub/c.cue", true},
		{"README.md", false},
		{"yaml", false},
		{".sops.yaml", false},
		{".github/workflows/ci.yml", false},
		{"apps/.hidden/x.yaml", false},
		{"apps/x.yaml.bak", false},
	} {
		if got := Match(tc.path); got != tc.want {
			t.Errorf("Match(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestHashDistinguishesFieldBoundaries(t *testing.T) {
	t.Parallel()
	a := Hash([]manifests.File{{Path: "ab", Data: []byte("c")}})
	b := Hash([]manifests.File{{Path: "a", Data: []byte("bc")}})
	if a == b {
		t.Fatal("moving a byte from path to data kept the hash")
	}
	if Hash(nil) == a {
		t.Fatal("empty set hashes like a non-empty one")
	}
}
