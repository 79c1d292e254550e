package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// Handlers: what probes and lifecycle hooks run. A probe is an exec, an
// HTTP GET or a TCP connection; a hook is an exec, an HTTP GET or a sleep.
// HTTP and TCP go to the pod's address on the node's container network
// unless the handler names a host.

// handler is a probe's or a hook's action; exactly one member is set.
type handler struct {
	exec  *manifests.ExecAction
	http  *manifests.HTTPGetAction
	tcp   *manifests.TCPSocketAction
	sleep *manifests.SleepAction
}

func handlerOfProbe(p *manifests.Probe) handler {
	return handler{exec: p.Exec, http: p.HTTPGet, tcp: p.TCPSocket}
}

func handlerOfHook(h *manifests.LifecycleHandler) handler {
	return handler{exec: h.Exec, http: h.HTTPGet, sleep: h.Sleep}
}

// target is the container a handler acts on.
type target struct {
	containerID string
	container   *manifests.Container
	podIP       string
}

// maxHandlerOutput bounds the output of an exec handler kept for messages.
const maxHandlerOutput = 1024

// limitedBuffer keeps the first bytes written to it.
type limitedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := maxHandlerOutput - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

// runHandler runs h against t until it ends or ctx does (the probe's
// timeout, or the grace period left for a preStop hook); nil is success.
func (d *Daemon) runHandler(ctx context.Context, h handler, t target) error {
	switch {
	case h.exec != nil:
		var out limitedBuffer
		code, err := d.Runtime.Exec(ctx, t.containerID, h.exec.Command, nil, &out, &out)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("command %q timed out", h.exec.Command)
			}
			return fmt.Errorf("exec %q: %w", h.exec.Command, err)
		}
		if code != 0 {
			return fmt.Errorf("command %q exited with %d: %s", h.exec.Command, code, out.String())
		}
		return nil
	case h.http != nil:
		return httpGet(ctx, h.http, t)
	case h.tcp != nil:
		addr, err := address(h.tcp.Host, h.tcp.Port, t)
		if err != nil {
			return err
		}
		var dialer net.Dialer
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("dial tcp %s: %w", addr, err)
		}
		_ = conn.Close()
		return nil
	case h.sleep != nil:
		timer := time.NewTimer(time.Duration(h.sleep.Seconds) * time.Second)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("sleep %ds: %w", h.sleep.Seconds, ctx.Err())
		case <-timer.C:
			return nil
		}
	}
	return errors.New("handler has no action")
}

