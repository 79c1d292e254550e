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

	"github.com/Masterminds/semver/v3"
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
	// ErrTagNotFound: the remote has no such tag, or no tag in the semver
	// range.
	ErrTagNotFound = errors.New("git: tag not found")
	// ErrCommitNotFound: the pinned commit is on none of the remote's
	// branches and tags.
	ErrCommitNotFound = errors.New("git: commit not found")
)

// Options configure a git source. Only URL is required.
type Options struct {
	// URL is the repository: a local path, file://, https://, http://,
	// ssh://, git://, or scp-like user@host:path. Credentials written into
	// it are used, but never shown: Spec, logs and errors carry it without
	// them.
	URL string
	// Branch is the branch to follow. Empty means the branch the remote's
	// HEAD points to, or DefaultBranch if the remote does not say. At most
	// one of Branch, Tag, SemVer and Commit is set.
	Branch string
	// Tag follows one tag (moved by a force-push of the tag, if ever).
	Tag string
	// SemVer follows the highest tag within a semver range such as
	// ">=1.2.0 <2.0.0" or "~1.4" (github.com/Masterminds/semver syntax; a
	// leading "v" in tag names is allowed). Pre-releases match only a
	// range that names one.
	SemVer string
	// Commit pins a full commit hash: the source never moves.
	Commit string
	// Verify is the commit signature policy (verify.go); nil checks none.
	Verify *VerifyOptions
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
	semver   *semver.Constraints // parsed Options.SemVer
	verify   *verifier           // the signature policy, nil for none

	mu   sync.Mutex        // serialises Fetch; guards the fields below
	repo *gogit.Repository // the cache mirror, opened on first use
	last *sources.Revision // the revision read last, served again as is
	// blobs holds the manifest files of the revision read last by blob
	// hash: the next revision reads from the repository only the files
	// that changed, so a one-file change reads one blob.
	blobs map[plumbing.Hash][]byte
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
	constraint, err := checkRef(opts)
	if err != nil {
		return nil, fmt.Errorf("git %s: %w", ep.display, err)
	}
	if opts.Interval < 0 {
		return nil, fmt.Errorf("git %s: negative interval %v", ep.display, opts.Interval)
	}
	if err := checkVerifyOptions(opts.Verify); err != nil {
		return nil, fmt.Errorf("git %s: %w", ep.display, err)
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
		semver:   constraint,
	}
	if opts.Verify != nil {
		s.verify = &verifier{opts: opts.Verify}
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
	spec := manifests.SourceSpec{
		URL:      s.ep.display,
		Branch:   s.opts.Branch,
		Path:     s.path,
		Interval: s.interval.String(),
	}
	if s.opts.Tag != "" || s.opts.SemVer != "" || s.opts.Commit != "" {
		spec.Ref = &manifests.GitRef{Tag: s.opts.Tag, SemVer: s.opts.SemVer, Commit: s.opts.Commit}
	}
	if s.opts.Verify != nil {
		// The mode only: the keys are the control plane's files. It tells
		// `capstan scale` that an unsigned commit would be rejected.
		spec.Verify = &manifests.VerifySpec{Mode: s.opts.Verify.Mode}
	}
	return spec
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
	t := target{head: plumbing.NewHash(s.opts.Commit), label: "commit " + s.opts.Commit}
	if s.opts.Commit != "" && known == s.opts.Commit {
		// A pinned commit never moves: not even a listing.
		return nil, sources.ErrUnchanged
	}
	if s.opts.Commit == "" {
		var err error
		if t, err = s.lsRemote(ctx, auth); err != nil {
			return nil, err
		}
	}
	head, branch := t.head, t.label
	if head.String() == known {
		s.logger.Debug("revision unchanged", "ref", branch, "revision", known)
		return nil, sources.ErrUnchanged
	}
	if s.last != nil && s.last.ID == head.String() {
		// A caller asking again (a periodic full resync passes no known
		// revision) gets the files already read: no transfer, no tree walk.
		return cloneRevision(s.last), nil
	}
	commit, err := s.fetchCommit(ctx, auth, t)
	if err != nil {
		return nil, err
	}
	sig, err := s.verifyHead(commit)
	if err != nil {
		return nil, err
	}
	rev, err := s.read(commit)
	if err != nil {
		return nil, err
	}
	rev.Signature = sig
	s.last = rev
	s.logger.Info("fetched revision", "ref", branch, "revision", rev.ID, "files", len(rev.Files))
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

// target is what a source follows, resolved: the ref to fetch (a branch
// or a tag; none for a pinned commit), the commit it names (a tag
// peeled), and a label for logs and errors ("branch main", "tag v1.2.0").
type target struct {
	ref   plumbing.ReferenceName
	head  plumbing.Hash
	label string
}

// lsRemote reads the remote's refs, the way git ls-remote does, and
// resolves the branch, tag or semver range followed.
func (s *Source) lsRemote(ctx context.Context, auth transport.AuthMethod) (target, error) {
	remote := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{s.ep.conn}})
	// AppendPeeled: an annotated tag also comes as "refs/tags/X^{}" with
	// its commit.
	refs, err := remote.ListContext(ctx, &gogit.ListOptions{Auth: auth, PeelingOption: gogit.AppendPeeled})
	if err != nil {
		if errors.Is(err, transport.ErrEmptyRemoteRepository) {
			return target{}, fmt.Errorf("list %s: %w: the repository is empty", s.ep.display, ErrBranchNotFound)
		}
		return target{}, fmt.Errorf("list %s: %w", s.ep.display, err)
	}
	byName := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	for _, r := range refs {
		byName[r.Name()] = r
	}
	switch {
	case s.opts.Tag != "":
		return s.tagTarget(byName, s.opts.Tag)
	case s.semver != nil:
		tag, err := s.pickSemver(byName)
		if err != nil {
			return target{}, err
		}
		return s.tagTarget(byName, tag)
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
		return target{}, fmt.Errorf("list %s: %w: %q", s.ep.display, ErrBranchNotFound, branch)
	}
	return target{ref: ref.Name(), head: ref.Hash(), label: "branch " + branch}, nil
}

