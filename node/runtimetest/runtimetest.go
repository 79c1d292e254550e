package runtimetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/node"
)

// DefaultImage is the busybox image the suite runs unless told otherwise.
const DefaultImage = "localhost/capstan-demo:latest"

// LabelRun is the label key that marks every pod of one run of the suite.
const LabelRun = "capstan.test/run"

// Option changes how Run exercises a runtime.
type Option func(*config)

type config struct {
	image   string
	network bool
	timeout time.Duration
}

// WithImage runs the suite's containers from ref, a busybox image with sh,
// echo, sleep and httpd.
func WithImage(ref string) Option { return func(c *config) { c.image = ref } }

// WithoutNetwork skips the check that a published port answers HTTP on
// 127.0.0.1, for runtimes that run no real process (node/fake).
func WithoutNetwork() Option { return func(c *config) { c.network = false } }

// WithTimeout sets how long the suite waits for any one eventual condition
// (default 30s).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// Run checks the behaviour every node.Runtime must have. newRuntime is
// called once per subtest and may return the same runtime every time.
func Run(t *testing.T, newRuntime func(t *testing.T) node.Runtime, opts ...Option) {
	cfg := config{image: DefaultImage, network: true, timeout: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	s := &suite{cfg: cfg, run: randomHex(6), newRuntime: newRuntime}
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"Info", s.testInfo},
		{"PodLifecycle", s.testPodLifecycle},
		{"ExitCodeConfigAndLogs", s.testExitCodeConfigAndLogs},
		{"FollowLogs", s.testFollowLogs},
		{"LabelFilter", s.testLabelFilter},
		{"Missing", s.testMissing},
		{"NameConflict", s.testNameConflict},
		{"Images", s.testImages},
		{"Resources", s.testResources},
		{"PublishedPort", s.testPublishedPort},
		{"Mounts", s.testMounts},
		{"HostAliases", s.testHostAliases},
		{"Exec", s.testExec},
		{"Stats", s.testStats},
		{"PodIP", s.testPodIP},
		{"OOMKilled", s.testOOMKilled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, s.harness(t, tc.name))
		})
	}
}

type suite struct {
	cfg        config
	run        string
	newRuntime func(t *testing.T) node.Runtime
}

// harness is one subtest's runtime, labels and helpers.
type harness struct {
	t      *testing.T
	s      *suite
	rt     node.Runtime
	ctx    context.Context
	labels map[string]string // the run label plus a per-subtest label
	prefix string            // a unique name prefix for pods and containers
}