// address resolves a handler's host and port: the port by number or by
// the name of one of the container's ports, the host defaulting to the
// pod's address.
func address(host string, port manifests.IntOrString, t target) (string, error) {
	n := int(port.IntVal)
	if port.IsString {
		if v, err := strconv.Atoi(port.StrVal); err == nil {
			n = v
		} else {
			n = 0
			for _, p := range t.container.Ports {
				if p.Name == port.StrVal {
					n = int(p.ContainerPort)
				}
			}
			if n == 0 {
				return "", fmt.Errorf("container %s has no port named %q", t.container.Name, port.StrVal)
			}
		}
	}
	if n <= 0 || n > 65535 {
		return "", fmt.Errorf("invalid port %d", n)
	}
	if host == "" {
		host = t.podIP
	}
	if host == "" {
		return "", errors.New("the pod has no address yet")
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

// probeTransport is shared by HTTP probes and hooks: no keep-alive (each
// probe is a fresh connection, as the kubelet's), no proxy, and HTTPS
// without verification (the kubelet does not verify probe certificates).
var probeTransport = &http.Transport{
	DisableKeepAlives: true,
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as the kubelet
}

// httpGet makes an HTTP handler's request; 200-399 is success. Redirects
// are not followed: a 3xx is itself a success.
func httpGet(ctx context.Context, g *manifests.HTTPGetAction, t target) error {
	addr, err := address(g.Host, g.Port, t)
	if err != nil {
		return err
	}
	scheme := "http"
	if strings.EqualFold(g.Scheme, "HTTPS") {
		scheme = "https"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		return fmt.Errorf("http get: %w", err)
	}
	req.Header.Set("User-Agent", "capstan-probe/1")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{Transport: probeTransport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("http get %s: %w", req.URL, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("http get %s: status %d", req.URL, resp.StatusCode)
	}
	return nil
}

// podGrace is a pod's termination grace period (default 30 s).
func (d *Daemon) podGrace(pod *manifests.Pod) time.Duration {
	if pod != nil && pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// preStopExtension is the time a container still gets to stop after a
// preStop hook used up its grace period, as the kubelet's.
const preStopExtension = 2 * time.Second

// killContainer stops a running container as the kubelet does: its preStop
// hook (if c has one) within grace, then SIGTERM, then SIGKILL when what is
// left of grace runs out. c may be nil when the spec is unknown.
func (d *Daemon) killContainer(ctx context.Context, pod *manifests.Pod, c *manifests.Container, ci ContainerInfo, podIP string, grace time.Duration) {
	deadline := time.Now().Add(grace)
	stopIn := grace
	if c != nil && c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		hctx, cancel := context.WithDeadline(ctx, deadline)
		err := d.runHandler(hctx, handlerOfHook(c.Lifecycle.PreStop), target{containerID: ci.ID, container: c, podIP: podIP})
		cancel()
		if err != nil && ctx.Err() == nil && pod != nil {
			d.event(ctx, pod, "Warning", "FailedPreStopHook", fmt.Sprintf("PreStop hook of container %s failed: %v", c.Name, err))
		}
		stopIn = max(time.Until(deadline), preStopExtension)
	}
	if ctx.Err() != nil {
		return
	}
	if err := d.Runtime.StopContainer(ctx, ci.ID, stopIn); err != nil && !errors.Is(err, ErrNotFound) {
		d.Log.Warn("stop container", "container", ci.Name, "err", err)
	}
}

// postStart runs a container's postStart hook right after it started. When
// the hook fails the container is killed (and restarted by its policy);
// it returns false then.
func (d *Daemon) postStart(ctx context.Context, pod *manifests.Pod, c *manifests.Container, id, podIP string) bool {
	if c.Lifecycle == nil || c.Lifecycle.PostStart == nil {
		return true
	}
	err := d.runHandler(ctx, handlerOfHook(c.Lifecycle.PostStart), target{containerID: id, container: c, podIP: podIP})
	if err == nil || ctx.Err() != nil {
		return true
	}
	d.Log.Info("postStart hook failed", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "err", err)
	d.event(ctx, pod, "Warning", "FailedPostStartHook", fmt.Sprintf("PostStart hook of container %s failed: %v", c.Name, err))
	d.killContainer(ctx, pod, c, ContainerInfo{ID: id, Name: c.Name}, podIP, d.podGrace(pod))
	return false
}

// stopPodContainers stops every running container of a runtime pod at
// once, each with its preStop hook (from spec, when known), within the
// pod's grace period from now.
func (d *Daemon) stopPodContainers(ctx context.Context, spec *manifests.Pod, rp *PodInfo, grace time.Duration) {
	var wg sync.WaitGroup
	for _, ci := range rp.Containers {
		if ci.State != StateRunning {
			continue
		}
		var c *manifests.Container
		if spec != nil {
			c = findSpec(spec, ci.Labels[LabelContainer])
		}
		wg.Go(func() { d.killContainer(ctx, spec, c, ci, rp.IP, grace) })
	}
	wg.Wait()
}

// findSpec returns the app or init container of a pod by name, or nil.
func findSpec(pod *manifests.Pod, name string) *manifests.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}

// hasPreStop reports whether any container of a pod has a preStop hook.
func hasPreStop(pod *manifests.Pod) bool {
	if pod == nil {
		return false
	}
	for _, c := range pod.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			return true
		}
	}
	return false
}
