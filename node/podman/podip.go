//go:build remote

package podman

import (
	"context"
	"sort"

	"github.com/containers/podman/v5/pkg/bindings/containers"
	entities "github.com/containers/podman/v5/pkg/domain/entities/types"
)

// podIP returns a pod's address on its container network: the infra
// container's, inspected once per pod and cached until the pod is removed
// (a pod's infra container keeps its address for the pod's life). It
// returns "" when the pod has no infra container or no address yet; the
// next list asks again.
func (r *Runtime) podIP(ctx context.Context, p *entities.ListPodsReport) string {
	if p.InfraId == "" {
		return ""
	}
	if ip, ok := r.ips.Load(p.Id); ok {
		return ip.(string)
	}
	data, err := containers.Inspect(ctx, p.InfraId, nil)
	if err != nil || data.NetworkSettings == nil {
		return ""
	}
	ns := data.NetworkSettings
	ip := ns.IPAddress
	if ip == "" {
		// The first network by name, for a stable answer.
		names := make([]string, 0, len(ns.Networks))
		for n, nw := range ns.Networks {
			if nw != nil && nw.IPAddress != "" {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		if len(names) > 0 {
			ip = ns.Networks[names[0]].IPAddress
		}
	}
	if ip != "" {
		r.ips.Store(p.Id, ip)
	}
	return ip
}
