package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/capstan-io/capstan/manifests"
	dnssrv "github.com/capstan-io/capstan/node/dataplane/dns"
	"github.com/capstan-io/capstan/node/dataplane/proxy"
)

// LabelServiceName names the Service an EndpointSlice belongs to.
const LabelServiceName = "kubernetes.io/service-name"

// Plan is what the data plane serves for one view of the services and
// their endpoints.
type Plan struct {
	// Frontends are the proxy's listeners: every port of every service
	// with a cluster IP, and node ports.
	Frontends []proxy.Frontend
	// ClusterIPs are the services' cluster IPs, to hold on the interface.
	ClusterIPs []netip.Addr
	// Zone holds the services' DNS records.
	Zone *dnssrv.Zone
}

// PlanInput is one view of the services and their endpoints.
type PlanInput struct {
	// Services and Slices are keyed "<namespace>/<service name>"; a
	// service's slice is the one labelled with its name.
	Services map[string]*manifests.Service
	Slices   map[string]*manifests.EndpointSlice
	// NodeAddress is where node ports listen; invalid means nowhere.
	// NodeAddressV6 is where they listen over IPv6 as well (unless
	// IPv4Only); invalid means nowhere.
	NodeAddress, NodeAddressV6 netip.Addr
	// IPv4Only leaves IPv6 cluster IPs out (no address, listener or AAAA
	// record): a data plane on a host without IPv6 serves dual-stack
	// Services over IPv4 only, and its pods get no address they cannot
	// reach.
	IPv4Only bool
	// Domain is the cluster domain ("cluster.local").
	Domain string
}

// BuildPlan computes the frontends, addresses and records of in. It is
// pure: the same input gives the same plan, frontends and records sorted.
func BuildPlan(in PlanInput) Plan {
	p := Plan{Zone: dnssrv.NewZone(in.Domain)}
	keys := make([]string, 0, len(in.Services))
	for k := range in.Services {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		svc := in.Services[k]
		eps := endpointsOf(in.Slices[k])
		base := fmt.Sprintf("%s.%s.svc.%s", svc.Name, svc.Namespace, in.Domain)
		switch {
		case svc.Spec.Type == manifests.ServiceExternalName:
			if svc.Spec.ExternalName != "" {
				p.Zone.SetCNAME(base, svc.Spec.ExternalName)
			}
		case svc.Spec.ClusterIP == manifests.ClusterIPNone:
			p.headless(svc, base, eps)
		default:
			p.clusterIP(svc, base, eps, in)
		}
	}
	return p
}

// endpoint is one endpoint of a slice, parsed.
type endpoint struct {
	addr  netip.Addr
	ready bool
	name  string // the DNS label of its own name, "" if none
	ports map[string]int32
}

func endpointsOf(s *manifests.EndpointSlice) []endpoint {
	if s == nil {
		return nil
	}
	var out []endpoint
	for _, e := range s.Endpoints {
		if len(e.Addresses) == 0 {
			continue
		}
		a, err := netip.ParseAddr(e.Addresses[0])
		if err != nil {
			continue
		}
		c := e.Conditions
		ready := (c.Ready == nil || *c.Ready) && (c.Terminating == nil || !*c.Terminating)
		name := ""
		switch {
		case e.Hostname != nil && *e.Hostname != "":
			name = *e.Hostname
		case e.TargetRef != nil && e.TargetRef.Name != "":
			name = strings.ReplaceAll(e.TargetRef.Name, ".", "-")
		}
		out = append(out, endpoint{addr: a.Unmap(), ready: ready, name: name, ports: e.HostPorts})
	}
	return out
}

// portKey is how an endpoint's HostPorts names a service port.
func portKey(sp manifests.ServicePort) string {
	if sp.Name != "" {
		return sp.Name
	}
	return strconv.Itoa(int(sp.Port))
}

func protocol(sp manifests.ServicePort) string {
	if strings.EqualFold(sp.Protocol, proxy.UDP) {
		return proxy.UDP
	}
	return proxy.TCP
}

