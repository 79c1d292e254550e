//go:build !nodeonly

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	gogit "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/spf13/cobra"
	yamlv3 "gopkg.in/yaml.v3"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/sources/git"
)

// Imperative habits that keep Git the truth: `scale` and `rollout undo`
// change nothing on the bus. They find the file in the source's repository
// that declares the object, edit it in place (only the lines that change),
// and commit. A remote repository is written by the control plane, with
// the credentials the source fetches with and its signing key
// (gitwrite.go); a local repository (or, with --git-direct, any) by the
// CLI itself: a working copy directly, a bare or remote repository through
// a clone and a push. The cluster then changes through the sync, like for
// any commit.

// gitWriteFlags are the options of the commands that write commits.
type gitWriteFlags struct {
	author       string
	direct       bool
	sshKey       string
	passwordFile string
	username     string
	signingKey   string
	signer       commitSigner // loaded from signingKey
	// busCreds sign the request to the control plane, which records who
	// asked; nil on a bus without identities.
	busCreds *natsauth.Creds
}

func (w *gitWriteFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&w.author, "author", "", `commit author "Name <email>" (default: git config user.name and user.email)`)
	cmd.Flags().BoolVar(&w.direct, "git-direct", false, "clone, commit and push from here with your own git credentials, instead of asking the control plane to push with the source's (implied by --git-ssh-key and --git-password-file)")
	cmd.Flags().StringVar(&w.sshKey, "git-ssh-key", "", "private key to push to an ssh:// repository with (default: ssh-agent); implies --git-direct")
	cmd.Flags().StringVar(&w.passwordFile, "git-password-file", "", "password or token to push to an https:// repository with; implies --git-direct")
	cmd.Flags().StringVar(&w.username, "git-username", "git", "user name to push to an https:// repository with")
	cmd.Flags().StringVar(&w.signingKey, "git-signing-key", "", "sign the commits written from here (a local repository, or --git-direct) with this key: armored OpenPGP or SSH private key, without passphrase")
}

func scaleCmd(g *globals) *cobra.Command {
	var ns string
	var replicas int32
	var w gitWriteFlags
	cmd := &cobra.Command{
		Use:   "scale (deployment|replicaset|statefulset|replicationcontroller)/NAME --replicas N",
		Short: "Set a workload's replica count by a commit to its source's repository",
		Long: `Set spec.replicas of a workload declared in Git by writing a commit to the
repository of the source that declared it: the file declaring it is edited
in place (comments and layout kept) and committed with your identity. The
control plane writes to a remote repository, pushing with the source's own
credentials and signing with its --git-signing-key; a local working copy on
the source's branch gets the commit directly from here. Nothing changes on
the cluster until the sync applies the commit.`,
		Example: `  capstan scale deployment/web --replicas 5`,
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") || replicas < 0 {
				return exitError{code: 1, msg: "error: give --replicas N (N >= 0)"}
			}
			conn, obj, err := openTarget(cmd.Context(), g, args, ns, "Deployment", "ReplicaSet", "StatefulSet", "ReplicationController")
			if err != nil {
				return err
			}
			defer conn.Close()
			if owner := obj.GetObjectMeta().Annotations[manifests.AnnotationReplicasOwner]; owner != "" {
				fmt.Fprintf(g.stderr, "warning: HorizontalPodAutoscaler %s owns the replica count; Git's count is only its starting point\n", owner)
			}
			target := strings.ToLower(obj.GetTypeMeta().Kind) + "/" + obj.GetObjectMeta().Name
			w.busCreds = g.signingCreds()
			res, err := writeCommit(cmd.Context(), conn, obj, gitWriteRequest{Replicas: &replicas}, w)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: %s (commit %s to %s)\n", target, res.msg, shortRev(res.commit), res.where)
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().Int32Var(&replicas, "replicas", 0, "the new replica count")
	w.add(cmd)
	return cmd
}

// editFunc edits the document doc (parsed from the file's text; its lines
// counted from firstLine+1) and returns the whole file's new text.
type editFunc func(doc *yamlv3.Node, text []byte, firstLine int) ([]byte, error)

type commitResult struct {
	commit string
	file   string // repository-relative
	where  string // the repository (and branch) written to
	msg    string // the commit's subject
	done   string // nothing to commit, and why
}

