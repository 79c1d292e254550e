package gitops

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// Notice is one thing worth telling people: a sync result, a rollout's
// outcome, or drift. It is also the body of generic webhooks and of the
// NATS messages on capstan.notify.<source>.
type Notice struct {
	Source string `json:"source"`
	// Event is the class: sync, rollout or drift.
	Event string `json:"event"`
	// Reason is Applied, Rejected or Failed (sync); Ready or Degraded
	// (rollout); DriftCorrected or DriftDetected (drift).
	Reason   string `json:"reason"`
	Severity string `json:"severity"` // info, warning, error
	Revision string `json:"revision,omitempty"`
	Message  string `json:"message"`
	// URL is the source's repository (without credentials).
	URL     string                   `json:"url,omitempty"`
	Errors  []string                 `json:"errors,omitempty"`
	Changes []manifests.ObjectChange `json:"changes,omitempty"`
	Time    time.Time                `json:"time"`
	// Detail tells apart two notices of one source, revision and reason
	// (two different drifts); it is part of the de-duplication key.
	Detail string `json:"-"`
}

// Severities of notices.
const (
	SeverityInfo    = "info"
	SeverityWarning = "warning"
	SeverityError   = "error"
)

// DefaultNotifySubject prefixes the NATS subjects notices are published
// on: capstan.notify.<source>.
const DefaultNotifySubject = "capstan.notify"

// NoticeFromAudit turns a sync's audit record into a notice; ok is false
// for records not worth one (Unchanged).
func NoticeFromAudit(rec manifests.AuditRecord) (n Notice, ok bool) {
	n = Notice{Source: rec.Source, Revision: rec.Revision, Reason: rec.Result, Errors: rec.Errors, Changes: rec.Changes, Time: time.Now()}
	if rec.Time != nil {
		n.Time = rec.Time.Time
	}
	switch rec.Result {
	case ResultApplied:
		n.Event, n.Severity = manifests.NotifySync, SeverityInfo
		n.Message = fmt.Sprintf("revision %s applied: %d change(s)", short(rec.Revision), len(rec.Changes))
	case ResultRejected, ResultFailed:
		n.Event, n.Severity = manifests.NotifySync, SeverityError
		verb := "rejected"
		if rec.Result == ResultFailed {
			verb = "failed to apply"
		}
		n.Message = fmt.Sprintf("revision %s %s", short(rec.Revision), verb)
		if len(rec.Errors) > 0 {
			n.Message += ": " + rec.Errors[0]
		}
		// The same revision failing again the same way is one failure.
		n.Detail = manifests.Hash(rec.Errors)
	case ResultDriftCorrected, ResultDriftDetected:
		n.Event, n.Severity = manifests.NotifyDrift, SeverityWarning
		verb := "corrected"
		if rec.Result == ResultDriftDetected {
			verb = "detected (not corrected)"
		}
		n.Message = fmt.Sprintf("drift %s at revision %s: %s", verb, short(rec.Revision), describeChanges(rec.Changes))
		n.Detail = manifests.Hash(rec.Changes)
		if rec.Message != "" && len(rec.Changes) == 1 && rec.Changes[0].Kind == "Pod" {
			// A container changed behind Capstan's back: each record is
			// one change (the control plane records it once), even the
			// same container paused twice.
			n.Message = fmt.Sprintf("drift %s: %s", verb, rec.Message)
			n.Detail = manifests.Hash([]any{rec.Changes, rec.Time})
		}
	default:
		return n, false
	}
	return n, true
}

// Notifiers delivers notices to the configured Notifiers and publishes
// every notice on NATS (capstan.notify.<source>), each de-duplicated: a
// notice is sent to one destination once per source, event class,
// revision, reason and detail, and again only when one of them changes.
// With State, what was sent last per destination, source and event
// class is kept on the bus as well, so a restarted control plane does
// not send it again. Notices are de-duplicated and delivered by Run's
// worker, so Notify never blocks on the network; a failed delivery is
// retried three times, then dropped with a log line. The zero value is
// not usable: set the fields, then call Run. Its methods are safe for
// concurrent use.
type Notifiers struct {
	// Publish sends a message on a NATS subject of Capstan's bus; nil
	// publishes nothing.
	Publish func(subject string, data []byte) error
	// State, if set, keeps the de-duplication memory (the notified
	// bucket); Run reads it before it sends anything.
	State bus.Store
	// Client makes the HTTP requests (default: a 10 s timeout).
	Client *http.Client
	Log    *slog.Logger
	// RetryDelay is the first delay between delivery attempts (default 1 s,
	// doubling).
	RetryDelay time.Duration

	mu      sync.Mutex
	configs map[string]notifierConfig
	sent    map[string]string // destination/source/event -> revision/reason/detail
	queue   chan Notice
	once    sync.Once
}

