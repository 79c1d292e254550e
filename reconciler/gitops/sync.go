package gitops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
	"github.com/capstan-io/capstan/reconciler/ownership"
	"github.com/capstan-io/capstan/sources"
)

// Sync results recorded in the audit stream.
const (
	ResultApplied   = "Applied"
	ResultUnchanged = "Unchanged"
	ResultRejected  = "Rejected"
	ResultFailed    = "Failed"
	// ResultDriftCorrected: live state differed from the applied revision
	// and was put back; ResultDriftDetected: it differed and, the source
	// reporting drift only, was left alone (drift.go).
	ResultDriftCorrected = "DriftCorrected"
	ResultDriftDetected  = "DriftDetected"
)

// AnnotationPrune set to PruneDisabled on an object keeps it when its
// source stops declaring it: it leaves the source's inventory and is
// recorded as "kept" instead of being deleted.
const (
	AnnotationPrune = manifests.AnnotationPrune
	PruneDisabled   = manifests.PruneDisabled
)

// LoadFunc validates a revision's files into objects; schema.Load.
type LoadFunc func(files []manifests.File) ([]manifests.Object, error)

// Syncer keeps the objects bucket equal to what one source declares. A
// revision is validated whole: one bad file rejects it, and the last
// applied revision keeps running. A good revision is applied as a
// difference, and objects the source no longer declares are pruned. Every
// attempt on a new revision is recorded in the audit stream.
type Syncer struct {
	Name    string // the source's name, unique on the bus
	Source  sources.Source
	Load    LoadFunc
	Objects bus.Store
	Audit   bus.Audit
	Events  bus.Events
	Log     *slog.Logger
	// Resync re-applies the last good revision this often even when the
	// source has not moved, putting back objects changed or removed behind
	// Git's back (default 1 min).
	Resync time.Duration
	// Declared marks a Source declared in Git: its Source object belongs
	// to the source declaring it, so this syncer writes only its status
	// and never creates it (sources.go).
	Declared bool
	// NoPrune keeps the objects the source no longer declares, still
	// annotated with it (spec.prune: false).
	NoPrune bool
	// Drift is the source's drift policy (drift.go): nil corrects drift
	// and ignores nothing.
	Drift *manifests.DriftPolicy
	// OnResult, if set, is given every audit record the syncer makes, for
	// notifications (sources.go). It must not block.
	OnResult func(manifests.AuditRecord)
	// Declarations, if set, is told what the source declares, for the
	// orphan sweep (declarations.go); the source manager sets it.
	Declarations *Declarations

	// driftSeen is a digest of the drift last reported (drift.go).
	driftSeen string

	applied   []manifests.Object // the last good revision's objects
	appliedID string
	attempted string
	lastErr   string
	views     map[string]string // key -> hash of the declared view last applied
	// appliedObjs holds, per key, the object the loader gave when it was
	// last applied: a file unchanged since gives the very same object
	// (loadcache.go), which needs no comparing.
	appliedObjs map[string]manifests.Object
	files       fileCache       // what each file of the last good revision gave
	inventory   map[string]bool // keys of objects this source declared
}

// Run syncs until ctx ends. Errors reaching the source or the bus are
// retried with capped back-off and logged once per change of state.
func (s *Syncer) Run(ctx context.Context) error {
	if s.Resync == 0 {
		s.Resync = time.Minute
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.Log = s.Log.With("source", s.Name)
	s.views, s.appliedObjs = map[string]string{}, map[string]manifests.Object{}
	changed := make(chan struct{}, 1)
	srcDone := make(chan error, 1)
	go func() { srcDone <- s.Source.Run(ctx, changed) }()

	if st, err := s.readStatus(ctx); err == nil {
		s.appliedID, s.attempted = st.AppliedRevision, st.AttemptedRevision
	}
	s.tellApplied() // signature.go
	resync := time.NewTicker(s.Resync)
	defer resync.Stop()
	var retry <-chan time.Time
	backoff := time.Second
	full := true // the first pass reads everything, whatever the revision
	for {
		err := s.syncOnce(ctx, full)
		s.Declarations.attempted(s.Name)
		full = false
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if msg := err.Error(); msg != s.lastErr {
				s.Log.Error("sync failed; will retry", "err", err)
				s.lastErr = msg
				s.writeStatus(ctx, "", msg)
			}
			retry = time.After(backoff)
			backoff = min(backoff*2, 2*time.Minute)
		} else {
			retry, backoff = nil, time.Second
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-retry:
			// A retry re-reads the head even if it was attempted: an
			// apply that failed half-way must run again now, not at the
			// next resync.
			full = true
		case <-resync.C:
			full = true
		}
		if ctx.Err() != nil {
			break
		}
	}
	<-srcDone
	return nil
}

