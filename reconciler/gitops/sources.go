package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/secrets"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/sources"
	"github.com/capstan-io/capstan/sources/webhook"
)

// SecretNamespace is where the Secrets that Sources and Notifiers name
// live.
const SecretNamespace = "capstan-system"

// ResultRemoved is the audit result of a declared Source removed from
// Git: its objects were pruned (unless its prune was off).
const ResultRemoved = "Removed"

// SourceCredentials are a declared Source's credentials, as files the
// manager wrote (mode 0600) from its Secret: the password or token for
// https, the private key and known_hosts for ssh. Empty fields are unset.
type SourceCredentials struct {
	Username       string
	PasswordFile   string
	IdentityFile   string
	KnownHostsFile string
}

// OpenFunc makes the sources.Source of a declared Source.
type OpenFunc func(name string, spec manifests.SourceSpec, cred SourceCredentials) (sources.Source, error)

// SourceManager runs one Syncer per source: the root (given to `capstan
// up`) and every Source declared in Git, each its own unit of
// all-or-nothing. It starts a declared source once the sources it
// dependsOn are Ready, restarts it when its spec or Secret changes, stops
// it while suspended, and when its Source leaves Git stops it and prunes
// its objects (unless its prune is off). It computes every source's health
// (health.go) into its status, records drift of Podman containers
// (containers replaced behind Capstan's back), and feeds the Notifiers.
//
// It keeps its own watch-fed cache of the objects bucket. Run returns
// only after every syncer it started has stopped.
type SourceManager struct {
	// Root is the root source's syncer, configured but not running; nil
	// without one (`capstan server` with no --repo).
	Root    *Syncer
	Objects bus.Store
	Audit   bus.Audit
	Events  bus.Events
	Load    LoadFunc
	Log     *slog.Logger
	// Resync is the declared sources' re-apply period (default: the
	// root's, else 1 min).
	Resync time.Duration
	// Open makes a declared source's sources.Source; required to run
	// declared sources.
	Open OpenFunc
	// CredentialsDir holds one directory per declared source with the
	// files of its credentials (mode 0700, files 0600).
	CredentialsDir string
	// SecretData reads a Secret's values; nil reads the Secret's data from
	// the objects bucket. It is the hook for Secrets kept encrypted.
	SecretData func(ctx context.Context, namespace, name string) (map[string][]byte, error)
	// Cache, if set, is the process's objects cache, shared with the
	// control plane and run by the caller; nil makes and runs one.
	Cache *cache.Cache
	// Sops decrypts SOPS-encrypted credential Secrets; nil refuses them.
	Sops secrets.Decrypter
	// Prepare, if set, finishes a declared source's syncer before it runs
	// (its signature policy, decryption). An error keeps it from running
	// and is shown in its status.
	Prepare func(s *Syncer, src *manifests.Source) error
	// Notify, if set, is told of sync results, rollouts and drift, and
	// configured from the Notifier objects. The manager does not run it.
	Notify *Notifiers
	// Interval is how often health, dependencies and Notifiers are
	// recomputed at most (default 500 ms); changes trigger them.
	Interval time.Duration
	// Triggers, if set, is given the push-webhook targets of the running
	// sources (the root first, then the declared ones by name) each time
	// a source starts or stops; the webhook receiver's SetTargets.
	Triggers func([]webhook.Target)
	// Declarations, if set, is told what every source declares, for the
	// control plane's orphan sweep (orphans.go).
	Declarations *Declarations

	cache   *cache.Cache
	kick    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	runners map[string]*runner
	known   map[string]manifests.SourceSpec // declared sources seen, for prune on removal
	waiting map[string]string               // declared source -> why it is not running
	noted   map[string]string               // notifier -> hash of its config
	drift   *containerWatch
}

// runner is one declared source's running syncer.
type runner struct {
	hash   string
	spec   manifests.SourceSpec
	src    sources.Source
	cancel context.CancelFunc
	done   chan struct{}
}

// triggerer is a source that can be told to fetch now (sources/git,
// sources/dir).
type triggerer interface{ Trigger() }