// sentRecord is one entry of the notified bucket: the last notice sent
// to a destination ("" for the bus subject) for a source and event class.
type sentRecord struct {
	Destination string `json:"destination"`
	Source      string `json:"source"`
	Event       string `json:"event"`
	Value       string `json:"value"` // revision/reason/detail
}

func (r sentRecord) key() string { return r.Destination + "\x00" + r.Source + "\x00" + r.Event }

// stateKey is a record's key in the notified bucket: a hash, as names
// need not be valid keys.
func (r sentRecord) stateKey() string {
	sum := sha256.Sum256([]byte(r.key()))
	return hex.EncodeToString(sum[:20])
}

// notifierConfig is a Notifier with its secret's values.
type notifierConfig struct {
	name    string
	spec    manifests.NotifierSpec
	address string
	token   string
}

type delivery struct {
	cfg notifierConfig
	n   Notice
}

func (ns *Notifiers) init() {
	ns.once.Do(func() {
		ns.configs = map[string]notifierConfig{}
		ns.sent = map[string]string{}
		ns.queue = make(chan Notice, 1024)
		if ns.Client == nil {
			ns.Client = &http.Client{Timeout: 10 * time.Second}
		}
		if ns.Log == nil {
			ns.Log = slog.New(slog.DiscardHandler)
		}
		if ns.RetryDelay == 0 {
			ns.RetryDelay = time.Second
		}
	})
}

// Set configures (or reconfigures) the Notifier name; secret holds its
// Secret's values (nil without one).
func (ns *Notifiers) Set(name string, spec manifests.NotifierSpec, secret map[string][]byte) {
	ns.init()
	c := notifierConfig{name: name, spec: spec, address: spec.Address, token: strings.TrimSpace(string(secret["token"]))}
	if a := strings.TrimSpace(string(secret["address"])); a != "" {
		c.address = a
	}
	switch {
	case c.address != "":
	case spec.Type == manifests.NotifierGitHub:
		c.address = "https://api.github.com"
	case spec.Type == manifests.NotifierNATS:
		c.address = DefaultNotifySubject
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.configs[name] = c
}

// Remove drops the Notifier name.
func (ns *Notifiers) Remove(name string) {
	ns.init()
	ns.mu.Lock()
	defer ns.mu.Unlock()
	delete(ns.configs, name)
}

// Names lists the configured Notifiers.
func (ns *Notifiers) Names() []string {
	ns.init()
	ns.mu.Lock()
	defer ns.mu.Unlock()
	var out []string
	for n := range ns.configs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Notify queues n, for Run to publish on NATS and send to every
// Notifier that wants it, unless it was sent there already.
func (ns *Notifiers) Notify(n Notice) {
	ns.init()
	select {
	case ns.queue <- n:
	default:
		ns.Log.Warn("notification queue full; dropping", "source", n.Source, "reason", n.Reason)
	}
}

// dispatch publishes n on NATS and delivers it to every Notifier that
// wants it, unless it was sent there already; what it sends is
// remembered first (in State too), so a delivery cut short by a restart
// is not made again.
func (ns *Notifiers) dispatch(ctx context.Context, n Notice) {
	value := n.Revision + "/" + n.Reason + "/" + n.Detail
	var fresh []sentRecord
	ns.mu.Lock()
	first := func(dest string) bool {
		r := sentRecord{Destination: dest, Source: n.Source, Event: n.Event, Value: value}
		if ns.sent[r.key()] == value {
			return false
		}
		ns.sent[r.key()] = value
		fresh = append(fresh, r)
		return true
	}
	publish := ns.Publish != nil && first("")
	var todo []delivery
	for _, name := range slices.Sorted(maps.Keys(ns.configs)) {
		c := ns.configs[name]
		if c.wants(n) && first(name) {
			todo = append(todo, delivery{cfg: c, n: n})
		}
	}
	ns.mu.Unlock()
	ns.remember(ctx, fresh)
	if publish {
		ns.publish(DefaultNotifySubject, n)
	}
	for _, d := range todo {
		ns.deliver(ctx, d)
	}
}

// remember writes what is about to be sent to State.
func (ns *Notifiers) remember(ctx context.Context, recs []sentRecord) {
	if ns.State == nil {
		return
	}
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			continue
		}
		if _, err := ns.State.Put(ctx, r.stateKey(), b); err != nil && ctx.Err() == nil {
			ns.Log.Warn("remember a notification sent", "source", r.Source, "event", r.Event, "err", err)
		}
	}
}

