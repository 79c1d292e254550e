//go:build !nodeonly

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	yamlv3 "gopkg.in/yaml.v3"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/sources"
	"github.com/capstan-io/capstan/sources/git"
)

// The control plane writes the commits of `capstan scale` and `capstan
// rollout undo` to a remote source's repository, with the credentials the
// source fetches with: those live in a Secret only the control plane can
// decrypt, so the CLI asks it on the bus. The request names the object and
// the change, never the content: the control plane reads the object, its
// source and (for undo) its ReplicaSets from the bus, makes the edit and
// the message itself, and signs the commit with its --git-signing-key. So a
// bus client can only ask for a replica count or for a pod template the
// Deployment ran before, written as the user it names.

// gitWriteSubject is the request subject of the control plane's commit
// writer; one control plane answers each request (a queue group).
const gitWriteSubject = "capstan.git.write"

// gitWriteTimeout bounds one write: clone, edit, commit, push.
const gitWriteTimeout = 2 * time.Minute

// gitWriteRequest asks for one commit: exactly one of Replicas and Undo.
type gitWriteRequest struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Replicas is the new spec.replicas (scale).
	Replicas *int32 `json:"replicas,omitempty"`
	// Undo rolls a Deployment back to ToRevision, 0 for the previous one.
	Undo       bool  `json:"undo,omitempty"`
	ToRevision int64 `json:"toRevision,omitempty"`
	// Author is who asks, "Name <email>": the commit's author and
	// committer.
	Author string `json:"author"`
}

// gitWriteReply is the answer: the commit, or why there is none.
type gitWriteReply struct {
	Commit  string `json:"commit,omitempty"`
	File    string `json:"file,omitempty"`
	Where   string `json:"where,omitempty"`
	Message string `json:"message,omitempty"`
	// Done says there was nothing to commit (undo to the current
	// template).
	Done  string `json:"done,omitempty"`
	Error string `json:"error,omitempty"`

	source string // the source written to, for the audit record
}

func (r gitWriteRequest) check() error {
	switch {
	case r.Name == "":
		return errors.New("no object name")
	case (r.Replicas != nil) == r.Undo:
		return errors.New("ask for exactly one of replicas and undo")
	case r.Replicas != nil && *r.Replicas < 0:
		return fmt.Errorf("replicas %d: want N >= 0", *r.Replicas)
	case r.Replicas != nil && !oneOf(r.Kind, "Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"):
		return fmt.Errorf("cannot scale a %s", r.Kind)
	case r.Undo && r.Kind != "Deployment":
		return fmt.Errorf("cannot roll back a %s", r.Kind)
	case r.Undo && r.ToRevision < 0:
		return fmt.Errorf("revision %d: want N >= 0", r.ToRevision)
	}
	_, err := parseAuthor(r.Author)
	return err
}