// sourceRepo is where an object's declaring source lives.
type sourceRepo struct {
	name, url, branch, path string
	verify                  string // the signature policy's mode, "" for none
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
		return sourceRepo{}, exitError{code: 1, msg: fmt.Sprintf("error: %s is not declared in Git (it was made by a controller): change its owner instead", what)}
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
			return sourceRepo{}, exitError{code: 1, msg: fmt.Sprintf("error: source %s follows a tag or a pinned commit, not a branch: there is no branch to commit to", name)}
		}
		if ref.Branch != "" {
			r.branch = ref.Branch
		}
	}
	if r.url == "" {
		return sourceRepo{}, exitError{code: 1, msg: fmt.Sprintf("error: source %s has no repository URL", name)}
	}
	if !strings.Contains(r.url, "://") && !strings.Contains(r.url, "@") && !filepath.IsAbs(r.url) {
		return sourceRepo{}, exitError{code: 1, msg: fmt.Sprintf("error: source %s is a plain directory (%s), not a git repository: edit the file there", name, r.url)}
	}
	return r, nil
}

// makeEdit makes the edit once the repository is open (to read its
// history).
type makeEdit func(repo *gogit.Repository, src sourceRepo) (editFunc, error)

// writeCommit writes the commit req asks for (its Replicas or Undo) to the
// repository of obj's source: through the control plane for a remote
// repository, from here for a local one or with --git-direct.
func writeCommit(ctx context.Context, conn *natsbus.Conn, obj manifests.Object, req gitWriteRequest, w gitWriteFlags) (commitResult, error) {
	m := obj.GetObjectMeta()
	req.Kind, req.Namespace, req.Name = obj.GetTypeMeta().Kind, m.Namespace, m.Name
	src, err := objectSource(ctx, conn, obj)
	if err != nil {
		return commitResult{}, err
	}
	if !w.direct && w.sshKey == "" && w.passwordFile == "" && !src.local() {
		if w.signingKey != "" {
			return commitResult{}, exitError{code: 1, msg: "error: --git-signing-key signs the commits written from here (a local repository, or with --git-direct); " +
				"the control plane signs the commits it pushes with its own --git-signing-key"}
		}
		sig, err := authorOf(nil, w.author)
		if err != nil {
			return commitResult{}, err
		}
		req.Author = fmt.Sprintf("%s <%s>", sig.Name, sig.Email)
		rep, err := requestWrite(ctx, conn.NC, w.busCreds, req)
		return commitResult{commit: rep.Commit, file: rep.File, where: rep.Where, msg: rep.Message, done: rep.Done}, err
	}
	plan, err := planWrite(ctx, conn.Objects, obj, req)
	if err != nil || plan.done != "" {
		return commitResult{done: plan.done}, err
	}
	if src.verify != "" && w.signingKey == "" {
		return commitResult{}, exitError{code: 1, msg: fmt.Sprintf("error: source %s verifies commit signatures (mode %s): an unsigned commit would be rejected; "+
			"give --git-signing-key FILE with a key it trusts", src.name, src.verify)}
	}
	if w.signingKey != "" {
		if w.signer, _, err = git.LoadSigner(w.signingKey); err != nil {
			return commitResult{}, exitError{code: 1, msg: "error: --git-signing-key: " + err.Error()}
		}
	}
	res, err := commitToRepo(ctx, src, obj, plan.msg, w, plan.edit)
	res.msg = plan.msg
	return res, err
}

func commitToRepo(ctx context.Context, src sourceRepo, obj manifests.Object, msg string, w gitWriteFlags, mk makeEdit) (commitResult, error) {
	local := strings.TrimPrefix(src.url, "file://")
	if repo, err := gogit.PlainOpen(local); err == nil {
		if wt, err := repo.Worktree(); err == nil {
			if head, err := repo.Head(); err == nil && head.Name().IsBranch() && (src.branch == "" || head.Name().Short() == src.branch) {
				res, err := commitInWorktree(repo, wt, obj, src, msg, w, mk)
				res.where = fmt.Sprintf("%s (branch %s)", local, head.Name().Short())
				return res, err
			}
		}
	}
	return commitByPush(ctx, src, obj, msg, w, mk)
}

