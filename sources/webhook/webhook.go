package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// DefaultMaxBodyBytes is the largest body accepted when
// Options.MaxBodyBytes is zero. GitHub caps its payloads at 25 MB, but a
// push listing a few thousand commits stays far below this.
const DefaultMaxBodyBytes = 5 << 20

// logEvery is how often a refused request is logged per remote address.
const logEvery = time.Minute

// shutdownTimeout bounds how long Run waits for requests in flight once its
// context ends.
const shutdownTimeout = 5 * time.Second

// ErrNoSecret is returned by New and ReadSecretFile for an empty secret: a
// receiver that accepted anything would let anyone trigger fetches.
var ErrNoSecret = errors.New("webhook: empty secret")

// Target is a source a push can trigger.
type Target struct {
	// Name is the source's name, for logs and the generic form's "source".
	Name string
	// URL is the repository the source follows. A push that names its
	// repository (clone_url, ssh_url and the like) triggers only the
	// targets of that repository, compared by RepositoryKey. Empty matches
	// any repository: a directory source.
	URL string
	// Branch is the branch the source follows. Empty means the
	// repository's default branch, as the payload names it.
	Branch string
	// Tag is the tag the source follows: only a push of that tag
	// triggers it, never a branch push.
	Tag string
	// SemVer marks a source following a semver range of tags: any tag
	// push triggers it (the source picks the highest tag in its range).
	SemVer bool
	// Pinned marks a source pinned to a commit: it never moves, so no push
	// triggers it.
	Pinned bool
	// Trigger makes the source fetch now; it must not block.
	Trigger func()
}

// TargetFor is the target of a source with spec, fetched again by
// trigger. The root source names its branch in spec.Branch, a declared
// one in spec.Ref.
func TargetFor(name string, spec manifests.SourceSpec, trigger func()) Target {
	t := Target{Name: name, URL: spec.URL, Branch: spec.Branch, Trigger: trigger}
	if r := spec.Ref; r != nil {
		if r.Branch != "" {
			t.Branch = r.Branch
		}
		t.Tag, t.SemVer, t.Pinned = r.Tag, r.SemVer != "", r.Commit != ""
	}
	return t
}

// Options configure a Receiver. Secret is required.
type Options struct {
	// Addr is the address Run listens on, host:port.
	Addr string
	// Secret is the shared secret: the HMAC key, or the token compared.
	Secret []byte
	// Targets are the sources pushes may trigger; SetTargets replaces them.
	Targets []Target
	// MaxBodyBytes caps a request body; zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives one line per delivery handled; nil discards.
	Logger *slog.Logger
}

// Receiver is the webhook HTTP server. Its methods are safe for concurrent
// use.
type Receiver struct {
	addr    string
	secret  []byte
	maxBody int64
	log     *slog.Logger
	mux     *http.ServeMux
	refused *limiter

	mu      sync.Mutex
	targets []target
}

// target is a Target with its repository key.
type target struct {
	Target
	key string
}

// New checks opts and returns a receiver; it does not listen yet.
func New(opts Options) (*Receiver, error) {
	if len(opts.Secret) == 0 {
		return nil, ErrNoSecret
	}
	r := &Receiver{
		addr:    opts.Addr,
		secret:  bytes.Clone(opts.Secret),
		maxBody: opts.MaxBodyBytes,
		log:     opts.Logger,
		refused: &limiter{every: logEvery, last: map[string]time.Time{}, now: time.Now},
	}
	if r.maxBody <= 0 {
		r.maxBody = DefaultMaxBodyBytes
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.SetTargets(opts.Targets)
	r.mux = http.NewServeMux()
	r.mux.Handle("/hooks/github", r.endpoint("github", github))
	r.mux.Handle("/hooks/gitlab", r.endpoint("gitlab", gitlab))
	r.mux.Handle("/hooks/gitea", r.endpoint("gitea", gitea))
	r.mux.Handle("/hooks/forgejo", r.endpoint("forgejo", gitea))
	r.mux.Handle("/hooks/generic", r.endpoint("generic", generic))
	return r, nil
}

// ReadSecretFile reads a secret from a file, without its trailing newline.
// An empty secret is ErrNoSecret. The error never holds the content.
func ReadSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("%w in %s", ErrNoSecret, path)
	}
	return b, nil
}