func oneOf(s string, set ...string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

// parseAuthor reads "Name <email>".
func parseAuthor(s string) (*object.Signature, error) {
	m := authorRE.FindStringSubmatch(s)
	if m == nil || m[1] == "" {
		return nil, fmt.Errorf("author %q: want \"Name <email>\"", s)
	}
	return &object.Signature{Name: m[1], Email: m[2], When: time.Now()}, nil
}

// plannedWrite is what a request commits: the message and the edit, or
// done when there is nothing to commit.
type plannedWrite struct {
	msg  string
	edit makeEdit
	done string
}

// planWrite reads from the bus what the change needs (the Deployment's
// ReplicaSets for undo) and makes the commit's message and edit. The CLI
// (for a repository it writes itself) and the control plane share it.
func planWrite(ctx context.Context, objects bus.Store, obj manifests.Object, req gitWriteRequest) (plannedWrite, error) {
	target := strings.ToLower(obj.GetTypeMeta().Kind) + "/" + obj.GetObjectMeta().Name
	if req.Replicas != nil {
		n := *req.Replicas
		return plannedWrite{msg: fmt.Sprintf("scale %s to %d replicas", target, n), edit: func(*gogit.Repository, sourceRepo) (editFunc, error) {
			return func(doc *yamlv3.Node, text []byte, first int) ([]byte, error) {
				return setReplicas(doc, text, first, n)
			}, nil
		}}, nil
	}
	d, ok := obj.(*manifests.Deployment)
	if !ok {
		return plannedWrite{}, fmt.Errorf("cannot roll back %s", target)
	}
	rss, err := replicaSets(ctx, objects, d.Namespace)
	if err != nil {
		return plannedWrite{}, err
	}
	var rs *manifests.ReplicaSet
	var rev, current int64
	revs := map[*manifests.ReplicaSet]int64{}
	for _, r := range rss {
		if h := controllers.DeploymentHistory(d, []*manifests.ReplicaSet{r}); len(h) == 1 {
			revs[r] = h[0].Revision
			current = max(current, h[0].Revision)
		}
	}
	for r, n := range revs {
		if (req.ToRevision > 0 && n == req.ToRevision) || (req.ToRevision == 0 && n < current && n > rev) {
			rs, rev = r, n
		}
	}
	switch {
	case rs == nil && req.ToRevision > 0:
		return plannedWrite{}, exitError{code: 1, msg: fmt.Sprintf("error: unable to find the specified revision %d", req.ToRevision)}
	case rs == nil:
		return plannedWrite{}, exitError{code: 1, msg: "error: no rollout history found for deployment \"" + d.Name + "\""}
	case rev == current:
		return plannedWrite{done: fmt.Sprintf("deployment/%s skipped rollback (current template already matches revision %d)", d.Name, rev)}, nil
	}
	commit := rs.Annotations[controllers.AnnotationCommit]
	msg := fmt.Sprintf("roll back deployment/%s to revision %d", d.Name, rev)
	if commit != "" {
		msg += fmt.Sprintf(" (template of commit %s)", shortRev(commit))
	}
	return plannedWrite{msg: msg, edit: func(repo *gogit.Repository, src sourceRepo) (editFunc, error) {
		tmpl := templateAt(repo, commit, src.path, d.Namespace, d.Name)
		if tmpl == nil {
			var err error
			if tmpl, err = templateNode(rs); err != nil {
				return nil, err
			}
		}
		return func(doc *yamlv3.Node, text []byte, first int) ([]byte, error) {
			return replaceTemplate(doc, text, first, tmpl)
		}, nil
	}}, nil
}

// replicaSets lists the ReplicaSets of a namespace.
func replicaSets(ctx context.Context, objects bus.Store, ns string) ([]*manifests.ReplicaSet, error) {
	entries, err := objects.List(ctx, "ReplicaSet."+ns+".>")
	if err != nil {
		return nil, fmt.Errorf("list ReplicaSets: %w", err)
	}
	var out []*manifests.ReplicaSet
	for _, e := range entries {
		if obj, err := manifests.Decode(e.Value); err == nil {
			if rs, ok := obj.(*manifests.ReplicaSet); ok {
				out = append(out, rs)
			}
		}
	}
	return out, nil
}

// runningSources finds the source a write goes to (the source manager).
type runningSources interface {
	Running(name string) (sources.Source, bool)
}

// writableSource is a source that can commit: sources/git.
type writableSource interface {
	Write(ctx context.Context, req git.WriteRequest) (git.WriteResult, error)
}

// gitWriter is the control plane's commit writer.
type gitWriter struct {
	Objects bus.Store
	// Audit, if set, records every commit pushed (a write-back).
	Audit   bus.Audit
	Sources runningSources
	// Signer signs every commit; nil leaves them unsigned.
	Signer gogit.Signer
	// Verify checks who signed a request (natsauth); nil takes the
	// author the request names (a bus without identities).
	Verify func(*nats.Msg) (natsauth.Identity, error)
	Log    *slog.Logger

	mu sync.Mutex // one write at a time: they are rare, and race on branches
	wg sync.WaitGroup
}

// Serve answers write requests on nc until ctx ends.
func (w *gitWriter) Serve(ctx context.Context, nc *nats.Conn) error {
	sub, err := nc.QueueSubscribe(gitWriteSubject, "capstan-git-write", func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		w.wg.Go(func() {
			actor, err := w.actor(m)
			rep := gitWriteReply{Error: fmt.Sprint(err)}
			if err == nil {
				rep = w.handle(ctx, m.Data, actor)
			}
			b, _ := json.Marshal(rep)
			if err := m.Respond(b); err != nil {
				w.Log.Warn("answer git write", "err", err)
			}
		})
	})
	if err != nil {
		return fmt.Errorf("serve git writes: %w", err)
	}
	<-ctx.Done()
	err = sub.Unsubscribe()
	w.wg.Wait()
	return err
}

