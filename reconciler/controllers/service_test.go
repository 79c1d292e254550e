package controllers

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/workqueue"
)

func newTestServices(t *testing.T, v6 string) *serviceController {
	t.Helper()
	s, err := newServiceController(nil, &ControlPlane{ServiceCIDR: "10.96.0.0/24", ServiceCIDRv6: v6})
	if err != nil {
		t.Fatal(err)
	}
	s.queue = workqueue.New()
	return s
}

func svcAt(name string, created int, mutate func(*manifests.Service)) (string, *manifests.Service) {
	svc := webService(*manifests.FromInt(8080))
	svc.Name = name
	svc.UID = "uid-" + name
	svc.CreationTimestamp = manifests.NewTime(time.Unix(int64(1000+created), 0))
	if mutate != nil {
		mutate(svc)
	}
	return manifests.KeyOf(svc), svc
}

func TestDNSServiceIP(t *testing.T) {
	for cidr, want := range map[string]string{"10.96.0.0/16": "10.96.0.10", "10.96.5.7/24": "10.96.5.10", "fd00:10:96::/112": "fd00:10:96::a"} {
		got, err := DNSServiceIP(cidr)
		if err != nil || got.String() != want {
			t.Errorf("DNSServiceIP(%s) = %v, %v; want %s", cidr, got, err, want)
		}
	}
	if _, err := DNSServiceIP("nonsense"); err == nil {
		t.Error("a bad range gave no error")
	}
}

func TestAllocate(t *testing.T) {
	s := newTestServices(t, "")
	allocate := func(key string, svc *manifests.Service) allocation {
		s.alloc.mu.Lock()
		defer s.alloc.mu.Unlock()
		return s.allocate(key, svc)
	}
	// Written back, as the controller does, and seen by the cache.
	commit := func(key string, svc *manifests.Service, al allocation) {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs, svc.Spec.IPFamilies = al.clusterIP, al.clusterIPs, al.families
		for i := range al.nodePorts {
			svc.Spec.Ports[i].NodePort = al.nodePorts[i]
		}
		s.onService(key, nil, svc)
	}
	prefix := netip.MustParsePrefix("10.96.0.0/24")
	seen := map[string]string{}
	for i := range 40 {
		key, svc := svcAt(fmt.Sprintf("s%d", i), i, nil)
		al := allocate(key, svc)
		if al.problem != nil {
			t.Fatalf("service %d: %+v", i, al.problem)
		}
		a := netip.MustParseAddr(al.clusterIP)
		if !prefix.Contains(a) || a.String() == "10.96.0.0" || a.String() == "10.96.0.1" || a.String() == "10.96.0.10" || a.String() == "10.96.0.255" {
			t.Fatalf("service %d got reserved or foreign address %s", i, a)
		}
		if prev, ok := seen[al.clusterIP]; ok {
			t.Fatalf("%s given to %s and %s", al.clusterIP, prev, key)
		}
		seen[al.clusterIP] = key
		if again := allocate(key, svc); again.clusterIP != al.clusterIP {
			t.Fatalf("an allocation not written back yet changed: %s then %s", al.clusterIP, again.clusterIP)
		}
		commit(key, svc, al)
	}

	// A given address: kept when free, refused when another holds it or
	// it is out of range; the older Service keeps a contested one.
	key, given := svcAt("given", 100, func(s *manifests.Service) { s.Spec.ClusterIP = "10.96.0.200" })
	if al := allocate(key, given); al.problem != nil || al.clusterIP != "10.96.0.200" {
		t.Fatalf("a free given address: %+v", al)
	}
	commit(key, given, allocate(key, given))
	key2, clash := svcAt("clash", 101, func(s *manifests.Service) { s.Spec.ClusterIP = "10.96.0.200" })
	s.onService(key2, nil, clash)
	if al := allocate(key2, clash); al.problem == nil || al.problem.Reason != "ClusterIPAlreadyAllocated" || !strings.Contains(al.problem.Message, "default/given") {
		t.Fatalf("a taken address: %+v", al.problem)
	}
	key3, out := svcAt("out", 102, func(s *manifests.Service) { s.Spec.ClusterIP = "10.97.0.1" })
	if al := allocate(key3, out); al.problem == nil || al.problem.Reason != "ClusterIPNotInRange" {
		t.Fatalf("an address out of range: %+v", al.problem)
	}
	// An older Service claiming it (as after a restart, in any order)
	// takes it; the younger one is re-queued and then refused.
	key4, older := svcAt("older", -5, func(s *manifests.Service) { s.Spec.ClusterIP = "10.96.0.200" })
	s.onService(key4, nil, older)
	if al := allocate(key4, older); al.problem != nil {
		t.Fatalf("the older claimant: %+v", al.problem)
	}
	if al := allocate(key, given); al.problem == nil || al.problem.Reason != "ClusterIPAlreadyAllocated" {
		t.Fatalf("the younger claimant: %+v", al.problem)
	}

	// Deleting a Service frees its address.
	s.onService(key4, older, nil)
	if al := allocate(key, given); al.problem != nil {
		t.Fatalf("after the older one left: %+v", al.problem)
	}

	// Headless and ExternalName get no address.
	kh, headless := svcAt("headless", 200, func(s *manifests.Service) { s.Spec.ClusterIP = manifests.ClusterIPNone })
	if al := allocate(kh, headless); al.clusterIP != "" || al.problem != nil {
		t.Errorf("headless: %+v", al)
	}
	ke, ext := svcAt("ext", 201, func(s *manifests.Service) { s.Spec.Type = manifests.ServiceExternalName })
	if al := allocate(ke, ext); al.clusterIP != "" || al.problem != nil {
		t.Errorf("ExternalName: %+v", al)
	}
}

