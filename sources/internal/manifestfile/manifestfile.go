// Package manifestfile holds the rules the source implementations share for
// which files of a tree are manifests, and how a set of them is ordered and
// hashed. It does no I/O.
package manifestfile

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"path"
	"slices"
	"strings"

	"github.com/capstan-io/capstan/manifests"
)

// extensions are the manifest file name extensions, lower case.
var extensions = []string{".yaml", ".yml", ".json", ".cue"}

// Match reports whether rel, a slash-separated path relative to a source's
// root, names a manifest file: its extension is .yaml, .yml, .json or .cue
// (in any case) and no element of the path is hidden. Hidden files and
// directories (".github", ".git", ".sops.yaml") hold tooling configuration,
// not desired state, and one of them failing to decode would reject a whole
// revision.
func Match(rel string) bool {
	for _, elem := range strings.Split(rel, "/") {
		if Hidden(elem) {
			return false
		}
	}
	return slices.Contains(extensions, strings.ToLower(path.Ext(rel)))
}

// Hidden reports whether a file or directory name is hidden: it begins with
// a dot. "." and ".." are not names and are not hidden.
func Hidden(name string) bool {
	return len(name) > 1 && name[0] == '.' && name != ".."
}

// Sort orders files by path.
func Sort(files []manifests.File) {
	slices.SortFunc(files, func(a, b manifests.File) int { return strings.Compare(a.Path, b.Path) })
}

// Hash returns a hex SHA-256 over the paths and contents of files, which
// must be sorted. Lengths are written before each path and content so no
// two different sets hash alike by shifting bytes between fields.
func Hash(files []manifests.File) string {
	h := sha256.New()
	var n [8]byte
	for _, f := range files {
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Path)))
		h.Write(n[:])
		h.Write([]byte(f.Path))
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Data)))
		h.Write(n[:])
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}