func (s *suite) harness(t *testing.T, name string) *harness {
	rt := s.newRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*s.cfg.timeout)
	h := &harness{
		t:      t,
		s:      s,
		rt:     rt,
		ctx:    ctx,
		labels: map[string]string{LabelRun: s.run, "capstan.test/case": strings.ToLower(name)},
		prefix: "ct-" + s.run + "-" + strings.ToLower(name),
	}
	t.Cleanup(func() {
		defer cancel()
		cctx, ccancel := context.WithTimeout(context.Background(), s.cfg.timeout)
		defer ccancel()
		pods, err := rt.ListPods(cctx, h.labels)
		if err != nil {
			t.Errorf("cleanup: list pods: %v", err)
			return
		}
		for _, p := range pods {
			if err := rt.RemovePod(cctx, p.ID, 0); err != nil {
				t.Errorf("cleanup: remove pod %s: %v", p.Name, err)
			}
		}
	})
	return h
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// with returns the harness labels plus extra ones.
func (h *harness) with(extra map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range h.labels {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func (h *harness) must(err error, what string) {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("%s: %v", what, err)
	}
}

func (h *harness) createPod(name string, ports ...node.PortMapping) string {
	h.t.Helper()
	id, err := h.rt.CreatePod(h.ctx, node.PodConfig{
		Name:     h.prefix + "-" + name,
		Hostname: name,
		Labels:   h.with(map[string]string{"capstan.test/pod": name}),
		Ports:    ports,
	})
	h.must(err, "create pod "+name)
	if id == "" {
		h.t.Fatalf("create pod %s: empty ID", name)
	}
	return id
}

// shell creates a container in podID that runs script with sh -c.
func (h *harness) shell(podID, name, script string, mod func(*node.ContainerConfig)) string {
	h.t.Helper()
	cfg := node.ContainerConfig{
		Name:    h.prefix + "-" + name,
		Image:   h.s.cfg.image,
		Command: []string{"sh", "-c"},
		Args:    []string{script},
		Labels:  map[string]string{"capstan.test/container": name},
	}
	if mod != nil {
		mod(&cfg)
	}
	id, err := h.rt.CreateContainer(h.ctx, podID, cfg)
	h.must(err, "create container "+name)
	if id == "" {
		h.t.Fatalf("create container %s: empty ID", name)
	}
	return id
}

// eventually polls cond until it returns true (testwait.For), failing the
// test with the last description it gave when the suite's timeout passes.
func (h *harness) eventually(what string, cond func() (bool, string)) {
	h.t.Helper()
	testwait.For(h.t, h.s.cfg.timeout, what, func() error {
		ok, last := cond()
		if ok {
			return nil
		}
		if err := h.ctx.Err(); err != nil {
			h.t.Fatalf("waiting for %s: %v; last: %s", what, err, last)
		}
		return errors.New("last: " + last)
	})
}

// container finds a container by ID among the pods with the harness labels.
func (h *harness) container(id string) (node.PodInfo, node.ContainerInfo, bool) {
	h.t.Helper()
	pods, err := h.rt.ListPods(h.ctx, h.labels)
	h.must(err, "list pods")
	for _, p := range pods {
		for _, c := range p.Containers {
			if c.ID == id {
				return p, c, true
			}
		}
	}
	return node.PodInfo{}, node.ContainerInfo{}, false
}

// waitState waits until container id is in state and returns it.
func (h *harness) waitState(id, state string) node.ContainerInfo {
	h.t.Helper()
	var got node.ContainerInfo
	h.eventually("container "+state, func() (bool, string) {
		_, c, ok := h.container(id)
		if !ok {
			return false, "container not listed"
		}
		got = c
		return c.State == state, fmt.Sprintf("%+v", c)
	})
	return got
}

func (h *harness) logs(id string, tail int) string {
	h.t.Helper()
	var b bytes.Buffer
	h.must(h.rt.ContainerLogs(h.ctx, id, false, tail, &b), "logs")
	return b.String()
}

func (s *suite) testInfo(t *testing.T, h *harness) {
	info, err := h.rt.Info(h.ctx)
	h.must(err, "info")
	if info.Name == "" || info.Version == "" {
		t.Errorf("info names no engine or version: %+v", info)
	}
	if info.CPUs <= 0 || info.MemoryBytes <= 0 {
		t.Errorf("info reports no capacity: %+v", info)
	}
	if info.OS == "" || info.Arch == "" {
		t.Errorf("info reports no platform: %+v", info)
	}
}

func (s *suite) testPodLifecycle(t *testing.T, h *harness) {
	podID := h.createPod("life")
	cid := h.shell(podID, "sleeper", "exec sleep 3600", func(c *node.ContainerConfig) {
		c.Labels["capstan.test/extra"] = "yes"
	})

	c := h.waitState(cid, node.StateCreated)
	if !c.StartedAt.IsZero() {
		t.Errorf("created container has StartedAt %v", c.StartedAt)
	}

	h.must(h.rt.StartContainer(h.ctx, cid), "start")
	c = h.waitState(cid, node.StateRunning)
	p, _, _ := h.container(cid)
	if p.ID != podID || p.Name != h.prefix+"-life" {
		t.Errorf("pod listed as %s %q, want %s %q", p.ID, p.Name, podID, h.prefix+"-life")
	}
	for k, v := range h.with(map[string]string{"capstan.test/pod": "life"}) {
		if p.Labels[k] != v {
			t.Errorf("pod label %s = %q, want %q (labels %v)", k, p.Labels[k], v, p.Labels)
		}
	}
	if p.Created.IsZero() {
		t.Error("pod has no creation time")
	}
	if len(p.Containers) != 1 {
		t.Errorf("pod lists %d containers, want 1 (infra containers must not be listed): %+v", len(p.Containers), p.Containers)
	}
	if c.Name != h.prefix+"-sleeper" {
		t.Errorf("container name %q, want %q", c.Name, h.prefix+"-sleeper")
	}
	if c.Image == "" {
		t.Error("container lists no image")
	}
	if c.Labels["capstan.test/extra"] != "yes" || c.Labels["capstan.test/container"] != "sleeper" {
		t.Errorf("container labels %v lack the configured ones", c.Labels)
	}
	if c.StartedAt.IsZero() || c.Created.IsZero() {
		t.Errorf("running container lacks times: %+v", c)
	}
	if !c.FinishedAt.IsZero() && c.FinishedAt.After(c.StartedAt) {
		t.Errorf("running container has FinishedAt %v after StartedAt %v", c.FinishedAt, c.StartedAt)
	}

	// Starting a running container again is harmless.
	h.must(h.rt.StartContainer(h.ctx, cid), "start again")

	h.must(h.rt.StopContainer(h.ctx, cid, time.Second), "stop")
	c = h.waitState(cid, node.StateExited)
	if c.FinishedAt.IsZero() {
		t.Errorf("stopped container has no FinishedAt: %+v", c)
	}

	h.must(h.rt.RemoveContainer(h.ctx, cid), "remove container")
	if _, _, ok := h.container(cid); ok {
		t.Error("removed container still listed")
	}
	h.must(h.rt.RemoveContainer(h.ctx, cid), "remove removed container")

	h.must(h.rt.RemovePod(h.ctx, podID, time.Second), "remove pod")
	pods, err := h.rt.ListPods(h.ctx, h.labels)
	h.must(err, "list pods")
	if len(pods) != 0 {
		t.Errorf("removed pod still listed: %+v", pods)
	}
	h.must(h.rt.RemovePod(h.ctx, podID, time.Second), "remove removed pod")
}

func (s *suite) testExitCodeConfigAndLogs(t *testing.T, h *harness) {
	podID := h.createPod("exit")
	cid := h.shell(podID, "exiter", "echo hello $GREETING; pwd; echo oops >&2; exit 3", func(c *node.ContainerConfig) {
		c.Env = map[string]string{"GREETING": "world"}
		c.WorkingDir = "/tmp"
	})
	h.must(h.rt.StartContainer(h.ctx, cid), "start")
	c := h.waitState(cid, node.StateExited)
	if c.ExitCode != 3 {
		t.Errorf("exit code %d, want 3", c.ExitCode)
	}
	if c.OOMKilled {
		t.Error("container reported OOM-killed")
	}
	if c.StartedAt.IsZero() || c.FinishedAt.IsZero() || c.FinishedAt.Before(c.StartedAt) {
		t.Errorf("exited container times wrong: started %v finished %v", c.StartedAt, c.FinishedAt)
	}

	var all string
	h.eventually("all logs", func() (bool, string) {
		all = h.logs(cid, -1)
		return strings.Count(all, "\n") >= 3, all
	})
	for _, want := range []string{"hello world\n", "/tmp\n", "oops\n"} {
		if !strings.Contains(all, want) {
			t.Errorf("logs %q lack %q", all, want)
		}
	}
	if got := h.logs(cid, 1); got != "oops\n" {
		t.Errorf("logs with tail 1 = %q, want %q", got, "oops\n")
	}
	// Following an exited container's logs returns at once.
	var b bytes.Buffer
	h.must(h.rt.ContainerLogs(h.ctx, cid, true, -1, &b), "follow exited logs")
	if !strings.Contains(b.String(), "hello world") {
		t.Errorf("followed logs %q lack the output", b.String())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
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

func (s *suite) testFollowLogs(t *testing.T, h *harness) {
	podID := h.createPod("follow")
	cid := h.shell(podID, "talker", "echo ready; exec sleep 3600", nil)
	h.must(h.rt.StartContainer(h.ctx, cid), "start")

	// A follower ends when its context ends.
	var buf syncBuffer
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- h.rt.ContainerLogs(ctx, cid, true, -1, &buf) }()
	h.eventually("followed line", func() (bool, string) {
		return strings.Contains(buf.String(), "ready\n"), buf.String()
	})
	cancel()
	h.eventually("follower to end on cancel", func() (bool, string) {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("follow ended with %v", err)
			}
			return true, ""
		default:
			return false, "still following"
		}
	})

	// A follower ends when the container exits.
	go func() { done <- h.rt.ContainerLogs(h.ctx, cid, true, 0, io.Discard) }()
	h.must(h.rt.StopContainer(h.ctx, cid, 0), "stop")
	h.eventually("follower to end on exit", func() (bool, string) {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("follow ended with %v", err)
			}
			return true, ""
		default:
			return false, "still following"
		}
	})
}