func TestAllocateFull(t *testing.T) {
	s, err := newServiceController(nil, &ControlPlane{ServiceCIDR: "10.96.0.0/28"})
	if err != nil {
		t.Fatal(err)
	}
	s.queue = workqueue.New()
	// 16 addresses: .0, .1, .10 and .15 reserved, 12 left.
	for i := range 13 {
		key, svc := svcAt(fmt.Sprintf("s%d", i), i, nil)
		s.alloc.mu.Lock()
		al := s.allocate(key, svc)
		s.alloc.mu.Unlock()
		if i < 12 && al.problem != nil {
			t.Fatalf("service %d: %+v", i, al.problem)
		}
		if i == 12 && (al.problem == nil || al.problem.Reason != "RangeFull") {
			t.Fatalf("the 13th service: %+v", al)
		}
	}
}

func TestAllocateNodePorts(t *testing.T) {
	s := newTestServices(t, "")
	np := func(name string, created int, ports ...int32) (string, *manifests.Service) {
		return svcAt(name, created, func(s *manifests.Service) {
			s.Spec.Type = manifests.ServiceNodePort
			s.Spec.Ports = nil
			for i, p := range ports {
				s.Spec.Ports = append(s.Spec.Ports, manifests.ServicePort{Name: fmt.Sprintf("p%d", i), Port: int32(80 + i), Protocol: "TCP", NodePort: p})
			}
		})
	}
	key, a := np("a", 1, 30080, 0, 0)
	s.alloc.mu.Lock()
	al := s.allocate(key, a)
	s.alloc.mu.Unlock()
	if al.problem != nil || al.nodePorts[0] != 30080 || al.nodePorts[1] == 0 || al.nodePorts[2] == 0 || al.nodePorts[1] == al.nodePorts[2] {
		t.Fatalf("node ports %+v", al)
	}
	for _, p := range al.nodePorts {
		if p < NodePortMin || p > NodePortMax {
			t.Fatalf("node port %d out of range", p)
		}
	}
	keyB, b := np("b", 2, 30080)
	s.alloc.mu.Lock()
	alB := s.allocate(keyB, b)
	s.alloc.mu.Unlock()
	if alB.problem == nil || alB.problem.Reason != "NodePortAlreadyAllocated" || !strings.Contains(alB.problem.Message, "30080/TCP") {
		t.Fatalf("a clashing node port: %+v", alB.problem)
	}
	// UDP 30080 is another port.
	keyC, c := np("c", 3, 30080)
	c.Spec.Ports[0].Protocol = "UDP"
	s.alloc.mu.Lock()
	alC := s.allocate(keyC, c)
	s.alloc.mu.Unlock()
	if alC.problem != nil {
		t.Fatalf("UDP 30080: %+v", alC.problem)
	}
}