// tagTarget resolves a tag from a listing: an annotated tag is advertised
// with its peeled commit ("refs/tags/v1^{}"), which is the revision.
func (s *Source) tagTarget(byName map[plumbing.ReferenceName]*plumbing.Reference, tag string) (target, error) {
	name := plumbing.NewTagReferenceName(tag)
	ref, ok := byName[name]
	if !ok || ref.Type() != plumbing.HashReference {
		return target{}, fmt.Errorf("list %s: %w: %q", s.ep.display, ErrTagNotFound, tag)
	}
	head := ref.Hash()
	if peeled, ok := byName[name+"^{}"]; ok {
		head = peeled.Hash()
	}
	return target{ref: name, head: head, label: "tag " + tag}, nil
}

// pickSemver returns the highest tag within the range.
func (s *Source) pickSemver(byName map[plumbing.ReferenceName]*plumbing.Reference) (string, error) {
	var best *semver.Version
	bestTag := ""
	for name := range byName {
		if !name.IsTag() || strings.HasSuffix(string(name), "^{}") {
			continue
		}
		tag := name.Short()
		v, err := semver.NewVersion(tag)
		if err != nil || !s.semver.Check(v) {
			continue
		}
		if best == nil || v.GreaterThan(best) || v.Equal(best) && tag < bestTag {
			best, bestTag = v, tag
		}
	}
	if best == nil {
		return "", fmt.Errorf("list %s: %w: no tag in the range %q", s.ep.display, ErrTagNotFound, s.opts.SemVer)
	}
	return bestTag, nil
}

// checkRef checks that at most one of Branch, Tag, SemVer and Commit is
// set, and parses SemVer.
func checkRef(opts Options) (*semver.Constraints, error) {
	n := 0
	for _, v := range []string{opts.Branch, opts.Tag, opts.SemVer, opts.Commit} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("give one of branch, tag, semver range or commit")
	}
	if opts.Tag != "" {
		if err := plumbing.NewTagReferenceName(opts.Tag).Validate(); err != nil {
			return nil, fmt.Errorf("tag %q: %w", opts.Tag, err)
		}
	}
	if opts.Commit != "" {
		if len(opts.Commit) != 40 || strings.Trim(strings.ToLower(opts.Commit), "0123456789abcdef") != "" {
			return nil, fmt.Errorf("commit %q: want a full 40-character hash", opts.Commit)
		}
	}
	if opts.SemVer == "" {
		return nil, nil
	}
	c, err := semver.NewConstraint(opts.SemVer)
	if err != nil {
		return nil, fmt.Errorf("semver range %q: %w", opts.SemVer, err)
	}
	return c, nil
}