// handle makes the commit a request asks for.
func (w *gitWriter) handle(ctx context.Context, data []byte, actor string) gitWriteReply {
	var req gitWriteRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return gitWriteReply{Error: "bad request: " + err.Error()}
	}
	if err := req.check(); err != nil {
		return gitWriteReply{Error: "bad request: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, gitWriteTimeout)
	defer cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	rep, err := w.write(ctx, req)
	what := strings.ToLower(req.Kind) + "/" + req.Name
	if err != nil {
		msg := err.Error()
		var ex exitError
		if errors.As(err, &ex) {
			msg = strings.TrimPrefix(ex.msg, "error: ")
		}
		w.Log.Warn("git write refused", "object", what, "author", req.Author, "err", msg)
		return gitWriteReply{Error: msg}
	}
	if rep.Commit != "" {
		w.Log.Info("git write", "object", what, "author", req.Author, "commit", rep.Commit, "where", rep.Where, "message", rep.Message)
		if actor == "" {
			actor = req.Author // unverified, on a bus without identities
		}
		w.record(ctx, actor, req, rep)
	}
	return rep
}

// actor is who signed a request: only operators and admins may ask for
// a write-back (the server's permissions say so too).
func (w *gitWriter) actor(m *nats.Msg) (string, error) {
	if w.Verify == nil {
		return "", nil
	}
	id, err := w.Verify(m)
	if err != nil {
		return "", err
	}
	switch id.Role {
	case natsauth.RoleOperator, natsauth.RoleAdmin, natsauth.RoleControlPlane:
		return id.String(), nil
	}
	return "", fmt.Errorf("%s may not ask for a write-back: operators and admins only", id)
}

// record appends a pushed commit to the audit stream as a write-back
// by actor.
func (w *gitWriter) record(ctx context.Context, actor string, req gitWriteRequest, rep gitWriteReply) {
	if w.Audit == nil {
		return
	}
	k, _ := manifests.LookupKind(req.Kind)
	field := "spec.replicas"
	if req.Undo {
		field = "spec.template"
	}
	err := gitops.RecordAction(ctx, w.Audit, gitops.ActionRecord{Action: manifests.ActionWriteBack, Actor: actor,
		Source: rep.source, Revision: rep.Commit, Message: rep.Message,
		Changes: []manifests.ObjectChange{{Action: gitops.ActionCommitted, Kind: k.Kind, Namespace: nsFor(k, req.Namespace), Name: req.Name, Fields: []string{field}}}})
	if err != nil {
		w.Log.Error("write audit record", "commit", rep.Commit, "err", err)
	}
}

func (w *gitWriter) write(ctx context.Context, req gitWriteRequest) (gitWriteReply, error) {
	k, ok := manifests.LookupKind(req.Kind)
	if !ok {
		return gitWriteReply{}, fmt.Errorf("unknown kind %q", req.Kind)
	}
	obj, _, err := cache.GetObject(ctx, w.Objects, manifests.Key(k.Kind, nsFor(k, req.Namespace), req.Name))
	if errors.Is(err, bus.ErrNotFound) {
		return gitWriteReply{}, fmt.Errorf("%s %q not found", strings.ToLower(k.Kind), req.Name)
	}
	if err != nil {
		return gitWriteReply{}, err
	}
	name := obj.GetObjectMeta().Annotations[manifests.AnnotationSource]
	what := strings.ToLower(k.Kind) + "/" + req.Name
	if name == "" {
		return gitWriteReply{}, fmt.Errorf("%s is not declared in Git (it was made by a controller): change its owner instead", what)
	}
	src, ok := w.Sources.Running(name)
	if !ok {
		return gitWriteReply{}, fmt.Errorf("source %s of %s is not running (suspended, waiting or failing: see `capstan get sources`)", name, what)
	}
	ws, ok := src.(writableSource)
	if !ok {
		return gitWriteReply{}, fmt.Errorf("source %s is a plain directory (%s), not a git repository: edit the file there", name, src.Spec().URL)
	}
	plan, err := planWrite(ctx, w.Objects, obj, req)
	if err != nil || plan.done != "" {
		return gitWriteReply{Done: plan.done}, err
	}
	author, _ := parseAuthor(req.Author)
	spec := src.Spec()
	sr := sourceRepo{name: name, url: spec.URL, branch: spec.Branch, path: spec.Path}
	var file string
	res, err := ws.Write(ctx, git.WriteRequest{Message: plan.msg + "\n", Author: *author, Signer: w.Signer,
		Edit: func(repo *gogit.Repository, dir string) ([]string, error) {
			edit, err := plan.edit(repo, sr)
			if err != nil {
				return nil, err
			}
			f, err := editDeclaringFile(dir, sr.path, obj, edit)
			if err != nil {
				return nil, err
			}
			file = f.rel
			return []string{f.rel}, writeFile(filepath.Join(dir, filepath.FromSlash(f.rel)), f.data)
		}})
	if errors.Is(err, git.ErrNoWriteAccess) {
		return gitWriteReply{}, fmt.Errorf("%w: the credentials of source %s (%s) cannot push; give them write access, or push yourself with --git-direct", err, name, w.credentialsOf(ctx, name))
	}
	if err != nil {
		return gitWriteReply{}, err
	}
	// Fetch it now rather than at the next poll.
	if t, ok := src.(interface{ Trigger() }); ok {
		t.Trigger()
	}
	return gitWriteReply{Commit: res.Commit, File: file, Message: plan.msg,
		Where: fmt.Sprintf("%s (branch %s, pushed by the control plane)", spec.URL, res.Branch), source: name}, nil
}

// credentialsOf says where a source's credentials come from.
func (w *gitWriter) credentialsOf(ctx context.Context, name string) string {
	obj, _, err := cache.GetObject(ctx, w.Objects, manifests.Key("Source", "", name))
	if err != nil {
		return "unknown"
	}
	src := obj.(*manifests.Source)
	switch {
	case src.Spec.SecretRef != nil:
		return "Secret " + gitops.SecretNamespace + "/" + src.Spec.SecretRef.Name
	case src.Annotations[manifests.AnnotationSource] == "":
		return "the root source's URL, ssh-agent or git's defaults"
	}
	return "none: the Source has no secretRef"
}

// requestWrite asks the control plane to write the commit.
func requestWrite(ctx context.Context, nc *nats.Conn, creds *natsauth.Creds, req gitWriteRequest) (gitWriteReply, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return gitWriteReply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, gitWriteTimeout+10*time.Second)
	defer cancel()
	msg := nats.NewMsg(gitWriteSubject)
	msg.Data = b
	if creds != nil {
		if err := natsauth.Sign(msg, *creds); err != nil {
			return gitWriteReply{}, err
		}
	}
	m, err := nc.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, natsbus.ErrPermission), errors.Is(err, nats.ErrPermissionViolation):
		return gitWriteReply{}, exitError{code: 1, msg: "error: these credentials may not ask for a write-back (operators and admins only)"}
	case errors.Is(err, nats.ErrNoResponders):
		return gitWriteReply{}, exitError{code: 1, msg: "error: no control plane on this bus writes commits (is `capstan up`/`server` older than this CLI?): " +
			"give --git-direct to clone and push from here with your own credentials"}
	case err != nil:
		return gitWriteReply{}, fmt.Errorf("ask the control plane to write the commit: %w", err)
	}
	var rep gitWriteReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return gitWriteReply{}, fmt.Errorf("the control plane's answer: %w", err)
	}
	if rep.Error != "" {
		return rep, exitError{code: 1, msg: "error: " + rep.Error}
	}
	return rep, nil
}