// syncOnce fetches the source and applies it if it moved; with full it also
// re-applies the current revision, correcting drift.
func (s *Syncer) syncOnce(ctx context.Context, full bool) error {
	known := s.attempted
	if full || s.applied == nil {
		known = ""
	}
	rev, err := s.Source.Fetch(ctx, known)
	if errors.Is(err, sources.ErrUnchanged) {
		return nil
	}
	if rej := (*sources.RejectedError)(nil); errors.As(err, &rej) {
		return s.rejected(ctx, rej, full) // signature.go
	}
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if s.lastErr != "" && strings.HasPrefix(s.lastErr, "fetch: ") {
		s.Log.Info("source reachable again")
		s.lastErr = ""
	}
	isNew := rev.ID != s.attempted
	objs, loadErr := s.load(rev.Files)
	for _, obj := range objs {
		// The commit that declared it; written only when the object's
		// declared view changes (declaredView leaves it out).
		if m := obj.GetObjectMeta(); m.Annotations == nil {
			m.Annotations = map[string]string{manifests.AnnotationCommit: rev.ID}
		} else {
			m.Annotations[manifests.AnnotationCommit] = rev.ID
		}
	}
	if loadErr != nil {
		s.attempted = rev.ID
		if isNew { // a revision already rejected is not recorded again
			msgs := errorLines(loadErr)
			s.Log.Warn("revision rejected", "revision", rev.ID, "errors", len(msgs), "first", msgs[0])
			s.lastErr = strings.Join(msgs, "\n")
			s.audit(ctx, rev, ResultRejected, msgs, nil)
			s.writeStatus(ctx, rev.ID, s.lastErr)
			s.event(ctx, "Warning", "RevisionRejected", fmt.Sprintf("revision %s rejected: %s", short(rev.ID), msgs[0]))
		}
		// The last good revision keeps running; resync it if asked.
		if full && s.applied != nil {
			return s.resyncApplied(ctx) // drift.go
		}
		return nil
	}
	if full && rev.ID == s.appliedID && s.reportsDrift() {
		return s.reportAppliedDrift(ctx, rev, objs) // drift.go
	}
	changes, err := s.apply(ctx, objs, full)
	if err != nil {
		s.attempted = rev.ID
		s.audit(ctx, rev, ResultFailed, []string{err.Error()}, changes)
		return err
	}
	wasApplied := rev.ID == s.appliedID
	s.applied, s.appliedID, s.attempted, s.lastErr = objs, rev.ID, rev.ID, ""
	s.tellDeclared()
	s.writeStatus(ctx, rev.ID, "")
	switch {
	case !wasApplied:
		s.Log.Info("revision applied", "revision", rev.ID, "changes", len(changes))
		s.audit(ctx, rev, ResultApplied, nil, changes)
		s.event(ctx, "Normal", "RevisionApplied", fmt.Sprintf("revision %s applied: %d change(s)", short(rev.ID), len(changes)))
	case len(changes) > 0:
		// The same revision, re-applied: what changed was drift.
		s.driftCorrected(ctx, rev, changes) // drift.go
	}
	return nil
}