// fetchCommit makes the target's commit local and returns it.
func (s *Source) fetchCommit(ctx context.Context, auth transport.AuthMethod, t target) (*object.Commit, error) {
	fo := &gogit.FetchOptions{
		RemoteName: "origin",
		Auth:       auth,
		Tags:       gogit.NoTags,
		Force:      true,
	}
	if t.ref != "" {
		// The mirror keeps the ref under its own name, so the next fetch
		// offers it as a "have" and receives only new objects. "+" takes a
		// force-push to an unrelated history.
		fo.RefSpecs = []config.RefSpec{config.RefSpec("+" + t.ref + ":" + t.ref)}
	} else {
		// A pinned commit: servers need not serve an arbitrary hash, so
		// fetch every branch and tag and look for it there.
		fo.RefSpecs = []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}
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
		if t.ref != "" && (s.verify == nil || s.verify.opts.Mode != VerifyAll) {
			fo.Depth = 1 // mode "all" walks the history since the last verified head
		}
	} else if c, err := object.GetCommit(repo.Storer, t.head); err == nil {
		// Already here (a revert of a force-push, or another branch's
		// history): no transfer. Point the ref at it for the next "haves".
		if t.ref != "" && t.ref.IsBranch() {
			if err := repo.Storer.SetReference(plumbing.NewHashReference(t.ref, t.head)); err != nil {
				return nil, fmt.Errorf("update cache ref %s: %w", t.ref, err)
			}
		}
		return c, nil
	}

	remote := gogit.NewRemote(repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{s.ep.conn}})
	err = remote.FetchContext(ctx, fo)
	if err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		return nil, fmt.Errorf("fetch %s %s: %w", s.ep.display, t.label, err)
	}
	if t.ref == "" {
		c, err := object.GetCommit(repo.Storer, t.head)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w: %s is on no branch or tag", s.ep.display, ErrCommitNotFound, t.head)
		}
		return c, nil
	}
	// A branch may have moved since the listing; what was fetched is the
	// newest head, so read that.
	ref, err := repo.Storer.Reference(t.ref)
	if err != nil {
		return nil, fmt.Errorf("fetch %s %s: read fetched ref: %w", s.ep.display, t.label, err)
	}
	h := ref.Hash()
	if tag, err := object.GetTag(repo.Storer, h); err == nil {
		// An annotated tag: its commit is the revision.
		h = tag.Target
	}
	c, err := object.GetCommit(repo.Storer, h)
	if err != nil {
		return nil, fmt.Errorf("fetch %s %s: read commit %s: %w", s.ep.display, t.label, h, err)
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
	ref := s.opts.Branch
	switch {
	case s.opts.Tag != "":
		ref = "tag:" + s.opts.Tag
	case s.opts.SemVer != "":
		ref = "semver:" + s.opts.SemVer
	case s.opts.Commit != "":
		ref = "commit:" + s.opts.Commit
	}
	key := sha256.Sum256([]byte(s.ep.conn + "\x00" + ref + "\x00" + s.path))
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
	blobs := make(map[plumbing.Hash][]byte, len(s.blobs))
	walk := object.NewTreeWalker(tree, true, nil)
	defer walk.Close()
	for {
		name, e, err := walk.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("revision %s: %w", c.Hash, err)
		}
		// Symlinks' contents are their targets, and submodules are not
		// files; only regular files are manifests.
		if (e.Mode != filemode.Regular && e.Mode != filemode.Executable) || !manifestfile.Match(name) {
			continue
		}
		data, ok := s.blobs[e.Hash]
		if !ok {
			if data, err = readBlob(tree, &e); err != nil {
				return nil, fmt.Errorf("revision %s: read %s: %w", c.Hash, name, err)
			}
		}
		blobs[e.Hash] = data
		files = append(files, manifests.File{Path: name, Data: data})
	}
	s.blobs = blobs
	manifestfile.Sort(files)
	return &sources.Revision{
		ID:        c.Hash.String(),
		Author:    signature(c.Author),
		Committer: signature(c.Committer),
		Message:   strings.TrimRight(c.Message, "\n"),
		Files:     files,
	}, nil
}

// readBlob reads the content of a tree's file entry.
func readBlob(tree *object.Tree, e *object.TreeEntry) ([]byte, error) {
	f, err := tree.TreeEntryFile(e)
	if err != nil {
		return nil, err
	}
	r, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func signature(s object.Signature) sources.Signature {
	return sources.Signature{Name: s.Name, Email: s.Email, When: s.When}
}