// SetTargets replaces the sources pushes may trigger.
// The manager of the sources calls it as they come and go.
func (r *Receiver) SetTargets(ts []Target) {
	out := make([]target, 0, len(ts))
	for _, t := range ts {
		k := ""
		if t.URL != "" {
			k = RepositoryKey(t.URL)
		}
		out = append(out, target{Target: t, key: k})
	}
	r.mu.Lock()
	r.targets = out
	r.mu.Unlock()
}

// Handler returns the receiver's HTTP handler, for tests or to mount it on
// another server.
func (r *Receiver) Handler() http.Handler { return r.mux }

// Run listens on Options.Addr and serves until ctx ends, then shuts the
// server down, waiting up to five seconds for requests in flight.
func (r *Receiver) Run(ctx context.Context) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", r.addr)
	if err != nil {
		return fmt.Errorf("webhook: listen: %w", err)
	}
	return r.Serve(ctx, l)
}

// Serve serves on l until ctx ends, as Run does; it closes l.
func (r *Receiver) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           r.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	r.log.Info("webhook receiver listening", "addr", l.Addr().String())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return fmt.Errorf("webhook: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("webhook: shut down: %w", err)
	}
	return nil
}

// delivery is what a forge's request says, once authenticated.
type delivery struct {
	event         string // as the forge names it
	ping          bool
	push          bool
	ref           string // refs/heads/<branch> or refs/tags/<tag>
	defaultBranch string // as the payload names it, "" if it does not
	source        string // generic form only: one target by name
	// urls are the repository's addresses the payload names (https, ssh,
	// web); none means any repository.
	urls []string
}

// forge authenticates a request and reads its delivery. A nil delivery with
// a nil error is impossible; errUnauthorized refuses the request.
type forge func(h http.Header, body, secret []byte) (*delivery, error)

var (
	errUnauthorized = errors.New("missing or invalid signature")
	errBadPayload   = errors.New("bad payload")
)

func (r *Receiver) endpoint(name string, parse forge) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			reply(w, http.StatusMethodNotAllowed, "only POST is accepted")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.maxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				reply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", r.maxBody))
				return
			}
			reply(w, http.StatusBadRequest, "cannot read body")
			return
		}
		d, err := parse(req.Header, body, r.secret)
		switch {
		case errors.Is(err, errUnauthorized):
			host := remoteHost(req.RemoteAddr)
			if r.refused.allow(host) {
				r.log.Warn("webhook refused: missing or invalid signature", "forge", name, "remote", host)
			}
			reply(w, http.StatusUnauthorized, "missing or invalid signature")
			return
		case err != nil:
			r.log.Debug("webhook bad payload", "forge", name, "remote", remoteHost(req.RemoteAddr), "err", err)
			reply(w, http.StatusBadRequest, err.Error())
			return
		}
		status, msg := r.handle(name, d)
		reply(w, status, msg)
	})
}