// apply writes the difference between objs and the bucket and prunes what
// this source declared before and no longer does.
func (s *Syncer) apply(ctx context.Context, objs []manifests.Object, full bool) (changes []manifests.ObjectChange, err error) {
	s.Declarations.adding(s.Name, objs)
	defer func() { s.Declarations.note(s.Name, changes) }()
	if s.inventory == nil {
		inv, err := s.listInventory(ctx)
		if err != nil {
			return nil, err
		}
		s.inventory = inv
	}
	manifests.SortObjects(objs)
	declared := map[string]bool{}
	for _, loaded := range objs {
		key := manifests.KeyOf(loaded)
		declared[key] = true
		// Most objects of a large repository come from files the commit
		// did not touch: skipping them by identity spares a clone and an
		// encoding each, most of a one-file sync's CPU. The commit
		// annotation, written in place, is not part of the declared view.
		if !full && s.appliedObjs[key] == loaded {
			continue
		}
		obj := cache.Clone(loaded)
		m := obj.GetObjectMeta()
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[manifests.AnnotationSource] = s.Name
		view, err := ownership.DeclaredView(obj)
		if err != nil {
			return changes, err
		}
		h := manifests.Hash(string(view))
		if !full && s.views[key] == h {
			s.appliedObjs[key] = loaded
			continue
		}
		ch, err := s.applyOne(ctx, key, obj)
		if err != nil {
			return changes, err
		}
		s.views[key], s.appliedObjs[key] = h, loaded
		s.inventory[key] = true
		if ch != nil {
			changes = append(changes, *ch)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(s.inventory)) {
		if declared[key] || s.NoPrune {
			continue
		}
		kind, ns, name, _ := manifests.SplitKey(key)
		obj, rev, err := cache.GetObject(ctx, s.Objects, key)
		switch {
		case errors.Is(err, bus.ErrNotFound):
		case err != nil:
			return changes, err
		case obj.GetObjectMeta().Annotations[manifests.AnnotationSource] != s.Name:
			// Another source or a controller owns it now.
		case obj.GetObjectMeta().Annotations[AnnotationPrune] == PruneDisabled:
			// Protected: left running, out of the inventory (as Flux does).
			changes = append(changes, manifests.ObjectChange{Action: "kept", Kind: kind, Namespace: ns, Name: name})
		default:
			if err := controllers.DeleteGracefully(ctx, s.Objects, key, rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
				return changes, err // kept in the inventory: retried
			}
			changes = append(changes, manifests.ObjectChange{Action: "deleted", Kind: kind, Namespace: ns, Name: name})
		}
		delete(s.inventory, key)
		delete(s.views, key)
		delete(s.appliedObjs, key)
	}
	return changes, nil
}

func (s *Syncer) applyOne(ctx context.Context, key string, obj manifests.Object) (*manifests.ObjectChange, error) {
	kind, ns, name, _ := manifests.SplitKey(key)
	for attempt := 0; ; attempt++ {
		cur, rev, err := cache.GetObject(ctx, s.Objects, key)
		if errors.Is(err, bus.ErrNotFound) {
			_, err = cache.CreateObject(ctx, s.Objects, cache.Clone(obj))
			if errors.Is(err, bus.ErrExists) && attempt < 5 {
				continue
			}
			if err != nil {
				return nil, err
			}
			return &manifests.ObjectChange{Action: "created", Kind: kind, Namespace: ns, Name: name}, nil
		}
		if err != nil {
			return nil, err
		}
		cm := cur.GetObjectMeta()
		if owner := cm.Annotations[manifests.AnnotationSource]; owner != s.Name {
			if owner == "" {
				owner = "a controller"
			}
			return nil, fmt.Errorf("%s %s/%s is already declared by %s", kind, ns, name, owner)
		}
		cmp, err := ownership.Compare(obj, cur, s.Drift) // the fields others own or the source ignores are live's
		if err != nil {
			return nil, err
		}
		if !cmp.Changed() {
			return nil, nil
		}
		upd := ownership.Update(cmp.Want, cur)
		_, err = cache.UpdateObject(ctx, s.Objects, upd, rev)
		if errors.Is(err, bus.ErrConflict) && attempt < 5 {
			continue // a controller wrote status meanwhile: re-read
		}
		if err != nil {
			return nil, err
		}
		return &manifests.ObjectChange{Action: "updated", Kind: kind, Namespace: ns, Name: name, Fields: cmp.Fields()}, nil
	}
}

// listInventory finds the objects this source declared, from their
// annotation: the inventory survives restarts without state of its own.
func (s *Syncer) listInventory(ctx context.Context) (map[string]bool, error) {
	inv := map[string]bool{}
	for _, k := range manifests.Kinds() {
		if !k.FromGit {
			continue
		}
		entries, err := s.Objects.List(ctx, k.Kind+".>")
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", k.Kind, err)
		}
		for _, e := range entries {
			obj, err := manifests.Decode(e.Value)
			// A protected object no longer declared was kept when it left
			// the inventory; one still declared rejoins it when applied.
			if err == nil && obj.GetObjectMeta().Annotations[manifests.AnnotationSource] == s.Name &&
				obj.GetObjectMeta().Annotations[AnnotationPrune] != PruneDisabled {
				inv[e.Key] = true
			}
		}
	}
	return inv, nil
}