// Running returns the source named name if it runs: the root, or a
// declared source whose syncer runs (not suspended, waiting or failing).
func (m *SourceManager) Running(name string) (sources.Source, bool) {
	if m.Root != nil && m.Root.Name == name {
		return m.Root.Source, true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.runners[name]; r != nil {
		return r.src, true
	}
	return nil, false
}

// publishTargets gives Triggers the webhook targets of the running
// sources.
func (m *SourceManager) publishTargets() {
	if m.Triggers == nil {
		return
	}
	var ts []webhook.Target
	if m.Root != nil {
		if t, ok := m.Root.Source.(triggerer); ok {
			ts = append(ts, webhook.TargetFor(m.Root.Name, m.Root.Source.Spec(), t.Trigger))
		}
	}
	m.mu.Lock()
	for _, name := range slices.Sorted(maps.Keys(m.runners)) {
		r := m.runners[name]
		if t, ok := r.src.(triggerer); ok {
			ts = append(ts, webhook.TargetFor(name, r.spec, t.Trigger))
		}
	}
	m.mu.Unlock()
	m.Triggers(ts)
}

// Run runs the sources until ctx ends.
func (m *SourceManager) Run(ctx context.Context) error {
	if m.Log == nil {
		m.Log = slog.New(slog.DiscardHandler)
	}
	if m.Interval == 0 {
		m.Interval = 500 * time.Millisecond
	}
	if m.Resync == 0 && m.Root != nil {
		m.Resync = m.Root.Resync
	}
	m.kick = make(chan struct{}, 1)
	m.runners, m.known, m.waiting, m.noted = map[string]*runner{}, map[string]manifests.SourceSpec{}, map[string]string{}, map[string]string{}
	m.drift = newContainerWatch()
	m.cache = m.Cache
	cacheCtx, stopCache := context.WithCancel(ctx)
	cacheDone := make(chan error, 1)
	if m.cache == nil {
		m.cache = cache.New(m.Objects, m.Log.With("cache", "sources"))
		go func() { cacheDone <- m.cache.Run(cacheCtx) }()
	} else {
		cacheDone <- nil // the caller runs it
	}
	m.cache.AddHandler(m.onChange)
	defer func() {
		m.stopAll()
		m.wg.Wait()
		stopCache()
		<-cacheDone
	}()
	select {
	case <-ctx.Done():
		return nil
	case <-m.cache.Synced():
	}
	// The root starts after the cache holds the declared Sources, so a
	// Source its first pass prunes is seen leaving, and pruned in turn.
	m.Declarations.setRoot(m.rootName())
	if m.Root != nil {
		root := m.Root
		root.OnResult = m.resultHook(root.OnResult)
		if root.Declarations == nil {
			root.Declarations = m.Declarations
		}
		root.Declarations.starting(root.Name, root.reportsDrift())
		m.wg.Go(func() {
			if err := root.Run(ctx); err != nil {
				m.Log.Error("root source stopped", "err", err)
			}
		})
	}
	m.publishTargets()
	tick := time.NewTicker(5 * time.Second) // retries: Secrets missing, dependencies
	defer tick.Stop()
	for first := true; ; first = false {
		m.reconcile(ctx)
		if first {
			m.Declarations.managerReady()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
		case <-tick.C:
		}
		select { // at most one pass per Interval
		case <-ctx.Done():
			return nil
		case <-time.After(m.Interval):
		}
	}
}

func (m *SourceManager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// onChange is the cache's handler: any change may move a source's health
// or configuration; a pod's may be a container replaced behind our back.
func (m *SourceManager) onChange(key string, old, cur manifests.Object) {
	if p, ok := cur.(*manifests.Pod); ok {
		if op, ok := old.(*manifests.Pod); ok || old == nil {
			for _, d := range m.drift.observe(op, p) {
				m.recordContainerDrift(d)
			}
		}
	} else if p, ok := old.(*manifests.Pod); ok && cur == nil {
		m.drift.forget(p)
	}
	m.poke()
}

// resultHook wraps a syncer's OnResult to notify and recompute health.
func (m *SourceManager) resultHook(next func(manifests.AuditRecord)) func(manifests.AuditRecord) {
	return func(rec manifests.AuditRecord) {
		if next != nil {
			next(rec)
		}
		if m.Notify != nil {
			if n, ok := NoticeFromAudit(rec); ok {
				n.URL = m.sourceURL(rec.Source)
				m.Notify.Notify(n)
			}
		}
		m.poke()
	}
}

func (m *SourceManager) sourceURL(name string) string {
	if c, ok := m.cache.Get(manifests.Key("Source", "", name)); ok {
		return c.Obj.(*manifests.Source).Spec.URL
	}
	return ""
}

// reconcile brings the declared sources' syncers, every source's health
// and the Notifiers in line with the cache.
func (m *SourceManager) reconcile(ctx context.Context) {
	srcs := map[string]*manifests.Source{}
	for _, c := range m.cache.List("Source", "") {
		srcs[c.Obj.GetObjectMeta().Name] = c.Obj.(*manifests.Source)
	}
	for name, src := range srcs {
		if name == m.rootName() || src.Annotations[manifests.AnnotationSource] == "" {
			continue // the root, or an old root's status object
		}
		if _, ok := m.known[name]; !ok {
			m.Declarations.stopped(name) // until it runs: its objects are left alone
		}
		m.known[name] = src.Spec
		m.runDeclared(ctx, src, srcs)
	}
	for name, spec := range m.known {
		if _, ok := srcs[name]; ok {
			continue
		}
		m.stop(name)
		delete(m.known, name)
		delete(m.waiting, name)
		m.removed(ctx, name, spec)
	}
	// Notifiers first: one declared with a source hears of its health.
	m.configureNotifiers(ctx)
	for _, src := range srcs {
		m.updateHealth(ctx, src)
	}
}

func (m *SourceManager) rootName() string {
	if m.Root == nil {
		return ""
	}
	return m.Root.Name
}

// runDeclared starts, restarts or stops one declared source's syncer.
func (m *SourceManager) runDeclared(ctx context.Context, src *manifests.Source, all map[string]*manifests.Source) {
	name := src.Name
	if src.Spec.Suspend {
		if m.stop(name) {
			m.Log.Info("source suspended", "source", name)
		}
		m.waiting[name] = "suspended"
		return
	}
	secretVersion := ""
	if ref := src.Spec.SecretRef; ref != nil {
		c, ok := m.cache.Get(manifests.Key("Secret", SecretNamespace, ref.Name))
		if !ok {
			m.fail(ctx, src, fmt.Sprintf("secret %s/%s not found", SecretNamespace, ref.Name))
			return
		}
		secretVersion = c.Obj.GetObjectMeta().ResourceVersion
	}
	hash := manifests.Hash(src.Spec) + "/" + secretVersion
	m.mu.Lock()
	r := m.runners[name]
	m.mu.Unlock()
	if r != nil && r.hash == hash {
		return
	}
	if r != nil {
		m.Log.Info("source changed; restarting its sync", "source", name)
		m.stop(name)
	}
	// A source starts once its dependencies are Ready; one running goes
	// on when a dependency degrades (stopping it would undo nothing).
	for _, dep := range src.Spec.DependsOn {
		d, ok := all[dep.Name]
		switch {
		case !ok:
			m.wait(name, fmt.Sprintf("waiting for source %s, which does not exist", dep.Name))
			return
		case d.Status.Health != HealthReady:
			h := d.Status.Health
			if h == "" {
				h = "unknown health"
			}
			m.wait(name, fmt.Sprintf("waiting for source %s to be Ready (%s)", dep.Name, h))
			return
		}
	}

	s, err := m.newSyncer(ctx, src)
	if err != nil {
		m.fail(ctx, src, err.Error())
		return
	}
	delete(m.waiting, name)
	rctx, cancel := context.WithCancel(ctx)
	r = &runner{hash: hash, spec: src.Spec, src: s.Source, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.runners[name] = r
	m.mu.Unlock()
	m.Declarations.starting(name, s.reportsDrift())
	m.publishTargets()
	m.Log.Info("starting source", "source", name, "url", src.Spec.URL, "path", src.Spec.Path)
	m.wg.Go(func() {
		defer close(r.done)
		if err := s.Run(rctx); err != nil {
			m.Log.Error("source stopped", "source", name, "err", err)
		}
	})
}

// wait records why a source does not run yet; the health pass shows it.
func (m *SourceManager) wait(name, why string) {
	if m.waiting[name] != why {
		m.Log.Info("source waiting", "source", name, "reason", why)
	}
	m.waiting[name] = why
}

// fail records a source that cannot start (a missing Secret, a bad URL)
// in its status, once per message.
func (m *SourceManager) fail(ctx context.Context, src *manifests.Source, msg string) {
	if m.waiting[src.Name] == "failed: "+msg {
		return
	}
	m.waiting[src.Name] = "failed: " + msg
	m.Log.Warn("cannot start source", "source", src.Name, "err", msg)
	m.stop(src.Name)
	m.updateStatus(ctx, src.Name, func(st *manifests.SourceStatus) {
		st.LastError = msg
		st.Conditions = manifests.UpdateCondition(st.Conditions, manifests.Condition{Type: "Ready", Status: manifests.ConditionFalse, Reason: "SourceError", Message: msg})
	})
}

// newSyncer builds a declared source's syncer, with its credentials
// written to files.
func (m *SourceManager) newSyncer(ctx context.Context, src *manifests.Source) (*Syncer, error) {
	if m.Open == nil {
		return nil, errors.New("declared sources are not supported here")
	}
	cred, err := m.credentials(ctx, src)
	if err != nil {
		return nil, err
	}
	ss, err := m.Open(src.Name, src.Spec, cred)
	if err != nil {
		return nil, err
	}
	s := &Syncer{Name: src.Name, Source: ss, Load: m.Load, Objects: m.Objects, Audit: m.Audit, Events: m.Events,
		Log: m.Log, Resync: m.Resync, Declared: true,
		NoPrune: src.Spec.Prune != nil && !*src.Spec.Prune, Drift: src.Spec.Drift, Declarations: m.Declarations}
	s.OnResult = m.resultHook(nil)
	if m.Prepare != nil {
		if err := m.Prepare(s, src); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// credentials writes the source's Secret values to files under
// CredentialsDir/<source>: username and password (https), identity and
// known_hosts (ssh). Values are never logged.
func (m *SourceManager) credentials(ctx context.Context, src *manifests.Source) (SourceCredentials, error) {
	var cred SourceCredentials
	ref := src.Spec.SecretRef
	if ref == nil {
		return cred, nil
	}
	data, err := m.secret(ctx, ref.Name)
	if err != nil {
		return cred, err
	}
	if m.CredentialsDir == "" {
		return cred, errors.New("no credentials directory configured")
	}
	dir := filepath.Join(m.CredentialsDir, src.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return cred, fmt.Errorf("credentials of source %s: %w", src.Name, err)
	}
	cred.Username = strings.TrimSpace(string(data["username"]))
	for key, field := range map[string]*string{"password": &cred.PasswordFile, "identity": &cred.IdentityFile, "known_hosts": &cred.KnownHostsFile} {
		v, ok := data[key]
		p := filepath.Join(dir, key)
		if !ok {
			_ = os.Remove(p)
			continue
		}
		if err := writeSecretFile(p, v); err != nil {
			return cred, fmt.Errorf("credentials of source %s: %w", src.Name, err)
		}
		*field = p
	}
	if cred.PasswordFile == "" && cred.IdentityFile == "" {
		return cred, fmt.Errorf("secret %s/%s has neither password nor identity", SecretNamespace, ref.Name)
	}
	return cred, nil
}

// writeSecretFile writes data to p with mode 0600 unless it holds it
// already, through a temporary file renamed into place.
func writeSecretFile(p string, data []byte) error {
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func (m *SourceManager) secret(ctx context.Context, name string) (map[string][]byte, error) {
	if m.SecretData != nil {
		return m.SecretData(ctx, SecretNamespace, name)
	}
	c, ok := m.cache.Get(manifests.Key("Secret", SecretNamespace, name))
	if !ok {
		return nil, fmt.Errorf("secret %s/%s not found", SecretNamespace, name)
	}
	// A SOPS-encrypted Secret is stored encrypted; Decrypt returns a plain
	// one as it is.
	sec, err := secrets.Decrypt(m.Sops, c.Obj.(*manifests.Secret))
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", SecretNamespace, name, err)
	}
	return sec.Data, nil
}

// stop stops a declared source's syncer and waits for it; it reports
// whether one was running.
func (m *SourceManager) stop(name string) bool {
	m.mu.Lock()
	r := m.runners[name]
	delete(m.runners, name)
	m.mu.Unlock()
	if r == nil {
		return false
	}
	m.Declarations.stopped(name)
	m.publishTargets()
	r.cancel()
	<-r.done
	return true
}

func (m *SourceManager) stopAll() {
	m.mu.Lock()
	names := slices.Collect(maps.Keys(m.runners))
	m.mu.Unlock()
	for _, n := range names {
		m.stop(n)
	}
}

// removed prunes the objects of a Source that left Git, unless its prune
// was off, and records it; kept objects are recorded as such, which is
// how the orphan sweep tells them from objects no source declares.
func (m *SourceManager) removed(ctx context.Context, name string, spec manifests.SourceSpec) {
	if m.CredentialsDir != "" {
		_ = os.RemoveAll(filepath.Join(m.CredentialsDir, name))
	}
	m.Declarations.stopped(name) // the sweep waits for the prune
	s := &Syncer{Name: name, Objects: m.Objects, Log: m.Log.With("source", name), views: map[string]string{},
		Declarations: m.Declarations}
	var changes []manifests.ObjectChange
	var err error
	msg := "source removed from Git"
	if spec.Prune != nil && !*spec.Prune {
		changes, err = s.keepAll(ctx)
		msg += "; its objects are kept (prune off)"
		m.Log.Info("source removed from Git; its objects are kept (prune off)", "source", name, "objects", len(changes))
		if err != nil {
			// Left stopped: the sweep never takes them for orphans.
			m.Log.Error("list objects of removed source", "source", name, "err", err)
		} else {
			m.Declarations.forget(name)
		}
	} else {
		defer m.Declarations.forget(name)
		changes, err = s.apply(ctx, nil, true)
		if err != nil {
			// Not retried by this loop: the objects stay, annotated with
			// a source that no longer exists, until the Source comes
			// back (or the orphan sweep removes them).
			m.Log.Error("prune objects of removed source", "source", name, "err", err)
		}
		m.Log.Info("source removed from Git; its objects pruned", "source", name, "changes", len(changes))
	}
	rec := manifests.AuditRecord{Action: manifests.ActionSync, Source: name, Time: manifests.Now(), Result: ResultRemoved, Changes: changes,
		Message: msg}
	if err != nil {
		rec.Errors = []string{err.Error()}
	}
	if m.Audit != nil {
		if err := m.Audit.Append(ctx, rec); err != nil {
			m.Log.Error("write audit record", "source", name, "err", err)
		}
	}
}

// updateHealth computes a source's health from its status and objects
// and writes it when it changed; a change to Ready or Degraded of the
// applied revision is a rollout notice.
func (m *SourceManager) updateHealth(ctx context.Context, src *manifests.Source) {
	var objs []manifests.Object
	for _, k := range manifests.Kinds() {
		if !k.FromGit {
			continue
		}
		for _, c := range m.cache.List(k.Kind, "") {
			if c.Obj.GetObjectMeta().Annotations[manifests.AnnotationSource] == src.Name {
				objs = append(objs, c.Obj)
			}
		}
	}
	health, msg := SourceHealth(src.Status.LastError, src.Status.AppliedRevision != "", objs)
	if why := m.waiting[src.Name]; why != "" && !strings.HasPrefix(why, "failed: ") && src.Annotations[manifests.AnnotationSource] != "" {
		if why == "suspended" {
			msg = "suspended; " + msg
		} else {
			health, msg = HealthProgressing, why
		}
	}
	old := src.Status.Health
	if c := manifests.FindCondition(src.Status.Conditions, "Healthy"); old == health && c != nil && c.Message == msg {
		return
	}
	m.updateStatus(ctx, src.Name, func(st *manifests.SourceStatus) {
		st.Health = health
		cond := manifests.Condition{Type: "Healthy", Status: manifests.ConditionFalse, Reason: health, Message: msg}
		if health == HealthReady {
			cond.Status = manifests.ConditionTrue
		}
		st.Conditions = manifests.UpdateCondition(st.Conditions, cond)
	})
	if old == health {
		return
	}
	m.Log.Info("source health", "source", src.Name, "health", health, "message", msg)
	typ := "Normal"
	if health == HealthDegraded || health == HealthFailed {
		typ = "Warning"
	}
	if m.Events != nil {
		_ = m.Events.Record(ctx, manifests.Event{Time: manifests.Now(), Kind: "Source", Name: src.Name, Type: typ, Reason: health, Message: msg, Source: "sources"})
	}
	if m.Notify != nil && src.Status.AppliedRevision != "" && (health == HealthReady || health == HealthDegraded) {
		sev := SeverityInfo
		if health == HealthDegraded {
			sev = SeverityError
		}
		m.Notify.Notify(Notice{Source: src.Name, Event: manifests.NotifyRollout, Reason: health, Severity: sev,
			Revision: src.Status.AppliedRevision, Message: fmt.Sprintf("revision %s is %s: %s", short(src.Status.AppliedRevision), health, msg),
			URL: src.Spec.URL, Time: time.Now()})
	}
}

// updateStatus changes a Source's status with CAS, from a fresh read.
func (m *SourceManager) updateStatus(ctx context.Context, name string, change func(*manifests.SourceStatus)) {
	key := manifests.Key("Source", "", name)
	for range 5 {
		obj, rev, err := cache.GetObject(ctx, m.Objects, key)
		if err != nil {
			return
		}
		src := obj.(*manifests.Source)
		change(&src.Status)
		if _, err = cache.UpdateObject(ctx, m.Objects, src, rev); !errors.Is(err, bus.ErrConflict) {
			if err != nil {
				m.Log.Debug("write source status", "source", name, "err", err)
			}
			return
		}
	}
}

// configureNotifiers brings the Notifiers in line with the Notifier
// objects and their Secrets.
func (m *SourceManager) configureNotifiers(ctx context.Context) {
	if m.Notify == nil {
		return
	}
	seen := map[string]bool{}
	for _, c := range m.cache.List("Notifier", "") {
		n := c.Obj.(*manifests.Notifier)
		seen[n.Name] = true
		var data map[string][]byte
		hash := manifests.Hash(n.Spec)
		if ref := n.Spec.SecretRef; ref != nil {
			sc, ok := m.cache.Get(manifests.Key("Secret", SecretNamespace, ref.Name))
			if !ok {
				if m.noted[n.Name] != "missing" {
					m.Log.Warn("notifier's secret not found; notifier off", "notifier", n.Name, "secret", SecretNamespace+"/"+ref.Name)
					m.Notify.Remove(n.Name)
					m.noted[n.Name] = "missing"
				}
				continue
			}
			hash += "/" + sc.Obj.GetObjectMeta().ResourceVersion
			if m.noted[n.Name] != hash {
				var err error
				if data, err = m.secret(ctx, ref.Name); err != nil {
					m.Log.Warn("read notifier's secret", "notifier", n.Name, "err", err)
					continue
				}
			}
		}
		if m.noted[n.Name] == hash {
			continue
		}
		m.noted[n.Name] = hash
		m.Notify.Set(n.Name, n.Spec, data)
		m.Log.Info("notifier configured", "notifier", n.Name, "type", n.Spec.Type)
	}
	for name := range m.noted {
		if !seen[name] {
			delete(m.noted, name)
			m.Notify.Remove(name)
			m.Log.Info("notifier removed", "notifier", name)
		}
	}
}

// sourceOf follows controller owner references up from obj to an object
// a source declared, and returns that source.
func (m *SourceManager) sourceOf(obj manifests.Object) string {
	for range 6 {
		meta := obj.GetObjectMeta()
		if s := meta.Annotations[manifests.AnnotationSource]; s != "" {
			return s
		}
		ref := meta.Controller()
		if ref == nil {
			return ""
		}
		c, ok := m.cache.Get(manifests.Key(ref.Kind, meta.Namespace, ref.Name))
		if !ok || c.Obj.GetObjectMeta().UID != ref.UID {
			return ""
		}
		obj = c.Obj
	}
	return ""
}