// load reads the de-duplication memory from State, retrying until it
// answers or ctx ends.
func (ns *Notifiers) load(ctx context.Context) {
	if ns.State == nil {
		return
	}
	for {
		entries, err := ns.State.List(ctx, ">")
		if err == nil {
			ns.mu.Lock()
			defer ns.mu.Unlock()
			for _, e := range entries {
				var r sentRecord
				if json.Unmarshal(e.Value, &r) == nil {
					ns.sent[r.key()] = r.Value
				}
			}
			ns.Log.Debug("notifications sent before read", "entries", len(entries))
			return
		}
		if ctx.Err() != nil {
			return
		}
		ns.Log.Warn("read the notifications sent before; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// wants reports whether the Notifier is configured for n's source and
// event class. Commit statuses are about revisions: forges get sync and
// rollout notices only.
func (c notifierConfig) wants(n Notice) bool {
	if len(c.spec.Sources) > 0 && !slices.Contains(c.spec.Sources, "*") && !slices.Contains(c.spec.Sources, n.Source) {
		return false
	}
	if len(c.spec.Events) > 0 && !slices.Contains(c.spec.Events, n.Event) {
		return false
	}
	if c.isForge() && (n.Event == manifests.NotifyDrift || n.Revision == "") {
		return false
	}
	return true
}

func (c notifierConfig) isForge() bool {
	switch c.spec.Type {
	case manifests.NotifierGitHub, manifests.NotifierGitLab, manifests.NotifierGitea:
		return true
	}
	return false
}

// Run reads what was sent before (State), then sends queued notices
// until ctx ends.
func (ns *Notifiers) Run(ctx context.Context) error {
	ns.init()
	ns.load(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-ns.queue:
			ns.dispatch(ctx, n)
		}
	}
}

func (ns *Notifiers) deliver(ctx context.Context, d delivery) {
	log := ns.Log.With("notifier", d.cfg.name, "source", d.n.Source, "reason", d.n.Reason)
	if d.cfg.spec.Type == manifests.NotifierNATS {
		ns.publish(d.cfg.address, d.n)
		return
	}
	req, err := d.cfg.request(d.n)
	if err != nil {
		log.Warn("cannot notify", "err", err)
		return
	}
	delay := ns.RetryDelay
	for attempt := 1; ; attempt++ {
		err := ns.send(ctx, req)
		if err == nil {
			log.Debug("notified")
			return
		}
		var perm permanentError
		if attempt == 4 || errors.As(err, &perm) || ctx.Err() != nil {
			log.Warn("notification not delivered", "attempts", attempt, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay *= 2
	}
}

func (ns *Notifiers) publish(prefix string, n Notice) {
	b, err := json.Marshal(n)
	if err != nil {
		return
	}
	if err := ns.Publish(prefix+"."+notifySubjectToken(n.Source), b); err != nil {
		ns.Log.Warn("publish notification", "source", n.Source, "err", err)
	}
}

// notifySubjectToken makes a source name one NATS subject token (source
// names are DNS labels, so this only guards against odd root names).
func notifySubjectToken(s string) string {
	return strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_").Replace(s)
}

// permanentError is a reply not worth retrying (4xx but 429).
type permanentError struct{ error }

// httpRequest is a request ready to be sent, possibly several times.
type httpRequest struct {
	url    string
	header http.Header
	body   []byte
}

func (ns *Notifiers) send(ctx context.Context, r httpRequest) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(r.body))
	if err != nil {
		return permanentError{err}
	}
	req.Header = r.header.Clone()
	resp, err := ns.Client.Do(req)
	if err != nil {
		// The URL may hold a token (Slack webhooks): never print it.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return fmt.Errorf("post: %w", uerr.Err)
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
		return permanentError{fmt.Errorf("HTTP %s", resp.Status)}
	}
	return fmt.Errorf("HTTP %s", resp.Status)
}

// request builds the HTTP request of one notice for one Notifier.
func (c notifierConfig) request(n Notice) (httpRequest, error) {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "capstan")
	var body any
	target := c.address
	switch c.spec.Type {
	case manifests.NotifierGeneric:
		body = n
		if c.token != "" {
			h.Set("Authorization", "Bearer "+c.token)
		}
	case manifests.NotifierSlack:
		body = slackPayload(n, c.spec.Channel)
	case manifests.NotifierGitHub, manifests.NotifierGitea:
		repo := c.spec.Repository
		if repo == "" {
			repo = repoPath(n.URL)
		}
		owner, name, ok := strings.Cut(repo, "/")
		if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			return httpRequest{}, fmt.Errorf("no owner/repository for source %s: set spec.repository", n.Source)
		}
		target = strings.TrimRight(c.address, "/") + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/statuses/" + url.PathEscape(n.Revision)
		state, desc := commitState(n)
		body = map[string]string{"state": state, "description": desc, "context": "capstan/" + n.Source}
		if c.spec.Type == manifests.NotifierGitHub {
			h.Set("Accept", "application/vnd.github+json")
			h.Set("Authorization", "Bearer "+c.token)
		} else {
			h.Set("Authorization", "token "+c.token)
		}
	case manifests.NotifierGitLab:
		project := c.spec.Repository
		if project == "" {
			project = repoPath(n.URL)
		}
		if project == "" {
			return httpRequest{}, fmt.Errorf("no project for source %s: set spec.repository", n.Source)
		}
		target = strings.TrimRight(c.address, "/") + "/projects/" + url.PathEscape(project) + "/statuses/" + url.PathEscape(n.Revision)
		state, desc := commitState(n)
		if state != "pending" && state != "success" {
			state = "failed" // GitLab's word for failure and error
		}
		body = map[string]string{"state": state, "description": desc, "name": "capstan/" + n.Source}
		h.Set("PRIVATE-TOKEN", c.token)
	default:
		return httpRequest{}, fmt.Errorf("unknown notifier type %q", c.spec.Type)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return httpRequest{}, err
	}
	return httpRequest{url: target, header: h, body: b}, nil
}

