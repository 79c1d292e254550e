package writeback

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

	gogit "github.com/go-git/go-git/v5"
	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/sources"
	"github.com/capstan-io/capstan/sources/git"
)

// RunningSources finds the source a write goes to (the control plane's
// gitops.SourceManager).
type RunningSources interface {
	Running(name string) (sources.Source, bool)
}

// writableSource is a source that can commit: sources/git.
type writableSource interface {
	Write(ctx context.Context, req git.WriteRequest) (git.WriteResult, error)
}

// Server is the control plane's commit writer.
type Server struct {
	Objects bus.Store
	// Audit, if set, records every commit pushed (a write-back).
	Audit   bus.Audit
	Sources RunningSources
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
func (s *Server) Serve(ctx context.Context, nc *nats.Conn) error {
	sub, err := nc.QueueSubscribe(Subject, "capstan-git-write", func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		s.wg.Go(func() {
			actor, err := s.actor(m)
			rep := Reply{Error: fmt.Sprint(err)}
			if err == nil {
				rep = s.handle(ctx, m.Data, actor)
			}
			b, _ := json.Marshal(rep)
			if err := m.Respond(b); err != nil {
				s.Log.Warn("answer git write", "err", err)
			}
		})
	})
	if err != nil {
		return fmt.Errorf("serve git writes: %w", err)
	}
	<-ctx.Done()
	err = sub.Unsubscribe()
	s.wg.Wait()
	return err
}

// handle makes the commit a request asks for.
func (s *Server) handle(ctx context.Context, data []byte, actor string) Reply {
	var req Change
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Reply{Error: "bad request: " + err.Error()}
	}
	if err := req.Check(); err != nil {
		return Reply{Error: "bad request: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	rep, err := s.write(ctx, req)
	what := strings.ToLower(req.Kind) + "/" + req.Name
	if err != nil {
		msg := err.Error()
		var ue UserError
		if errors.As(err, &ue) {
			msg = ue.Msg
		}
		s.Log.Warn("git write refused", "object", what, "author", req.Author, "err", msg)
		return Reply{Error: msg}
	}
	if rep.Commit != "" {
		s.Log.Info("git write", "object", what, "author", req.Author, "commit", rep.Commit, "where", rep.Where, "message", rep.Message)
		if actor == "" {
			actor = req.Author // unverified, on a bus without identities
		}
		s.record(ctx, actor, req, rep)
	}
	return rep
}

// actor is who signed a request: only operators and admins may ask for
// a write-back (the server's permissions say so too).
func (s *Server) actor(m *nats.Msg) (string, error) {
	if s.Verify == nil {
		return "", nil
	}
	id, err := s.Verify(m)
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
func (s *Server) record(ctx context.Context, actor string, req Change, rep Reply) {
	if s.Audit == nil {
		return
	}
	k, _ := manifests.LookupKind(req.Kind)
	field := "spec.replicas"
	if req.Undo {
		field = "spec.template"
	}
	err := gitops.RecordAction(ctx, s.Audit, gitops.ActionRecord{Action: manifests.ActionWriteBack, Actor: actor,
		Source: rep.source, Revision: rep.Commit, Message: rep.Message,
		Changes: []manifests.ObjectChange{{Action: gitops.ActionCommitted, Kind: k.Kind, Namespace: namespaceOf(k, req.Namespace), Name: req.Name, Fields: []string{field}}}})
	if err != nil {
		s.Log.Error("write audit record", "commit", rep.Commit, "err", err)
	}
}

func (s *Server) write(ctx context.Context, req Change) (Reply, error) {
	k, ok := manifests.LookupKind(req.Kind)
	if !ok {
		return Reply{}, fmt.Errorf("unknown kind %q", req.Kind)
	}
	obj, _, err := cache.GetObject(ctx, s.Objects, manifests.Key(k.Kind, namespaceOf(k, req.Namespace), req.Name))
	if errors.Is(err, bus.ErrNotFound) {
		return Reply{}, fmt.Errorf("%s %q not found", strings.ToLower(k.Kind), req.Name)
	}
	if err != nil {
		return Reply{}, err
	}
	name := obj.GetObjectMeta().Annotations[manifests.AnnotationSource]
	what := strings.ToLower(k.Kind) + "/" + req.Name
	if name == "" {
		return Reply{}, fmt.Errorf("%s is not declared in Git (it was made by a controller): change its owner instead", what)
	}
	src, ok := s.Sources.Running(name)
	if !ok {
		return Reply{}, fmt.Errorf("source %s of %s is not running (suspended, waiting or failing: see `capstan get sources`)", name, what)
	}
	ws, ok := src.(writableSource)
	if !ok {
		return Reply{}, fmt.Errorf("source %s is a plain directory (%s), not a git repository: edit the file there", name, src.Spec().URL)
	}
	plan, err := planWrite(ctx, s.Objects, obj, req)
	if err != nil || plan.done != "" {
		return Reply{Result: Result{Done: plan.done}}, err
	}
	author, _ := parseAuthor(req.Author)
	spec := src.Spec()
	sr := sourceRepo{name: name, url: spec.URL, branch: spec.Branch, path: spec.Path}
	var file string
	res, err := ws.Write(ctx, git.WriteRequest{Message: plan.msg + "\n", Author: *author, Signer: s.Signer,
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
		return Reply{}, fmt.Errorf("%w: the credentials of source %s (%s) cannot push; give them write access, or push yourself with --git-direct", err, name, s.credentialsOf(ctx, name))
	}
	if err != nil {
		return Reply{}, err
	}
	// Fetch it now rather than at the next poll.
	if t, ok := src.(interface{ Trigger() }); ok {
		t.Trigger()
	}
	return Reply{Result: Result{Commit: res.Commit, File: file, Message: plan.msg,
		Where: fmt.Sprintf("%s (branch %s, pushed by the control plane)", spec.URL, res.Branch)}, source: name}, nil
}

// credentialsOf says where a source's credentials come from.
func (s *Server) credentialsOf(ctx context.Context, name string) string {
	obj, _, err := cache.GetObject(ctx, s.Objects, manifests.Key("Source", "", name))
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

// namespaceOf is the namespace of an object of kind k named in ns:
// "default" when ns is empty, none for a kind outside namespaces.
func namespaceOf(k manifests.KindInfo, ns string) string {
	switch {
	case !k.Namespaced:
		return ""
	case ns == "":
		return "default"
	}
	return ns
}