// gitSigningFlag adds the control plane's --git-signing-key.
func (f *stackFlags) gitSigningFlag(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.gitSigningKey, "git-signing-key", "", "private key signing the commits the control plane writes for `capstan scale` and `rollout undo`: armored OpenPGP or SSH, without passphrase (needed for sources that verify signatures)")
}

// loadSigningKey reads --git-signing-key, failing before anything starts.
func (f *stackFlags) loadSigningKey() error {
	if f.gitSigningKey == "" {
		return nil
	}
	s, _, err := git.LoadSigner(f.gitSigningKey)
	if err != nil {
		return fmt.Errorf("--git-signing-key: %w", err)
	}
	f.signer = s
	return nil
}

// commitSigner signs commits (go-git's Signer); nil signs none.
type commitSigner = gogit.Signer

// runGitWriter starts the control plane's commit writer for the sources
// the manager runs.
func (f *stackFlags) runGitWriter(g *group, conn *natsbus.Conn, m *gitops.SourceManager, log *slog.Logger) {
	w := &gitWriter{Objects: conn.Objects, Audit: conn.Audit, Sources: m, Signer: f.signer, Log: log.With("component", "git-write")}
	if f.trust != nil {
		w.Verify = f.trust.setup.Authority.VerifyRequest
	}
	g.Go("git writes", func(ctx context.Context) error { return w.Serve(ctx, conn.NC) })
}