func (s *suite) testLabelFilter(t *testing.T, h *harness) {
	a := h.createPod("a")
	b := h.createPod("b")
	pods, err := h.rt.ListPods(h.ctx, h.with(map[string]string{"capstan.test/pod": "a"}))
	h.must(err, "list a")
	if len(pods) != 1 || pods[0].ID != a {
		t.Errorf("listing by pod=a gave %+v, want only %s", pods, a)
	}
	pods, err = h.rt.ListPods(h.ctx, h.labels)
	h.must(err, "list both")
	if len(pods) != 2 {
		t.Errorf("listing by the case labels gave %d pods, want 2 (%s, %s)", len(pods), a, b)
	}
	pods, err = h.rt.ListPods(h.ctx, h.with(map[string]string{"capstan.test/pod": "none"}))
	h.must(err, "list none")
	if len(pods) != 0 {
		t.Errorf("listing by an unused label gave %+v", pods)
	}
}

func (s *suite) testMissing(t *testing.T, h *harness) {
	const missing = "0000000000000000000000000000000000000000000000000000000000000bad"
	if err := h.rt.StartContainer(h.ctx, missing); !errors.Is(err, node.ErrNotFound) {
		t.Errorf("start unknown container: %v, want ErrNotFound", err)
	}
	if err := h.rt.StopContainer(h.ctx, missing, 0); !errors.Is(err, node.ErrNotFound) {
		t.Errorf("stop unknown container: %v, want ErrNotFound", err)
	}
	if err := h.rt.ContainerLogs(h.ctx, missing, false, -1, io.Discard); !errors.Is(err, node.ErrNotFound) {
		t.Errorf("logs of unknown container: %v, want ErrNotFound", err)
	}
	_, err := h.rt.CreateContainer(h.ctx, missing, node.ContainerConfig{Name: h.prefix + "-orphan", Image: s.cfg.image})
	if !errors.Is(err, node.ErrNotFound) {
		t.Errorf("create container in unknown pod: %v, want ErrNotFound", err)
	}
	h.must(h.rt.RemoveContainer(h.ctx, missing), "remove unknown container")
	h.must(h.rt.RemovePod(h.ctx, missing, 0), "remove unknown pod")
}

