package dataplane

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/capstan-io/capstan/manifests"
	dnssrv "github.com/capstan-io/capstan/node/dataplane/dns"
	"github.com/capstan-io/capstan/node/dataplane/proxy"
)

func svc(ns, name, typ, clusterIP string, ports ...manifests.ServicePort) *manifests.Service {
	s := &manifests.Service{Spec: manifests.ServiceSpec{Type: typ, ClusterIP: clusterIP, Ports: ports}}
	s.Namespace, s.Name = ns, name
	return s
}

type ep struct {
	addr        string
	ready, term bool
	hostname    string
	pod         string
	ports       map[string]int32
}

func slice(ns, svcName string, eps ...ep) *manifests.EndpointSlice {
	s := &manifests.EndpointSlice{AddressType: "IPv4"}
	s.Namespace, s.Name = ns, svcName
	s.Labels = map[string]string{LabelServiceName: svcName}
	for _, e := range eps {
		me := manifests.Endpoint{Addresses: []string{e.addr}, HostPorts: e.ports,
			Conditions: manifests.EndpointConditions{Ready: &e.ready, Terminating: &e.term}}
		if e.hostname != "" {
			me.Hostname = &e.hostname
		}
		if e.pod != "" {
			me.TargetRef = &manifests.ObjectReference{Kind: "Pod", Name: e.pod, Namespace: ns}
		}
		s.Endpoints = append(s.Endpoints, me)
	}
	return s
}

// ask queries a plan's zone in-process.
func ask(t *testing.T, z *dnssrv.Zone, name string, qtype uint16) (rcode int, got []string) {
	t.Helper()
	s := &dnssrv.Server{Domain: "cluster.local"}
	s.SetZone(z)
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	resp := s.Answer(context.Background(), q)
	for _, rr := range resp.Answer {
		f := strings.Fields(rr.String())
		got = append(got, strings.Join(f[3:], " "))
	}
	slices.Sort(got)
	return resp.Rcode, got
}

func frontends(p Plan) []string {
	var out []string
	for _, f := range p.Frontends {
		var bs []string
		for _, b := range f.Backends {
			r := "!"
			if b.Ready {
				r = ""
			}
			bs = append(bs, r+b.Addr.String())
		}
		out = append(out, fmt.Sprintf("%s %s/%s -> %s", f.Name, f.Protocol, f.Listen, strings.Join(bs, ",")))
	}
	return out
}

