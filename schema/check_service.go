package schema

import (
	"net"
	"strconv"

	"github.com/capstan-io/capstan/manifests"
)

// checkService checks what spans a Service's fields, as Kubernetes'
// validation does, and defaults each port's targetPort to its port.
// The node port range (30000-32767) is the schema's; whether a cluster IP
// is inside the control plane's range, and free, is the allocator's
// business (it reports that on the Service's status).
func checkService(d doc, spec *manifests.ServiceSpec) []Error {
	var errs []Error
	at := []any{"spec"}
	external := spec.Type == manifests.ServiceExternalName
	headless := spec.ClusterIP == manifests.ClusterIPNone
	switch {
	case external && spec.ExternalName == "":
		errs = append(errs, d.errorf(sub(at, "type"), "type ExternalName needs spec.externalName"))
	case !external && spec.ExternalName != "":
		errs = append(errs, d.errorf(sub(at, "externalName"), "may only be set for type ExternalName"))
	}
	if external && spec.ClusterIP != "" {
		errs = append(errs, d.errorf(sub(at, "clusterIP"), "may not be set for type ExternalName"))
	}
	if ip := spec.ClusterIP; ip != "" && ip != manifests.ClusterIPNone && family(ip) == 0 {
		errs = append(errs, d.errorf(sub(at, "clusterIP"), `invalid value %q (want "", "None" or an IP address)`, ip))
	}
	for i, ip := range spec.ClusterIPs {
		if ip != manifests.ClusterIPNone && family(ip) == 0 {
			errs = append(errs, d.errorf(sub(at, "clusterIPs", i), `invalid value %q (want "None" or an IP address)`, ip))
		}
	}
	if headless && spec.Type == manifests.ServiceNodePort {
		errs = append(errs, d.errorf(sub(at, "clusterIP"), `"None" (headless) is not allowed for type NodePort`))
	}
	if !external && !headless && len(spec.Ports) == 0 {
		errs = append(errs, d.errorf(sub(at, "ports"), "needs at least one port (only a headless or ExternalName service may have none)"))
	}
	if len(spec.ClusterIPs) > 0 && spec.ClusterIP != "" && spec.ClusterIPs[0] != spec.ClusterIP {
		errs = append(errs, d.errorf(sub(at, "clusterIPs", 0), "must equal spec.clusterIP (%s)", spec.ClusterIP))
	}
	if len(spec.ClusterIPs) > 2 {
		errs = append(errs, d.errorf(sub(at, "clusterIPs"), "may hold at most two addresses, one per IP family"))
	} else if len(spec.ClusterIPs) == 2 && family(spec.ClusterIPs[0]) == family(spec.ClusterIPs[1]) {
		errs = append(errs, d.errorf(sub(at, "clusterIPs", 1), "must be of the other IP family than clusterIPs[0]"))
	}
	if len(spec.IPFamilies) > 2 || len(spec.IPFamilies) == 2 && spec.IPFamilies[0] == spec.IPFamilies[1] {
		errs = append(errs, d.errorf(sub(at, "ipFamilies"), "may hold IPv4 and IPv6 once each"))
	}
	if p := spec.IPFamilyPolicy; p != nil && *p == "SingleStack" && (len(spec.IPFamilies) > 1 || len(spec.ClusterIPs) > 1) {
		errs = append(errs, d.errorf(sub(at, "ipFamilyPolicy"), "SingleStack allows one IP family"))
	}
	names := map[string]bool{}
	ports := map[string]bool{}
	nodePorts := map[string]bool{}
	for i := range spec.Ports {
		p := &spec.Ports[i]
		pa := sub(at, "ports", i)
		if p.Protocol == "SCTP" {
			errs = append(errs, d.errorf(sub(pa, "protocol"), "SCTP is not supported (want TCP or UDP)"))
		}
		switch {
		case p.Name == "" && len(spec.Ports) > 1:
			errs = append(errs, d.errorf(pa, "needs a name: a service with more than one port names each"))
		case p.Name != "" && names[p.Name]:
			errs = append(errs, d.errorf(sub(pa, "name"), "duplicate port name %q", p.Name))
		}
		names[p.Name] = true
		key := p.Protocol + "/" + itoa(p.Port)
		if ports[key] {
			errs = append(errs, d.errorf(sub(pa, "port"), "duplicate port %d/%s", p.Port, p.Protocol))
		}
		ports[key] = true
		if p.NodePort != 0 {
			nk := p.Protocol + "/" + itoa(p.NodePort)
			switch {
			case spec.Type != manifests.ServiceNodePort:
				errs = append(errs, d.errorf(sub(pa, "nodePort"), "may only be set for type NodePort"))
			case nodePorts[nk]:
				errs = append(errs, d.errorf(sub(pa, "nodePort"), "duplicate node port %d/%s", p.NodePort, p.Protocol))
			}
			nodePorts[nk] = true
		}
		if !p.TargetPort.IsString && p.TargetPort.IntVal == 0 {
			p.TargetPort = manifests.IntOrString{IntVal: p.Port}
		}
	}
	return errs
}

// family returns 4 or 6 for an address the schema accepted, 0 otherwise.
func family(s string) int {
	ip := net.ParseIP(s)
	switch {
	case ip == nil:
		return 0
	case ip.To4() != nil:
		return 4
	}
	return 6
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
