package git

import (
	"errors"
	"fmt"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/capstan-io/capstan/sources"
)

// ErrRevisionNotFound is returned by ReadRevision when ref names no commit.
var ErrRevisionNotFound = errors.New("git: revision not found")

// ReadRevision reads one commit of a local repository the way a Source
// reads the head it follows: the manifest files under path (relative to
// the repository's root, "" for all of it), sorted, with the commit's
// author, committer and message. repoDir is a working tree (or any
// directory inside one) or a bare repository; ref is anything git
// rev-parse takes that go-git resolves: a branch, a tag, a remote branch
// (origin/main), HEAD, HEAD~2, a full or abbreviated hash. It is what
// `capstan diff` compares, without a cluster and without a network.
func ReadRevision(repoDir, ref, path string) (*sources.Revision, error) {
	p, err := cleanPath(path)
	if err != nil {
		return nil, fmt.Errorf("git %s: %w", repoDir, err)
	}
	repo, err := gogit.PlainOpen(repoDir) // a working tree's root, or a bare repository
	if errors.Is(err, gogit.ErrRepositoryNotExists) {
		repo, err = gogit.PlainOpenWithOptions(repoDir, &gogit.PlainOpenOptions{DetectDotGit: true})
	}
	if err != nil {
		return nil, fmt.Errorf("open git repository %s: %w", repoDir, err)
	}
	h, err := repo.ResolveRevision(plumbing.Revision(ref))
	if err != nil {
		return nil, fmt.Errorf("git %s: %w: %q: %v", repoDir, ErrRevisionNotFound, ref, err)
	}
	c, err := repo.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("git %s: %q is not a commit: %w", repoDir, ref, err)
	}
	// read needs only the path; the rest of a Source is for fetching.
	return (&Source{path: p}).read(c)
}