func (s *suite) testNameConflict(t *testing.T, h *harness) {
	podID := h.createPod("dup")
	_, err := h.rt.CreatePod(h.ctx, node.PodConfig{Name: h.prefix + "-dup", Labels: h.labels})
	if !errors.Is(err, node.ErrConflict) {
		t.Errorf("second pod with the same name: %v, want ErrConflict", err)
	}
	h.shell(podID, "c", "exit 0", nil)
	_, err = h.rt.CreateContainer(h.ctx, podID, node.ContainerConfig{Name: h.prefix + "-c", Image: s.cfg.image, Args: []string{"true"}})
	if !errors.Is(err, node.ErrConflict) {
		t.Errorf("second container with the same name: %v, want ErrConflict", err)
	}
}

func (s *suite) testImages(t *testing.T, h *harness) {
	ok, err := h.rt.ImageExists(h.ctx, s.cfg.image)
	h.must(err, "image exists")
	if !ok {
		t.Errorf("ImageExists(%s) = false", s.cfg.image)
	}
	missing := "localhost/capstan-missing-" + s.run + ":none"
	ok, err = h.rt.ImageExists(h.ctx, missing)
	h.must(err, "missing image exists")
	if ok {
		t.Errorf("ImageExists(%s) = true", missing)
	}
	podID := h.createPod("img")
	_, err = h.rt.CreateContainer(h.ctx, podID, node.ContainerConfig{Name: h.prefix + "-noimg", Image: missing})
	if !errors.Is(err, node.ErrNotFound) {
		t.Errorf("create container from a missing image: %v, want ErrNotFound", err)
	}
}

