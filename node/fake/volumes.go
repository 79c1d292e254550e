package fake

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"

	"github.com/capstan-io/capstan/node"
)

// EnsureVolume records a named volume unless one of that name exists.
func (r *Runtime) EnsureVolume(ctx context.Context, name string, labels map[string]string) error {
	if name == "" {
		return fmt.Errorf("ensure volume: empty name: %w", node.ErrConflict)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.volumes == nil {
		r.volumes = map[string]map[string]string{}
	}
	if _, ok := r.volumes[name]; !ok {
		r.volumes[name] = maps.Clone(labels)
	}
	return nil
}

// RemoveVolume forgets a named volume; a missing one is not an error, one
// mounted by a container is node.ErrConflict, as in Podman.
func (r *Runtime) RemoveVolume(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.ctrs {
		for _, m := range c.cfg.Mounts {
			if m.Type == node.MountVolume && m.Source == name {
				return fmt.Errorf("remove volume %s: in use by %s: %w", name, c.cfg.Name, node.ErrConflict)
			}
		}
	}
	delete(r.volumes, name)
	return nil
}

// Volumes returns the named volumes and their labels.
func (r *Runtime) Volumes() map[string]map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]map[string]string, len(r.volumes))
	for k, v := range r.volumes {
		out[k] = maps.Clone(v)
	}
	return out
}

// ContainerConfig returns the configuration a container was created with.
func (r *Runtime) ContainerConfig(id string) (node.ContainerConfig, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	if !ok {
		return node.ContainerConfig{}, false
	}
	cfg := c.cfg
	cfg.Env = maps.Clone(cfg.Env)
	cfg.Mounts = slices.Clone(cfg.Mounts)
	return cfg, true
}

// PodConfig returns the configuration a pod was created with.
func (r *Runtime) PodConfig(id string) (node.PodConfig, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pods[id]
	if !ok {
		return node.PodConfig{}, false
	}
	cfg := p.cfg
	cfg.HostAliases = slices.Clone(cfg.HostAliases)
	return cfg, true
}

// checkMounts validates a container's mounts as Podman would: a bind's
// source must exist; a named volume that does not exist is created.
// r.mu must be held.
func (r *Runtime) checkMounts(mounts []node.Mount) error {
	for _, m := range mounts {
		switch m.Type {
		case node.MountBind:
			if _, err := os.Stat(m.Source); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("bind mount %s: %w", m.Source, node.ErrNotFound)
				}
				return fmt.Errorf("bind mount %s: %w", m.Source, err)
			}
		case node.MountTmpfs:
		case node.MountVolume:
			if r.volumes == nil {
				r.volumes = map[string]map[string]string{}
			}
			if _, ok := r.volumes[m.Source]; !ok {
				r.volumes[m.Source] = nil
			}
		default:
			return fmt.Errorf("mount at %s: unknown type %q", m.Target, m.Type)
		}
		if m.Target == "" || m.Target[0] != '/' {
			return fmt.Errorf("mount target %q is not absolute", m.Target)
		}
	}
	return nil
}