func TestAllocateDualStack(t *testing.T) {
	s := newTestServices(t, "fd00:10:96::/112")
	key, svc := svcAt("dual", 1, nil)
	s.alloc.mu.Lock()
	al := s.allocate(key, svc)
	s.alloc.mu.Unlock()
	if al.problem != nil || len(al.clusterIPs) != 2 || !netip.MustParseAddr(al.clusterIPs[1]).Is6() || al.clusterIP != al.clusterIPs[0] ||
		strings.Join(al.families, ",") != "IPv4,IPv6" {
		t.Fatalf("dual stack: %+v", al)
	}
	key, single := svcAt("single", 2, func(s *manifests.Service) { s.Spec.IPFamilyPolicy = manifests.Ptr("SingleStack") })
	s.alloc.mu.Lock()
	al = s.allocate(key, single)
	s.alloc.mu.Unlock()
	if len(al.clusterIPs) != 1 {
		t.Fatalf("single stack: %+v", al)
	}
	v4only := newTestServices(t, "")
	key, req := svcAt("req", 3, func(s *manifests.Service) { s.Spec.IPFamilyPolicy = manifests.Ptr("RequireDualStack") })
	v4only.alloc.mu.Lock()
	al = v4only.allocate(key, req)
	v4only.alloc.mu.Unlock()
	if al.problem == nil || al.problem.Reason != "IPv6NotConfigured" {
		t.Fatalf("RequireDualStack without an IPv6 range: %+v", al)
	}
}