// commitInWorktree commits in a local working copy whose checked-out
// branch is the source's. It refuses when the user has staged changes or
// has changed the file: their work is never swept into our commit.
func commitInWorktree(repo *gogit.Repository, wt *gogit.Worktree, obj manifests.Object, src sourceRepo, msg string, w gitWriteFlags, mk makeEdit) (commitResult, error) {
	root := wt.Filesystem.Root()
	edit, err := mk(repo, src)
	if err != nil {
		return commitResult{}, err
	}
	file, err := editDeclaringFile(root, src.path, obj, edit)
	if err != nil {
		return commitResult{}, err
	}
	st, err := wt.Status()
	if err != nil {
		return commitResult{}, fmt.Errorf("git status of %s: %w", root, err)
	}
	for p, s := range st {
		if p == file.rel {
			if s.Staging != gogit.Unmodified || s.Worktree != gogit.Unmodified {
				return commitResult{}, exitError{code: 1, msg: fmt.Sprintf("error: %s has uncommitted changes in %s: commit or stash them first", p, root)}
			}
			continue
		}
		if s.Staging != gogit.Unmodified && s.Staging != gogit.Untracked {
			return commitResult{}, exitError{code: 1, msg: fmt.Sprintf("error: %s has staged changes (%s): commit or unstage them first", root, p)}
		}
	}
	sig, err := authorOf(repo, w.author)
	if err != nil {
		return commitResult{}, err
	}
	if err := writeFile(filepath.Join(root, filepath.FromSlash(file.rel)), file.data); err != nil {
		return commitResult{}, err
	}
	if _, err := wt.Add(file.rel); err != nil {
		return commitResult{}, fmt.Errorf("git add %s: %w", file.rel, err)
	}
	h, err := wt.Commit(msg+"\n", &gogit.CommitOptions{Author: sig, Committer: sig, Signer: w.signer})
	if err != nil {
		return commitResult{}, fmt.Errorf("git commit in %s: %w", root, err)
	}
	return commitResult{commit: h.String(), file: file.rel}, nil
}

// commitByPush clones the source's branch, commits, and pushes.
func commitByPush(ctx context.Context, src sourceRepo, obj manifests.Object, msg string, w gitWriteFlags, mk makeEdit) (commitResult, error) {
	auth, err := w.auth(src.url)
	if err != nil {
		return commitResult{}, err
	}
	dir, err := os.MkdirTemp("", "capstan-commit-")
	if err != nil {
		return commitResult{}, err
	}
	defer os.RemoveAll(dir)
	co := &gogit.CloneOptions{URL: src.url, Auth: auth, SingleBranch: true, Tags: gogit.NoTags}
	if src.branch != "" {
		co.ReferenceName = plumbing.NewBranchReferenceName(src.branch)
	}
	repo, err := gogit.PlainCloneContext(ctx, dir, false, co)
	if err != nil {
		return commitResult{}, fmt.Errorf("clone %s: %w", src.url, err)
	}
	head, err := repo.Head()
	if err != nil {
		return commitResult{}, fmt.Errorf("clone %s: %w", src.url, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return commitResult{}, err
	}
	res, err := commitInWorktree(repo, wt, obj, src, msg, w, mk)
	if err != nil {
		return res, err
	}
	branch := head.Name()
	err = repo.PushContext(ctx, &gogit.PushOptions{RemoteName: "origin", Auth: auth,
		RefSpecs: []gitconfig.RefSpec{gitconfig.RefSpec(branch + ":" + branch)}})
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return res, exitError{code: 1, msg: fmt.Sprintf("error: no write access to %s: %v (give --git-ssh-key or --git-password-file, or leave out --git-direct to push with the source's credentials)", src.url, err)}
	case err != nil && strings.Contains(err.Error(), "non-fast-forward"):
		return res, exitError{code: 1, msg: fmt.Sprintf("error: %s moved while committing: run the command again", src.url)}
	case err != nil:
		return res, exitError{code: 1, msg: fmt.Sprintf("error: push to %s: %v", src.url, err)}
	}
	res.where = fmt.Sprintf("%s (branch %s, pushed)", src.url, branch.Short())
	return res, nil
}

func (w gitWriteFlags) auth(url string) (transport.AuthMethod, error) {
	switch {
	case w.sshKey != "":
		user := "git"
		if u, _, ok := strings.Cut(strings.TrimPrefix(url, "ssh://"), "@"); ok && !strings.Contains(u, "/") {
			user = u
		}
		k, err := gitssh.NewPublicKeysFromFile(user, w.sshKey, "")
		if err != nil {
			return nil, fmt.Errorf("--git-ssh-key: %w", err)
		}
		return k, nil
	case w.passwordFile != "":
		b, err := os.ReadFile(w.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--git-password-file: %w", err)
		}
		return &githttp.BasicAuth{Username: w.username, Password: strings.TrimRight(string(b), "\r\n")}, nil
	}
	return nil, nil
}

var authorRE = regexp.MustCompile(`^\s*(.*?)\s*<([^<>]+)>\s*$`)

