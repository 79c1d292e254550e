//go:build linux

package podman

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Upper bounds of the default ulimits. Podman's default nofile is 1048576;
// Podman 4.3 lowers its own nproc limit (hard and soft) to 32768 at start,
// so a container cannot get more than that.
const (
	maxNofile = 1048576
	maxNproc  = 32768
)

// ServiceOptions say where to find or how to start a Podman service.
type ServiceOptions struct {
	// SocketURI is tried first; when it answers, EnsureService uses it and
	// starts nothing. Empty means the socket in DataDir.
	SocketURI string
	// DataDir holds the service's containers.conf, socket and log. It is
	// created if missing. Required when a service must be started.
	DataDir string
	// Podman is the podman binary; empty means "podman" on PATH.
	Podman string
	// StartTimeout bounds the wait for a started service to answer;
	// 0 means 30s.
	StartTimeout time.Duration
	// Logger receives what happens; nil discards.
	Logger *slog.Logger
}

// ConfigPath is where EnsureService writes the containers.conf for a data
// directory. Run podman commands (scripts/build-image.sh, say) with
// CONTAINERS_CONF set to it to share the service's settings.
func ConfigPath(dataDir string) string { return filepath.Join(dataDir, "containers.conf") }

// SocketPath is the socket of a service EnsureService starts in dataDir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "podman.sock") }

// EnsureService returns the URI of a Podman service that answers. It uses
// opts.SocketURI, or a service already listening in opts.DataDir; otherwise
// it writes a containers.conf for this host (runc, cgroupfs, file events,
// ulimits within the process's hard limits) into opts.DataDir and starts
// "podman system service --time=0" with it.
//
// stop terminates the service EnsureService started (SIGTERM, then SIGKILL
// after 10s) and waits for it; containers keep running under conmon. For a
// service it did not start, stop does nothing. stop is safe to call more
// than once, from any goroutine.
func EnsureService(ctx context.Context, opts ServiceOptions) (socketURI string, stop func() error, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	noop := func() error { return nil }

	if opts.SocketURI != "" {
		if err := Ping(ctx, opts.SocketURI); err == nil {
			log.Info("using running podman service", "socket", opts.SocketURI)
			return opts.SocketURI, noop, nil
		} else if opts.DataDir == "" {
			return "", nil, fmt.Errorf("podman service at %s: %w", opts.SocketURI, err)
		} else {
			log.Info("podman service does not answer; starting one", "socket", opts.SocketURI, "err", err)
		}
	}
	if opts.DataDir == "" {
		return "", nil, errors.New("podman service: neither a socket nor a data dir given")
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return "", nil, fmt.Errorf("podman data dir: %w", err)
	}
	uri := "unix://" + SocketPath(dir)
	if err := Ping(ctx, uri); err == nil {
		log.Info("using running podman service", "socket", uri)
		return uri, noop, nil
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("podman data dir: %w", err)
	}
	conf := ConfigPath(dir)
	if err := writeFileAtomic(conf, HostConfig()); err != nil {
		return "", nil, fmt.Errorf("write %s: %w", conf, err)
	}
	// A socket file left by a service that died would make the new one
	// fail to listen.
	if err := os.Remove(SocketPath(dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", nil, fmt.Errorf("remove stale socket: %w", err)
	}
	logPath := filepath.Join(dir, "service.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("open service log: %w", err)
	}
	defer logFile.Close() // the child keeps its own descriptor

	bin := opts.Podman
	if bin == "" {
		bin = "podman"
	}
	// Not CommandContext: the service outlives ctx, until stop.
	cmd := exec.Command(bin, "system", "service", "--time=0", uri)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// In the data dir: conmon, which the service starts for each
	// container, writes a file named oom into its working directory when
	// a container is killed for memory, and it would otherwise land in
	// whatever directory the caller ran from.
	cmd.Dir = dir
	// Own process group, so a terminal's ^C reaches the caller, which stops
	// the service itself; and a signal if the caller dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start podman service: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	stop = sync.OnceValue(func() error {
		err := terminate(cmd, exited)
		log.Info("stopped podman service", "socket", uri, "err", err)
		return err
	})

	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		lastErr := Ping(wctx, uri)
		if lastErr == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err // for stop
			return "", nil, fmt.Errorf("podman service exited before answering (%v); see %s: %s", err, logPath, tailFile(logPath))
		case <-wctx.Done():
			_ = stop()
			return "", nil, fmt.Errorf("podman service did not answer within %v: %w (last: %w)", timeout, wctx.Err(), lastErr)
		case <-tick.C:
		}
	}
	log.Info("started podman service", "socket", uri, "config", conf, "log", logPath,
		"pid", cmd.Process.Pid, "took", time.Since(begin).Round(time.Millisecond))
	return uri, stop, nil
}

// terminate sends SIGTERM, then SIGKILL after 10s, and waits.
func terminate(cmd *exec.Cmd, exited chan error) error {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop podman service: %w", err)
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	var err error
	select {
	case err = <-exited:
	case <-t.C:
		_ = cmd.Process.Kill()
		err = <-exited
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
		if ee.ExitCode() == 0 {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("podman service: %w", err)
	}
	return nil
}

// HostConfig returns a containers.conf that works on hosts like Capstan's
// nodes: runc (crun fails on hybrid cgroups), cgroupfs and file events (PID 1
// need not be systemd), and default ulimits no higher than this process's
// hard limits, since without CAP_SYS_RESOURCE a container cannot raise them.
// The ulimits apply to pods' infra containers too. The infra image is the
// one Podman builds locally from catatonit, so no registry is needed.
func HostConfig() []byte {
	nofile := clampRlimit(unix.RLIMIT_NOFILE, maxNofile)
	nproc := clampRlimit(unix.RLIMIT_NPROC, maxNproc)
	var b bytes.Buffer
	b.WriteString("# Written by Capstan (node/podman.EnsureService); rewritten at each start.\n")
	b.WriteString("[containers]\n")
	fmt.Fprintf(&b, "default_ulimits = [\"nofile=%d:%d\", \"nproc=%d:%d\"]\n", nofile, nofile, nproc, nproc)
	b.WriteString("log_driver = \"k8s-file\"\n")
	b.WriteString("\n[engine]\n")
	b.WriteString("runtime = \"runc\"\n")
	b.WriteString("cgroup_manager = \"cgroupfs\"\n")
	b.WriteString("events_logger = \"file\"\n")
	return b.Bytes()
}

// clampRlimit returns want, or the process's hard limit when lower.
func clampRlimit(resource int, want uint64) uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(resource, &rl); err != nil {
		return want
	}
	return min(rl.Max, want)
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// tailFile returns the last lines of a small file, for error messages.
func tailFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// Ping reports whether a Podman service answers at uri (unix:// or
// tcp://), with GET /_ping.
func Ping(ctx context.Context, uri string) error {
	u, err := url.Parse(uri)
	if err != nil {
		return fmt.Errorf("parse %s: %w", uri, err)
	}
	var network, addr string
	switch u.Scheme {
	case "unix":
		network, addr = "unix", u.Path
	case "tcp":
		network, addr = "tcp", u.Host
	default:
		return fmt.Errorf("ping %s: scheme %q not supported", uri, u.Scheme)
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://d/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("ping %s: %w", uri, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping %s: %s", uri, resp.Status)
	}
	return nil
}
