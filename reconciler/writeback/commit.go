package writeback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"github.com/capstan-io/capstan/manifests"
)

// commitToRepo makes a commit of the CLI's own (a local repository, or
// Options.Direct): in the working copy when src is one with the source's
// branch checked out, else through a clone and a push.
func commitToRepo(ctx context.Context, src sourceRepo, obj manifests.Object, msg string, o Options, mk makeEdit) (Result, error) {
	local := strings.TrimPrefix(src.url, "file://")
	if repo, err := gogit.PlainOpen(local); err == nil {
		if wt, err := repo.Worktree(); err == nil {
			if head, err := repo.Head(); err == nil && head.Name().IsBranch() && (src.branch == "" || head.Name().Short() == src.branch) {
				res, err := commitInWorktree(repo, wt, obj, src, msg, o, mk)
				res.Where = fmt.Sprintf("%s (branch %s)", local, head.Name().Short())
				return res, err
			}
		}
	}
	return commitByPush(ctx, src, obj, msg, o, mk)
}

// commitInWorktree commits in a local working copy whose checked-out
// branch is the source's. It refuses when the user has staged changes or
// has changed the file: their work is never swept into our commit.
func commitInWorktree(repo *gogit.Repository, wt *gogit.Worktree, obj manifests.Object, src sourceRepo, msg string, o Options, mk makeEdit) (Result, error) {
	root := wt.Filesystem.Root()
	edit, err := mk(repo, src)
	if err != nil {
		return Result{}, err
	}
	file, err := editDeclaringFile(root, src.path, obj, edit)
	if err != nil {
		return Result{}, err
	}
	st, err := wt.Status()
	if err != nil {
		return Result{}, fmt.Errorf("git status of %s: %w", root, err)
	}
	for p, s := range st {
		if p == file.rel {
			if s.Staging != gogit.Unmodified || s.Worktree != gogit.Unmodified {
				return Result{}, refuse("%s has uncommitted changes in %s: commit or stash them first", p, root)
			}
			continue
		}
		if s.Staging != gogit.Unmodified && s.Staging != gogit.Untracked {
			return Result{}, refuse("%s has staged changes (%s): commit or unstage them first", root, p)
		}
	}
	sig, err := authorOf(repo, o.Author)
	if err != nil {
		return Result{}, err
	}
	if err := writeFile(filepath.Join(root, filepath.FromSlash(file.rel)), file.data); err != nil {
		return Result{}, err
	}
	if _, err := wt.Add(file.rel); err != nil {
		return Result{}, fmt.Errorf("git add %s: %w", file.rel, err)
	}
	h, err := wt.Commit(msg+"\n", &gogit.CommitOptions{Author: sig, Committer: sig, Signer: o.signer})
	if err != nil {
		return Result{}, fmt.Errorf("git commit in %s: %w", root, err)
	}
	return Result{Commit: h.String(), File: file.rel}, nil
}

// commitByPush clones the source's branch, commits, and pushes.
func commitByPush(ctx context.Context, src sourceRepo, obj manifests.Object, msg string, o Options, mk makeEdit) (Result, error) {
	auth, err := o.auth(src.url)
	if err != nil {
		return Result{}, err
	}
	dir, err := os.MkdirTemp("", "capstan-commit-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	co := &gogit.CloneOptions{URL: src.url, Auth: auth, SingleBranch: true, Tags: gogit.NoTags}
	if src.branch != "" {
		co.ReferenceName = plumbing.NewBranchReferenceName(src.branch)
	}
	repo, err := gogit.PlainCloneContext(ctx, dir, false, co)
	if err != nil {
		return Result{}, fmt.Errorf("clone %s: %w", src.url, err)
	}
	head, err := repo.Head()
	if err != nil {
		return Result{}, fmt.Errorf("clone %s: %w", src.url, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return Result{}, err
	}
	res, err := commitInWorktree(repo, wt, obj, src, msg, o, mk)
	if err != nil {
		return res, err
	}
	branch := head.Name()
	err = repo.PushContext(ctx, &gogit.PushOptions{RemoteName: "origin", Auth: auth,
		RefSpecs: []gitconfig.RefSpec{gitconfig.RefSpec(branch + ":" + branch)}})
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return res, refuse("no write access to %s: %v (give --git-ssh-key or --git-password-file, or leave out --git-direct to push with the source's credentials)", src.url, err)
	case err != nil && strings.Contains(err.Error(), "non-fast-forward"):
		return res, refuse("%s moved while committing: run the command again", src.url)
	case err != nil:
		return res, refuse("push to %s: %v", src.url, err)
	}
	res.Where = fmt.Sprintf("%s (branch %s, pushed)", src.url, branch.Short())
	return res, nil
}

func (o Options) auth(url string) (transport.AuthMethod, error) {
	switch {
	case o.SSHKey != "":
		user := "git"
		if u, _, ok := strings.Cut(strings.TrimPrefix(url, "ssh://"), "@"); ok && !strings.Contains(u, "/") {
			user = u
		}
		k, err := gitssh.NewPublicKeysFromFile(user, o.SSHKey, "")
		if err != nil {
			return nil, fmt.Errorf("--git-ssh-key: %w", err)
		}
		return k, nil
	case o.PasswordFile != "":
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--git-password-file: %w", err)
		}
		return &githttp.BasicAuth{Username: o.Username, Password: strings.TrimRight(string(b), "\r\n")}, nil
	}
	return nil, nil
}

