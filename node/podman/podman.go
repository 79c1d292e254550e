//go:build remote

package podman

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/images"
	"github.com/containers/podman/v5/pkg/bindings/pods"
	"github.com/containers/podman/v5/pkg/bindings/system"
	entities "github.com/containers/podman/v5/pkg/domain/entities/types"
	"github.com/containers/podman/v5/pkg/errorhandling"
	"github.com/containers/podman/v5/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"
	nettypes "go.podman.io/common/libnetwork/types"

	"github.com/capstan-io/capstan/node"
)

var _ node.Runtime = (*Runtime)(nil)

// cpuPeriod is the CFS period, in microseconds, against which CPU limits
// are set: 100ms, the kernel's default.
const cpuPeriod = 100_000

// inspectCacheTTL is how long the details of an exited container stay
// cached after ListPods last saw it.
const inspectCacheTTL = 10 * time.Minute

// Runtime is a node.Runtime backed by a Podman service through its REST
// API. Create it with New; it is safe for concurrent use.
type Runtime struct {
	conn context.Context // carries the bindings' connection
	log  *slog.Logger

	mu sync.Mutex
	// exited caches what ListPods needs from inspecting an exited
	// container (List does not report OOMKilled, and its times are whole
	// seconds), keyed by container ID. An exited container does not change
	// until it is started again, which changes its start time.
	exited map[string]exitDetails
	// ips caches each pod's address and published ports (a podNet),
	// keyed by pod ID (see podip.go).
	ips sync.Map
	// stopped holds the containers this Runtime stopped (see oom.go).
	stopped sync.Map
	// cgroups caches the containers' cgroup paths (see drift.go).
	cgroups cgroupPaths
	// network is the Podman network pods are created on, "" for
	// Podman's default (see network.go).
	network string
}

type exitDetails struct {
	listedStart int64 // StartedAt as List reported it, to notice a restart
	oomKilled   bool
	exitCode    int32
	startedAt   time.Time
	finishedAt  time.Time
	seen        time.Time
}

// Option configures a Runtime.
type Option func(*Runtime)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(r *Runtime) { r.log = l } }

// New connects to the Podman service at socketURI (for example
// "unix:///run/podman/podman.sock") and checks that it answers. ctx bounds
// only the connection check.
func New(ctx context.Context, socketURI string, opts ...Option) (*Runtime, error) {
	r := &Runtime{log: slog.New(slog.DiscardHandler), exited: map[string]exitDetails{}}
	for _, o := range opts {
		o(r)
	}
	// The bindings keep the connection in a context. Only its values are
	// used later (see connCtx), so its ending with ctx does not matter.
	conn, err := bindings.NewConnection(ctx, socketURI)
	if err != nil {
		return nil, fmt.Errorf("connect to podman at %s: %w", socketURI, err)
	}
	r.conn = conn
	r.log.Debug("connected to podman", "socket", socketURI, "api_version", bindings.ServiceVersion(conn).String())
	return r, nil
}

// connCtx is a caller's context that also carries the bindings' connection.
type connCtx struct {
	context.Context
	conn context.Context
}

func (c connCtx) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.conn.Value(key)
}

func (r *Runtime) bind(ctx context.Context) context.Context {
	return connCtx{Context: ctx, conn: r.conn}
}

// apiErr maps the HTTP status of a Podman API error to node's sentinels,
// keeping the original error in the chain.
func apiErr(err error) error {
	if err == nil {
		return nil
	}
	code := 0
	var em *errorhandling.ErrorModel
	var pc *errorhandling.PodConflictErrorModel
	switch {
	case errors.As(err, &em):
		code = em.Code()
	case errors.As(err, &pc):
		code = pc.Code()
	}
	switch code {
	case http.StatusNotFound:
		return fmt.Errorf("%w: %w", node.ErrNotFound, err)
	case http.StatusConflict:
		return fmt.Errorf("%w: %w", node.ErrConflict, err)
	}
	return err
}

