package gitops

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
)

// forge is a local HTTP server standing in for a webhook receiver or a
// forge's API; it records every request and answers with the next status
// of fail (then 201).
type forge struct {
	mu   sync.Mutex
	reqs []recorded
	fail []int
	srv  *httptest.Server
}

type recorded struct {
	Method, Path string
	Header       http.Header
	Body         map[string]any
}

func newForge(t *testing.T) *forge {
	f := &forge{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("request body is not JSON: %q", b)
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: body})
		code := http.StatusCreated
		if len(f.fail) > 0 {
			code, f.fail = f.fail[0], f.fail[1:]
		}
		f.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *forge) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// waitRequests waits until the forge got n requests, and checks that no
// more come for a short while.
func (f *forge) waitRequests(t *testing.T, n int) []recorded {
	t.Helper()
	testwait.For(t, 5*time.Second, fmt.Sprintf("%d requests", n), func() error {
		if got := len(f.requests()); got < n {
			return fmt.Errorf("%d requests", got)
		}
		return nil
	})
	// Nothing more may come: a duplicate would arrive within the window.
	testwait.Holds(t, 100*time.Millisecond, fmt.Sprintf("no more than %d requests", n), func() error {
		if got := f.requests(); len(got) != n {
			return fmt.Errorf("%d requests, want %d: %+v", len(got), n, got)
		}
		return nil
	})
	return f.requests()
}

func runNotifiers(t *testing.T, ns *Notifiers) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ns.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

const sha = "0123456789abcdef0123456789abcdef01234567"