func (s *suite) testResources(t *testing.T, h *harness) {
	podID := h.createPod("res")
	cid := h.shell(podID, "limited", "echo limited; exec sleep 3600", func(c *node.ContainerConfig) {
		c.MemoryLimit = 64 << 20
		c.CPULimitMilli = 250
	})
	h.must(h.rt.StartContainer(h.ctx, cid), "start limited")
	h.waitState(cid, node.StateRunning)
}

func (s *suite) testPublishedPort(t *testing.T, h *harness) {
	port := freePort(t)
	podID := h.createPod("web", node.PortMapping{HostIP: "127.0.0.1", HostPort: port, ContainerPort: 8080, Protocol: "tcp"})
	cid := h.shell(podID, "httpd", "mkdir -p /www; echo capstan-ok > /www/index.html; exec httpd -f -p 8080 -h /www", nil)
	h.must(h.rt.StartContainer(h.ctx, cid), "start httpd")
	h.waitState(cid, node.StateRunning)
	if !s.cfg.network {
		return
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/index.html", port)
	client := &http.Client{Timeout: 2 * time.Second}
	h.eventually("HTTP answer on "+url, func() (bool, string) {
		resp, err := client.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return false, err.Error()
		}
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "capstan-ok"),
			fmt.Sprintf("%s: %q", resp.Status, body)
	})
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func (s *suite) testExec(t *testing.T, h *harness) {
	podID := h.createPod("exec")
	cid := h.shell(podID, "target", "exec sleep 3600", func(c *node.ContainerConfig) {
		c.Env = map[string]string{"WHO": "capstan"}
	})
	h.must(h.rt.StartContainer(h.ctx, cid), "start")
	h.waitState(cid, node.StateRunning)

	var stdout, stderr syncBuffer
	code, err := h.rt.Exec(h.ctx, cid, []string{"sh", "-c", "echo out $WHO; echo err >&2; exit 3"}, nil, &stdout, &stderr)
	h.must(err, "exec")
	if code != 3 {
		t.Errorf("exec exit code %d, want 3", code)
	}
	if stdout.String() != "out capstan\n" || stderr.String() != "err\n" {
		t.Errorf("exec output: stdout %q stderr %q, want %q and %q", stdout.String(), stderr.String(), "out capstan\n", "err\n")
	}
	code, err = h.rt.Exec(h.ctx, cid, []string{"sh", "-c", "exit 0"}, nil, nil, nil)
	if err != nil || code != 0 {
		t.Errorf("exec with no writers: %d, %v; want 0, nil", code, err)
	}

	const missing = "0000000000000000000000000000000000000000000000000000000000000bad"
	if _, err := h.rt.Exec(h.ctx, missing, []string{"true"}, nil, nil, nil); !errors.Is(err, node.ErrNotFound) {
		t.Errorf("exec in unknown container: %v, want ErrNotFound", err)
	}
	h.must(h.rt.StopContainer(h.ctx, cid, 0), "stop")
	h.waitState(cid, node.StateExited)
	if _, err := h.rt.Exec(h.ctx, cid, []string{"true"}, nil, nil, nil); !errors.Is(err, node.ErrConflict) {
		t.Errorf("exec in a stopped container: %v, want ErrConflict", err)
	}
}

