package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/capstan-io/capstan/manifests"
)

var (
	// ErrNoWriteAccess wraps a push the remote refused for want of
	// credentials or rights.
	ErrNoWriteAccess = errors.New("no write access")
	// ErrNotBranch: the source follows a tag, a semver range or a pinned
	// commit, so there is no branch to commit to.
	ErrNotBranch = errors.New("the source follows a tag or a pinned commit, not a branch: there is no branch to commit to")
	// ErrWouldBeRejected: the commit would fail the source's own
	// signature policy; it was not pushed.
	ErrWouldBeRejected = errors.New("the commit would be rejected by the source's signature policy")
	// ErrNoChange: the edit left the files as they were.
	ErrNoChange = errors.New("nothing to commit: the repository already says so")
)

// writeAttempts bounds the clone-edit-push rounds when the branch moves
// while Write is committing.
const writeAttempts = 3

// WriteRequest is one commit for Write to make.
type WriteRequest struct {
	// Edit changes files in a fresh clone of the source's branch, rooted
	// at dir (the repository's root, not the source's Path), and returns
	// the slash-separated paths, relative to dir, of the files it
	// changed. It is called again on a new clone if the branch moves
	// before the push.
	Edit func(repo *gogit.Repository, dir string) ([]string, error)
	// Message is the commit message.
	Message string
	// Author is who asked for the change; the committer too.
	Author object.Signature
	// Signer signs the commit; nil leaves it unsigned, which a source with
	// a signature policy refuses before any clone.
	Signer gogit.Signer
}

// WriteResult is the commit Write pushed.
type WriteResult struct {
	Commit string
	Branch string
}

// Write commits an edit to the source's branch and pushes it, with the
// credentials the source fetches with. A signed commit is checked against
// the source's own signature policy before the push (ErrWouldBeRejected);
// a refused push is ErrNoWriteAccess. Errors carry no credential.
func (s *Source) Write(ctx context.Context, req WriteRequest) (WriteResult, error) {
	if s.opts.Tag != "" || s.opts.SemVer != "" || s.opts.Commit != "" {
		return WriteResult{}, fmt.Errorf("git %s: %w", s.ep.display, ErrNotBranch)
	}
	if s.verify != nil && req.Signer == nil {
		return WriteResult{}, fmt.Errorf("git %s: %w: it verifies commit signatures (mode %s) and no signing key is configured (the control plane's --git-signing-key)",
			s.ep.display, ErrWouldBeRejected, s.verify.opts.Mode)
	}
	auth, secrets, err := s.auth()
	red := newRedactor(append(secrets, s.secrets...)...)
	if err != nil {
		return WriteResult{}, red.wrap(err)
	}
	for attempt := 1; ; attempt++ {
		res, err := s.writeOnce(ctx, auth, req)
		if err != nil && strings.Contains(err.Error(), "non-fast-forward") && attempt < writeAttempts {
			s.logger.Info("branch moved while committing; trying again", "attempt", attempt)
			continue
		}
		return res, red.wrap(err)
	}
}

func (s *Source) writeOnce(ctx context.Context, auth transport.AuthMethod, req WriteRequest) (WriteResult, error) {
	dir, err := os.MkdirTemp("", "capstan-write-")
	if err != nil {
		return WriteResult{}, err
	}
	defer os.RemoveAll(dir)
	co := &gogit.CloneOptions{URL: s.ep.conn, Auth: auth, SingleBranch: true, Tags: gogit.NoTags}
	if s.opts.Branch != "" {
		co.ReferenceName = plumbing.NewBranchReferenceName(s.opts.Branch)
	}
	repo, err := gogit.PlainCloneContext(ctx, dir, false, co)
	if err != nil {
		return WriteResult{}, fmt.Errorf("git %s: clone: %w", s.ep.display, err)
	}
	head, err := repo.Head()
	if err != nil {
		return WriteResult{}, fmt.Errorf("git %s: clone: %w", s.ep.display, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return WriteResult{}, err
	}
	files, err := req.Edit(repo, dir)
	if err != nil {
		return WriteResult{}, err
	}
	for _, f := range files {
		if _, err := wt.Add(f); err != nil {
			return WriteResult{}, fmt.Errorf("git add %s: %w", f, err)
		}
	}
	h, err := wt.Commit(req.Message, &gogit.CommitOptions{Author: &req.Author, Committer: &req.Author, Signer: req.Signer})
	if errors.Is(err, gogit.ErrEmptyCommit) || (err == nil && len(files) == 0) {
		return WriteResult{}, ErrNoChange
	}
	if err != nil {
		return WriteResult{}, fmt.Errorf("git commit: %w", err)
	}
	if err := s.checkWrite(repo, h); err != nil {
		return WriteResult{}, err
	}
	branch := head.Name()
	err = repo.PushContext(ctx, &gogit.PushOptions{RemoteName: "origin", Auth: auth,
		RefSpecs: []gitconfig.RefSpec{gitconfig.RefSpec(branch + ":" + branch)}})
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		// The server's reason ends the text: without its line ending.
		return WriteResult{}, fmt.Errorf("git %s: push: %w: %s", s.ep.display, ErrNoWriteAccess, strings.TrimSpace(err.Error()))
	case err != nil:
		return WriteResult{}, fmt.Errorf("git %s: push: %w", s.ep.display, err)
	}
	return WriteResult{Commit: h.String(), Branch: branch.Short()}, nil
}

// checkWrite applies the source's signature policy to the commit about to
// be pushed: a commit the source would reject is not pushed.
func (s *Source) checkWrite(repo *gogit.Repository, h plumbing.Hash) error {
	if s.verify == nil {
		return nil
	}
	keys, err := s.verify.opts.Keys()
	if err != nil {
		return fmt.Errorf("git %s: check the commit's signature: %w", s.ep.display, err)
	}
	c, err := repo.CommitObject(h)
	if err != nil {
		return err
	}
	if sig := VerifyCommit(c, keys); sig.Status != manifests.SignatureVerified {
		return fmt.Errorf("git %s: %w: %s (is the signing key's public key among the source's trusted keys?)", s.ep.display, ErrWouldBeRejected, describe(c, sig))
	}
	return nil
}

// Verifies reports whether the source checks commit signatures.
func (s *Source) Verifies() bool { return s.verify != nil }
