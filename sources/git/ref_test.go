package git

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/capstan-io/capstan/sources"
	"github.com/capstan-io/capstan/sources/internal/sourcetest"
)

// TestRefs follows a tag, a semver range and a pinned commit, with and
// without the cache, over the file transport.
func TestRefs(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	c1 := r.commit("one", map[string]string{"a.yaml": "1\n"})
	r.git("tag", "v1.0.0")
	c2 := r.commit("two", map[string]string{"a.yaml": "2\n"})
	r.git("tag", "-a", "v1.1.0", "-m", "annotated") // peeled to c2
	c3 := r.commit("three", map[string]string{"a.yaml": "3\n"})
	r.git("tag", "v2.0.0")
	r.git("tag", "v1.2.0-rc.1") // a pre-release: outside "~1" ranges
	r.git("tag", "not-semver")
	c4 := r.commit("four", map[string]string{"a.yaml": "4\n"})

	for _, cached := range []bool{false, true} {
		for _, tc := range []struct {
			name string
			opts Options
			want string
		}{
			{"branch", Options{Branch: "main"}, c4},
			{"lightweight tag", Options{Tag: "v1.0.0"}, c1},
			{"annotated tag", Options{Tag: "v1.1.0"}, c2},
			{"semver ~1", Options{SemVer: "~1"}, c2},
			{"semver >=1", Options{SemVer: ">=1.0.0"}, c3},
			{"semver with pre-release", Options{SemVer: ">=1.2.0-0 <2.0.0"}, c3},
			{"commit", Options{Commit: c2}, c2},
			{"old commit", Options{Commit: c1}, c1},
		} {
			name := tc.name
			if cached {
				name += " cached"
			}
			t.Run(name, func(t *testing.T) {
				opts := tc.opts
				opts.URL = "file://" + r.dir
				if cached {
					opts.CacheDir = t.TempDir()
				}
				s := newSource(t, opts)
				rev := fetch(t, s, "")
				if rev.ID != tc.want {
					t.Fatalf("revision %s, want %s", rev.ID, tc.want)
				}
				if _, err := s.Fetch(context.Background(), rev.ID); !errors.Is(err, sources.ErrUnchanged) {
					t.Fatalf("second Fetch: %v, want ErrUnchanged", err)
				}
			})
		}
	}
	_ = c3
}

// TestSemverMoves: a new tag in range moves the source; one out of range
// does not.
func TestSemverMoves(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("one", map[string]string{"a.yaml": "1\n"})
	r.git("tag", "v1.0.0")
	s := newSource(t, Options{URL: r.dir, SemVer: "^1", CacheDir: t.TempDir()})
	rev := fetch(t, s, "")
	c2 := r.commit("two", map[string]string{"a.yaml": "2\n"})
	r.git("tag", "v2.0.0")
	if _, err := s.Fetch(context.Background(), rev.ID); !errors.Is(err, sources.ErrUnchanged) {
		t.Fatalf("v2.0.0 is out of range, yet Fetch = %v", err)
	}
	r.git("tag", "v1.5.0")
	if got := fetch(t, s, rev.ID); got.ID != c2 || fileData(got, "a.yaml") != "2\n" {
		t.Fatalf("after v1.5.0: %s %q, want %s", got.ID, fileData(got, "a.yaml"), c2)
	}
}

func TestRefErrors(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("one", map[string]string{"a.yaml": "1\n"})
	r.git("tag", "v1.0.0")
	for _, tc := range []struct {
		opts Options
		want error
	}{
		{Options{Tag: "v9"}, ErrTagNotFound},
		{Options{SemVer: ">=2"}, ErrTagNotFound},
		{Options{Commit: "0123456789012345678901234567890123456789"}, ErrCommitNotFound},
	} {
		tc.opts.URL = r.dir
		s := newSource(t, tc.opts)
		if _, err := s.Fetch(context.Background(), ""); !errors.Is(err, tc.want) {
			t.Errorf("%+v: Fetch = %v, want %v", tc.opts, err, tc.want)
		}
	}
	for name, opts := range map[string]Options{
		"two refs":   {URL: r.dir, Branch: "main", Tag: "v1"},
		"bad semver": {URL: r.dir, SemVer: "not a range"},
		"short hash": {URL: r.dir, Commit: "abc123"},
		"bad tag":    {URL: r.dir, Tag: "a..b"},
	} {
		if _, err := New(opts, nil); err == nil {
			t.Errorf("%s: New accepted %+v", name, opts)
		}
	}
}

func TestRefSpec(t *testing.T) {
	t.Parallel()
	s := newSource(t, Options{URL: "/tmp/x", SemVer: "~1.2"})
	if got := s.Spec(); got.Ref == nil || got.Ref.SemVer != "~1.2" || got.Branch != "" {
		t.Fatalf("Spec = %+v", got)
	}
}

// TestRunSeesLocalTag: a source following tags is signalled when a tag is
// made in a local repository.
func TestRunSeesLocalTag(t *testing.T) {
	t.Parallel()
	r := newRepo(t, "main")
	r.commit("one", map[string]string{"a.yaml": "1\n"})
	s := newSource(t, Options{URL: r.dir, SemVer: "^1", Interval: time.Hour})
	changed := runSource(t, s)
	r.git("tag", "v1.0.0")
	sourcetest.WaitSignal(t, changed, 2*time.Second, "a new tag")
}
