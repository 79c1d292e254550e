package fake

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/node"
)

var _ node.Runtime = (*Runtime)(nil)

// Exit codes the fake reports for containers it ends itself.
const (
	// ExitCodeStopped is the exit code of a container ended by StopContainer
	// (128 + SIGTERM).
	ExitCodeStopped = 143
	// ExitCodeKilled is the exit code of a container ended by OOMKill or
	// removed while running (128 + SIGKILL).
	ExitCodeKilled = 137
	// ExitCodeOOM is the exit code of an OOM-killed container.
	ExitCodeOOM = ExitCodeKilled
)

// Options configure a Runtime. The zero value is a fast fake host with four
// CPUs and 8 GiB of memory.
type Options struct {
	// StartDelay is how long StartContainer takes before the container
	// runs; the wait ends early, with the context's error, when ctx ends.
	StartDelay time.Duration
	// CPUs and MemoryBytes are what Info reports; 0 means 4 and 8 GiB.
	CPUs        int
	MemoryBytes int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AnyImage makes every image present, as if pulled on demand
	// (simulated nodes run whatever image a pod names).
	AnyImage bool
}

// Runtime is an in-memory node.Runtime. Create it with New.
type Runtime struct {
	opts Options

	mu     sync.Mutex
	seq    int
	images map[string]bool
	pods   map[string]*pod
	ctrs   map[string]*container
	// volumes are the named volumes and their labels (volumes.go).
	volumes map[string]map[string]string
	// execFn, execs and stats script Exec and Stats (exec.go, stats.go).
	execFn ExecFunc
	execs  []ExecCall
	stats  map[string]node.ContainerStats
}

type pod struct {
	id      string
	cfg     node.PodConfig
	created time.Time
	ctrs    []string // container IDs in creation order
}

type logLine struct {
	stderr bool
	text   string
}

type container struct {
	id       string
	podID    string
	cfg      node.ContainerConfig
	state    string
	exitCode int32
	oom      bool
	created  time.Time
	started  time.Time
	finished time.Time
	logs     []logLine
	// changed is closed and replaced whenever logs or state change, to wake
	// followers of the logs.
	changed chan struct{}
}

