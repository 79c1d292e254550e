package schema

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

// fuzzExts are the formats a fuzzed file is read as.
var fuzzExts = []string{".yaml", ".json", ".cue", ".yml"}

// fuzzBase is a valid file loaded before the fuzzed one: it shows that a
// bad file rejects the whole load, and that a duplicate is reported at its
// second declaration.
var fuzzBase = manifests.File{Path: "base.yaml", Data: []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: fuzz-base, namespace: default}
data: {a: "1"}
`)}

// FuzzLoad feeds one manifest file, as YAML, JSON or CUE, to Load after a
// valid one. Load must not panic; on error it returns no object and an
// *ErrorList whose errors all lie in the fuzzed file; on success it returns
// the base's objects first, each with its kind, apiVersion and name; and it
// answers the same twice.
func FuzzLoad(f *testing.F) {
	// Seeds: every manifest of testdata, valid and invalid.
	err := filepath.WalkDir("testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if i := slices.Index(fuzzExts, filepath.Ext(p)); i >= 0 {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			f.Add(uint8(i), data)
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), []byte("---\n---\nkind: List\napiVersion: v1\nitems: [{kind: Namespace, apiVersion: v1, metadata: {name: x}}]\n"))
	f.Add(uint8(1), []byte(`{"kind":"List","apiVersion":"v1","items":[1,{"kind":"Secret"}]}`))
	f.Add(uint8(2), []byte("x: [1, {kind: \"ConfigMap\"}]\ny: 3\n"))

	base, err := Load([]manifests.File{fuzzBase})
	if err != nil || len(base) != 1 {
		f.Fatalf("base file: %d objects, %v", len(base), err)
	}
	baseKey := manifests.KeyOf(base[0])

	f.Fuzz(func(t *testing.T, format uint8, data []byte) {
		name := "fuzz" + fuzzExts[int(format)%len(fuzzExts)]
		files := []manifests.File{fuzzBase, {Path: name, Data: data}}
		objs, err := Load(files)
		if err != nil {
			if objs != nil {
				t.Fatalf("error and %d objects: %v", len(objs), err)
			}
			var list *ErrorList
			if !errors.As(err, &list) || len(list.Errors) == 0 {
				t.Fatalf("error %T %q is not a non-empty *ErrorList", err, err)
			}
			for _, e := range list.Errors {
				if e.File != name || e.Msg == "" {
					t.Fatalf("error outside the fuzzed file, or empty: %+v", e)
				}
			}
		} else {
			if len(objs) == 0 || manifests.KeyOf(objs[0]) != baseKey {
				t.Fatalf("the base object is not first: %d objects", len(objs))
			}
			for _, o := range objs {
				if o == nil {
					t.Fatal("nil object")
				}
				tm, m := o.GetTypeMeta(), o.GetObjectMeta()
				if tm.Kind == "" || tm.APIVersion == "" || m.Name == "" {
					t.Fatalf("object without kind, apiVersion or name: %+v %+v", tm, m)
				}
			}
		}
		// Pooled CUE contexts must not carry state between loads.
		objs2, err2 := Load(files)
		if errString(err) != errString(err2) || !slices.Equal(keys(objs), keys(objs2)) {
			t.Fatalf("two loads differ:\n%v\n%v\nvs\n%v\n%v", keys(objs), err, keys(objs2), err2)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func keys(objs []manifests.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, manifests.KeyOf(o))
	}
	return out
}