func (s *suite) testStats(t *testing.T, h *harness) {
	podID := h.createPod("stats")
	cid := h.shell(podID, "busy", "exec sleep 3600", nil)
	done := h.shell(podID, "done", "exit 0", nil)
	h.must(h.rt.StartContainer(h.ctx, cid), "start")
	h.must(h.rt.StartContainer(h.ctx, done), "start done")
	h.waitState(cid, node.StateRunning)
	h.waitState(done, node.StateExited)

	got, err := h.rt.Stats(h.ctx, []string{cid})
	h.must(err, "stats")
	st, ok := got[cid]
	if !ok {
		t.Fatalf("stats of a running container missing: %+v", got)
	}
	if st.Time.IsZero() {
		t.Errorf("stats without a time: %+v", st)
	}
	if s.cfg.network && st.MemoryBytes == 0 {
		t.Errorf("a running container uses no memory: %+v", st)
	}
	if got, err := h.rt.Stats(h.ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("stats of nothing: %+v, %v", got, err)
	}
	later, err := h.rt.Stats(h.ctx, []string{cid})
	h.must(err, "stats again")
	if l := later[cid]; l.CPUNanos < st.CPUNanos || !l.Time.After(st.Time) {
		t.Errorf("second sample %+v does not follow the first %+v", l, st)
	}
}

func (s *suite) testPodIP(t *testing.T, h *harness) {
	if !s.cfg.network {
		t.Skip("the runtime runs no network")
	}
	podID := h.createPod("ip")
	cid := h.shell(podID, "httpd", "mkdir -p /www; echo by-ip > /www/index.html; exec httpd -f -p 8080 -h /www", nil)
	h.must(h.rt.StartContainer(h.ctx, cid), "start httpd")
	h.waitState(cid, node.StateRunning)
	p, _, _ := h.container(cid)
	if net.ParseIP(p.IP) == nil {
		t.Fatalf("pod IP %q is not an address", p.IP)
	}
	url := fmt.Sprintf("http://%s/index.html", net.JoinHostPort(p.IP, "8080"))
	client := &http.Client{Timeout: 2 * time.Second}
	h.eventually("HTTP answer on "+url, func() (bool, string) {
		resp, err := client.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), "by-ip"), string(body)
	})
}

func (s *suite) testOOMKilled(t *testing.T, h *harness) {
	if !s.cfg.network {
		t.Skip("the runtime runs no real process")
	}
	began := time.Now()
	podID := h.createPod("oom")
	limit := func(c *node.ContainerConfig) { c.MemoryLimit = 16 << 20 }
	hog := h.shell(podID, "hog", "head -c 64m /dev/zero | tail", limit)
	// PID 1 ignores SIGTERM: the stop ends with SIGKILL, which is no OOM.
	stubborn := h.shell(podID, "stubborn", "exec sleep 3600", limit)
	h.must(h.rt.StartContainer(h.ctx, hog), "start hog")
	h.must(h.rt.StartContainer(h.ctx, stubborn), "start stubborn")
	c := h.waitState(hog, node.StateExited)
	if !c.OOMKilled || c.ExitCode != 137 {
		t.Errorf("a container over its memory limit: OOMKilled %v, exit code %d; want true, 137", c.OOMKilled, c.ExitCode)
	}
	// conmon writes a file named oom into its working directory: the
	// runtime's service must not run in the caller's (node/podman).
	if fi, err := os.Stat("oom"); err == nil && !fi.ModTime().Before(began) {
		t.Error("the OOM kill left a file named oom in the working directory")
	}
	h.waitState(stubborn, node.StateRunning)
	h.must(h.rt.StopContainer(h.ctx, stubborn, time.Second), "stop stubborn")
	c = h.waitState(stubborn, node.StateExited)
	if c.OOMKilled || c.ExitCode != 137 {
		t.Errorf("a container killed by its stop: OOMKilled %v, exit code %d; want false, 137", c.OOMKilled, c.ExitCode)
	}
}