// handle triggers the targets a delivery concerns and says what it did.
func (r *Receiver) handle(forgeName string, d *delivery) (int, string) {
	log := r.log.With("forge", forgeName, "event", d.event)
	if d.ping {
		log.Info("webhook ping")
		return http.StatusOK, "pong"
	}
	if !d.push {
		log.Debug("webhook ignored: not a push")
		return http.StatusAccepted, fmt.Sprintf("ignored: event %q is not a push", d.event)
	}
	branch, isBranch := strings.CutPrefix(d.ref, "refs/heads/")
	tag, isTag := strings.CutPrefix(d.ref, "refs/tags/")
	if d.ref != "" && !isBranch && !isTag {
		log.Debug("webhook ignored: not a branch nor a tag", "ref", d.ref)
		return http.StatusAccepted, fmt.Sprintf("ignored: %s is not a branch nor a tag", d.ref)
	}
	keys := map[string]bool{}
	for _, u := range d.urls {
		if u != "" {
			keys[RepositoryKey(u)] = true
		}
	}
	r.mu.Lock()
	targets := r.targets
	r.mu.Unlock()
	var hit, watched []string
	for _, t := range targets {
		if d.source != "" && t.Name != d.source {
			continue
		}
		if t.key != "" && len(keys) > 0 && !keys[t.key] {
			continue // another repository
		}
		var follows bool
		switch {
		case t.Pinned:
			watched = append(watched, t.Name+" (pinned to a commit)")
			continue
		case t.Tag != "" || t.SemVer:
			what := "tag " + t.Tag
			if t.SemVer {
				what = "tags"
			}
			watched = append(watched, t.Name+" ("+what+")")
			follows = d.ref == "" || isTag && (t.SemVer || t.Tag == tag)
		default:
			want := t.Branch
			if want == "" {
				want = d.defaultBranch
			}
			if want != "" {
				watched = append(watched, t.Name+" ("+want+")")
			}
			follows = d.ref == "" || isBranch && (want == "" || want == branch)
		}
		if follows {
			t.Trigger()
			hit = append(hit, t.Name)
		}
	}
	if len(hit) == 0 {
		what := "push"
		if d.ref != "" {
			what += " to " + d.ref
		}
		if len(d.urls) > 0 {
			what += " of " + d.urls[0]
		}
		if d.source != "" {
			what += " for source " + d.source
		}
		log.Info("webhook ignored: no source follows the ref", "ref", d.ref, "repository", first(d.urls), "source", d.source)
		return http.StatusAccepted, fmt.Sprintf("ignored: no source follows it (%s; watching %s)", what, strings.Join(nonEmpty(watched), ", "))
	}
	log.Info("webhook triggered sources", "ref", d.ref, "repository", first(d.urls), "sources", strings.Join(hit, ","))
	return http.StatusOK, "triggered " + strings.Join(hit, ", ")
}

func first(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return ss[0]
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return []string{"nothing"}
	}
	return out
}

func reply(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

func remoteHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// repoURLs are the addresses of a repository in a push payload: GitHub's
// and Gitea's repository object, GitLab's project and repository.
type repoURLs struct {
	DefaultBranch string `json:"default_branch"`
	CloneURL      string `json:"clone_url"`
	SSHURL        string `json:"ssh_url"`
	GitURL        string `json:"git_url"`
	HTMLURL       string `json:"html_url"`
	URL           string `json:"url"`
	GitHTTPURL    string `json:"git_http_url"`
	GitSSHURL     string `json:"git_ssh_url"`
	WebURL        string `json:"web_url"`
	Homepage      string `json:"homepage"`
}

func (r repoURLs) list() []string {
	var out []string
	for _, u := range []string{r.CloneURL, r.SSHURL, r.GitHTTPURL, r.GitSSHURL, r.GitURL, r.HTMLURL, r.WebURL, r.Homepage, r.URL} {
		if u != "" {
			out = append(out, u)
		}
	}
	return out
}

// pushPayload is what the forges' push events share.
type pushPayload struct {
	Ref        string   `json:"ref"`
	Repository repoURLs `json:"repository"`
	Project    repoURLs `json:"project"` // GitLab
	// The generic form.
	Branch string `json:"branch"`
	Source string `json:"source"`
	URL    string `json:"url"`
}

// decodePush reads a push payload, JSON or form-encoded (payload=<json>).
func decodePush(h http.Header, body []byte) (*pushPayload, error) {
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("%w: form: %v", errBadPayload, err)
		}
		body = []byte(v.Get("payload"))
	}
	var p pushPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadPayload, err)
	}
	return &p, nil
}

func (p *pushPayload) delivery(event string) *delivery {
	def := p.Repository.DefaultBranch
	if def == "" {
		def = p.Project.DefaultBranch
	}
	return &delivery{event: event, push: true, ref: p.Ref, defaultBranch: def,
		urls: append(p.Repository.list(), p.Project.list()...)}
}