// New returns an empty Runtime.
func New(opts Options) *Runtime {
	if opts.CPUs == 0 {
		opts.CPUs = 4
	}
	if opts.MemoryBytes == 0 {
		opts.MemoryBytes = 8 << 30
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Runtime{
		opts:   opts,
		images: map[string]bool{},
		pods:   map[string]*pod{},
		ctrs:   map[string]*container{},
	}
}

// AddImage makes ref present, as if it had been pulled or built.
func (r *Runtime) AddImage(ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.images[ref] = true
}

// Exit ends a running container with the given exit code, as if its process
// had exited.
func (r *Runtime) Exit(id string, code int32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.running(id)
	if err != nil {
		return fmt.Errorf("exit %s: %w", id, err)
	}
	r.finish(c, code, false)
	return nil
}

// OOMKill ends a running container as the kernel's OOM killer would: exit
// code 137 and OOMKilled set.
func (r *Runtime) OOMKill(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.running(id)
	if err != nil {
		return fmt.Errorf("oom-kill %s: %w", id, err)
	}
	r.finish(c, ExitCodeOOM, true)
	return nil
}

// WriteLog appends a line to a container's output, as if it had printed it.
func (r *Runtime) WriteLog(id string, stderr bool, line string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	if !ok {
		return fmt.Errorf("write log %s: %w", id, node.ErrNotFound)
	}
	c.logs = append(c.logs, logLine{stderr: stderr, text: line})
	c.notify()
	return nil
}

// running returns a running container; r.mu must be held.
func (r *Runtime) running(id string) (*container, error) {
	c, ok := r.ctrs[id]
	if !ok {
		return nil, node.ErrNotFound
	}
	if c.state != node.StateRunning {
		return nil, fmt.Errorf("container is %s: %w", c.state, node.ErrConflict)
	}
	return c, nil
}

// finish marks c exited; r.mu must be held.
func (r *Runtime) finish(c *container, code int32, oom bool) {
	c.state = node.StateExited
	c.exitCode = code
	c.oom = oom
	c.finished = r.opts.Now()
	c.notify()
}

func (c *container) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Info reports the fake host.
func (r *Runtime) Info(ctx context.Context) (node.RuntimeInfo, error) {
	return node.RuntimeInfo{
		Name:          "fake",
		Version:       "0",
		CPUs:          r.opts.CPUs,
		MemoryBytes:   r.opts.MemoryBytes,
		OS:            "linux",
		Arch:          "amd64",
		CgroupVersion: "v2",
	}, nil
}

// ListPods returns copies of the pods whose labels include match, oldest
// first.
func (r *Runtime) ListPods(ctx context.Context, match map[string]string) ([]node.PodInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []node.PodInfo
	for _, p := range r.pods {
		if !hasLabels(p.cfg.Labels, match) {
			continue
		}
		info := node.PodInfo{
			ID:      p.id,
			Name:    p.cfg.Name,
			Labels:  maps.Clone(p.cfg.Labels),
			Created: p.created,
			Ports:   slices.Clone(p.cfg.Ports),
		}
		for _, cid := range p.ctrs {
			c := r.ctrs[cid]
			info.Containers = append(info.Containers, node.ContainerInfo{
				ID:         c.id,
				Name:       c.cfg.Name,
				Image:      c.cfg.Image,
				Labels:     maps.Clone(c.cfg.Labels),
				State:      c.state,
				ExitCode:   c.exitCode,
				OOMKilled:  c.oom,
				StartedAt:  c.started,
				FinishedAt: c.finished,
				Created:    c.created,
			})
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b node.PodInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

func hasLabels(labels, match map[string]string) bool {
	for k, v := range match {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// newID returns a fresh 64-hex-digit ID; r.mu must be held.
func (r *Runtime) newID() string {
	r.seq++
	return fmt.Sprintf("%064x", r.seq)
}

// CreatePod records a pod; a taken name is node.ErrConflict.
func (r *Runtime) CreatePod(ctx context.Context, cfg node.PodConfig) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cfg.Name != "" {
		for _, p := range r.pods {
			if p.cfg.Name == cfg.Name {
				return "", fmt.Errorf("create pod %s: name in use: %w", cfg.Name, node.ErrConflict)
			}
		}
	}
	id := r.newID()
	cfg.Labels = maps.Clone(cfg.Labels)
	cfg.Ports = slices.Clone(cfg.Ports)
	for i := range cfg.Ports {
		if cfg.Ports[i].HostPort == 0 {
			// As a real engine, pick a free port: here, the next one of
			// an ephemeral range that no other pod of this fake holds.
			r.seq++
			cfg.Ports[i].HostPort = uint16(40000 + r.seq%20000)
		}
	}
	cfg.HostAliases = slices.Clone(cfg.HostAliases)
	cfg.DNS = node.DNSConfig{Servers: slices.Clone(cfg.DNS.Servers), Searches: slices.Clone(cfg.DNS.Searches), Options: slices.Clone(cfg.DNS.Options)}
	if cfg.Name == "" {
		cfg.Name = id[len(id)-12:]
	}
	r.pods[id] = &pod{id: id, cfg: cfg, created: r.opts.Now()}
	return id, nil
}

// RemovePod removes a pod and its containers; a missing pod is not an error.
func (r *Runtime) RemovePod(ctx context.Context, podID string, grace time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pods[podID]
	if !ok {
		return nil
	}
	for _, cid := range p.ctrs {
		r.removeContainer(cid)
	}
	delete(r.pods, podID)
	return nil
}

// CreateContainer records a created container in a pod. An unknown pod or
// image is node.ErrNotFound; a taken name is node.ErrConflict.
func (r *Runtime) CreateContainer(ctx context.Context, podID string, cfg node.ContainerConfig) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pods[podID]
	if !ok {
		return "", fmt.Errorf("create container %s: pod %s: %w", cfg.Name, podID, node.ErrNotFound)
	}
	if !r.images[cfg.Image] && !r.opts.AnyImage {
		return "", fmt.Errorf("create container %s: image %s: %w", cfg.Name, cfg.Image, node.ErrNotFound)
	}
	if cfg.Name != "" {
		for _, c := range r.ctrs {
			if c.cfg.Name == cfg.Name {
				return "", fmt.Errorf("create container %s: name in use: %w", cfg.Name, node.ErrConflict)
			}
		}
	}
	if err := r.checkMounts(cfg.Mounts); err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Name, err)
	}
	id := r.newID()
	cfg.Mounts = slices.Clone(cfg.Mounts)
	cfg.Command = slices.Clone(cfg.Command)
	cfg.Args = slices.Clone(cfg.Args)
	cfg.Env = maps.Clone(cfg.Env)
	cfg.Labels = maps.Clone(cfg.Labels)
	if cfg.Name == "" {
		cfg.Name = id[len(id)-12:]
	}
	r.ctrs[id] = &container{
		id:      id,
		podID:   podID,
		cfg:     cfg,
		state:   node.StateCreated,
		created: r.opts.Now(),
		changed: make(chan struct{}),
	}
	p.ctrs = append(p.ctrs, id)
	return id, nil
}

// StartContainer runs a created or exited container's command line (see the
// package documentation). Starting a running container does nothing.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	if d := r.opts.StartDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("start container %s: %w", id, ctx.Err())
		case <-t.C:
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	if !ok {
		return fmt.Errorf("start container %s: %w", id, node.ErrNotFound)
	}
	if c.state == node.StateRunning {
		return nil
	}
	c.state = node.StateRunning
	c.exitCode = 0
	c.oom = false
	c.started = r.opts.Now()
	c.finished = time.Time{}
	if code, exits := run(c); exits {
		r.finish(c, code, false)
		return nil
	}
	c.notify()
	return nil
}

// run interprets the container's command line at start; it reports the exit
// code when the program ends by itself.
func run(c *container) (code int32, exits bool) {
	argv := append(slices.Clone(c.cfg.Command), c.cfg.Args...)
	if len(argv) == 0 {
		return 0, false
	}
	switch {
	case len(argv) >= 3 && base(argv[0]) == "sh" && argv[1] == "-c":
		return script(c, argv[2])
	case base(argv[0]) == "echo":
		c.logs = append(c.logs, logLine{text: strings.Join(argv[1:], " ")})
		return 0, true
	default:
		return 0, false
	}
}

func base(p string) string {
	return p[strings.LastIndexByte(p, '/')+1:]
}

// script runs the statements of a "sh -c" script.
func script(c *container, src string) (code int32, exits bool) {
	stmts := strings.FieldsFunc(src, func(r rune) bool { return r == ';' || r == '\n' })
	for _, s := range stmts {
		s = strings.TrimSpace(s)
		word, rest, _ := strings.Cut(s, " ")
		rest = strings.TrimSpace(rest)
		switch word {
		case "":
		case "echo":
			stderr := false
			if t, ok := strings.CutSuffix(rest, ">&2"); ok {
				rest, stderr = strings.TrimSpace(t), true
			}
			text := os.Expand(unquote(rest), func(k string) string { return c.cfg.Env[k] })
			c.logs = append(c.logs, logLine{stderr: stderr, text: text})
		case "pwd":
			wd := c.cfg.WorkingDir
			if wd == "" {
				wd = "/"
			}
			c.logs = append(c.logs, logLine{text: wd})
		case "exit":
			n, err := strconv.ParseInt(rest, 10, 32)
			if err != nil {
				n = 2
			}
			return int32(n), true
		default:
			return 0, false
		}
	}
	return 0, true
}

// unquote removes one level of matching single or double quotes.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// StopContainer ends a running container with exit code 143. Stopping a
// container that is not running does nothing.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	if !ok {
		return fmt.Errorf("stop container %s: %w", id, node.ErrNotFound)
	}
	if c.state == node.StateRunning {
		r.finish(c, ExitCodeStopped, false)
	}
	return nil
}

