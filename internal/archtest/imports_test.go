// Package archtest enforces the import rules of docs/ARCHITECTURE.md.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/capstan-io/capstan/"

// rules says, per package (a path under the module), which of the
// module's packages its non-test files may import: a listed path admits
// that package and those under it. A package with no rule of its own
// follows its parent's.
var rules = map[string][]string{
	"manifests":            {},
	"bus":                  {"manifests", "bus"},
	"schema":               {"manifests"},
	"sources":              {"manifests", "sources", "internal/testwait"},
	"node":                 {"bus", "manifests", "node"},
	"node/runtimetest":     {"bus", "manifests", "node", "internal/testwait"}, // test support
	"reconciler/cache":     {"bus", "manifests"},
	"reconciler/workqueue": {},
	"reconciler/events":    {"bus", "manifests"},
	"reconciler/ownership": {"manifests", "reconciler/cache"},
	"reconciler/scheduler": {"bus", "manifests", "reconciler/cache", "reconciler/workqueue"},
	"reconciler/controllers": {"bus", "manifests", "reconciler/cache", "reconciler/workqueue", "reconciler/events",
		"reconciler/scheduler", "reconciler/ownership"},
	"reconciler/gitops": {"bus", "manifests", "sources", "reconciler/cache", "reconciler/workqueue", "reconciler/events",
		"reconciler/ownership", "reconciler/controllers"},
	"reconciler":           {}, // doc and tests only
	"reconciler/writeback": {"bus", "manifests", "sources", "reconciler/cache", "reconciler/gitops", "reconciler/controllers"},
	"internal":             {},
	"cmd":                  nil, // wiring: anything
}

// Only the wiring may pick a container runtime.
var onlyFrom = map[string]string{"node/podman": "cmd/"}

func TestImportRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]map[string]bool{} // package -> module packages it imports
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "docs") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		if imports[pkg] == nil {
			imports[pkg] = map[string]bool{}
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if rest, ok := strings.CutPrefix(p, module); ok {
				imports[pkg][rest] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(imports) < 20 {
		t.Fatalf("found %d packages: not the module's root?", len(imports))
	}
	for pkg, imps := range imports {
		allowed, ruled := ruleOf(pkg)
		if !ruled {
			t.Errorf("%s: no import rule covers it (add one to rules and to docs/ARCHITECTURE.md)", pkg)
			continue
		}
		for imp := range imps {
			if from, ok := onlyFrom[imp]; ok && !strings.HasPrefix(pkg+"/", from) {
				t.Errorf("%s imports %s: only %s may", pkg, imp, from)
			}
			if allowed == nil || isInternalOf(pkg, imp) {
				continue
			}
			if !slices.ContainsFunc(allowed, func(a string) bool { return imp == a || strings.HasPrefix(imp, a+"/") }) {
				t.Errorf("%s imports %s: its rule allows %v", pkg, imp, allowed)
			}
		}
	}
}

// ruleOf is the rule of pkg or of its nearest parent with one.
func ruleOf(pkg string) ([]string, bool) {
	for p := pkg; p != "." && p != ""; p = filepath.ToSlash(filepath.Dir(p)) {
		if r, ok := rules[p]; ok {
			return r, true
		}
	}
	return nil, false
}

// isInternalOf reports whether imp is pkg's own internal package or
// subpackage, which a package may always use.
func isInternalOf(pkg, imp string) bool {
	return strings.HasPrefix(imp, pkg+"/")
}
