package node

import (
	"context"
	"errors"
	"io"
	"time"
)

// Runtime errors, mapped from the runtime's own codes by each adapter.
var (
	// ErrNotFound: the pod, container or image does not exist.
	ErrNotFound = errors.New("runtime: not found")
	// ErrConflict: the name is taken, or the object is in a state that
	// forbids the operation.
	ErrConflict = errors.New("runtime: conflict")
)

// Runtime is what the node daemon needs from a container engine. One
// Capstan pod is one runtime pod; each container restart is a new runtime
// container (so the previous instance's logs stay readable). Every method is
// safe for concurrent use.
type Runtime interface {
	// Info describes the engine and the host's capacity.
	Info(ctx context.Context) (RuntimeInfo, error)
	// ListPods returns the pods whose labels include every label in match,
	// with their containers.
	ListPods(ctx context.Context, match map[string]string) ([]PodInfo, error)
	// CreatePod creates a pod and starts its infrastructure (network,
	// published ports); it returns the pod's ID.
	CreatePod(ctx context.Context, cfg PodConfig) (string, error)
	// RemovePod stops (SIGTERM, then SIGKILL after grace) and removes a pod
	// with all its containers. A missing pod is not an error.
	RemovePod(ctx context.Context, podID string, grace time.Duration) error
	// CreateContainer creates (but does not start) a container in a pod.
	CreateContainer(ctx context.Context, podID string, cfg ContainerConfig) (string, error)
	// StartContainer starts a created container.
	StartContainer(ctx context.Context, id string) error
	// StopContainer sends SIGTERM, then SIGKILL after grace.
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	// RemoveContainer removes a container, killing it if it runs. A missing
	// container is not an error.
	RemoveContainer(ctx context.Context, id string) error
	// ContainerLogs copies a container's output to w; with follow it keeps
	// copying until ctx ends or the container exits. tail < 0 means all.
	ContainerLogs(ctx context.Context, id string, follow bool, tail int, w io.Writer) error
	// ImageExists reports whether an image is present locally.
	ImageExists(ctx context.Context, ref string) (bool, error)
	// Exec runs cmd in a running container, copying its output to stdout
	// and stderr (either may be nil), and returns its exit code. With tty
	// false and stdin nil it is what probes and hooks use.
	Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
	// Stats samples the CPU and memory use of running containers.
	Stats(ctx context.Context, ids []string) (map[string]ContainerStats, error)
	// EnsureVolume creates a named volume unless it exists.
	EnsureVolume(ctx context.Context, name string, labels map[string]string) error
	// RemoveVolume removes a named volume; a missing one is not an error.
	RemoveVolume(ctx context.Context, name string) error
}

// ContainerStats is one sample of a container's resource use.
type ContainerStats struct {
	// CPUNanos is the CPU time used since the container started; two
	// samples give a rate.
	CPUNanos    uint64
	MemoryBytes uint64
	Time        time.Time
}

// Mount types.
const (
	MountBind   = "bind"   // Source is a host path
	MountVolume = "volume" // Source is a named volume
	MountTmpfs  = "tmpfs"  // memory-backed scratch space
)

// Mount places a host path, a named volume or a tmpfs in a container.
type Mount struct {
	Type     string
	Source   string
	Target   string
	ReadOnly bool
}

// HostAlias is an extra /etc/hosts entry of a pod.
type HostAlias struct {
	IP        string
	Hostnames []string
}

// RuntimeInfo describes the engine and the host.
type RuntimeInfo struct {
	Name          string // "podman"
	Version       string
	CPUs          int
	MemoryBytes   int64
	OS, Arch      string
	CgroupVersion string
}

// PortMapping publishes a container port on the host.
type PortMapping struct {
	HostIP        string
	HostPort      uint16
	ContainerPort uint16
	Protocol      string // "tcp" or "udp"
}

// PodConfig is a pod to create.
type PodConfig struct {
	Name     string
	Hostname string
	Labels   map[string]string
	Ports    []PortMapping
	// HostAliases are added to the pod's /etc/hosts.
	HostAliases []HostAlias
	// DNS is the pod's resolver configuration; empty keeps the runtime's
	// default (the host's resolvers).
	DNS DNSConfig
}

// DNSConfig is a pod's resolv.conf.
type DNSConfig struct {
	Servers  []string // nameserver addresses
	Searches []string // search domains
	Options  []string // "ndots:5"
}

// ContainerConfig is a container to create inside a pod.
type ContainerConfig struct {
	Name       string
	Image      string
	Command    []string // entrypoint; empty keeps the image's
	Args       []string
	Env        map[string]string
	WorkingDir string
	Labels     map[string]string
	// MemoryLimit in bytes and CPULimitMilli in millicores; 0 means none.
	MemoryLimit   int64
	CPULimitMilli int64
	Mounts        []Mount
}

// PodInfo is a pod as the runtime sees it.
type PodInfo struct {
	ID      string
	Name    string
	Labels  map[string]string
	Created time.Time
	// IP is the pod's address on the node's container network, "" when
	// unknown.
	IP string
	// Ports are the pod's published ports as the runtime bound them: a
	// mapping asked with HostPort 0 holds the port the runtime picked.
	Ports      []PortMapping
	Containers []ContainerInfo // the pod's own containers, not its infra
}

// Container states as the runtime reports them.
const (
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
	StateUnknown = "unknown"
)

// ContainerInfo is a container as the runtime sees it.
type ContainerInfo struct {
	ID         string
	Name       string
	Image      string
	Labels     map[string]string
	State      string // one of the State constants ("paused" etc. map to running)
	ExitCode   int32
	OOMKilled  bool
	StartedAt  time.Time
	FinishedAt time.Time
	Created    time.Time
}