// RemoveContainer removes a container; a missing one is not an error.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeContainer(id)
	return nil
}

// removeContainer deletes a container and wakes its log followers; r.mu
// must be held.
func (r *Runtime) removeContainer(id string) {
	c, ok := r.ctrs[id]
	if !ok {
		return
	}
	if c.state == node.StateRunning {
		r.finish(c, ExitCodeKilled, false)
	}
	delete(r.ctrs, id)
	if p, ok := r.pods[c.podID]; ok {
		p.ctrs = slices.DeleteFunc(p.ctrs, func(s string) bool { return s == id })
	}
}

// ContainerLogs writes the container's lines, stdout and stderr interleaved
// in the order they were written, each ending with a newline. With follow it
// waits for more until the container stops running or ctx ends.
func (r *Runtime) ContainerLogs(ctx context.Context, id string, follow bool, tail int, w io.Writer) error {
	r.mu.Lock()
	c, ok := r.ctrs[id]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("logs %s: %w", id, node.ErrNotFound)
	}
	next := 0
	if tail >= 0 && tail < len(c.logs) {
		next = len(c.logs) - tail
	}
	for {
		lines := slices.Clone(c.logs[next:])
		next = len(c.logs)
		done := !follow || c.state != node.StateRunning
		changed := c.changed
		r.mu.Unlock()
		for _, l := range lines {
			if _, err := io.WriteString(w, l.text+"\n"); err != nil {
				return fmt.Errorf("logs %s: %w", id, err)
			}
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		r.mu.Lock()
	}
}

// ImageExists reports whether AddImage was called for ref (always true
// with Options.AnyImage).
func (r *Runtime) ImageExists(ctx context.Context, ref string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.images[ref] || r.opts.AnyImage, nil
}
