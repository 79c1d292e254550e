package gitops

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/capstan-io/capstan/manifests"
)

// Declarations is what every running source declares, as the syncers of
// this process know it: the source manager and its syncers fill it, the
// control plane's orphan sweep (orphans.go) reads it. It holds no state
// of its own on the bus: after a restart a source's inventory is unknown
// until its syncer has applied a revision. Safe for concurrent use; a nil
// *Declarations records nothing.
type Declarations struct {
	mu      sync.Mutex
	root    string
	ready   bool // the manager started every source it could (its first pass)
	open    bool // every source has attempted a first sync since: sweeping may start
	sources map[string]*declared
	// kept: source -> key -> whether its last membership change was
	// "kept" (prune disabled, or a source removed with prune off), as
	// seen by this process; the audit stream holds what came before.
	kept    map[string]map[string]bool
	changed chan struct{}
}

// declared is one source's state.
type declared struct {
	stopped   bool            // its syncer does not run: what claims it is left alone
	attempted bool            // its syncer finished a pass since it started
	known     bool            // keys is its inventory: a revision was applied since it started
	keys      map[string]bool // what it declares, and while an apply runs what it may write
	revision  string          // the applied revision
	report    bool            // drift mode report: orphans claiming it are reported, not deleted
}

// NewDeclarations returns an empty registry.
func NewDeclarations() *Declarations {
	return &Declarations{sources: map[string]*declared{}, kept: map[string]map[string]bool{}, changed: make(chan struct{}, 1)}
}

// poke tells the sweep that verdicts may have changed.
func (d *Declarations) poke() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// setRoot names the root source, whose Source object carries no source
// annotation (the syncer writes it).
func (d *Declarations) setRoot(name string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.root = name
}

// starting registers a syncer about to run: its inventory is unknown
// until it applies a revision.
func (d *Declarations) starting(name string, report bool) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sources[name] = &declared{report: report}
}

// stopped marks a source whose syncer stopped (suspended, restarting,
// removed from Git and not yet pruned): the objects claiming it are left
// alone until it runs again or is forgotten.
func (d *Declarations) stopped(name string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sources[name] = &declared{stopped: true}
}

// managerReady marks the end of the source manager's first pass: every
// source it could start is registered.
func (d *Declarations) managerReady() {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.ready = true
	d.mu.Unlock()
	d.poke()
}

// adding widens a known inventory with what an apply is about to write,
// before it writes: an object the sync creates is never seen undeclared.
func (d *Declarations) adding(name string, objs []manifests.Object) {
	if d == nil || len(objs) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.sources[name]
	if e == nil || e.stopped {
		return
	}
	if e.keys == nil {
		e.keys = make(map[string]bool, len(objs))
	}
	for _, o := range objs {
		e.keys[manifests.KeyOf(o)] = true
	}
}

// applied sets a source's inventory after a revision was applied.
func (d *Declarations) applied(name string, keys map[string]bool, revision string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	e := d.sources[name]
	if e == nil || e.stopped {
		d.mu.Unlock()
		return
	}
	became := !e.known
	e.known, e.keys, e.revision = true, keys, revision
	d.mu.Unlock()
	if became {
		d.poke()
	}
}

// attempted records that a source's syncer finished a pass.
func (d *Declarations) attempted(name string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	e := d.sources[name]
	first := e != nil && !e.attempted
	if first {
		e.attempted = true
	}
	d.mu.Unlock()
	if first {
		d.poke()
	}
}

// note records the membership changes of a sync: kept objects stay,
// created or deleted ones end an earlier "kept".
func (d *Declarations) note(source string, changes []manifests.ObjectChange) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range changes {
		kept, ok := keptChange(c.Action)
		if !ok {
			continue
		}
		m := d.kept[source]
		if m == nil {
			m = map[string]bool{}
			d.kept[source] = m
		}
		m[manifests.Key(c.Kind, c.Namespace, c.Name)] = kept
	}
}

// keptChange says whether a change action makes an object kept (true)
// or ends that (false); ok is false for actions that change neither.
func keptChange(action string) (kept, ok bool) {
	switch action {
	case "kept":
		return true, true
	case "created", "updated", "deleted":
		return false, true
	}
	return false, false
}

// forget drops a source removed from Git, after its objects were pruned
// or kept: what still claims it is an orphan unless kept.
func (d *Declarations) forget(name string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	delete(d.sources, name)
	d.mu.Unlock()
	d.poke()
}

// isOpen reports whether sweeping may start: the manager registered its
// sources and every one has attempted a sync since. Once open it stays
// open; a source started later is protected by its unknown inventory.
func (d *Declarations) isOpen() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.open {
		return true
	}
	if !d.ready {
		return false
	}
	for _, e := range d.sources {
		if !e.stopped && !e.attempted {
			return false
		}
	}
	d.open = true
	return true
}

// sourceState is what the sweep needs of one source.
type sourceState struct {
	registered bool // the manager of this process runs it, or stopped it
	known      bool // it runs and its inventory is known
	declares   bool // its inventory has the key
	report     bool
	revision   string
}

func (d *Declarations) state(source, key string) sourceState {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.sources[source]
	if e == nil {
		return sourceState{}
	}
	return sourceState{registered: true, known: !e.stopped && e.known, declares: e.keys[key], report: e.report, revision: e.revision}
}

// keptLive reports what this process saw of key's "kept" state in source;
// seen is false when it saw nothing.
func (d *Declarations) keptLive(source, key string) (kept, seen bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	kept, seen = d.kept[source][key]
	return kept, seen
}

func (d *Declarations) rootName() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.root
}

// tellDeclared gives the registry the inventory of the revision just
// applied: its objects, and with prune off those declared before too.
func (s *Syncer) tellDeclared() {
	if s.Declarations == nil {
		return
	}
	keys := make(map[string]bool, len(s.applied))
	for _, o := range s.applied {
		keys[manifests.KeyOf(o)] = true
	}
	if s.NoPrune {
		for k := range s.inventory {
			keys[k] = true
		}
	}
	s.Declarations.applied(s.Name, keys, s.appliedID)
}

// keepAll records every object of the source's inventory as kept: its
// Source left Git with prune off.
func (s *Syncer) keepAll(ctx context.Context) ([]manifests.ObjectChange, error) {
	inv, err := s.listInventory(ctx)
	if err != nil {
		return nil, err
	}
	var changes []manifests.ObjectChange
	for _, key := range slices.Sorted(maps.Keys(inv)) {
		kind, ns, name, _ := manifests.SplitKey(key)
		changes = append(changes, manifests.ObjectChange{Action: "kept", Kind: kind, Namespace: ns, Name: name})
	}
	s.Declarations.note(s.Name, changes)
	return changes, nil
}