func TestBuildPlan(t *testing.T) {
	t.Parallel()
	in := PlanInput{
		Domain:      "cluster.local",
		NodeAddress: netip.MustParseAddr("192.0.2.2"),
		Services: map[string]*manifests.Service{
			"default/web": svc("default", "web", manifests.ServiceNodePort, "10.96.0.20",
				manifests.ServicePort{Name: "http", Port: 80, NodePort: 30080},
				manifests.ServicePort{Name: "dns", Port: 53, Protocol: "UDP"}),
			"default/plain": svc("default", "plain", "", "10.96.0.21", manifests.ServicePort{Port: 8080}),
			"default/db":    svc("default", "db", "", manifests.ClusterIPNone, manifests.ServicePort{Name: "pg", Port: 5432}),
			"default/ext":   svc("default", "ext", manifests.ServiceExternalName, "", manifests.ServicePort{Port: 80}),
			"default/new":   svc("default", "new", "", "", manifests.ServicePort{Port: 80}), // no IP yet
		},
		Slices: map[string]*manifests.EndpointSlice{
			"default/web": slice("default", "web",
				ep{addr: "192.0.2.2", ready: true, pod: "web-a", ports: map[string]int32{"http": 40001, "dns": 40002}},
				ep{addr: "192.0.2.3", ready: false, pod: "web-b", ports: map[string]int32{"http": 40003, "dns": 40004}},
				ep{addr: "192.0.2.3", ready: true, term: true, pod: "web-c", ports: map[string]int32{"http": 40005}},
				ep{addr: "192.0.2.4", ready: true, pod: "web-d", ports: map[string]int32{}}), // port not published: skipped
			"default/plain": slice("default", "plain", ep{addr: "192.0.2.2", ready: true, ports: map[string]int32{"8080": 41000}}),
			"default/db": slice("default", "db",
				ep{addr: "192.0.2.2", ready: true, hostname: "db-0", pod: "db-0", ports: map[string]int32{"pg": 42000}},
				ep{addr: "192.0.2.3", ready: true, hostname: "db-1", pod: "db-1", ports: map[string]int32{"pg": 42001}},
				ep{addr: "192.0.2.4", ready: false, hostname: "db-2", pod: "db-2", ports: map[string]int32{"pg": 42002}}),
		},
	}
	in.Services["default/ext"].Spec.ExternalName = "www.example.com"
	p := BuildPlan(in)

	wantFronts := []string{
		"default/plain:8080 TCP/10.96.0.21:8080 -> 192.0.2.2:41000",
		"default/web:http TCP/10.96.0.20:80 -> 192.0.2.2:40001,!192.0.2.3:40003,!192.0.2.3:40005",
		"default/web:http (node port) TCP/192.0.2.2:30080 -> 192.0.2.2:40001,!192.0.2.3:40003,!192.0.2.3:40005",
		"default/web:dns UDP/10.96.0.20:53 -> 192.0.2.2:40002,!192.0.2.3:40004",
	}
	if got := frontends(p); !slices.Equal(got, wantFronts) {
		t.Errorf("frontends:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantFronts, "\n"))
	}
	if want := []netip.Addr{netip.MustParseAddr("10.96.0.21"), netip.MustParseAddr("10.96.0.20")}; !slices.Equal(p.ClusterIPs, want) {
		t.Errorf("cluster IPs %v, want %v", p.ClusterIPs, want)
	}

	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"A 10.96.0.20"}},
		{"_http._tcp.web.default.svc.cluster.local", dns.TypeSRV, dns.RcodeSuccess, []string{"SRV 0 100 80 web.default.svc.cluster.local."}},
		{"_dns._udp.web.default.svc.cluster.local", dns.TypeSRV, dns.RcodeSuccess, []string{"SRV 0 100 53 web.default.svc.cluster.local."}},
		{"plain.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"A 10.96.0.21"}},
		// Headless: the ready endpoints, by address, by name, by SRV.
		{"db.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.2", "A 192.0.2.3"}},
		{"db-0.db.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.2"}},
		{"db-1.db.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.3"}},
		{"db-2.db.default.svc.cluster.local", dns.TypeA, dns.RcodeNameError, nil},
		{"_pg._tcp.db.default.svc.cluster.local", dns.TypeSRV, dns.RcodeSuccess, []string{
			"SRV 0 50 42000 db-0.db.default.svc.cluster.local.", "SRV 0 50 42001 db-1.db.default.svc.cluster.local."}},
		{"ext.default.svc.cluster.local", dns.TypeCNAME, dns.RcodeSuccess, []string{"CNAME www.example.com."}},
		{"new.default.svc.cluster.local", dns.TypeA, dns.RcodeNameError, nil},
		{"gone.default.svc.cluster.local", dns.TypeA, dns.RcodeNameError, nil},
	} {
		rcode, got := ask(t, p.Zone, tc.name, tc.qtype)
		if rcode != tc.rcode || !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: %s %v, want %s %v", tc.name, dns.TypeToString[tc.qtype],
				dns.RcodeToString[rcode], got, dns.RcodeToString[tc.rcode], tc.want)
		}
	}

	// No node address: no node ports.
	in.NodeAddress = netip.Addr{}
	for _, f := range frontends(BuildPlan(in)) {
		if strings.Contains(f, "node port") {
			t.Errorf("node port without a node address: %s", f)
		}
	}
}