// validHMAC reports whether sigHex is the hex HMAC-SHA256 of body under
// secret, comparing in constant time.
func validHMAC(sigHex string, body, secret []byte) bool {
	sig, err := hex.DecodeString(strings.TrimSpace(sigHex))
	if err != nil || len(sig) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(sig, mac.Sum(nil))
}

// validToken compares a token with the secret in constant time, length
// included: both are hashed first.
func validToken(token string, secret []byte) bool {
	a, b := sha256.Sum256([]byte(token)), sha256.Sum256(secret)
	return token != "" && subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

func github(h http.Header, body, secret []byte) (*delivery, error) {
	sig, ok := strings.CutPrefix(h.Get("X-Hub-Signature-256"), "sha256=")
	if !ok || !validHMAC(sig, body, secret) {
		return nil, errUnauthorized
	}
	switch ev := h.Get("X-GitHub-Event"); ev {
	case "ping":
		return &delivery{event: ev, ping: true}, nil
	case "push":
		p, err := decodePush(h, body)
		if err != nil {
			return nil, err
		}
		return p.delivery(ev), nil
	default:
		return &delivery{event: ev}, nil
	}
}

func gitlab(h http.Header, body, secret []byte) (*delivery, error) {
	if !validToken(h.Get("X-Gitlab-Token"), secret) {
		return nil, errUnauthorized
	}
	ev := h.Get("X-Gitlab-Event")
	if ev != "Push Hook" {
		return &delivery{event: ev}, nil
	}
	p, err := decodePush(h, body)
	if err != nil {
		return nil, err
	}
	return p.delivery(ev), nil
}

func gitea(h http.Header, body, secret []byte) (*delivery, error) {
	sig := h.Get("X-Forgejo-Signature")
	if sig == "" {
		sig = h.Get("X-Gitea-Signature")
	}
	if !validHMAC(sig, body, secret) {
		return nil, errUnauthorized
	}
	ev := h.Get("X-Forgejo-Event")
	if ev == "" {
		ev = h.Get("X-Gitea-Event")
	}
	if ev == "" {
		ev = h.Get("X-Gogs-Event")
	}
	switch ev {
	case "ping":
		return &delivery{event: ev, ping: true}, nil
	case "push":
		p, err := decodePush(h, body)
		if err != nil {
			return nil, err
		}
		return p.delivery(ev), nil
	default:
		return &delivery{event: ev}, nil
	}
}

func generic(h http.Header, body, secret []byte) (*delivery, error) {
	ok := false
	if tok, found := strings.CutPrefix(h.Get("Authorization"), "Bearer "); found {
		ok = validToken(strings.TrimSpace(tok), secret)
	} else if sig, found := strings.CutPrefix(h.Get("X-Capstan-Signature"), "sha256="); found {
		ok = validHMAC(sig, body, secret)
	}
	if !ok {
		return nil, errUnauthorized
	}
	d := &delivery{event: "push", push: true}
	if len(bytes.TrimSpace(body)) == 0 {
		return d, nil
	}
	p, err := decodePush(h, body)
	if err != nil {
		return nil, err
	}
	d.ref, d.source, d.urls = p.Ref, p.Source, p.Repository.list()
	if p.URL != "" {
		d.urls = append([]string{p.URL}, d.urls...)
	}
	if d.ref == "" && p.Branch != "" {
		d.ref = "refs/heads/" + p.Branch
	}
	return d, nil
}

// maxLimiterKeys bounds the addresses remembered within one interval.
const maxLimiterKeys = 4096

// limiter allows one event per key per interval: refused requests are
// logged once a minute per remote address.
type limiter struct {
	mu    sync.Mutex
	every time.Duration
	last  map[string]time.Time
	now   func() time.Time
}

func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.every {
		return false
	}
	if len(l.last) >= 1024 {
		// Many addresses: forget those whose minute is over, so the map
		// stays bounded by the addresses of one minute.
		for k, t := range l.last {
			if now.Sub(t) >= l.every {
				delete(l.last, k)
			}
		}
		if len(l.last) >= maxLimiterKeys {
			return false // a flood from many addresses: stay quiet
		}
	}
	l.last[key] = now
	return true
}