// authorOf is who commits: --author, else GIT_AUTHOR_NAME/EMAIL, else git
// config user.name and user.email (the repository's, then the user's;
// the user's only without a repository).
func authorOf(repo *gogit.Repository, flag string) (*object.Signature, error) {
	if flag != "" {
		sig, err := parseAuthor(flag)
		if err != nil {
			return nil, refuse("--%v", err)
		}
		return sig, nil
	}
	name, email := os.Getenv("GIT_AUTHOR_NAME"), os.Getenv("GIT_AUTHOR_EMAIL")
	var cfg *gitconfig.Config
	var err error
	if repo != nil {
		cfg, err = repo.ConfigScoped(gitconfig.GlobalScope)
	} else {
		cfg, err = gitconfig.LoadConfig(gitconfig.GlobalScope)
	}
	if err == nil {
		if name == "" {
			name = cfg.User.Name
		}
		if email == "" {
			email = cfg.User.Email
		}
	}
	if name == "" || email == "" {
		return nil, refuse("who is committing? set git config user.name and user.email, or give --author \"Name <email>\"")
	}
	return &object.Signature{Name: name, Email: email, When: time.Now()}, nil
}

func writeFile(name string, data []byte) error {
	info, err := os.Stat(name)
	if err != nil {
		return err
	}
	return os.WriteFile(name, data, info.Mode().Perm())
}

// editedFile is a file's new content.
type editedFile struct {
	rel  string // repository-relative, slash-separated
	data []byte
}

// editDeclaringFile finds the file under root/srcPath declaring obj and
// returns it edited.
func editDeclaringFile(root, srcPath string, obj manifests.Object, edit editFunc) (editedFile, error) {
	kind, m := obj.GetTypeMeta().Kind, obj.GetObjectMeta()
	base := filepath.Join(root, filepath.FromSlash(srcPath))
	var found []editedFile
	var others []string
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != base && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		ext := strings.ToLower(path.Ext(p))
		if ext != ".yaml" && ext != ".yml" && ext != ".json" && ext != ".cue" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if ext == ".json" || ext == ".cue" {
			if bytes.Contains(data, []byte(`"`+m.Name+`"`)) {
				others = append(others, rel)
			}
			return nil
		}
		out, err := editFile(rel, data, objectRef{Kind: kind, Namespace: m.Namespace, Name: m.Name}, edit)
		if errors.Is(err, errNoDocument) {
			return nil
		}
		if err != nil {
			return err
		}
		found = append(found, editedFile{rel: rel, data: out})
		return nil
	})
	if err != nil {
		return editedFile{}, err
	}
	what := strings.ToLower(kind) + "/" + m.Name
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return editedFile{}, refuse("%s is declared in several files (%s, %s)", what, found[0].rel, found[1].rel)
	case len(others) > 0:
		return editedFile{}, refuse("%s is declared in %s, which this command does not edit (only YAML): change it there", what, strings.Join(others, ", "))
	}
	return editedFile{}, refuse("no YAML file under %s declares %s at the branch head", filepath.Join(root, srcPath), what)
}
