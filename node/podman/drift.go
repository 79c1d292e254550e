//go:build remote

package podman

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/containers"
	entities "github.com/containers/podman/v5/pkg/domain/entities/types"
	spec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/capstan-io/capstan/node"
)

var _ node.DriftRuntime = (*Runtime)(nil)

// Live settings of a container are read from its cgroup, not from
// Podman: Podman 4.3's `podman update` changes the cgroup but not the
// container's configuration, so inspect (and stats' memory limit) keep
// showing the limits the container was created with. The cgroup path
// comes from one inspect per container, cached. Where the cgroup cannot
// be read (Podman on another host, or a rootless one), inspect is asked
// each time, which is right on the Podman versions that record updates.

// cgroupRoot is where the cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupPaths caches each container's cgroup path, by container ID.
type cgroupPaths struct {
	mu     sync.Mutex
	paths  map[string]cgroupPath
	pruned time.Time
}

type cgroupPath struct {
	path string
	used time.Time
}

// get returns the cached cgroup path of id; now and then it forgets the
// paths not asked for in a while (removed containers).
func (c *cgroupPaths) get(id string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.pruned) > time.Minute {
		for k, p := range c.paths {
			if now.Sub(p.used) > inspectCacheTTL {
				delete(c.paths, k)
			}
		}
		c.pruned = now
	}
	p, ok := c.paths[id]
	if ok {
		p.used = now
		c.paths[id] = p
	}
	return p.path, ok
}

func (c *cgroupPaths) put(id, path string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paths == nil {
		c.paths = map[string]cgroupPath{}
	}
	c.paths[id] = cgroupPath{path: path, used: now}
}

// LiveContainer reads a running container's pause state and limits from
// its cgroup (see above).
func (r *Runtime) LiveContainer(ctx context.Context, id string) (node.LiveContainer, error) {
	now := time.Now()
	path, ok := r.cgroups.get(id, now)
	if !ok {
		data, err := containers.Inspect(r.bind(ctx), id, nil)
		if err != nil {
			return node.LiveContainer{}, fmt.Errorf("inspect container %s: %w", id, apiErr(err))
		}
		if data.State == nil || data.State.CgroupPath == "" {
			return node.LiveContainer{}, fmt.Errorf("container %s: no cgroup", id)
		}
		l, err := readCgroup(cgroupRoot, data.State.CgroupPath)
		if err != nil {
			if data.HostConfig == nil {
				return node.LiveContainer{}, fmt.Errorf("container %s: %w", id, err)
			}
			return liveFromInspect(data.State.Paused, data.HostConfig.Memory, data.HostConfig.CpuQuota, data.HostConfig.CpuPeriod), nil
		}
		r.cgroups.put(id, data.State.CgroupPath, now)
		return l, nil
	}
	l, err := readCgroup(cgroupRoot, path)
	if err != nil {
		return node.LiveContainer{}, fmt.Errorf("container %s: %w", id, err)
	}
	return l, nil
}

func liveFromInspect(paused bool, memory, quota int64, period uint64) node.LiveContainer {
	l := node.LiveContainer{Paused: paused, MemoryLimit: max(memory, 0)}
	if quota > 0 && period > 0 {
		l.CPULimitMilli = quota * 1000 / int64(period)
	}
	return l
}

