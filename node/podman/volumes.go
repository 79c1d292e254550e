//go:build remote

package podman

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/pods"
	"github.com/containers/podman/v5/pkg/bindings/volumes"
	entities "github.com/containers/podman/v5/pkg/domain/entities/types"
	"github.com/containers/podman/v5/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/capstan-io/capstan/node"
)

// EnsureVolume creates a named volume with labels unless one of that name
// exists (an existing volume keeps its labels and data).
func (r *Runtime) EnsureVolume(ctx context.Context, name string, labels map[string]string) error {
	bctx := r.bind(ctx)
	ok, err := volumes.Exists(bctx, name, nil)
	if err != nil {
		return fmt.Errorf("volume exists %s: %w", name, apiErr(err))
	}
	if ok {
		return nil
	}
	_, err = volumes.Create(bctx, entities.VolumeCreateOptions{Name: name, Labels: labels}, nil)
	if err != nil {
		err = apiErr(err)
		if errors.Is(err, node.ErrConflict) {
			return nil // created meanwhile
		}
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	r.log.Debug("created volume", "volume", name)
	return nil
}

// RemoveVolume removes a named volume; a missing one is not an error, one
// in use by a container is node.ErrConflict.
func (r *Runtime) RemoveVolume(ctx context.Context, name string) error {
	if err := volumes.Remove(r.bind(ctx), name, nil); err != nil {
		err = apiErr(err)
		if errors.Is(err, node.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

// applyMounts adds a container's mounts to its spec: binds and tmpfs as
// OCI mounts, named volumes as Podman's named volumes.
func applyMounts(s *specgen.SpecGenerator, mounts []node.Mount) error {
	for _, m := range mounts {
		ro := "rw"
		if m.ReadOnly {
			ro = "ro"
		}
		switch m.Type {
		case node.MountBind:
			s.Mounts = append(s.Mounts, spec.Mount{Type: "bind", Source: m.Source, Destination: m.Target, Options: []string{"rbind", ro}})
		case node.MountTmpfs:
			s.Mounts = append(s.Mounts, spec.Mount{Type: "tmpfs", Source: "tmpfs", Destination: m.Target, Options: []string{ro, "nosuid", "nodev"}})
		case node.MountVolume:
			s.Volumes = append(s.Volumes, &specgen.NamedVolume{Name: m.Source, Dest: m.Target, Options: []string{ro}})
		default:
			return fmt.Errorf("mount at %s: unknown type %q", m.Target, m.Type)
		}
	}
	return nil
}

// hostAdds turns host aliases with an address into Podman's "name:ip"
// entries; aliases without one (the pod's own names) are left for
// addSelfHosts.
func hostAdds(aliases []node.HostAlias) []string {
	var out []string
	for _, a := range aliases {
		if a.IP == "" {
			continue
		}
		for _, h := range a.Hostnames {
			out = append(out, h+":"+a.IP)
		}
	}
	return out
}

// addSelfHosts appends the host aliases without an address to the pod's
// /etc/hosts with the pod's own address, once its network is up. Every
// container of a pod shares the infra container's hosts file, and Podman
// only appends to it, so the line stays.
func (r *Runtime) addSelfHosts(ctx context.Context, podID string, aliases []node.HostAlias) error {
	var names []string
	for _, a := range aliases {
		if a.IP == "" {
			names = append(names, a.Hostnames...)
		}
	}
	if len(names) == 0 {
		return nil
	}
	p, err := pods.Inspect(ctx, podID, nil)
	if err != nil {
		return fmt.Errorf("inspect pod %s: %w", podID, apiErr(err))
	}
	if p.InfraContainerID == "" {
		return fmt.Errorf("pod %s has no infra container", podID)
	}
	data, err := containers.Inspect(ctx, p.InfraContainerID, nil)
	if err != nil {
		return fmt.Errorf("inspect infra of pod %s: %w", podID, apiErr(err))
	}
	ip := ""
	if ns := data.NetworkSettings; ns != nil {
		ip = ns.IPAddress
		for _, nw := range ns.Networks {
			if ip == "" && nw != nil {
				ip = nw.IPAddress
			}
		}
	}
	if ip == "" || data.HostsPath == "" {
		return fmt.Errorf("pod %s: no address or hosts file yet", podID)
	}
	f, err := os.OpenFile(data.HostsPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pod %s hosts file: %w", podID, err)
	}
	_, werr := fmt.Fprintf(f, "%s\t%s\n", ip, strings.Join(names, " "))
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("pod %s hosts file: %w", podID, werr)
	}
	return nil
}
