package gitops

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/schema"
)

func cmFile(name, value string) manifests.File {
	return manifests.File{Path: name + ".yaml", Data: fmt.Appendf(nil, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  k: %q\n", name, value)}
}

// countingLoad is schema.Load, counting the files it is given.
type countingLoad struct {
	mu    sync.Mutex
	files int
}

func (c *countingLoad) load(files []manifests.File) ([]manifests.Object, error) {
	c.mu.Lock()
	c.files += len(files)
	c.mu.Unlock()
	return schema.Load(files)
}

func (c *countingLoad) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.files
	c.files = 0
	return n
}

func TestLoadRevalidatesOnlyChangedFiles(t *testing.T) {
	c := &countingLoad{}
	s := &Syncer{Load: c.load}
	var files []manifests.File
	for i := range 50 {
		files = append(files, cmFile(fmt.Sprintf("cm%02d", i), "a"))
	}
	objs, err := s.load(files)
	if err != nil || len(objs) != 50 {
		t.Fatalf("first load: %d objects, %v", len(objs), err)
	}
	if n := c.take(); n != 50 {
		t.Fatalf("first load read %d files, want 50", n)
	}

	// One file changes: one file is read, and its new content is used.
	files[7] = cmFile("cm07", "b")
	objs, err = s.load(files)
	if err != nil || len(objs) != 50 {
		t.Fatalf("second load: %d objects, %v", len(objs), err)
	}
	if n := c.take(); n != 1 {
		t.Fatalf("a one-file change read %d files, want 1", n)
	}
	if got := objs[7].(*manifests.ConfigMap).Data["k"]; got != "b" {
		t.Fatalf("changed file gave %q", got)
	}

	// A bad file: the whole revision is loaded, the error is positioned,
	// and the cache still describes the last good revision.
	bad := append([]manifests.File(nil), files...)
	bad[3] = manifests.File{Path: "cm03.yaml", Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm03\nbogus: 1\n")}
	if _, err := s.load(bad); err == nil || !strings.Contains(err.Error(), "cm03.yaml:5:1") {
		t.Fatalf("bad revision: %v, want an error at cm03.yaml:5:1", err)
	}
	c.take()
	if _, err := s.load(files); err != nil {
		t.Fatal(err)
	}
	if n := c.take(); n != 0 {
		t.Fatalf("the good revision again read %d files, want 0", n)
	}

	// The same object in two files is the loader's positioned error.
	dup := append(append([]manifests.File(nil), files...), manifests.File{Path: "zz.yaml", Data: cmFile("cm01", "x").Data})
	if _, err := s.load(dup); err == nil || !strings.Contains(err.Error(), "duplicate") || !strings.Contains(err.Error(), "zz.yaml:") {
		t.Fatalf("duplicate across files: %v", err)
	}
}