// graceSeconds rounds a grace period up to whole seconds, as Podman takes.
func graceSeconds(d time.Duration) uint {
	if d <= 0 {
		return 0
	}
	return uint(math.Ceil(d.Seconds()))
}

// Info reports the engine's version and the host's capacity.
func (r *Runtime) Info(ctx context.Context) (node.RuntimeInfo, error) {
	info, err := system.Info(r.bind(ctx), nil)
	if err != nil {
		return node.RuntimeInfo{}, fmt.Errorf("podman info: %w", apiErr(err))
	}
	out := node.RuntimeInfo{Name: "podman", Version: info.Version.Version}
	if info.Host != nil {
		out.CPUs = info.Host.CPUs
		out.MemoryBytes = info.Host.MemTotal
		out.OS = info.Host.OS
		out.Arch = info.Host.Arch
		out.CgroupVersion = info.Host.CgroupsVersion
	}
	return out, nil
}

// labelFilter turns a label match into Podman's "label" filter, which
// requires every given label.
func labelFilter(match map[string]string) []string {
	f := make([]string, 0, len(match))
	for k, v := range match {
		f = append(f, k+"="+v)
	}
	return f
}

// ListPods lists the matching pods with one pods.List and one
// containers.List call; exited containers are inspected once each, the first
// time they are seen exited, for OOMKilled and exact times.
func (r *Runtime) ListPods(ctx context.Context, match map[string]string) ([]node.PodInfo, error) {
	bctx := r.bind(ctx)
	popts := new(pods.ListOptions)
	if len(match) > 0 {
		popts.WithFilters(map[string][]string{"label": labelFilter(match)})
	}
	plist, err := pods.List(bctx, popts)
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", apiErr(err))
	}
	if len(plist) == 0 {
		return nil, nil
	}
	out := make([]node.PodInfo, len(plist))
	index := make(map[string]int, len(plist))
	ids := make([]string, len(plist))
	for i, p := range plist {
		pn := r.podNetwork(bctx, p)
		out[i] = node.PodInfo{ID: p.Id, Name: p.Name, Labels: p.Labels, Created: p.Created, IP: pn.ip, Ports: pn.ports}
		index[p.Id] = i
		ids[i] = p.Id
	}
	clist, err := containers.List(bctx, new(containers.ListOptions).
		WithAll(true).
		WithFilters(map[string][]string{"pod": ids}))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", apiErr(err))
	}
	now := time.Now()
	for _, c := range clist {
		i, ok := index[c.Pod]
		if !ok || c.IsInfra {
			continue
		}
		info, err := r.containerInfo(bctx, c, now)
		if errors.Is(err, node.ErrNotFound) {
			continue // removed since the list
		}
		if err != nil {
			return nil, err
		}
		out[i].Containers = append(out[i].Containers, info)
	}
	r.pruneCache(now)
	return out, nil
}

func (r *Runtime) containerInfo(ctx context.Context, c entities.ListContainer, now time.Time) (node.ContainerInfo, error) {
	info := node.ContainerInfo{
		ID:        c.ID,
		Image:     c.Image,
		Labels:    c.Labels,
		State:     mapState(c.State),
		ExitCode:  c.ExitCode,
		Created:   c.Created,
		StartedAt: unixTime(c.StartedAt),
	}
	if len(c.Names) > 0 {
		info.Name = c.Names[0]
	}
	if info.State != node.StateExited {
		return info, nil
	}
	d, err := r.exitDetails(ctx, c, now)
	if err != nil {
		return node.ContainerInfo{}, err
	}
	info.ExitCode = d.exitCode
	info.OOMKilled = d.oomKilled
	info.StartedAt = d.startedAt
	info.FinishedAt = d.finishedAt
	return info, nil
}