func (s *Syncer) audit(ctx context.Context, rev *sources.Revision, result string, errs []string, changes []manifests.ObjectChange) {
	rec := manifests.AuditRecord{
		Action: manifests.ActionSync, Source: s.Name, Revision: rev.ID, Author: rev.Author.String(), Committer: rev.Committer.String(),
		Message: rev.Message, Time: manifests.Now(), Result: result, Errors: errs, Changes: changes,
	}
	if !rev.Committer.When.IsZero() {
		rec.CommitAt = manifests.NewTime(rev.Committer.When)
	}
	rec.Signature = rev.Signature
	if s.OnResult != nil {
		s.OnResult(rec)
	}
	if s.Audit == nil {
		return
	}
	if err := s.Audit.Append(ctx, rec); err != nil {
		s.Log.Error("write audit record", "revision", rev.ID, "err", err)
	}
}

func (s *Syncer) event(ctx context.Context, typ, reason, msg string) {
	if s.Events == nil {
		return
	}
	ev := manifests.Event{Time: manifests.Now(), Kind: "Source", Name: s.Name, Type: typ, Reason: reason, Message: msg, Source: "sync"}
	if err := s.Events.Record(ctx, ev); err != nil {
		s.Log.Debug("record event", "err", err)
	}
}

func (s *Syncer) readStatus(ctx context.Context) (manifests.SourceStatus, error) {
	obj, _, err := cache.GetObject(ctx, s.Objects, manifests.Key("Source", "", s.Name))
	if err != nil {
		return manifests.SourceStatus{}, err
	}
	return obj.(*manifests.Source).Status, nil
}

// writeStatus records the attempt on the Source object; best effort.
func (s *Syncer) writeStatus(ctx context.Context, attempted, lastErr string) {
	key := manifests.Key("Source", "", s.Name)
	for range 5 {
		src := &manifests.Source{ObjectMeta: manifests.ObjectMeta{Name: s.Name}}
		cur, rev, err := cache.GetObject(ctx, s.Objects, key)
		if err == nil {
			src = cur.(*manifests.Source)
		} else if !errors.Is(err, bus.ErrNotFound) || s.Declared {
			// A declared Source removed from Git is not brought back.
			s.Log.Debug("read source status", "err", err)
			return
		}
		manifests.SetKind(src)
		if !s.Declared { // Git owns a declared Source's spec
			src.Spec = s.Source.Spec()
		}
		st := &src.Status
		if attempted != "" {
			st.AttemptedRevision = attempted
		}
		st.AppliedRevision = s.appliedID
		st.LastError = lastErr
		st.LastSyncTime = manifests.Now()
		st.Objects = len(s.inventory)
		ready := manifests.Condition{Type: "Ready", Status: manifests.ConditionTrue, Reason: "Synced", Message: "applied revision " + s.appliedID}
		if lastErr != "" {
			ready = manifests.Condition{Type: "Ready", Status: manifests.ConditionFalse, Reason: "SyncFailed", Message: firstLine(lastErr)}
		}
		st.Conditions = manifests.UpdateCondition(st.Conditions, ready)
		if err == nil {
			_, err = cache.UpdateObject(ctx, s.Objects, src, rev)
		} else {
			_, err = cache.CreateObject(ctx, s.Objects, src)
		}
		if err == nil || (!errors.Is(err, bus.ErrConflict) && !errors.Is(err, bus.ErrExists)) {
			return
		}
	}
}

// errorLines splits a load error into one line per problem.
func errorLines(err error) []string {
	var lines []string
	for l := range strings.SplitSeq(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		lines = []string{err.Error()}
	}
	return lines
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