// TestBuildPlanProperties checks, over random services and endpoints, that
// a frontend's ready backends are exactly the ready, not terminating
// endpoints that publish its port, each at its address and host port, and
// that the plan does not depend on map order.
func TestBuildPlanProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	for iter := range 300 {
		in := PlanInput{Domain: "cluster.local", Services: map[string]*manifests.Service{}, Slices: map[string]*manifests.EndpointSlice{}}
		type truth struct{ ready map[string]bool } // backend -> ready
		want := map[string]truth{}                 // listen -> backends
		for i := range 1 + rng.IntN(4) {
			name := fmt.Sprintf("s%d", i)
			ip := fmt.Sprintf("10.96.0.%d", 10+i)
			var ports []manifests.ServicePort
			for j := range 1 + rng.IntN(3) {
				ports = append(ports, manifests.ServicePort{Name: fmt.Sprintf("p%d", j), Port: int32(80 + j)})
			}
			in.Services["default/"+name] = svc("default", name, "", ip, ports...)
			var eps []ep
			for k := range rng.IntN(6) {
				e := ep{addr: fmt.Sprintf("192.0.2.%d", 1+rng.IntN(3)), ready: rng.IntN(3) > 0, term: rng.IntN(5) == 0, ports: map[string]int32{}}
				for _, sp := range ports {
					if rng.IntN(4) > 0 {
						e.ports[sp.Name] = int32(30000 + 100*i + 10*k + int(sp.Port-80))
					}
				}
				eps = append(eps, e)
				for _, sp := range ports {
					hp, ok := e.ports[sp.Name]
					if !ok {
						continue
					}
					l := fmt.Sprintf("%s:%d", ip, sp.Port)
					if want[l].ready == nil {
						want[l] = truth{ready: map[string]bool{}}
					}
					want[l].ready[fmt.Sprintf("%s:%d", e.addr, hp)] = e.ready && !e.term
				}
			}
			in.Slices["default/"+name] = slice("default", name, eps...)
		}
		p := BuildPlan(in)
		for _, f := range p.Frontends {
			w := want[f.Listen.String()].ready
			if len(f.Backends) != len(w) {
				t.Fatalf("iter %d: %s has %d backends, want %d", iter, f.Listen, len(f.Backends), len(w))
			}
			for _, b := range f.Backends {
				r, ok := w[b.Addr.String()]
				if !ok || r != b.Ready {
					t.Fatalf("iter %d: %s backend %s ready=%v, want present=%v ready=%v", iter, f.Listen, b.Addr, b.Ready, ok, r)
				}
			}
			if f.Protocol != proxy.TCP {
				t.Fatalf("iter %d: protocol %q", iter, f.Protocol)
			}
		}
		if again := BuildPlan(in); !slices.Equal(frontends(again), frontends(p)) {
			t.Fatalf("iter %d: plan differs between two builds", iter)
		}
	}
}