// exitDetails returns the cached inspection of an exited container, or
// inspects it.
func (r *Runtime) exitDetails(ctx context.Context, c entities.ListContainer, now time.Time) (exitDetails, error) {
	r.mu.Lock()
	d, ok := r.exited[c.ID]
	if ok && d.listedStart == c.StartedAt {
		d.seen = now
		r.exited[c.ID] = d
		r.mu.Unlock()
		return d, nil
	}
	r.mu.Unlock()

	data, err := containers.Inspect(ctx, c.ID, nil)
	if err != nil {
		return exitDetails{}, fmt.Errorf("inspect container %s: %w", c.ID, apiErr(err))
	}
	d = exitDetails{listedStart: c.StartedAt, exitCode: c.ExitCode, seen: now}
	if st := data.State; st != nil {
		d.oomKilled = st.OOMKilled || r.likelyOOM(c.ID, st.ExitCode, data.HostConfig) // see oom.go
		d.exitCode = st.ExitCode
		d.startedAt = st.StartedAt
		d.finishedAt = st.FinishedAt
		if d.finishedAt.Before(d.startedAt) {
			// Podman records the start after runc reports it, which can be
			// after a quick process has already exited.
			d.finishedAt = d.startedAt
		}
		if !st.Running && mapState(st.Status) != node.StateExited {
			// Restarted between List and Inspect: report what List saw and
			// do not cache.
			return exitDetails{exitCode: c.ExitCode, startedAt: unixTime(c.StartedAt), finishedAt: unixTime(c.ExitedAt)}, nil
		}
	}
	r.mu.Lock()
	r.exited[c.ID] = d
	r.mu.Unlock()
	return d, nil
}

func (r *Runtime) pruneCache(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, d := range r.exited {
		if now.Sub(d.seen) > inspectCacheTTL {
			delete(r.exited, id)
		}
	}
}

func (r *Runtime) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.exited, id)
}

// mapState maps Podman's container states to node's.
func mapState(s string) string {
	switch strings.ToLower(s) {
	case "created", "configured", "initialized":
		return node.StateCreated
	case "running", "paused", "stopping":
		return node.StateRunning
	case "exited", "stopped":
		return node.StateExited
	}
	return node.StateUnknown
}