// authorOf is who commits: --author, else GIT_AUTHOR_NAME/EMAIL, else git
// config user.name and user.email (the repository's, then the user's;
// the user's only without a repository).
func authorOf(repo *gogit.Repository, flag string) (*object.Signature, error) {
	if flag != "" {
		sig, err := parseAuthor(flag)
		if err != nil {
			return nil, exitError{code: 1, msg: "error: --" + err.Error()}
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
		return nil, exitError{code: 1, msg: "error: who is committing? set git config user.name and user.email, or give --author \"Name <email>\""}
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
		doc, _, first, ok := findDocument(data, kind, m.Namespace, m.Name)
		if !ok {
			return nil
		}
		out, err := edit(doc, data, first)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
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
		return editedFile{}, exitError{code: 1, msg: fmt.Sprintf("error: %s is declared in several files (%s, %s)", what, found[0].rel, found[1].rel)}
	case len(others) > 0:
		return editedFile{}, exitError{code: 1, msg: fmt.Sprintf("error: %s is declared in %s, which this command does not edit (only YAML): change it there", what, strings.Join(others, ", "))}
	}
	return editedFile{}, exitError{code: 1, msg: fmt.Sprintf("error: no YAML file under %s declares %s at the branch head", filepath.Join(root, srcPath), what)}
}

var docSeparatorRE = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// findDocument finds the YAML document of data declaring kind ns/name: its
// root mapping, its text, and the number of lines before it in data.
func findDocument(data []byte, kind, ns, name string) (*yamlv3.Node, []byte, int, bool) {
	starts := []int{0}
	var ends []int
	for _, m := range docSeparatorRE.FindAllIndex(data, -1) {
		ends = append(ends, m[0])
		start := m[1]
		if start < len(data) && data[start] == '\n' {
			start++
		}
		starts = append(starts, start)
	}
	ends = append(ends, len(data))
	for i, start := range starts {
		text := data[start:ends[i]]
		var root yamlv3.Node
		if yamlv3.Unmarshal(text, &root) != nil || len(root.Content) == 0 {
			continue
		}
		doc := root.Content[0]
		meta := mapValue(doc, "metadata")
		docNS := scalarOf(mapValue(meta, "namespace"))
		if docNS == "" {
			docNS = "default"
		}
		if scalarOf(mapValue(doc, "kind")) != kind || scalarOf(mapValue(meta, "name")) != name {
			continue
		}
		if ns != "" && docNS != ns {
			continue
		}
		return doc, text, bytes.Count(data[:start], []byte("\n")), true
	}
	return nil, nil, 0, false
}

func mapValue(n *yamlv3.Node, key string) *yamlv3.Node {
	_, v := mapEntry(n, key)
	return v
}

func mapEntry(n *yamlv3.Node, key string) (k, v *yamlv3.Node) {
	if n == nil || n.Kind != yamlv3.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

func scalarOf(n *yamlv3.Node) string {
	if n == nil || n.Kind != yamlv3.ScalarNode {
		return ""
	}
	return n.Value
}

// lineOffset is the byte offset of line:col (1-based, col in characters).
func lineOffset(data []byte, line, col int) (int, error) {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return 0, errors.New("position out of range")
		}
		off += i + 1
	}
	for c := 1; c < col && off < len(data); c++ {
		_, size := utf8.DecodeRune(data[off:])
		off += size
	}
	return off, nil
}

// setReplicas sets spec.replicas, changing only its value's characters,
// or adding one line under spec when it is absent.
func setReplicas(doc *yamlv3.Node, data []byte, first int, replicas int32) ([]byte, error) {
	specKey, spec := mapEntry(doc, "spec")
	if spec == nil || spec.Kind != yamlv3.MappingNode {
		return nil, errors.New("no spec mapping")
	}
	val := strconv.Itoa(int(replicas))
	if _, cur := mapEntry(spec, "replicas"); cur != nil {
		if cur.Kind != yamlv3.ScalarNode || cur.Style != 0 {
			return nil, errors.New("spec.replicas is not a plain number")
		}
		off, err := lineOffset(data, first+cur.Line, cur.Column)
		if err != nil {
			return nil, err
		}
		if !bytes.HasPrefix(data[off:], []byte(cur.Value)) {
			return nil, errors.New("cannot locate spec.replicas")
		}
		return slicesConcat(data[:off], []byte(val), data[off+len(cur.Value):]), nil
	}
	if spec.Style&yamlv3.FlowStyle != 0 || len(spec.Content) == 0 {
		return nil, errors.New("spec is written in flow style: add replicas by hand")
	}
	// A new first line under spec, indented as its first field.
	firstKey := spec.Content[0]
	if firstKey.Line == specKey.Line {
		return nil, errors.New("spec's fields start on its own line: add replicas by hand")
	}
	off, err := lineOffset(data, first+firstKey.Line, 1)
	if err != nil {
		return nil, err
	}
	line := strings.Repeat(" ", firstKey.Column-1) + "replicas: " + val + "\n"
	return slicesConcat(data[:off], []byte(line), data[off:]), nil
}

