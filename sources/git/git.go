package git

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/sources"
	"github.com/capstan-io/capstan/sources/internal/manifestfile"
)

// DefaultInterval is the poll interval when Options.Interval is zero.
const DefaultInterval = time.Minute

// DefaultBranch is the branch used when Options.Branch is empty and the
// remote does not say which branch its HEAD points to.
const DefaultBranch = "main"

// Errors a Fetch can return, matched with errors.Is.
var (
	// ErrBranchNotFound: the remote has no such branch (or is empty).
	ErrBranchNotFound = errors.New("git: branch not found")
	// ErrPathNotFound: the revision has no directory at Options.Path. It is
	// an error rather than an empty revision, so a mistyped path or a
	// renamed directory does not read as "delete everything".
	ErrPathNotFound = errors.New("git: path not found in revision")
)

// Options configure a git source. Only URL is required.
type Options struct {
	// URL is the repository: a local path, file://, https://, http://,
	// ssh://, git://, or scp-like user@host:path. Credentials written into
	// it are used, but never shown: Spec, logs and errors carry it without
	// them.
	URL string
	// Branch is the branch to follow. Empty means the branch the remote's
	// HEAD points to, or DefaultBranch if the remote does not say.
	Branch string
	// Path is a directory inside the repository; only files under it are
	// read, and their paths in a Revision are relative to it. Empty means
	// the whole repository.
	Path string
	// Interval is the mean poll interval of Run (each wait is jittered by
	// ±10%). Zero means DefaultInterval.
	Interval time.Duration
	// CacheDir is where bare mirrors are kept, one per (URL, Branch, Path)
	// in a subdirectory, so fetches after the first are incremental and
	// survive restarts. Empty means no cache: each new revision is fetched
	// shallow (depth 1) into memory and dropped after it is read.
	CacheDir string

	// Username is the http(s) user name. Empty means the URL's, or "git"
	// when a PasswordFile is given.
	Username string
	// PasswordFile holds the http(s) password or access token (a trailing
	// newline is ignored). It is read at every fetch, so it can be rotated
	// in place.
	PasswordFile string
	// SSHKeyFile holds the PEM private key for ssh. Empty means ssh-agent.
	// The user is the URL's, or "git".
	SSHKeyFile string
	// SSHKeyPassphraseFile holds the passphrase of an encrypted SSHKeyFile.
	SSHKeyPassphraseFile string
	// KnownHostsFile holds the ssh host keys to accept. Empty means the
	// files in $SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts and
	// /etc/ssh/ssh_known_hosts. Host keys are always checked.
	KnownHostsFile string
}

// Source is a git repository branch as a sources.Source. Its methods are
// safe for concurrent use; Fetches are serialised.
type Source struct {
	opts     Options
	ep       endpoint
	path     string // cleaned Options.Path, "" for the root
	interval time.Duration
	logger   *slog.Logger
	secrets  []string // from the URL; never logged nor returned
	trigger  chan struct{}

	mu   sync.Mutex        // serialises Fetch; guards the fields below
	repo *gogit.Repository // the cache mirror, opened on first use
	last *sources.Revision // the revision read last, served again as is
}

var _ sources.Source = (*Source)(nil)

// New checks opts and returns a source. It does no network I/O: a bad URL,
// an unreadable credential file or a malformed key fails here, an
// unreachable remote fails in Fetch. A nil logger discards.
func New(opts Options, logger *slog.Logger) (*Source, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ep, err := parseEndpoint(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("git: %w", newRedactor(opts.URL).wrap(err))
	}
	p, err := cleanPath(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("git %s: %w", ep.display, err)
	}
	if opts.Branch != "" {
		if err := plumbing.NewBranchReferenceName(opts.Branch).Validate(); err != nil {
			return nil, fmt.Errorf("git %s: branch %q: %w", ep.display, opts.Branch, err)
		}
	}
	if opts.Interval < 0 {
		return nil, fmt.Errorf("git %s: negative interval %v", ep.display, opts.Interval)
	}
	interval := opts.Interval
	if interval == 0 {
		interval = DefaultInterval
	}
	s := &Source{
		opts:     opts,
		ep:       ep,
		path:     p,
		interval: interval,
		logger:   logger.With("source", ep.display),
		trigger:  make(chan struct{}, 1),
	}
	s.secrets = []string{ep.password}
	if ep.password == "" && (ep.protocol == "http" || ep.protocol == "https") {
		// A user name without a password is how tokens are often given:
		// https://TOKEN@host/repo.git.
		s.secrets = append(s.secrets, ep.user)
	}
	// Load the credentials once now so a missing file or a bad key is a
	// configuration error, not a retried fetch error.
	if _, secrets, err := s.auth(); err != nil {
		return nil, newRedactor(append(secrets, s.secrets...)...).wrap(err)
	}
	return s, nil
}