// unixTime converts List's whole seconds; Podman reports an unset time as
// zero or as Go's zero time, both of which become time.Time{}.
func unixTime(sec int64) time.Time {
	if sec <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

// CreatePod creates a pod whose infra container publishes cfg.Ports, and
// starts it so the ports are bound.
func (r *Runtime) CreatePod(ctx context.Context, cfg node.PodConfig) (string, error) {
	bctx := r.bind(ctx)
	ps := specgen.NewPodSpecGenerator()
	ps.Name = cfg.Name
	ps.Hostname = cfg.Hostname
	ps.Labels = cfg.Labels
	ps.HostAdd = hostAdds(cfg.HostAliases)
	for _, srv := range cfg.DNS.Servers {
		ip := net.ParseIP(srv)
		if ip == nil {
			return "", fmt.Errorf("create pod %s: DNS server %q is not an IP address", cfg.Name, srv)
		}
		ps.DNSServer = append(ps.DNSServer, ip)
	}
	ps.DNSSearch = cfg.DNS.Searches
	ps.DNSOption = cfg.DNS.Options
	if r.network != "" {
		ps.NetNS = specgen.Namespace{NSMode: specgen.Bridge}
		ps.Networks = map[string]nettypes.PerNetworkOptions{r.network: {}}
	}
	for _, p := range cfg.Ports {
		ps.PortMappings = append(ps.PortMappings, nettypes.PortMapping{
			HostIP:        p.HostIP,
			HostPort:      p.HostPort,
			ContainerPort: p.ContainerPort,
			Protocol:      p.Protocol,
		})
	}
	rep, err := pods.CreatePodFromSpec(bctx, &entities.PodSpec{PodSpecGen: *ps})
	if err != nil {
		return "", fmt.Errorf("create pod %s: %w", cfg.Name, apiErr(err))
	}
	if _, err := pods.Start(bctx, rep.Id, nil); err != nil {
		err = fmt.Errorf("start pod %s: %w", cfg.Name, apiErr(err))
		// Do not leave a pod that cannot run (say, its port is taken).
		if _, rerr := pods.Remove(r.bind(context.WithoutCancel(ctx)), rep.Id, new(pods.RemoveOptions).WithForce(true)); rerr != nil {
			r.log.Warn("remove pod that failed to start", "pod", cfg.Name, "err", rerr)
		}
		return "", err
	}
	if err := r.addSelfHosts(bctx, rep.Id, cfg.HostAliases); err != nil {
		// The pod runs; only its own name is missing from /etc/hosts.
		r.log.Warn("add the pod's own names to /etc/hosts", "pod", cfg.Name, "err", err)
	}
	r.log.Debug("created pod", "pod", cfg.Name, "id", rep.Id)
	return rep.Id, nil
}

// RemovePod stops the pod's containers with the grace period, then removes
// the pod by force. A missing pod is not an error.
func (r *Runtime) RemovePod(ctx context.Context, podID string, grace time.Duration) error {
	bctx := r.bind(ctx)
	r.ips.Delete(podID)
	var err error
	if timeout := int(graceSeconds(grace)); timeout > 0 {
		_, err = pods.Stop(bctx, podID, new(pods.StopOptions).WithTimeout(timeout))
	} else {
		// The pod stop endpoint takes a timeout of 0 to mean the default
		// (10s), so kill instead.
		_, err = pods.Kill(bctx, podID, new(pods.KillOptions).WithSignal("SIGKILL"))
	}
	if err != nil {
		err = apiErr(err)
		if errors.Is(err, node.ErrNotFound) {
			return nil
		}
		// Removal by force below kills what would not stop. A pod with
		// nothing running answers 409 to a kill.
		level := slog.LevelWarn
		if errors.Is(err, node.ErrConflict) {
			level = slog.LevelDebug
		}
		r.log.Log(ctx, level, "stop pod", "pod", podID, "err", err)
	}
	rep, err := pods.Remove(bctx, podID, new(pods.RemoveOptions).WithForce(true))
	if err != nil {
		err = apiErr(err)
		if errors.Is(err, node.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("remove pod %s: %w", podID, err)
	}
	if rep == nil {
		return nil
	}
	if rep.Err != nil {
		return fmt.Errorf("remove pod %s: %w", podID, rep.Err)
	}
	for id := range rep.RemovedCtrs {
		r.forget(id)
	}
	return nil
}

// CreateContainer creates a container in a pod. Command replaces the
// image's entrypoint and Args its command; the container gets no restart
// policy of Podman's own, as the node daemon restarts containers.
func (r *Runtime) CreateContainer(ctx context.Context, podID string, cfg node.ContainerConfig) (string, error) {
	s := specgen.NewSpecGenerator(cfg.Image, false)
	s.Name = cfg.Name
	s.Pod = podID
	if len(cfg.Command) > 0 {
		s.Entrypoint = cfg.Command
	}
	if len(cfg.Args) > 0 {
		s.Command = cfg.Args
	}
	s.Env = cfg.Env
	s.WorkDir = cfg.WorkingDir
	s.Labels = cfg.Labels
	s.RestartPolicy = "no"
	if err := applyMounts(s, cfg.Mounts); err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Name, err)
	}
	if cfg.MemoryLimit > 0 || cfg.CPULimitMilli > 0 {
		res := &spec.LinuxResources{}
		if cfg.MemoryLimit > 0 {
			limit := cfg.MemoryLimit
			res.Memory = &spec.LinuxMemory{Limit: &limit}
		}
		if cfg.CPULimitMilli > 0 {
			quota := cfg.CPULimitMilli * cpuPeriod / 1000
			period := uint64(cpuPeriod)
			res.CPU = &spec.LinuxCPU{Quota: &quota, Period: &period}
		}
		s.ResourceLimits = res
	}
	bctx := r.bind(ctx)
	rep, err := containers.CreateWithSpec(bctx, s, nil)
	if err != nil {
		return "", fmt.Errorf("create container %s in pod %s: %w", cfg.Name, podID, r.createErr(bctx, podID, cfg.Name, cfg.Image, err))
	}
	for _, w := range rep.Warnings {
		r.log.Warn("create container", "container", cfg.Name, "warning", w)
	}
	return rep.ID, nil
}