func validPort(p int32) bool { return p > 0 && p < 65536 }

// clusterIPsOf returns the valid cluster IPs of a service, IPv4 ones only
// if v4only.
func clusterIPsOf(svc *manifests.Service, v4only bool) []netip.Addr {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []netip.Addr
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(out, a.Unmap()) && (!v4only || a.Unmap().Is4()) {
			out = append(out, a.Unmap())
		}
	}
	return out
}

func (p *Plan) clusterIP(svc *manifests.Service, base string, eps []endpoint, in PlanInput) {
	ips := clusterIPsOf(svc, in.IPv4Only)
	nodes := []netip.Addr{in.NodeAddress}
	if !in.IPv4Only && in.NodeAddressV6 != in.NodeAddress {
		nodes = append(nodes, in.NodeAddressV6)
	}
	if len(ips) == 0 {
		return // not allocated yet
	}
	p.ClusterIPs = append(p.ClusterIPs, ips...)
	p.Zone.AddAddr(base, ips...)
	for _, sp := range svc.Spec.Ports {
		if !validPort(sp.Port) {
			continue
		}
		proto := protocol(sp)
		var backends []proxy.Backend
		for _, e := range eps {
			if hp := e.ports[portKey(sp)]; validPort(hp) {
				backends = append(backends, proxy.Backend{Addr: netip.AddrPortFrom(e.addr, uint16(hp)), Ready: e.ready})
			}
		}
		name := svc.Namespace + "/" + svc.Name + ":" + portKey(sp)
		for _, ip := range ips {
			p.Frontends = append(p.Frontends, proxy.Frontend{Name: name, Protocol: proto,
				Listen: netip.AddrPortFrom(ip, uint16(sp.Port)), Backends: backends})
		}
		for _, node := range nodes {
			if svc.Spec.Type == manifests.ServiceNodePort && validPort(sp.NodePort) && node.IsValid() {
				p.Frontends = append(p.Frontends, proxy.Frontend{Name: name + " (node port)", Protocol: proto,
					Listen: netip.AddrPortFrom(node, uint16(sp.NodePort)), Backends: backends})
			}
		}
		if sp.Name != "" {
			p.Zone.AddSRV(srvName(sp, base), dnssrv.SRV{Target: base, Port: uint16(sp.Port), Weight: 100})
		}
	}
}

func srvName(sp manifests.ServicePort, base string) string {
	return "_" + sp.Name + "._" + strings.ToLower(protocol(sp)) + "." + base
}

// headless publishes a headless service's ready endpoints: their addresses
// under the service's name, each under its own name, and SRV records with
// the host port of each named port.
func (p *Plan) headless(svc *manifests.Service, base string, eps []endpoint) {
	p.Zone.Touch(base)
	var ready []endpoint
	for _, e := range eps {
		if e.ready || svc.Spec.PublishNotReadyAddresses {
			ready = append(ready, e)
		}
	}
	var addrs []netip.Addr
	for _, e := range ready {
		if !slices.Contains(addrs, e.addr) {
			addrs = append(addrs, e.addr)
		}
		if e.name != "" {
			p.Zone.AddAddr(e.name+"."+base, e.addr)
		}
	}
	p.Zone.AddAddr(base, addrs...)
	for _, sp := range svc.Spec.Ports {
		if sp.Name == "" {
			continue
		}
		var recs []dnssrv.SRV
		for _, e := range ready {
			hp := e.ports[portKey(sp)]
			if !validPort(hp) || e.name == "" {
				continue
			}
			recs = append(recs, dnssrv.SRV{Target: e.name + "." + base, Port: uint16(hp)})
		}
		for i := range recs {
			recs[i].Weight = uint16(max(1, 100/len(recs)))
		}
		if len(recs) > 0 {
			p.Zone.AddSRV(srvName(sp, base), recs...)
		}
	}
}