// cleanPath makes p a clean slash-separated relative path, "" for the root,
// refusing one that climbs out of the repository.
func cleanPath(p string) (string, error) {
	p = path.Clean(strings.TrimLeft(filepath.ToSlash(p), "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("path %q leaves the repository", p)
	}
	if p == "." {
		p = ""
	}
	return p, nil
}

// Spec describes the source; its URL has no credentials.
func (s *Source) Spec() manifests.SourceSpec {
	return manifests.SourceSpec{
		URL:      s.ep.display,
		Branch:   s.opts.Branch,
		Path:     s.path,
		Interval: s.interval.String(),
	}
}

// Fetch returns the head of the branch with its manifest files. It first
// lists the remote's refs (one round trip, no objects); when the branch head
// is known it returns sources.ErrUnchanged. Otherwise it fetches the commit
// (incrementally into the cache, or shallow into memory) and reads its tree.
// Network and authentication errors are returned as they are, with
// credentials removed from their text, for the caller to retry.
func (s *Source) Fetch(ctx context.Context, known string) (*sources.Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	auth, secrets, err := s.auth()
	if err == nil {
		var rev *sources.Revision
		if rev, err = s.fetch(ctx, auth, known); err == nil {
			return rev, nil
		}
	}
	// go-git never sees a password (it travels in auth, not in the URL),
	// but a server's reply might echo one: scrub the text anyway.
	return nil, newRedactor(append(secrets, s.secrets...)...).wrap(err)
}

func (s *Source) fetch(ctx context.Context, auth transport.AuthMethod, known string) (*sources.Revision, error) {
	branch, head, err := s.lsRemote(ctx, auth)
	if err != nil {
		return nil, err
	}
	if head.String() == known {
		s.logger.Debug("revision unchanged", "branch", branch, "revision", known)
		return nil, sources.ErrUnchanged
	}
	if s.last != nil && s.last.ID == head.String() {
		// A caller asking again (a periodic full resync passes no known
		// revision) gets the files already read: no transfer, no tree walk.
		return cloneRevision(s.last), nil
	}
	commit, err := s.fetchCommit(ctx, auth, branch, head)
	if err != nil {
		return nil, err
	}
	rev, err := s.read(commit)
	if err != nil {
		return nil, err
	}
	s.last = rev
	s.logger.Info("fetched revision", "branch", branch, "revision", rev.ID, "files", len(rev.Files))
	return cloneRevision(rev), nil
}

// cloneRevision copies r and its file list, so a caller reordering the
// files does not reorder the kept copy. File contents are shared: callers
// must not modify them.
func cloneRevision(r *sources.Revision) *sources.Revision {
	c := *r
	c.Files = slices.Clone(r.Files)
	return &c
}

// lsRemote reads the remote's refs, the way git ls-remote does, and returns
// the branch followed and its head.
func (s *Source) lsRemote(ctx context.Context, auth transport.AuthMethod) (string, plumbing.Hash, error) {
	remote := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{s.ep.conn}})
	refs, err := remote.ListContext(ctx, &gogit.ListOptions{Auth: auth})
	if err != nil {
		if errors.Is(err, transport.ErrEmptyRemoteRepository) {
			return "", plumbing.ZeroHash, fmt.Errorf("list %s: %w: the repository is empty", s.ep.display, ErrBranchNotFound)
		}
		return "", plumbing.ZeroHash, fmt.Errorf("list %s: %w", s.ep.display, err)
	}
	byName := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	for _, r := range refs {
		byName[r.Name()] = r
	}
	branch := s.opts.Branch
	if branch == "" {
		branch = DefaultBranch
		if h, ok := byName[plumbing.HEAD]; ok && h.Type() == plumbing.SymbolicReference && h.Target().IsBranch() {
			branch = h.Target().Short()
		}
	}
	ref, ok := byName[plumbing.NewBranchReferenceName(branch)]
	if !ok || ref.Type() != plumbing.HashReference {
		return "", plumbing.ZeroHash, fmt.Errorf("list %s: %w: %q", s.ep.display, ErrBranchNotFound, branch)
	}
	return branch, ref.Hash(), nil
}

