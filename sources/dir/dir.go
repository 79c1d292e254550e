package dir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/sources"
	"github.com/capstan-io/capstan/sources/internal/manifestfile"
	"github.com/capstan-io/capstan/sources/internal/notify"
)

// DefaultInterval is the resync interval when Options.Interval is zero.
const DefaultInterval = time.Minute

// Options configure a directory source. Only Dir is required.
type Options struct {
	// Dir is the directory; a relative one is made absolute by New.
	Dir string
	// Interval is the mean time between resync signals of Run, a safety net
	// for lost filesystem events (each wait is jittered by ±10%). Zero
	// means DefaultInterval.
	Interval time.Duration
}

// Source is a directory as a sources.Source. Its methods are safe for
// concurrent use.
type Source struct {
	dir      string
	interval time.Duration
	logger   *slog.Logger
	trigger  chan struct{}
}

var _ sources.Source = (*Source)(nil)

// New returns a source for opts.Dir, which must be an existing directory.
// A nil logger discards.
func New(opts Options, logger *slog.Logger) (*Source, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.Dir == "" {
		return nil, errors.New("dir: no directory")
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("dir %s: %w", opts.Dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("dir: %s is not a directory", abs)
	}
	if opts.Interval < 0 {
		return nil, fmt.Errorf("dir %s: negative interval %v", abs, opts.Interval)
	}
	interval := opts.Interval
	if interval == 0 {
		interval = DefaultInterval
	}
	return &Source{
		dir:      abs,
		interval: interval,
		logger:   logger.With("source", abs),
		trigger:  make(chan struct{}, 1),
	}, nil
}

// Spec describes the source: its URL is the absolute directory path.
func (s *Source) Spec() manifests.SourceSpec {
	return manifests.SourceSpec{URL: s.dir, Interval: s.interval.String()}
}

// Fetch reads every manifest file under the directory and returns them as a
// revision, or sources.ErrUnchanged when their hash is known. A file that
// vanishes while being read is left out: the event for its removal brings
// another Fetch.
func (s *Source) Fetch(ctx context.Context, known string) (*sources.Revision, error) {
	var files []manifests.File
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != s.dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == s.dir {
			return nil
		}
		if manifestfile.Hidden(d.Name()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !manifestfile.Match(rel) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				return nil // dangling, or a directory: not followed
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		files = append(files, manifests.File{Path: rel, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dir %s: %w", s.dir, err)
	}
	manifestfile.Sort(files)
	id := "sha256:" + manifestfile.Hash(files)
	if id == known {
		return nil, sources.ErrUnchanged
	}
	s.logger.Debug("read revision", "revision", id, "files", len(files))
	return &sources.Revision{
		ID:      id,
		Message: "directory " + s.dir,
		Files:   files,
	}, nil
}

// Trigger makes Run signal a possible change now. It never blocks; a
// trigger before Run starts is kept until it does.
func (s *Source) Trigger() {
	notify.Send(s.trigger)
}

// Run sends on changed when the directory may have changed: once at start
// (after its watches are in place), within about 50 ms of a file event,
// every interval, and on Trigger. It never blocks on changed. If the
// directory cannot be watched, it logs why and only polls. It returns nil
// once ctx ends and its watcher has stopped.
func (s *Source) Run(ctx context.Context, changed chan<- struct{}) error {
	loop := notify.Loop{Interval: s.interval, Trigger: s.trigger, Logger: s.logger}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		defer w.Close() // waits for fsnotify's reader goroutine
		if err = s.addTree(w, s.dir); err == nil {
			loop.Watcher = w
			loop.Relevant = func(ev fsnotify.Event) bool { return s.relevant(w, ev) }
		}
	}
	if err != nil {
		s.logger.Warn("cannot watch directory, polling only", "err", err)
	}
	return loop.Run(ctx, changed)
}

// addTree watches root and every non-hidden directory under it. inotify
// watches are per directory, so a tree needs one each.
func (s *Source) addTree(w *fsnotify.Watcher, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != root && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p != s.dir && manifestfile.Hidden(d.Name()) {
			return fs.SkipDir
		}
		if err := w.Add(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		return nil
	})
}

// relevant reports whether ev may change the revision, and watches a
// directory created under the tree (with anything already inside it, since
// "mkdir -p a/b" and a move of a whole tree outrun the watch on "a").
func (s *Source) relevant(w *fsnotify.Watcher, ev fsnotify.Event) bool {
	rel, err := filepath.Rel(s.dir, ev.Name)
	if err != nil {
		return true
	}
	if hiddenPath(rel) {
		return false
	}
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			if err := s.addTree(w, ev.Name); err != nil {
				s.logger.Warn("cannot watch new directory", "dir", ev.Name, "err", err)
			}
		}
	}
	// Any other event may matter: a removed or renamed directory takes its
	// manifests with it, whatever its name. Fetch's hash decides.
	return true
}

// hiddenPath reports whether any element of the relative path rel is
// hidden.
func hiddenPath(rel string) bool {
	for _, name := range strings.Split(filepath.ToSlash(rel), "/") {
		if manifestfile.Hidden(name) {
			return true
		}
	}
	return false
}