// readCgroup reads a container's pause state and limits from the cgroup
// at path (relative to each hierarchy under root): cgroup v2 when root
// has cgroup.controllers, v1 otherwise.
func readCgroup(root, path string) (node.LiveContainer, error) {
	var l node.LiveContainer
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		dir := filepath.Join(root, path)
		freeze, err := readValue(dir, "cgroup.freeze")
		if err != nil {
			return l, err
		}
		mem, err := readValue(dir, "memory.max")
		if err != nil {
			return l, err
		}
		cpu, err := readValue(dir, "cpu.max") // "max 100000" or "50000 100000"
		if err != nil {
			return l, err
		}
		l.Paused = freeze == "1"
		if l.MemoryLimit, err = parseLimit(mem); err != nil {
			return l, err
		}
		quota, period, _ := strings.Cut(cpu, " ")
		l.CPULimitMilli, err = cpuMilli(quota, period)
		return l, err
	}
	freeze, err := readValue(filepath.Join(root, "freezer", path), "freezer.state")
	if err != nil {
		return l, err
	}
	mem, err := readValue(filepath.Join(root, "memory", path), "memory.limit_in_bytes")
	if err != nil {
		return l, err
	}
	cpuDir := filepath.Join(root, "cpu", path)
	quota, err := readValue(cpuDir, "cpu.cfs_quota_us")
	if errors.Is(err, os.ErrNotExist) {
		cpuDir = filepath.Join(root, "cpu,cpuacct", path)
		quota, err = readValue(cpuDir, "cpu.cfs_quota_us")
	}
	if err != nil {
		return l, err
	}
	period, err := readValue(cpuDir, "cpu.cfs_period_us")
	if err != nil {
		return l, err
	}
	l.Paused = freeze == "FROZEN" || freeze == "FREEZING"
	if l.MemoryLimit, err = parseLimit(mem); err != nil {
		return l, err
	}
	l.CPULimitMilli, err = cpuMilli(quota, period)
	return l, err
}

func readValue(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("read cgroup: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// noLimit is above any real memory limit: cgroup v1 shows "none" as the
// largest page-aligned int64.
const noLimit = 1 << 62

// parseLimit reads a memory limit, 0 for none.
func parseLimit(s string) (int64, error) {
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memory limit %q: %w", s, err)
	}
	if n <= 0 || n >= noLimit {
		return 0, nil
	}
	return n, nil
}

// cpuMilli turns a CFS quota and period into millicores, 0 for none.
func cpuMilli(quota, period string) (int64, error) {
	if quota == "max" || quota == "-1" {
		return 0, nil
	}
	q, err := strconv.ParseInt(quota, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cpu quota %q: %w", quota, err)
	}
	p, err := strconv.ParseInt(period, 10, 64)
	if err != nil || p <= 0 {
		return 0, fmt.Errorf("cpu period %q: %v", period, err)
	}
	return q * 1000 / p, nil
}

// UnpauseContainer resumes a paused container.
func (r *Runtime) UnpauseContainer(ctx context.Context, id string) error {
	if err := containers.Unpause(r.bind(ctx), id, nil); err != nil {
		return fmt.Errorf("unpause container %s: %w", id, apiErr(err))
	}
	return nil
}

// UpdateContainerLimits sets a running container's memory and CPU limits
// (0 for none) in its cgroup.
func (r *Runtime) UpdateContainerLimits(ctx context.Context, id string, memory, cpuMilliLimit int64) error {
	mem := int64(-1) // unlimited
	if memory > 0 {
		mem = memory
	}
	quota := int64(-1)
	if cpuMilliLimit > 0 {
		quota = cpuMilliLimit * cpuPeriod / 1000
	}
	period := uint64(cpuPeriod)
	res := &spec.LinuxResources{Memory: &spec.LinuxMemory{Limit: &mem}, CPU: &spec.LinuxCPU{Quota: &quota, Period: &period}}
	if _, err := containers.Update(r.bind(ctx), &entities.ContainerUpdateOptions{NameOrID: id, Resources: res}); err != nil {
		return fmt.Errorf("update container %s: %w", id, apiErr(err))
	}
	return nil
}

// RenameContainer gives a container its name back.
func (r *Runtime) RenameContainer(ctx context.Context, id, name string) error {
	if err := containers.Rename(r.bind(ctx), id, new(containers.RenameOptions).WithName(name)); err != nil {
		return fmt.Errorf("rename container %s to %s: %w", id, name, apiErr(err))
	}
	return nil
}