// fetchCommit makes head's objects local and returns its commit.
func (s *Source) fetchCommit(ctx context.Context, auth transport.AuthMethod, branch string, head plumbing.Hash) (*object.Commit, error) {
	refName := plumbing.NewBranchReferenceName(branch)
	fo := &gogit.FetchOptions{
		RemoteName: "origin",
		// The mirror keeps the branch under its own name, so the next fetch
		// offers it as a "have" and receives only new objects. "+" takes a
		// force-push to an unrelated history.
		RefSpecs: []config.RefSpec{config.RefSpec("+" + refName + ":" + refName)},
		Auth:     auth,
		Tags:     gogit.NoTags,
		Force:    true,
	}

	repo, err := s.cache()
	if err != nil {
		return nil, err
	}
	if repo == nil {
		// No cache: a throw-away shallow clone of the one commit.
		repo, err = gogit.Init(memory.NewStorage(), nil)
		if err != nil {
			return nil, fmt.Errorf("init memory repository: %w", err)
		}
		fo.Depth = 1
	} else if c, err := object.GetCommit(repo.Storer, head); err == nil {
		// Already here (a revert of a force-push, or another branch's
		// history): no transfer. Point the ref at it for the next "haves".
		if err := repo.Storer.SetReference(plumbing.NewHashReference(refName, head)); err != nil {
			return nil, fmt.Errorf("update cache ref %s: %w", refName, err)
		}
		return c, nil
	}

	remote := gogit.NewRemote(repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{s.ep.conn}})
	err = remote.FetchContext(ctx, fo)
	if err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		return nil, fmt.Errorf("fetch %s %s: %w", s.ep.display, branch, err)
	}
	// The branch may have moved since the listing; what was fetched is the
	// newest head, so read that.
	ref, err := repo.Storer.Reference(refName)
	if err != nil {
		return nil, fmt.Errorf("fetch %s %s: read fetched ref: %w", s.ep.display, branch, err)
	}
	c, err := object.GetCommit(repo.Storer, ref.Hash())
	if err != nil {
		return nil, fmt.Errorf("fetch %s %s: read commit %s: %w", s.ep.display, branch, ref.Hash(), err)
	}
	return c, nil
}

// cache opens (or creates) the bare mirror, or returns nil without a
// CacheDir. A mirror that cannot be opened is recreated: it only ever holds
// what the remote can send again.
func (s *Source) cache() (*gogit.Repository, error) {
	if s.opts.CacheDir == "" {
		return nil, nil
	}
	if s.repo != nil {
		return s.repo, nil
	}
	key := sha256.Sum256([]byte(s.ep.conn + "\x00" + s.opts.Branch + "\x00" + s.path))
	dir := filepath.Join(s.opts.CacheDir, hex.EncodeToString(key[:8]))
	repo, err := gogit.PlainOpen(dir)
	if err != nil {
		if !errors.Is(err, gogit.ErrRepositoryNotExists) {
			s.logger.Warn("recreating unreadable git cache", "dir", dir, "err", err)
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("remove git cache %s: %w", dir, err)
			}
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create git cache: %w", err)
		}
		repo, err = gogit.PlainInit(dir, true)
		if err != nil {
			return nil, fmt.Errorf("init git cache %s: %w", dir, err)
		}
	}
	s.repo = repo
	return repo, nil
}

// read turns a commit into a revision: the manifest files under the path,
// sorted, and who made it.
func (s *Source) read(c *object.Commit) (*sources.Revision, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("read tree of %s: %w", c.Hash, err)
	}
	if s.path != "" {
		e, err := tree.FindEntry(s.path)
		if err != nil || e.Mode != filemode.Dir {
			return nil, fmt.Errorf("revision %s: %w: %q", c.Hash, ErrPathNotFound, s.path)
		}
		if tree, err = tree.Tree(s.path); err != nil {
			return nil, fmt.Errorf("revision %s: read %q: %w", c.Hash, s.path, err)
		}
	}
	var files []manifests.File
	err = tree.Files().ForEach(func(f *object.File) error {
		// Symlinks' contents are their targets, and submodules are not
		// files; only regular files are manifests.
		if (f.Mode != filemode.Regular && f.Mode != filemode.Executable) || !manifestfile.Match(f.Name) {
			return nil
		}
		r, err := f.Reader()
		if err != nil {
			return fmt.Errorf("open %s: %w", f.Name, err)
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Name, err)
		}
		files = append(files, manifests.File{Path: f.Name, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("revision %s: %w", c.Hash, err)
	}
	manifestfile.Sort(files)
	return &sources.Revision{
		ID:        c.Hash.String(),
		Author:    signature(c.Author),
		Committer: signature(c.Committer),
		Message:   strings.TrimRight(c.Message, "\n"),
		Files:     files,
	}, nil
}

func signature(s object.Signature) sources.Signature {
	return sources.Signature{Name: s.Name, Email: s.Email, When: s.When}
}
