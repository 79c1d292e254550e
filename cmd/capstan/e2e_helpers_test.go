//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/node/podman"
	"github.com/capstan-io/capstan/node/runtimetest"
)

// The helpers of the end-to-end tests: a git repository driven with the git
// CLI, `capstan up` run in-process, the client commands run through Run,
// and the podman CLI for what happens behind Capstan's back. Every Podman
// pod a test makes Capstan create carries the test's unique node name, and
// the helpers touch only pods with that label.

const e2eImage = "localhost/capstan-demo:latest"

// requirePodman gates the test on Podman (runtimetest.RequirePodman: a
// skip with -short or without podman, a failure with
// CAPSTAN_REQUIRE_PODMAN=1), and needs git.
func requirePodman(t *testing.T) {
	t.Helper()
	runtimetest.RequirePodman(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is needed by the end-to-end tests: %v", err)
	}
}

var (
	imageOnce sync.Once
	imageErr  error
)

// ensureImage builds the demo image with scripts/build-image.sh when it is
// missing; the script does nothing when it exists.
func ensureImage(t *testing.T) {
	t.Helper()
	imageOnce.Do(func() {
		if exec.Command("podman", "image", "exists", e2eImage).Run() == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join("..", "..", "scripts", "build-image.sh"), e2eImage)
		if out, err := cmd.CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("build %s: %v\n%s", e2eImage, err, out)
		}
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// freePort returns a TCP port free on all interfaces, never the same twice
// in one test binary.
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 50 {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !ports[p] {
			ports[p] = true
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// checkFor waits for fn to return nil (internal/testwait).
func checkFor(t *testing.T, total time.Duration, what string, fn func() error) {
	t.Helper()
	testwait.For(t, total, what, fn)
}

// holdFor checks that fn keeps returning nil for d, a state that must not
// change: nothing restarted, nothing applied (testwait.Holds).
func holdFor(t *testing.T, d time.Duration, what string, fn func() error) {
	t.Helper()
	testwait.Holds(t, d, what, fn)
}

// gitRepo is a repository in a temp dir driven with the git CLI.
type gitRepo struct {
	t   *testing.T
	dir string
}

const (
	e2eAuthorName  = "Eve Tester"
	e2eAuthorEmail = "eve@example.com"
)

func newGitRepo(t *testing.T) *gitRepo {
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME="+e2eAuthorName, "GIT_AUTHOR_EMAIL="+e2eAuthorEmail,
		"GIT_COMMITTER_NAME="+e2eAuthorName, "GIT_COMMITTER_EMAIL="+e2eAuthorEmail,
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+r.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *gitRepo) write(name, content string) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *gitRepo) remove(name string) {
	r.t.Helper()
	if err := os.Remove(filepath.Join(r.dir, name)); err != nil {
		r.t.Fatal(err)
	}
}

// commit commits everything and returns the commit hash.
func (r *gitRepo) commit(msg string) string {
	r.t.Helper()
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// e2e is one test's world: a node name, a data dir, a NATS port, a git
// repository, and the `capstan up` currently running, if any.
type e2e struct {
	t       *testing.T // the running (sub)test, for failures
	root    *testing.T // the test, for cleanups
	node    string
	dataDir string
	listen  string
	url     string
	repo    *gitRepo
	up      *upRun
	runs    int
}

func newE2E(t *testing.T) *e2e {
	requirePodman(t)
	ensureImage(t)
	port := freePort(t)
	e := &e2e{
		t:       t,
		root:    t,
		node:    "e2e-" + randHex(4),
		dataDir: t.TempDir(),
		listen:  fmt.Sprintf("127.0.0.1:%d", port),
		url:     fmt.Sprintf("nats://127.0.0.1:%d", port),
		repo:    newGitRepo(t),
	}
	// Every command of the test (up, the CLI, extra nodes) finds the
	// admin config that up writes here.
	t.Setenv("CAPSTAN_CONFIG", filepath.Join(e.dataDir, "client.config"))
	t.Logf("node %s, data dir %s, bus %s", e.node, e.dataDir, e.url)
	// Registered first, so it runs last: after `up` has stopped.
	t.Cleanup(e.removePods)
	return e
}

// upRun is one in-process run of `capstan up`.
type upRun struct {
	cancel context.CancelFunc
	done   chan error
	out    *syncBuffer
	once   sync.Once
	err    error
}

// startUp runs `capstan up` on the test's data dir and waits until its node
// is Ready on the bus.
func (e *e2e) startUp() {
	e.t.Helper()
	e.startUpWith(e.repo.dir)
}

// startUpWith runs `capstan up` as startUp does, with a repository URL of
// its own and extra flags, and waits until the node is Ready.
func (e *e2e) startUpWith(repoURL string, extra ...string) {
	t := e.t
	t.Helper()
	if e.up != nil {
		t.Fatal("capstan up is already running")
	}
	e.runs++
	ctx, cancel := context.WithCancel(context.Background())
	u := &upRun{cancel: cancel, done: make(chan error, 1), out: &syncBuffer{}}
	args := append([]string{"up", "--repo", repoURL, "--data-dir", e.dataDir, "--listen", e.listen,
		"--node-name", e.node, "--poll-interval", "1h", "--log-level", "debug"}, extra...)
	go func() { u.done <- Run(ctx, args, u.out, u.out) }()
	e.up = u
	run := e.runs
	e.root.Cleanup(func() {
		if err := e.stopRun(u); err != nil {
			e.root.Errorf("capstan up (run %d) at cleanup: %v", run, err)
		}
		if e.root.Failed() || os.Getenv("CAPSTAN_E2E_LOGS") == "1" {
			e.root.Logf("output of capstan up (run %d):\n%s", run, u.out.String())
		}
	})
	begin := time.Now()
	checkFor(t, 90*time.Second, "node "+e.node+" Ready", func() error {
		select {
		case err := <-u.done:
			u.done <- err
			t.Fatalf("capstan up exited early: %v\n%s", err, u.out.String())
		default:
		}
		return e.nodeReady(e.node)
	})
	t.Logf("capstan up (run %d) ready in %s", run, time.Since(begin).Round(time.Millisecond))
}

// nodeConditions returns a registered node's conditions, as `capstan get
// nodes` shows them.
func (e *e2e) nodeConditions(name string) ([]condition, error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status struct {
				Conditions []condition `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := e.getJSON(&list, "get", "nodes", "-o", "json"); err != nil {
		return nil, err
	}
	for _, n := range list.Items {
		if n.Metadata.Name == name {
			return n.Status.Conditions, nil
		}
	}
	return nil, fmt.Errorf("node %s not registered", name)
}

// isNodeReady reports whether a registered node's Ready condition is True.
func (e *e2e) isNodeReady(name string) (bool, error) {
	conds, err := e.nodeConditions(name)
	if err != nil {
		return false, err
	}
	c := findCond(conds, "Ready")
	return c != nil && c.Status == "True", nil
}

// nodeReady is nil once the node is registered and Ready.
func (e *e2e) nodeReady(name string) error {
	conds, err := e.nodeConditions(name)
	if err != nil {
		return err
	}
	if c := findCond(conds, "Ready"); c == nil || c.Status != "True" {
		return fmt.Errorf("node %s not Ready: %+v", name, conds)
	}
	return nil
}

// stopUp stops the running `capstan up` and checks it returned no error.
func (e *e2e) stopUp() {
	e.t.Helper()
	if e.up == nil {
		return
	}
	begin := time.Now()
	if err := e.stopRun(e.up); err != nil {
		e.t.Fatalf("capstan up: %v\n%s", err, e.up.out.String())
	}
	e.t.Logf("capstan up stopped in %s", time.Since(begin).Round(time.Millisecond))
	e.up = nil
}

func (e *e2e) stopRun(u *upRun) error {
	u.once.Do(func() {
		u.cancel()
		select {
		case u.err = <-u.done:
		case <-time.After(60 * time.Second):
			u.err = errors.New("did not stop within 60s of its context's end")
		}
	})
	return u.err
}

// cli runs a client command against the test's bus.
func (e *e2e) cli(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return cliRun(ctx, append(args, "--server", e.url)...)
}

// cliRun runs a command of the CLI in this process.
func cliRun(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	err = Run(ctx, args, &out, &errb)
	return out.String(), errb.String(), err
}

// getJSON runs a client command and decodes its stdout.
func (e *e2e) getJSON(v any, args ...string) error {
	out, stderr, err := e.cli(args...)
	if err != nil {
		return fmt.Errorf("capstan %s: %w (stderr %q)", strings.Join(args, " "), err, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("capstan %s: decode %q: %w", strings.Join(args, " "), out, err)
	}
	return nil
}

// podman runs the podman CLI with the node's containers.conf (runc, the
// host's ulimits) once `up` has written it.
func (e *e2e) podman(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", args...)
	if conf := podman.ConfigPath(filepath.Join(e.dataDir, "podman")); fileExists(conf) {
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func (e *e2e) mustPodman(args ...string) string {
	e.t.Helper()
	out, err := e.podman(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// removePods removes every Podman pod labelled with the test's node name.
func (e *e2e) removePods() {
	out, err := e.podman("pod", "ps", "-q", "--filter", "label=capstan.node="+e.node)
	if err != nil {
		e.t.Errorf("cleanup: %v", err)
		return
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return
	}
	if _, err := e.podman(append([]string{"pod", "rm", "-f", "-t", "0"}, ids...)...); err != nil {
		e.t.Errorf("cleanup: %v", err)
	}
}

// ctr is one Podman container Capstan made on the test's node.
type ctr struct {
	ID        string
	State     string
	Pod       string // the runtime pod's ID
	CPod      string // capstan.pod: <ns>/<name>
	Container string // capstan.container
	Attempt   string // capstan.attempt
	App       string // the app label
}

// containers lists the non-infra containers labelled with the node.
func (e *e2e) containers() ([]ctr, error) {
	out, err := e.podman("ps", "-a", "--filter", "label=capstan.node="+e.node, "--format", "json")
	if err != nil {
		return nil, err
	}
	var raw []struct {
		ID      string            `json:"Id"`
		State   string            `json:"State"`
		IsInfra bool              `json:"IsInfra"`
		Pod     string            `json:"Pod"`
		Labels  map[string]string `json:"Labels"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return nil, fmt.Errorf("decode podman ps: %w: %q", err, out)
	}
	var cs []ctr
	for _, r := range raw {
		if r.IsInfra || r.Labels["capstan.container"] == "" {
			continue
		}
		if r.Labels["capstan.node"] != e.node {
			return nil, fmt.Errorf("podman label filter returned a container of node %q", r.Labels["capstan.node"])
		}
		cs = append(cs, ctr{ID: r.ID, State: r.State, Pod: r.Pod, CPod: r.Labels["capstan.pod"],
			Container: r.Labels["capstan.container"], Attempt: r.Labels["capstan.attempt"], App: r.Labels["app"]})
	}
	return cs, nil
}

// runningByApp returns the running containers of an app, by ID.
func runningByApp(cs []ctr, app string) map[string]ctr {
	m := map[string]ctr{}
	for _, c := range cs {
		if c.App == app && c.State == "running" {
			m[c.ID] = c
		}
	}
	return m
}

// httpGet returns the body of a GET, or an error unless the status is 200.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// The JSON shapes the client commands print, spelled out here so that the
// tests check the wire format rather than reuse the Go types.

type condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func findCond(cs []condition, typ string) *condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

type podJSON struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase             string      `json:"phase"`
		Conditions        []condition `json:"conditions"`
		ContainerStatuses []struct {
			Name         string `json:"name"`
			Ready        bool   `json:"ready"`
			RestartCount int    `json:"restartCount"`
			ContainerID  string `json:"containerID"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

func (p podJSON) ready() bool {
	c := findCond(p.Status.Conditions, "Ready")
	return p.Status.Phase == "Running" && c != nil && c.Status == "True"
}

func (p podJSON) restarts() int {
	n := 0
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

// pods returns `get pods -o json`, checking its shape, filtered by app.
func (e *e2e) pods(app string) ([]podJSON, error) {
	out, stderr, err := e.cli("get", "pods", "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("get pods: %w (%s)", err, stderr)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &top); err != nil {
		return nil, fmt.Errorf("get pods -o json: %w: %q", err, out)
	}
	raw, ok := top["items"]
	if !ok {
		return nil, fmt.Errorf("get pods -o json has no items: %q", out)
	}
	var items []podJSON
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("get pods -o json items: %w", err)
	}
	var res []podJSON
	for _, p := range items {
		if p.Metadata.Labels["app"] == app {
			res = append(res, p)
		}
	}
	return res, nil
}

// readyPods waits until exactly n pods of app are Running and Ready, and
// returns them.
func (e *e2e) readyPods(app string, n int, total time.Duration) []podJSON {
	e.t.Helper()
	var got []podJSON
	checkFor(e.t, total, fmt.Sprintf("%d ready %s pod(s)", n, app), func() error {
		ps, err := e.pods(app)
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range ps {
			if p.ready() {
				ready++
			}
		}
		if len(ps) != n || ready != n {
			return fmt.Errorf("%d pod(s), %d ready: %+v", len(ps), ready, ps)
		}
		got = ps
		return nil
	})
	return got
}

type auditJSON struct {
	Action    string   `json:"action"`
	Source    string   `json:"source"`
	Revision  string   `json:"revision"`
	Author    string   `json:"author"`
	Committer string   `json:"committer"`
	Message   string   `json:"message"`
	Result    string   `json:"result"`
	Errors    []string `json:"errors"`
	Changes   []struct {
		Action    string   `json:"action"`
		Kind      string   `json:"kind"`
		Namespace string   `json:"namespace"`
		Name      string   `json:"name"`
		Fields    []string `json:"fields"`
	} `json:"changes"`
}

func (a auditJSON) change(action, kind, name string) (fields []string, ok bool) {
	for _, c := range a.Changes {
		if c.Action == action && c.Kind == kind && c.Name == name {
			return c.Fields, true
		}
	}
	return nil, false
}

// auditRecord waits for the history record of a revision.
func (e *e2e) auditRecord(rev string, total time.Duration) auditJSON {
	e.t.Helper()
	var rec auditJSON
	checkFor(e.t, total, "history record of "+rev, func() error {
		var h struct {
			Items []auditJSON `json:"items"`
		}
		if err := e.getJSON(&h, "history", "-o", "json"); err != nil {
			return err
		}
		var found []auditJSON
		for _, r := range h.Items {
			if r.Revision == rev && (r.Action == "" || r.Action == "sync") { // not drift or write-back records
				found = append(found, r)
			}
		}
		switch len(found) {
		case 0:
			return fmt.Errorf("no record among %d", len(h.Items))
		case 1:
			rec = found[0]
			return nil
		}
		return fmt.Errorf("%d records of one revision: %+v", len(found), found)
	})
	return rec
}

type sourceJSON struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Verify *struct {
			Mode string `json:"mode"`
		} `json:"verify"`
	} `json:"spec"`
	Status struct {
		AppliedRevision   string      `json:"appliedRevision"`
		AttemptedRevision string      `json:"attemptedRevision"`
		LastError         string      `json:"lastError"`
		Conditions        []condition `json:"conditions"`
	} `json:"status"`
}

func (e *e2e) source() (sourceJSON, error) {
	var list struct {
		Items []sourceJSON `json:"items"`
	}
	if err := e.getJSON(&list, "get", "sources", "-o", "json"); err != nil {
		return sourceJSON{}, err
	}
	if len(list.Items) != 1 {
		return sourceJSON{}, fmt.Errorf("want one source, got %+v", list.Items)
	}
	return list.Items[0], nil
}

// deploymentRow returns the cells of a deployment's row in the table.
func (e *e2e) deploymentRow(name string) ([]string, error) {
	out, stderr, err := e.cli("get", "deployments")
	if err != nil {
		return nil, fmt.Errorf("get deployments: %w (%s)", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "NAME") {
		return nil, fmt.Errorf("get deployments: no header: %q", out)
	}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return f, nil
		}
	}
	return nil, fmt.Errorf("no row for %s in %q", name, out)
}

// joinToken asks the running control plane for a node's join token.
func (e *e2e) joinToken() string {
	e.t.Helper()
	out, stderr, err := e.cli("token", "create", "--ttl", "10m")
	if err != nil {
		e.t.Fatalf("capstan token create: %v: %s", err, stderr)
	}
	return strings.TrimSpace(out)
}

// adminBus is natsbus.Options with the admin identity of the test's
// client config (CAPSTAN_CONFIG), for a test reading or writing the bus
// directly. It binds to the buckets: no client may create or change them.
func adminBus(t *testing.T, opts natsbus.Options) natsbus.Options {
	t.Helper()
	opts.Bind = true
	cfg, err := natsauth.LoadClientConfig(os.Getenv("CAPSTAN_CONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	nopts, err := cfg.Options()
	if err != nil {
		t.Fatal(err)
	}
	opts.NATSOptions = append(opts.NATSOptions, nopts...)
	return opts
}