// createErr maps a failed container creation. Podman 4.3 answers 500, not
// 404 or 409, for a missing pod or image and a taken name, so rather than
// read the message, ask.
func (r *Runtime) createErr(ctx context.Context, podID, name, image string, err error) error {
	err = apiErr(err)
	if errors.Is(err, node.ErrNotFound) || errors.Is(err, node.ErrConflict) {
		return err
	}
	if ok, perr := pods.Exists(ctx, podID, nil); perr == nil && !ok {
		return fmt.Errorf("pod %s: %w: %w", podID, node.ErrNotFound, err)
	}
	if name != "" {
		if ok, cerr := containers.Exists(ctx, name, nil); cerr == nil && ok {
			return fmt.Errorf("name %s: %w: %w", name, node.ErrConflict, err)
		}
	}
	if ok, ierr := images.Exists(ctx, image, nil); ierr == nil && !ok {
		return fmt.Errorf("image %s: %w: %w", image, node.ErrNotFound, err)
	}
	return err
}

// StartContainer starts a created or exited container; starting a running
// one does nothing.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	if err := containers.Start(r.bind(ctx), id, nil); err != nil {
		return fmt.Errorf("start container %s: %w", id, apiErr(err))
	}
	return nil
}

// StopContainer sends the container's stop signal, then SIGKILL after
// grace, rounded up to whole seconds. Stopping a stopped container does
// nothing.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	r.stopping(id) // see oom.go
	err := containers.Stop(r.bind(ctx), id, new(containers.StopOptions).WithTimeout(graceSeconds(grace)))
	if err != nil {
		return fmt.Errorf("stop container %s: %w", id, apiErr(err))
	}
	return nil
}

// RemoveContainer removes a container by force; a missing one is not an
// error.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	r.forget(id)
	reps, err := containers.Remove(r.bind(ctx), id, new(containers.RemoveOptions).WithForce(true).WithTimeout(0))
	if err != nil {
		err = apiErr(err)
		if errors.Is(err, node.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	for _, rep := range reps {
		if rep.Err != nil {
			return fmt.Errorf("remove container %s: %w", id, rep.Err)
		}
	}
	return nil
}

// ContainerLogs copies stdout and stderr, interleaved, to w.
func (r *Runtime) ContainerLogs(ctx context.Context, id string, follow bool, tail int, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts := new(containers.LogOptions).WithStdout(true).WithStderr(true).WithFollow(follow)
	if tail >= 0 {
		opts.WithTail(strconv.Itoa(tail))
	} else {
		opts.WithTail("all")
	}
	// The bindings send each line on an unbuffered channel and return when
	// the stream ends; keep receiving until they return, even after a
	// failed write, so their goroutine never blocks.
	stdout, stderr := make(chan string), make(chan string)
	done := make(chan error, 1)
	go func() { done <- containers.Logs(r.bind(ctx), id, opts, stdout, stderr) }()
	var werr error
	write := func(line string) {
		if werr != nil {
			return
		}
		if _, werr = io.WriteString(w, line); werr != nil {
			cancel()
		}
	}
	for {
		select {
		case line := <-stdout:
			write(line)
		case line := <-stderr:
			write(line)
		case err := <-done:
			switch {
			case werr != nil:
				return fmt.Errorf("logs of %s: write: %w", id, werr)
			case err != nil && ctx.Err() != nil:
				return nil // the caller's context ended the stream
			case err != nil:
				return fmt.Errorf("logs of %s: %w", id, apiErr(err))
			}
			return nil
		}
	}
}

// ImageExists reports whether ref is in Podman's local storage.
func (r *Runtime) ImageExists(ctx context.Context, ref string) (bool, error) {
	ok, err := images.Exists(r.bind(ctx), ref, nil)
	if err != nil {
		return false, fmt.Errorf("image exists %s: %w", ref, apiErr(err))
	}
	return ok, nil
}