// TestAllocateFamilies checks the IP families each policy gets with and
// without an IPv6 range, and what a cluster that gains or loses its IPv6
// range does with Services allocated before.
func TestAllocateFamilies(t *testing.T) {
	const v6 = "fd00:10:96::/112"
	type want struct {
		fams   string // families, primary first; "" for a problem
		reason string // the problem's reason
	}
	cases := []struct {
		name       string
		mutate     func(*manifests.Service)
		dual, only want // with an IPv6 range, without one
	}{
		{"default", nil, want{fams: "IPv4,IPv6"}, want{fams: "IPv4"}},
		{"SingleStack", func(s *manifests.Service) { s.Spec.IPFamilyPolicy = manifests.Ptr("SingleStack") },
			want{fams: "IPv4"}, want{fams: "IPv4"}},
		{"PreferDualStack", func(s *manifests.Service) { s.Spec.IPFamilyPolicy = manifests.Ptr("PreferDualStack") },
			want{fams: "IPv4,IPv6"}, want{fams: "IPv4"}},
		{"RequireDualStack", func(s *manifests.Service) { s.Spec.IPFamilyPolicy = manifests.Ptr("RequireDualStack") },
			want{fams: "IPv4,IPv6"}, want{reason: "IPv6NotConfigured"}},
		{"IPv6 first", func(s *manifests.Service) { s.Spec.IPFamilies = []string{"IPv6"} },
			want{fams: "IPv6,IPv4"}, want{reason: "IPv6NotConfigured"}},
		{"IPv6 only", func(s *manifests.Service) {
			s.Spec.IPFamilies, s.Spec.IPFamilyPolicy = []string{"IPv6"}, manifests.Ptr("SingleStack")
		}, want{fams: "IPv6"}, want{reason: "IPv6NotConfigured"}},
		{"given IPv6 cluster IP", func(s *manifests.Service) { s.Spec.ClusterIP = "fd00:10:96::20" },
			want{fams: "IPv6,IPv4"}, want{reason: "IPv6NotConfigured"}},
		{"given IPv6 cluster IP out of range", func(s *manifests.Service) { s.Spec.ClusterIP = "fd00:99::20" },
			want{reason: "ClusterIPNotInRange"}, want{reason: "IPv6NotConfigured"}},
	}
	for _, c := range cases {
		for _, mode := range []struct {
			v6   string
			want want
		}{{v6, c.dual}, {"", c.only}} {
			s := newTestServices(t, mode.v6)
			key, svc := svcAt("web", 1, c.mutate)
			s.alloc.mu.Lock()
			al := s.allocate(key, svc)
			s.alloc.mu.Unlock()
			if mode.want.reason != "" {
				if al.problem == nil || al.problem.Reason != mode.want.reason {
					t.Errorf("%s (v6 range %q): %+v, want the problem %s", c.name, mode.v6, al, mode.want.reason)
				}
				continue
			}
			if al.problem != nil || strings.Join(al.families, ",") != mode.want.fams || len(al.clusterIPs) != len(al.families) ||
				al.clusterIP != al.clusterIPs[0] {
				t.Errorf("%s (v6 range %q): %+v, want families %s", c.name, mode.v6, al, mode.want.fams)
				continue
			}
			for i, ip := range al.clusterIPs {
				if familyOf(netip.MustParseAddr(ip)) != al.families[i] {
					t.Errorf("%s: cluster IP %s is not %s", c.name, ip, al.families[i])
				}
			}
			if svc.Spec.ClusterIP != "" && al.clusterIP != svc.Spec.ClusterIP {
				t.Errorf("%s: the given cluster IP %s became %s", c.name, svc.Spec.ClusterIP, al.clusterIP)
			}
		}
	}

	// A Service allocated on an IPv4-only control plane gains an IPv6
	// address when the range appears, keeping its IPv4 one; one allocated
	// dual stack drops the IPv6 one, cleanly, when the range goes.
	key, svc := svcAt("old", 1, func(s *manifests.Service) {
		s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.IPFamilies = "10.96.0.7", []string{"10.96.0.7"}, []string{"IPv4"}
	})
	s := newTestServices(t, v6)
	s.onService(key, nil, svc)
	s.alloc.mu.Lock()
	al := s.allocate(key, svc)
	s.alloc.mu.Unlock()
	if al.problem != nil || len(al.clusterIPs) != 2 || al.clusterIPs[0] != "10.96.0.7" || !netip.MustParsePrefix(v6).Contains(netip.MustParseAddr(al.clusterIPs[1])) {
		t.Fatalf("IPv4-only Service on a dual-stack control plane: %+v", al)
	}
	svc.Spec.ClusterIPs, svc.Spec.IPFamilies = al.clusterIPs, al.families
	s = newTestServices(t, "")
	s.onService(key, nil, svc)
	s.alloc.mu.Lock()
	al = s.allocate(key, svc)
	s.alloc.mu.Unlock()
	if al.problem != nil || strings.Join(al.clusterIPs, ",") != "10.96.0.7" || strings.Join(al.families, ",") != "IPv4" {
		t.Fatalf("dual-stack Service on an IPv4-only control plane: %+v", al)
	}
}

// TestAllocateIPv6Unique allocates many dual-stack Services: every IPv6
// address is in the range, unique, and none is reserved (the network
// address, ::1, the DNS address ::a, the last).
func TestAllocateIPv6Unique(t *testing.T) {
	s := newTestServices(t, "fd00:10:96::/120")
	prefix := netip.MustParsePrefix("fd00:10:96::/120")
	reserved := map[string]bool{"fd00:10:96::": true, "fd00:10:96::1": true, "fd00:10:96::a": true, "fd00:10:96::ff": true}
	seen := map[string]string{}
	for i := range 200 {
		key, svc := svcAt(fmt.Sprintf("s%d", i), i, nil)
		s.alloc.mu.Lock()
		al := s.allocate(key, svc)
		s.alloc.mu.Unlock()
		if al.problem != nil {
			t.Fatalf("service %d: %+v", i, al.problem)
		}
		a := al.clusterIPs[1]
		if !prefix.Contains(netip.MustParseAddr(a)) || reserved[a] {
			t.Fatalf("service %d got reserved or foreign address %s", i, a)
		}
		if prev, ok := seen[a]; ok {
			t.Fatalf("%s given to %s and %s", a, prev, key)
		}
		seen[a] = key
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs, svc.Spec.IPFamilies = al.clusterIP, al.clusterIPs, al.families
		s.onService(key, nil, svc)
	}
}
