package writeback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/sources/git"
)

// Options are how a commit is written from the CLI's machine (a local
// repository, or Direct) and who asks the control plane for one.
type Options struct {
	// Author commits, "Name <email>"; empty takes GIT_AUTHOR_NAME and
	// GIT_AUTHOR_EMAIL, else git config user.name and user.email.
	Author string
	// Direct clones, commits and pushes from here with the user's own
	// credentials, instead of asking the control plane to push with the
	// source's; SSHKey and PasswordFile imply it.
	Direct bool
	// SSHKey is a private key to push to an ssh:// repository with
	// (default: ssh-agent).
	SSHKey string
	// PasswordFile holds the password or token to push to an https://
	// repository with, as Username.
	PasswordFile string
	Username     string
	// SigningKey signs the commits written from here: armored OpenPGP or
	// SSH private key file, without passphrase.
	SigningKey string
	// Creds sign the request to the control plane, which records who
	// asked; nil on a bus without identities.
	Creds *natsauth.Creds

	signer gogit.Signer // loaded from SigningKey
}

// Commit writes the commit ch asks for (its Replicas or Undo; the object
// is obj) to the repository of obj's source: through the control plane
// for a remote repository, from here for a local one or with
// opts.Direct. Nothing changes on the bus: the cluster follows the
// commit through the sync. A UserError says what the user must do.
func Commit(ctx context.Context, conn *natsbus.Conn, obj manifests.Object, ch Change, opts Options) (Result, error) {
	m := obj.GetObjectMeta()
	ch.Kind, ch.Namespace, ch.Name = obj.GetTypeMeta().Kind, m.Namespace, m.Name
	src, err := objectSource(ctx, conn, obj)
	if err != nil {
		return Result{}, err
	}
	if !opts.Direct && opts.SSHKey == "" && opts.PasswordFile == "" && !src.local() {
		if opts.SigningKey != "" {
			return Result{}, refuse("--git-signing-key signs the commits written from here (a local repository, or with --git-direct); " +
				"the control plane signs the commits it pushes with its own --git-signing-key")
		}
		sig, err := authorOf(nil, opts.Author)
		if err != nil {
			return Result{}, err
		}
		ch.Author = fmt.Sprintf("%s <%s>", sig.Name, sig.Email)
		rep, err := Request(ctx, conn.NC, opts.Creds, ch)
		return rep.Result, err
	}
	plan, err := planWrite(ctx, conn.Objects, obj, ch)
	if err != nil || plan.done != "" {
		return Result{Done: plan.done}, err
	}
	if src.verify != "" && opts.SigningKey == "" {
		return Result{}, refuse("source %s verifies commit signatures (mode %s): an unsigned commit would be rejected; "+
			"give --git-signing-key FILE with a key it trusts", src.name, src.verify)
	}
	if opts.SigningKey != "" {
		if opts.signer, _, err = git.LoadSigner(opts.SigningKey); err != nil {
			return Result{}, refuse("--git-signing-key: %v", err)
		}
	}
	res, err := commitToRepo(ctx, src, obj, plan.msg, opts, plan.edit)
	res.Message = plan.msg
	return res, err
}

// Request asks the control plane to write the commit ch asks for, signed
// with creds (nil on a bus without identities).
func Request(ctx context.Context, nc *nats.Conn, creds *natsauth.Creds, ch Change) (Reply, error) {
	b, err := json.Marshal(ch)
	if err != nil {
		return Reply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout+10*time.Second)
	defer cancel()
	msg := nats.NewMsg(Subject)
	msg.Data = b
	if creds != nil {
		if err := natsauth.Sign(msg, *creds); err != nil {
			return Reply{}, err
		}
	}
	m, err := natsauth.RequestMsg(ctx, nc, msg)
	switch {
	case errors.Is(err, natsbus.ErrPermission), errors.Is(err, nats.ErrPermissionViolation):
		return Reply{}, refuse("these credentials may not ask for a write-back (operators and admins only)")
	case errors.Is(err, nats.ErrNoResponders):
		return Reply{}, refuse("no control plane on this bus writes commits (is `capstan up`/`server` older than this CLI?): " +
			"give --git-direct to clone and push from here with your own credentials")
	case err != nil:
		return Reply{}, fmt.Errorf("ask the control plane to write the commit: %w", err)
	}
	var rep Reply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return Reply{}, fmt.Errorf("the control plane's answer: %w", err)
	}
	if rep.Error != "" {
		return rep, UserError{Msg: rep.Error}
	}
	return rep, nil
}

// local reports whether the repository is a path on this machine.
func (r sourceRepo) local() bool {
	return strings.HasPrefix(r.url, "file://") || filepath.IsAbs(r.url)
}

// objectSource finds the source that declared obj and its repository.
func objectSource(ctx context.Context, conn *natsbus.Conn, obj manifests.Object) (sourceRepo, error) {
	m := obj.GetObjectMeta()
	name := m.Annotations[manifests.AnnotationSource]
	what := strings.ToLower(obj.GetTypeMeta().Kind) + "/" + m.Name
	if name == "" {
		return sourceRepo{}, refuse("%s is not declared in Git (it was made by a controller): change its owner instead", what)
	}
	src, _, err := cache.GetObject(ctx, conn.Objects, manifests.Key("Source", "", name))
	if err != nil {
		return sourceRepo{}, fmt.Errorf("read source %s of %s: %w", name, what, err)
	}
	spec := src.(*manifests.Source).Spec
	r := sourceRepo{name: name, url: spec.URL, branch: spec.Branch, path: spec.Path}
	if spec.Verify != nil {
		r.verify = spec.Verify.Mode
	}
	if ref := spec.Ref; ref != nil {
		if ref.Tag != "" || ref.SemVer != "" || ref.Commit != "" {
			return sourceRepo{}, refuse("source %s follows a tag or a pinned commit, not a branch: there is no branch to commit to", name)
		}
		if ref.Branch != "" {
			r.branch = ref.Branch
		}
	}
	if r.url == "" {
		return sourceRepo{}, refuse("source %s has no repository URL", name)
	}
	if !strings.Contains(r.url, "://") && !strings.Contains(r.url, "@") && !filepath.IsAbs(r.url) {
		return sourceRepo{}, refuse("source %s is a plain directory (%s), not a git repository: edit the file there", name, r.url)
	}
	return r, nil
}
