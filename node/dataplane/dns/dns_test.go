package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/capstan-io/capstan/internal/testwait"
)

// serve runs s on loopback (UDP and TCP, one port) and returns the address.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no port free for UDP and TCP")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return pc.LocalAddr().String()
}

func query(t *testing.T, server, name string, qtype uint16, network string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 3 * time.Second}
	var resp *dns.Msg
	// The server may still be starting.
	testwait.For(t, 10*time.Second, fmt.Sprintf("query %s %s over %s", name, dns.TypeToString[qtype], network), func() error {
		var err error
		resp, _, err = c.Exchange(m, server)
		return err
	})
	return resp
}

// answers renders the answer section's data, sorted.
func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, "A "+r.A.String())
		case *dns.AAAA:
			out = append(out, "AAAA "+r.AAAA.String())
		case *dns.CNAME:
			out = append(out, "CNAME "+r.Target)
		case *dns.SRV:
			out = append(out, "SRV "+r.Target+" "+strconv.Itoa(int(r.Port)))
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

// upstream is a resolver that knows example.com and nothing else.
func upstream(t *testing.T) string {
	t.Helper()
	zone := NewZone("example.com")
	zone.AddAddr("example.com", netip.MustParseAddr("192.0.2.80"))
	zone.AddAddr("www.example.com", netip.MustParseAddr("192.0.2.81"))
	s := &Server{Domain: "example.com"}
	s.SetZone(zone)
	return serve(t, s)
}

func testZone() *Zone {
	z := NewZone("cluster.local")
	z.AddAddr("web.default.svc.cluster.local", netip.MustParseAddr("10.96.0.20"))
	z.AddSRV("_http._tcp.web.default.svc.cluster.local", SRV{Target: "web.default.svc.cluster.local", Port: 80, Weight: 100})
	z.AddAddr("db.default.svc.cluster.local", netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("fd00::2"))
	z.AddAddr("db-0.db.default.svc.cluster.local", netip.MustParseAddr("192.0.2.2"))
	z.AddSRV("_pg._tcp.db.default.svc.cluster.local", SRV{Target: "db-0.db.default.svc.cluster.local", Port: 31000, Weight: 100})
	z.SetCNAME("ext.default.svc.cluster.local", "www.example.com")
	z.SetCNAME("alias.default.svc.cluster.local", "web.default.svc.cluster.local")
	return z
}

func TestZoneAnswers(t *testing.T) {
	t.Parallel()
	s := &Server{Domain: "cluster.local", Upstreams: []string{upstream(t)}}
	s.SetZone(testZone())
	addr := serve(t, s)
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"A 10.96.0.20"}},
		{"WEB.Default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"A 10.96.0.20"}},
		{"web.default.svc.cluster.local", dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"_http._tcp.web.default.svc.cluster.local", dns.TypeSRV, dns.RcodeSuccess, []string{"SRV web.default.svc.cluster.local. 80"}},
		{"db.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.2"}},
		{"db.default.svc.cluster.local", dns.TypeAAAA, dns.RcodeSuccess, []string{"AAAA fd00::2"}},
		{"db-0.db.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.2"}},
		{"_pg._tcp.db.default.svc.cluster.local", dns.TypeSRV, dns.RcodeSuccess, []string{"SRV db-0.db.default.svc.cluster.local. 31000"}},
		{"alias.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"A 10.96.0.20", "CNAME web.default.svc.cluster.local."}},
		// An external name: the CNAME, and its target resolved upstream.
		{"ext.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.81", "CNAME www.example.com."}},
		{"ext.default.svc.cluster.local", dns.TypeCNAME, dns.RcodeSuccess, []string{"CNAME www.example.com."}},
		// Names above records exist with no data; unknown names do not.
		{"default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, nil},
		{"svc.cluster.local", dns.TypeA, dns.RcodeSuccess, nil},
		{"nope.default.svc.cluster.local", dns.TypeA, dns.RcodeNameError, nil},
		{"web.default.svc.cluster.local.default.svc.cluster.local", dns.TypeA, dns.RcodeNameError, nil},
		{"web.other.svc.cluster.local", dns.TypeA, dns.RcodeNameError, nil},
		// Outside the cluster domain: forwarded.
		{"example.com", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.80"}},
		{"missing.example.com", dns.TypeA, dns.RcodeNameError, nil},
	} {
		for _, network := range []string{"udp", "tcp"} {
			resp := query(t, addr, tc.name, tc.qtype, network)
			if resp.Rcode != tc.rcode {
				t.Errorf("%s %s over %s: rcode %s, want %s", tc.name, dns.TypeToString[tc.qtype], network, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
			if got := answers(resp); !slices.Equal(got, tc.want) {
				t.Errorf("%s %s over %s: %v, want %v", tc.name, dns.TypeToString[tc.qtype], network, got, tc.want)
			}
			if tc.rcode == dns.RcodeNameError && (len(resp.Ns) == 0 || resp.Ns[0].Header().Rrtype != dns.TypeSOA) && network == "udp" && dns.IsSubDomain("cluster.local.", dns.Fqdn(tc.name)) {
				t.Errorf("%s: NXDOMAIN without the zone's SOA", tc.name)
			}
		}
	}
	// SRV answers carry the targets' addresses.
	resp := query(t, addr, "_pg._tcp.db.default.svc.cluster.local", dns.TypeSRV, "udp")
	if len(resp.Extra) != 1 || resp.Extra[0].(*dns.A).A.String() != "192.0.2.2" {
		t.Errorf("SRV additional section: %v", resp.Extra)
	}
}

func TestZoneIsReplaced(t *testing.T) {
	t.Parallel()
	s := &Server{Domain: "cluster.local"}
	addr := serve(t, s)
	if resp := query(t, addr, "web.default.svc.cluster.local", dns.TypeA, "udp"); resp.Rcode != dns.RcodeNameError {
		t.Fatalf("with no zone: %s", dns.RcodeToString[resp.Rcode])
	}
	s.SetZone(testZone())
	if got := answers(query(t, addr, "web.default.svc.cluster.local", dns.TypeA, "udp")); !slices.Equal(got, []string{"A 10.96.0.20"}) {
		t.Fatalf("after SetZone: %v", got)
	}
}

// silent is a UDP socket that reads queries and never answers.
func silent(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1024)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

func TestForwardFailsPromptly(t *testing.T) {
	t.Parallel()
	refused := func() string { // a port nothing listens on: ICMP unreachable
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	}()
	for _, tc := range []struct {
		name      string
		upstreams []string
	}{
		{"no upstream", nil},
		{"upstream refuses", []string{refused}},
		{"upstream silent", []string{silent(t)}},
		{"silent then good", []string{silent(t), upstream(t)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Domain: "cluster.local", Upstreams: tc.upstreams, ForwardTimeout: 1500 * time.Millisecond}
			addr := serve(t, s)
			begin := time.Now()
			resp := query(t, addr, "example.com", dns.TypeA, "udp")
			took := time.Since(begin)
			if took > 2*time.Second {
				t.Errorf("answered after %s", took)
			}
			want := dns.RcodeServerFailure
			if tc.name == "silent then good" {
				want = dns.RcodeSuccess
			}
			if resp.Rcode != want {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[want])
			}
		})
	}
}

func TestHostUpstreams(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "# comment\nnameserver 127.0.0.53\nnameserver 10.96.0.10\nnameserver fd00::1\nsearch example.org\noptions ndots:2\n"
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := HostUpstreams(p, netip.MustParseAddr("10.96.0.10"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.53:53", "[fd00::1]:53"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := HostUpstreams(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing file: no error")
	}
}
