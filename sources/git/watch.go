package git

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/capstan-io/capstan/sources/internal/notify"
)

// Trigger makes Run signal a possible change now, as a webhook would. It
// never blocks; a trigger before Run starts is kept until it does, and
// triggers made while one is pending are one.
func (s *Source) Trigger() {
	notify.Send(s.trigger)
}

// Run sends on changed when the branch may have moved: once at start, every
// interval (±10% jitter), on Trigger, and for a local repository within
// about 50 ms of one of its refs changing. It never blocks on changed. If a
// local repository cannot be watched, it logs why and only polls. It returns
// nil once ctx ends and its watcher has stopped. Run is meant to run once at
// a time per Source: concurrent Runs share triggers.
func (s *Source) Run(ctx context.Context, changed chan<- struct{}) error {
	loop := notify.Loop{Interval: s.interval, Trigger: s.trigger, Logger: s.logger}
	if s.ep.local != "" {
		w, err := s.watchRefs()
		if err != nil {
			s.logger.Warn("cannot watch local repository, polling only", "err", err)
		} else {
			defer w.w.Close() // waits for fsnotify's reader goroutine
			loop.Watcher, loop.Relevant = w.w, w.relevant
		}
	}
	return loop.Run(ctx, changed)
}

// refWatch watches where a local repository keeps the refs that decide the
// branch head.
type refWatch struct {
	w      *fsnotify.Watcher
	gitDir string // HEAD
	common string // refs/ and packed-refs; gitDir but for a linked worktree
	heads  string // common/refs/heads
	branch string // followed branch, "" for the remote HEAD's
	tags   string // common/refs/tags when following a tag or a semver range
}

// watchRefs starts watching the local repository's HEAD, packed-refs and
// refs/heads (with its subdirectories, for branch names holding "/"). Git
// replaces these files by renaming a lock file over them, which a watch on
// the file itself would lose after the first change, so their directories
// are watched and events filtered by name.
func (s *Source) watchRefs() (*refWatch, error) {
	gitDir, common, err := gitDirs(s.ep.local)
	if err != nil {
		return nil, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", s.ep.local, err)
	}
	rw := &refWatch{
		w:      w,
		gitDir: gitDir,
		common: common,
		heads:  filepath.Join(common, "refs", "heads"),
		branch: s.opts.Branch,
	}
	dirs := []string{gitDir}
	if common != gitDir {
		dirs = append(dirs, common)
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
	}
	if err := rw.addTree(rw.heads); err != nil {
		w.Close()
		return nil, err
	}
	if s.opts.Tag != "" || s.opts.SemVer != "" {
		rw.tags = filepath.Join(common, "refs", "tags")
		if err := rw.addTree(rw.tags); err != nil {
			w.Close()
			return nil, err
		}
	}
	return rw, nil
}

// addTree watches dir and every directory under it.
func (rw *refWatch) addTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone already, as a deleted branch directory can be
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if err := rw.w.Add(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		return nil
	})
}

// relevant reports whether ev may move the followed branch, watching
// directories created under refs/heads as it goes.
func (rw *refWatch) relevant(ev fsnotify.Event) bool {
	name := filepath.Clean(ev.Name)
	if strings.HasSuffix(name, ".lock") {
		return false // the rename into place that follows is the change
	}
	switch name {
	case filepath.Join(rw.common, "packed-refs"):
		return true
	case filepath.Join(rw.gitDir, "HEAD"), filepath.Join(rw.common, "HEAD"):
		// HEAD names the default branch, which is followed only without
		// a configured one.
		return rw.branch == ""
	}
	if rw.tags != "" {
		// Any tag may be the one followed, or the new highest in range.
		if rel, err := filepath.Rel(rw.tags, name); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			if fi, err := os.Stat(name); err == nil && fi.IsDir() && ev.Has(fsnotify.Create) {
				_ = rw.addTree(name)
			}
			return true
		}
		return false // a tag source ignores branches
	}
	rel, err := filepath.Rel(rw.heads, name)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return false
	}
	rel = filepath.ToSlash(rel)
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Stat(name); err == nil && fi.IsDir() {
			// A branch "a/b" makes refs/heads/a; it may hold the ref already.
			_ = rw.addTree(name)
		}
	}
	return rw.branch == "" || rel == rw.branch || strings.HasPrefix(rw.branch, rel+"/")
}

// gitDirs finds a local repository's git directory (holding HEAD) and its
// common directory (holding refs and packed-refs; different only for a
// linked worktree). repo is a working tree or a bare repository.
func gitDirs(repo string) (gitDir, common string, err error) {
	gitDir = repo
	dotGit := filepath.Join(repo, ".git")
	fi, err := os.Stat(dotGit)
	switch {
	case err == nil && fi.IsDir():
		gitDir = dotGit
	case err == nil:
		// A worktree or submodule: ".git" is a file "gitdir: <path>".
		b, err := os.ReadFile(dotGit)
		if err != nil {
			return "", "", fmt.Errorf("read %s: %w", dotGit, err)
		}
		line, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir:")
		if !ok {
			return "", "", fmt.Errorf("read %s: no gitdir line", dotGit)
		}
		gitDir = resolve(repo, strings.TrimSpace(line))
	case !errors.Is(err, fs.ErrNotExist):
		return "", "", fmt.Errorf("stat %s: %w", dotGit, err)
	}
	if _, err := os.Stat(filepath.Join(gitDir, "HEAD")); err != nil {
		return "", "", fmt.Errorf("%s is not a git repository: %w", repo, err)
	}
	common = gitDir
	if b, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		common = resolve(gitDir, strings.TrimSpace(string(b)))
	}
	return gitDir, common, nil
}

// resolve makes p absolute, relative to base when it is not.
func resolve(base, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}
