package dir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/capstan-io/capstan/sources"
	"github.com/capstan-io/capstan/sources/internal/sourcetest"
)

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func newSource(t *testing.T, dir string, interval time.Duration) *Source {
	t.Helper()
	s, err := New(Options{Dir: dir, Interval: interval}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fetch(t *testing.T, s *Source, known string) *sources.Revision {
	t.Helper()
	rev, err := s.Fetch(context.Background(), known)
	if err != nil {
		t.Fatalf("Fetch(%q): %v", known, err)
	}
	return rev
}

func paths(rev *sources.Revision) string {
	var ps []string
	for _, f := range rev.Files {
		ps = append(ps, f.Path)
	}
	return strings.Join(ps, ",")
}

func TestFetch(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write(t, root, map[string]string{
		"b.yaml":           "b\n",
		"a/x.json":         "{}\n",
		"a/y.cue":          "y: 1\n",
		"a/deep/z.YML":     "z\n",
		"notes.txt":        "no\n",
		".hidden.yaml":     "no\n",
		".git/config.yaml": "no\n",
		"a/.cache/x.yaml":  "no\n",
		"a/deep/README.md": "no\n",
	})
	if err := os.Symlink(filepath.Join(root, "b.yaml"), filepath.Join(root, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	s := newSource(t, root, 0)
	rev := fetch(t, s, "")
	if want := "a/deep/z.YML,a/x.json,a/y.cue,b.yaml,link.yaml"; paths(rev) != want {
		t.Fatalf("files = %s, want %s", paths(rev), want)
	}
	if !strings.HasPrefix(rev.ID, "sha256:") || rev.Message != "directory "+root || rev.Author.String() != "" || rev.Committer.String() != "" {
		t.Fatalf("revision = %+v", rev)
	}
	if got := string(rev.Files[3].Data); got != "b\n" {
		t.Fatalf("b.yaml = %q", got)
	}
	if s.Spec().URL != root {
		t.Fatalf("Spec = %+v", s.Spec())
	}

	if _, err := s.Fetch(context.Background(), rev.ID); !errors.Is(err, sources.ErrUnchanged) {
		t.Fatalf("Fetch(same) = %v, want ErrUnchanged", err)
	}
	// Files that are not manifests, and rewrites with the same bytes, are
	// no change.
	write(t, root, map[string]string{"notes.txt": "changed\n", "b.yaml": "b\n", ".git/HEAD.yaml": "x"})
	if _, err := s.Fetch(context.Background(), rev.ID); !errors.Is(err, sources.ErrUnchanged) {
		t.Fatalf("Fetch after irrelevant writes = %v, want ErrUnchanged", err)
	}

	write(t, root, map[string]string{"a/x.json": "{\"a\":1}\n"})
	next := fetch(t, s, rev.ID)
	if next.ID == rev.ID {
		t.Fatal("content change kept the ID")
	}
	if err := os.Rename(filepath.Join(root, "a", "y.cue"), filepath.Join(root, "a", "w.cue")); err != nil {
		t.Fatal(err)
	}
	if renamed := fetch(t, s, next.ID); renamed.ID == next.ID {
		t.Fatal("rename kept the ID")
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "f")
	write(t, filepath.Dir(file), map[string]string{"f": "x"})
	for _, opts := range []Options{{}, {Dir: "/nonexistent/dir"}, {Dir: file}, {Dir: filepath.Dir(file), Interval: -1}} {
		if _, err := New(opts, nil); err == nil {
			t.Errorf("New accepted %+v", opts)
		}
	}
}

// run runs s.Run until the test ends and returns its channel, after the
// start signal that says the watches are in place.
func run(t *testing.T, s *Source) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, changed) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	sourcetest.WaitSignal(t, changed, 5*time.Second, "Run's start signal")
	return changed
}

func TestRunSeesWrites(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write(t, root, map[string]string{"a.yaml": "1\n", "sub/b.yaml": "1\n"})
	s := newSource(t, root, time.Hour)
	changed := run(t, s)

	write(t, root, map[string]string{"a.yaml": "2\n"})
	sourcetest.WaitSignal(t, changed, time.Second, "a file write")

	write(t, root, map[string]string{"sub/b.yaml": "2\n"})
	sourcetest.WaitSignal(t, changed, time.Second, "a write in an existing subdirectory")
}

func TestRunSeesNewSubdirectories(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	s := newSource(t, root, time.Hour)
	changed := run(t, s)
	rev := fetch(t, s, "")

	// mkdir -p with a file at the bottom, faster than any watch is added.
	write(t, root, map[string]string{"new/deeper/c.yaml": "c\n"})
	sourcetest.WaitSignal(t, changed, time.Second, "a new subdirectory with a file")
	sourcetest.Eventually(t, 5*time.Second, "new/deeper/c.yaml read", func() bool {
		next, err := s.Fetch(context.Background(), rev.ID)
		return err == nil && paths(next) == "new/deeper/c.yaml"
	})

	// The new directories are watched now: a later write there is seen.
	sourcetest.Drain(changed)
	sourcetest.Eventually(t, 5*time.Second, "a later write in the new subdirectory signals", func() bool {
		write(t, root, map[string]string{"new/deeper/d.yaml": "d\n"})
		select {
		case <-changed:
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})
}

func TestEventFilter(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	s := newSource(t, root, time.Hour)
	for name, want := range map[string]bool{
		"a.yaml":             true,
		"sub/b.json":         true,
		"sub":                true, // a removed directory takes its files with it
		"notes.txt":          true, // cheap to recheck; the hash decides
		".git/index":         false,
		"sub/.a.yaml.swp":    false,
		".hidden/deep/x.yml": false,
	} {
		ev := fsnotify.Event{Name: filepath.Join(root, filepath.FromSlash(name)), Op: fsnotify.Write}
		if got := s.relevant(nil, ev); got != want {
			t.Errorf("event on %s: relevant = %v, want %v", name, got, want)
		}
	}
}

func TestRunPollsAndTriggers(t *testing.T) {
	t.Parallel()
	s := newSource(t, t.TempDir(), 20*time.Millisecond)
	changed := run(t, s)
	for range 3 {
		sourcetest.WaitSignal(t, changed, time.Second, "poll tick")
	}

	s2 := newSource(t, t.TempDir(), time.Hour)
	changed2 := run(t, s2)
	s2.Trigger()
	sourcetest.WaitSignal(t, changed2, time.Second, "Trigger")
}