func TestNotifierRequests(t *testing.T) {
	rejected := manifests.AuditRecord{Source: "apps", Revision: sha, Result: ResultRejected, Errors: []string{"web.yaml:3:1: spec.replicas: want an integer"}}
	for _, tc := range []struct {
		name   string
		spec   manifests.NotifierSpec
		secret map[string]string
		want   recorded
	}{
		{
			name:   "github",
			spec:   manifests.NotifierSpec{Type: "github", Repository: "acme/deploy"},
			secret: map[string]string{"token": "ghp_secret\n"},
			want: recorded{Method: "POST", Path: "/repos/acme/deploy/statuses/" + sha,
				Header: http.Header{"Authorization": {"Bearer ghp_secret"}, "Accept": {"application/vnd.github+json"}, "Content-Type": {"application/json"}},
				Body:   map[string]any{"state": "failure", "context": "capstan/apps", "description": "revision 0123456789ab rejected: web.yaml:3:1: spec.replicas: want an integer"}},
		},
		{
			name:   "gitea",
			spec:   manifests.NotifierSpec{Type: "gitea", Repository: "acme/deploy"},
			secret: map[string]string{"token": "gt"},
			want: recorded{Method: "POST", Path: "/api/v1/repos/acme/deploy/statuses/" + sha,
				Header: http.Header{"Authorization": {"token gt"}, "Content-Type": {"application/json"}},
				Body:   map[string]any{"state": "failure", "context": "capstan/apps", "description": "revision 0123456789ab rejected: web.yaml:3:1: spec.replicas: want an integer"}},
		},
		{
			name:   "gitlab, project from the source URL",
			spec:   manifests.NotifierSpec{Type: "gitlab"},
			secret: map[string]string{"token": "glpat"},
			want: recorded{Method: "POST", Path: "/api/v4/projects/group%2Fsub%2Fdeploy/statuses/" + sha,
				Header: http.Header{"Private-Token": {"glpat"}, "Content-Type": {"application/json"}},
				Body:   map[string]any{"state": "failed", "name": "capstan/apps", "description": "revision 0123456789ab rejected: web.yaml:3:1: spec.replicas: want an integer"}},
		},
		{
			name:   "generic, with a token",
			spec:   manifests.NotifierSpec{Type: "generic"},
			secret: map[string]string{"token": "tok"},
			want: recorded{Method: "POST", Path: "/hook",
				Header: http.Header{"Authorization": {"Bearer tok"}, "Content-Type": {"application/json"}},
				Body: map[string]any{"source": "apps", "event": "sync", "reason": "Rejected", "severity": "error", "revision": sha,
					"message": "revision 0123456789ab rejected: web.yaml:3:1: spec.replicas: want an integer", "url": "https://gitlab.example/group/sub/deploy.git",
					"errors": []any{"web.yaml:3:1: spec.replicas: want an integer"}}},
		},
		{
			name:   "slack, address in the secret",
			spec:   manifests.NotifierSpec{Type: "slack", Channel: "#deploys"},
			secret: map[string]string{"address": "SELF/services/T0/B0/xyz"},
			want: recorded{Method: "POST", Path: "/services/T0/B0/xyz",
				Header: http.Header{"Content-Type": {"application/json"}},
				Body: map[string]any{"text": "[apps] revision 0123456789ab rejected: web.yaml:3:1: spec.replicas: want an integer", "channel": "#deploys", "username": "Capstan",
					"attachments": []any{map[string]any{"color": "danger", "fallback": "revision 0123456789ab rejected: web.yaml:3:1: spec.replicas: want an integer",
						"text": "web.yaml:3:1: spec.replicas: want an integer",
						"fields": []any{
							map[string]any{"title": "Source", "value": "apps", "short": true},
							map[string]any{"title": "Reason", "value": "Rejected", "short": true},
							map[string]any{"title": "Revision", "value": "0123456789ab", "short": true},
						}}}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newForge(t)
			ns := &Notifiers{RetryDelay: 10 * time.Millisecond}
			runNotifiers(t, ns)
			spec := tc.spec
			switch spec.Type {
			case "gitlab":
				spec.Address = f.srv.URL + "/api/v4"
			case "gitea":
				spec.Address = f.srv.URL + "/api/v1"
			case "github":
				spec.Address = f.srv.URL
			case "generic":
				spec.Address = f.srv.URL + "/hook"
			}
			secret := map[string][]byte{}
			for k, v := range tc.secret {
				if k == "address" {
					v = f.srv.URL + v[len("SELF"):]
				}
				secret[k] = []byte(v)
			}
			ns.Set("n", spec, secret)
			n, ok := NoticeFromAudit(rejected)
			if !ok {
				t.Fatal("no notice for a rejected revision")
			}
			n.URL = "https://gitlab.example/group/sub/deploy.git"
			ns.Notify(n)
			ns.Notify(n) // the same failure again: one message
			got := f.waitRequests(t, 1)[0]
			delete(got.Body, "time")
			if got.Method != tc.want.Method || got.Path != tc.want.Path || !reflect.DeepEqual(got.Body, tc.want.Body) {
				t.Fatalf("request\n%s %s %v\nwant\n%s %s %v", got.Method, got.Path, got.Body, tc.want.Method, tc.want.Path, tc.want.Body)
			}
			for k, v := range tc.want.Header {
				if !reflect.DeepEqual(got.Header[k], v) {
					t.Errorf("header %s = %q, want %q", k, got.Header[k], v)
				}
			}
		})
	}
}

// TestNotifierDeduplication: one message per source, event, revision,
// reason and detail; a change sends again; sources and events filter.
func TestNotifierDeduplication(t *testing.T) {
	f := newForge(t)
	var mu sync.Mutex
	var published []string
	ns := &Notifiers{RetryDelay: 10 * time.Millisecond, Publish: func(subject string, data []byte) error {
		var n Notice
		if err := json.Unmarshal(data, &n); err != nil {
			return err
		}
		mu.Lock()
		published = append(published, subject+" "+n.Reason)
		mu.Unlock()
		return nil
	}}
	runNotifiers(t, ns)
	ns.Set("hook", manifests.NotifierSpec{Type: "generic", Address: f.srv.URL, Sources: []string{"apps"}, Events: []string{"sync", "drift"}}, nil)
	notice := func(src, event, reason, rev, detail string) Notice {
		return Notice{Source: src, Event: event, Reason: reason, Revision: rev, Detail: detail, Message: reason}
	}
	ns.Notify(notice("apps", "sync", "Rejected", "r1", "e1"))
	ns.Notify(notice("apps", "sync", "Rejected", "r1", "e1")) // duplicate
	ns.Notify(notice("apps", "sync", "Rejected", "r2", "e1")) // another revision
	ns.Notify(notice("apps", "sync", "Applied", "r3", ""))    // another reason
	ns.Notify(notice("apps", "sync", "Applied", "r3", ""))    // duplicate
	ns.Notify(notice("apps", "drift", "DriftCorrected", "r3", "d1"))
	ns.Notify(notice("apps", "drift", "DriftCorrected", "r3", "d1")) // duplicate
	ns.Notify(notice("apps", "drift", "DriftCorrected", "r3", "d2")) // another drift
	ns.Notify(notice("apps", "rollout", "Ready", "r3", ""))          // event not wanted
	ns.Notify(notice("infra", "sync", "Applied", "r9", ""))          // source not wanted
	got := f.waitRequests(t, 5)
	var reasons []string
	for _, r := range got {
		reasons = append(reasons, fmt.Sprint(r.Body["revision"], " ", r.Body["reason"]))
	}
	want := []string{"r1 Rejected", "r2 Rejected", "r3 Applied", "r3 DriftCorrected", "r3 DriftCorrected"}
	if !reflect.DeepEqual(reasons, want) {
		t.Fatalf("sent %v, want %v", reasons, want)
	}
	mu.Lock()
	defer mu.Unlock()
	wantPub := []string{"capstan.notify.apps Rejected", "capstan.notify.apps Rejected", "capstan.notify.apps Applied",
		"capstan.notify.apps DriftCorrected", "capstan.notify.apps DriftCorrected", "capstan.notify.apps Ready", "capstan.notify.infra Applied"}
	if !reflect.DeepEqual(published, wantPub) {
		t.Fatalf("published %v, want %v", published, wantPub)
	}
}

// TestNotifierRetries: a 5xx is retried, a 4xx is not.
func TestNotifierRetries(t *testing.T) {
	f := newForge(t)
	f.fail = []int{500, 502}
	ns := &Notifiers{RetryDelay: 10 * time.Millisecond}
	runNotifiers(t, ns)
	ns.Set("hook", manifests.NotifierSpec{Type: "generic", Address: f.srv.URL}, nil)
	ns.Notify(Notice{Source: "a", Event: "sync", Reason: "Applied", Revision: "r1"})
	f.waitRequests(t, 3)

	g := newForge(t)
	g.fail = []int{404}
	ns.Set("hook", manifests.NotifierSpec{Type: "generic", Address: g.srv.URL}, nil)
	ns.Notify(Notice{Source: "a", Event: "sync", Reason: "Applied", Revision: "r2"})
	g.waitRequests(t, 1)
}

func TestCommitStateAndRepoPath(t *testing.T) {
	for reason, want := range map[string]string{ResultApplied: "pending", HealthReady: "success", HealthDegraded: "failure", ResultRejected: "failure", ResultFailed: "error"} {
		if got, _ := commitState(Notice{Reason: reason}); got != want {
			t.Errorf("%s: %s, want %s", reason, got, want)
		}
	}
	for in, want := range map[string]string{
		"https://github.com/acme/deploy.git": "acme/deploy",
		"git@github.com:acme/deploy.git":     "acme/deploy",
		"ssh://git@gitlab.example/g/s/p":     "g/s/p",
		"/srv/git/deploy":                    "",
	} {
		if got := repoPath(in); got != want {
			t.Errorf("repoPath(%q) = %q, want %q", in, got, want)
		}
	}
}
