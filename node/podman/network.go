//go:build remote

package podman

import (
	"context"
	"errors"
	"fmt"

	"github.com/containers/podman/v5/pkg/bindings/network"
	nettypes "go.podman.io/common/libnetwork/types"

	"github.com/capstan-io/capstan/node"
)

// DefaultNetwork is the Podman network Capstan's pods run on: a bridge
// the node creates when it is missing, with an IPv6 subnet beside the
// IPv4 one where the host has IPv6 (dual stack), so pods reach IPv6
// cluster IPs through the host as they reach IPv4 ones. Podman picks its
// subnets (a free IPv4 /24 from its pool, 10.89.x.0 first, and a random
// unique local IPv6 /64) and its gateway is the host. Its DNS (aardvark)
// is off: pods resolve with the cluster DNS, given as --dns.
const DefaultNetwork = "capstan"

// LabelNetwork marks the networks Capstan created.
const LabelNetwork = "capstan.network"

// NetworkInfo says what a pod network offers.
type NetworkInfo struct {
	Name    string
	Subnets []string // as Podman reports them, IPv4 first as created
	IPv6    bool     // an IPv6 subnet: pods get an IPv6 address and route
	Created bool     // created by this call
}

// EnsureNetwork makes the runtime create its pods on the Podman network
// name, creating it when missing (a bridge without Podman's DNS; with an
// IPv6 subnet too if ipv6 is set). An existing network of that name is
// used as it is, IPv6 or not. Call it before the runtime creates pods. An
// empty name keeps Podman's default network (IPv4 only with netavark's
// defaults) and returns a zero NetworkInfo.
func (r *Runtime) EnsureNetwork(ctx context.Context, name string, ipv6 bool) (NetworkInfo, error) {
	if name == "" {
		return NetworkInfo{}, nil
	}
	bctx := r.bind(ctx)
	info := NetworkInfo{Name: name}
	nw, err := network.Inspect(bctx, name, nil)
	if err != nil && errors.Is(apiErr(err), node.ErrNotFound) {
		_, cerr := network.Create(bctx, &nettypes.Network{Name: name, Driver: "bridge", IPv6Enabled: ipv6,
			DNSEnabled: false, Labels: map[string]string{LabelNetwork: "pods"}})
		// Another node daemon on this host may have created it meanwhile
		// (a conflict): the inspection below tells.
		info.Created = cerr == nil
		nw, err = network.Inspect(bctx, name, nil)
		if err != nil && cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		return NetworkInfo{}, fmt.Errorf("podman network %s: %w", name, apiErr(err))
	}
	for _, s := range nw.Subnets {
		info.Subnets = append(info.Subnets, s.Subnet.String())
		if s.Subnet.IP.To4() == nil {
			info.IPv6 = true
		}
	}
	r.network = name
	return info, nil
}