// commitState maps a notice to a commit status (GitHub's and Gitea's
// words) and a description of at most 140 characters.
func commitState(n Notice) (state, desc string) {
	switch n.Reason {
	case ResultApplied:
		state = "pending"
	case HealthReady:
		state = "success"
	case ResultFailed:
		state = "error"
	default: // Rejected, Degraded
		state = "failure"
	}
	desc = n.Message
	if r := []rune(desc); len(r) > 140 {
		desc = string(r[:139]) + "…"
	}
	return state, desc
}

// repoPath is the repository path of a git URL: owner/name for
// https://github.com/owner/name.git and git@github.com:owner/name.git;
// "" when there is none.
func repoPath(raw string) string {
	p := ""
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		p = u.Path
	} else if i := strings.Index(raw, ":"); i > 0 && !strings.Contains(raw[:i], "/") {
		p = raw[i+1:] // scp-like user@host:path
	}
	p = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
	return p
}

// slackPayload is an incoming-webhook message: Slack's format, which
// Mattermost, Rocket.Chat and Discord's /slack endpoints also take.
func slackPayload(n Notice, channel string) map[string]any {
	color := map[string]string{SeverityInfo: "good", SeverityWarning: "warning", SeverityError: "danger"}[n.Severity]
	fields := []map[string]any{
		{"title": "Source", "value": n.Source, "short": true},
		{"title": "Reason", "value": n.Reason, "short": true},
	}
	if n.Revision != "" {
		fields = append(fields, map[string]any{"title": "Revision", "value": short(n.Revision), "short": true})
	}
	att := map[string]any{"color": color, "fields": fields, "fallback": n.Message}
	if len(n.Errors) > 0 {
		att["text"] = strings.Join(n.Errors[:min(len(n.Errors), 10)], "\n")
	}
	p := map[string]any{"text": fmt.Sprintf("[%s] %s", n.Source, n.Message), "username": "Capstan", "attachments": []any{att}}
	if channel != "" {
		p["channel"] = channel
	}
	return p
}
