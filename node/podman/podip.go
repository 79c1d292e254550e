//go:build remote

package podman

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/containers/podman/v5/pkg/bindings/containers"
	entities "github.com/containers/podman/v5/pkg/domain/entities/types"

	"github.com/capstan-io/capstan/node"
)

// podNet is what the node needs of a pod's network: its address and its
// published ports as bound (with the host ports Podman picked).
type podNet struct {
	ip    string
	ports []node.PortMapping
}

// podNetwork returns a pod's address on its container network and its
// published ports: the infra container's, inspected once per pod and
// cached until the pod is removed (a pod's infra container keeps its
// address and port bindings for the pod's life). It returns a zero podNet
// when the pod has no infra container or no address yet; the next list
// asks again.
func (r *Runtime) podNetwork(ctx context.Context, p *entities.ListPodsReport) podNet {
	if p.InfraId == "" {
		return podNet{}
	}
	if n, ok := r.ips.Load(p.Id); ok {
		return n.(podNet)
	}
	data, err := containers.Inspect(ctx, p.InfraId, nil)
	if err != nil || data.NetworkSettings == nil {
		return podNet{}
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
	n := podNet{ip: ip}
	for spec, binds := range ns.Ports { // "80/tcp" -> bindings
		port, proto, _ := strings.Cut(spec, "/")
		cp, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			continue
		}
		for _, b := range binds {
			hp, err := strconv.ParseUint(b.HostPort, 10, 16)
			if err != nil || hp == 0 {
				continue
			}
			n.ports = append(n.ports, node.PortMapping{HostIP: b.HostIP, HostPort: uint16(hp), ContainerPort: uint16(cp), Protocol: proto})
		}
	}
	sort.Slice(n.ports, func(i, j int) bool {
		a, b := n.ports[i], n.ports[j]
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		return a.ContainerPort < b.ContainerPort
	})
	if ip != "" {
		r.ips.Store(p.Id, n)
	}
	return n
}