func slicesConcat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// replaceTemplate replaces the lines of spec.template with tmpl, indented
// as the old one; the rest of the file is left as it is.
func replaceTemplate(doc *yamlv3.Node, data []byte, first int, tmpl *yamlv3.Node) ([]byte, error) {
	spec := mapValue(doc, "spec")
	if spec == nil || spec.Kind != yamlv3.MappingNode {
		return nil, errors.New("no spec mapping")
	}
	var key, val, next *yamlv3.Node
	for i := 0; i+1 < len(spec.Content); i += 2 {
		if spec.Content[i].Value == "template" {
			key, val = spec.Content[i], spec.Content[i+1]
			if i+2 < len(spec.Content) {
				next = spec.Content[i+2]
			}
		}
	}
	if key == nil || val.Line == key.Line {
		return nil, errors.New("spec.template is missing or written in flow style: edit it by hand")
	}
	if next == nil {
		// The next field after spec, if any.
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if doc.Content[i+1] == spec && i+2 < len(doc.Content) {
				next = doc.Content[i+2]
			}
		}
	}
	lines := strings.SplitAfter(string(data), "\n")
	start := first + key.Line // 0-based index of the line after the key
	end := len(lines)         // exclusive
	if next != nil {
		end = first + next.Line - 1
	} else if docEnd := first + strings.Count(string(docText(data, first)), "\n"); docEnd < end {
		end = docEnd
	}
	// Comments and blank lines before the next field stay with it.
	for end > start {
		l := strings.TrimSpace(lines[end-1])
		if l != "" && !(strings.HasPrefix(l, "#") && len(lines[end-1])-len(strings.TrimLeft(lines[end-1], " ")) <= key.Column-1) {
			break
		}
		end--
	}
	var b bytes.Buffer
	enc := yamlv3.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(tmpl); err != nil {
		return nil, err
	}
	pad := strings.Repeat(" ", key.Column+1)
	var out strings.Builder
	for _, l := range lines[:start] {
		out.WriteString(l)
	}
	for _, l := range strings.SplitAfter(strings.TrimRight(b.String(), "\n")+"\n", "\n") {
		if l != "" {
			out.WriteString(pad + l)
		}
	}
	for _, l := range lines[end:] {
		out.WriteString(l)
	}
	return []byte(out.String()), nil
}

// docText is the text of the document starting after line first of data,
// up to the next separator.
func docText(data []byte, first int) []byte {
	off, err := lineOffset(data, first+1, 1)
	if err != nil {
		return nil
	}
	rest := data[off:]
	if m := docSeparatorRE.FindIndex(rest); m != nil {
		return rest[:m[0]]
	}
	return rest
}

// templateAt reads the pod template of Deployment ns/name as commit hash
// declared it (under path), or nil when the commit or the object is not
// there.
func templateAt(repo *gogit.Repository, hash, srcPath, ns, name string) *yamlv3.Node {
	if !plumbing.IsHash(hash) {
		return nil
	}
	c, err := repo.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		return nil
	}
	tree, err := c.Tree()
	if err != nil {
		return nil
	}
	var found *yamlv3.Node
	_ = tree.Files().ForEach(func(f *object.File) error {
		ext := strings.ToLower(path.Ext(f.Name))
		if (ext != ".yaml" && ext != ".yml") || (srcPath != "" && !strings.HasPrefix(f.Name, strings.Trim(srcPath, "/")+"/")) {
			return nil
		}
		data, err := f.Contents()
		if err != nil {
			return nil
		}
		if doc, _, _, ok := findDocument([]byte(data), "Deployment", ns, name); ok {
			found = mapValue(mapValue(doc, "spec"), "template")
			return errStopWalk
		}
		return nil
	})
	return found
}

var errStopWalk = errors.New("stop")

// stripStyle makes every node block style, for nodes read from JSON.
func stripStyle(n *yamlv3.Node) {
	n.Style &^= yamlv3.FlowStyle
	for _, c := range n.Content {
		stripStyle(c)
	}
}