// TestBuildPlanDualStack: a dual-stack Service is served on both cluster
// IPs and both node addresses, and answered with A and AAAA records,
// forwarding to its IPv4 endpoints either way; a data plane without IPv6
// leaves every IPv6 part out.
func TestBuildPlanDualStack(t *testing.T) {
	t.Parallel()
	web := svc("default", "web", manifests.ServiceNodePort, "10.96.0.20", manifests.ServicePort{Name: "http", Port: 80, NodePort: 30080})
	web.Spec.ClusterIPs = []string{"10.96.0.20", "fd00:10:96::20"}
	web.Spec.IPFamilies = []string{"IPv4", "IPv6"}
	in := PlanInput{
		Domain:        "cluster.local",
		NodeAddress:   netip.MustParseAddr("127.0.0.1"),
		NodeAddressV6: netip.MustParseAddr("::1"),
		Services:      map[string]*manifests.Service{"default/web": web},
		Slices: map[string]*manifests.EndpointSlice{"default/web": slice("default", "web",
			ep{addr: "127.0.0.1", ready: true, pod: "web-a", ports: map[string]int32{"http": 40001}})},
	}
	p := BuildPlan(in)
	want := []string{
		"default/web:http TCP/10.96.0.20:80 -> 127.0.0.1:40001",
		"default/web:http TCP/[fd00:10:96::20]:80 -> 127.0.0.1:40001",
		"default/web:http (node port) TCP/127.0.0.1:30080 -> 127.0.0.1:40001",
		"default/web:http (node port) TCP/[::1]:30080 -> 127.0.0.1:40001",
	}
	if got := frontends(p); !slices.Equal(got, want) {
		t.Errorf("dual-stack frontends:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if wantIPs := []netip.Addr{netip.MustParseAddr("10.96.0.20"), netip.MustParseAddr("fd00:10:96::20")}; !slices.Equal(p.ClusterIPs, wantIPs) {
		t.Errorf("cluster IPs %v, want %v", p.ClusterIPs, wantIPs)
	}
	for _, name := range []string{"web.default.svc.cluster.local"} {
		if rcode, got := ask(t, p.Zone, name, dns.TypeAAAA); rcode != dns.RcodeSuccess || !slices.Equal(got, []string{"AAAA fd00:10:96::20"}) {
			t.Errorf("%s AAAA: %s %v", name, dns.RcodeToString[rcode], got)
		}
		if rcode, got := ask(t, p.Zone, name, dns.TypeA); rcode != dns.RcodeSuccess || !slices.Equal(got, []string{"A 10.96.0.20"}) {
			t.Errorf("%s A: %s %v", name, dns.RcodeToString[rcode], got)
		}
	}

	in.IPv4Only = true
	p = BuildPlan(in)
	want = []string{
		"default/web:http TCP/10.96.0.20:80 -> 127.0.0.1:40001",
		"default/web:http (node port) TCP/127.0.0.1:30080 -> 127.0.0.1:40001",
	}
	if got := frontends(p); !slices.Equal(got, want) {
		t.Errorf("IPv4-only frontends:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Equal(p.ClusterIPs, []netip.Addr{netip.MustParseAddr("10.96.0.20")}) {
		t.Errorf("IPv4-only cluster IPs %v", p.ClusterIPs)
	}
	if rcode, got := ask(t, p.Zone, "web.default.svc.cluster.local", dns.TypeAAAA); rcode != dns.RcodeSuccess || len(got) != 0 {
		t.Errorf("IPv4-only AAAA: %s %v, want no answer", dns.RcodeToString[rcode], got)
	}
}

func TestNodeAddressV6(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"127.0.0.1": "::1", "127.0.0.2": "::1", "0.0.0.0": "invalid IP", "192.0.2.123": "invalid IP"} {
		if got := NodeAddressV6(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("NodeAddressV6(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestNodeAddressV6OfInterface: an address of an interface with IPv6
// maps to one of that interface's IPv6 addresses (skipped on a host
// without such an interface).
func TestNodeAddressV6OfInterface(t *testing.T) {
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifaces {
		addrs, _ := ifc.Addrs()
		var v4 netip.Addr
		var v6 []netip.Addr
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			switch ip := p.Addr(); {
			case ip.Is4() && !ip.IsLoopback():
				v4 = ip
			case ip.Is6() && !ip.IsLinkLocalUnicast() && !ip.IsLoopback():
				v6 = append(v6, ip)
			}
		}
		if !v4.IsValid() || len(v6) == 0 {
			continue
		}
		if got := NodeAddressV6(v4); !slices.Contains(v6, got) {
			t.Errorf("NodeAddressV6(%s) = %s, want one of %s's %v", v4, got, ifc.Name, v6)
		}
		return
	}
	t.Skip("no interface with an IPv4 and an IPv6 address")
}
