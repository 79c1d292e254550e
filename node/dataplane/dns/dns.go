// Package dns is the data plane's DNS server, on github.com/miekg/dns:
// it answers names in the cluster domain from a Zone that the data plane
// replaces as services and endpoints change, and forwards every other
// name to the host's resolvers.
//
// In the cluster domain it answers A, AAAA, SRV and CNAME queries (a CNAME
// is followed: in the zone, or through the upstreams for an external
// name), NXDOMAIN (with the zone's SOA, for negative caching) for a name
// it does not hold, and an empty answer for a name that exists with no
// record of the asked type (including the names above records, such as
// "svc.cluster.local"). Search paths are the resolver's job: pods get the
// search list and ndots:5 in their resolv.conf.
//
// A forwarded query goes to each upstream in turn (UDP, then TCP if the
// answer is truncated), within ForwardTimeout in all; with no upstream, or
// none answering in time, the client gets SERVFAIL.
//
// A Server is safe for concurrent use; SetZone may be called at any time.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/capstan-io/capstan/node/dataplane/proxy"
)

// SRV is one service record: where a named port of a service is served.
type SRV struct {
	Target string
	Port   uint16
	// Weight spreads clients among records of equal priority.
	Priority, Weight uint16
}

// Zone is the set of records of the cluster domain. Build it with
// NewZone and the Add methods, then hand it to Server.SetZone and do not
// change it again.
type Zone struct {
	domain string
	names  map[string]*entry
	// exists holds every name at or above a record, up to the domain:
	// those answer NODATA rather than NXDOMAIN.
	exists map[string]bool
}

type entry struct {
	v4, v6 []netip.Addr
	srv    []SRV
	cname  string
}

// NewZone returns an empty zone for domain ("cluster.local").
func NewZone(domain string) *Zone {
	d := dns.CanonicalName(domain)
	return &Zone{domain: d, names: map[string]*entry{}, exists: map[string]bool{d: true}}
}

func (z *Zone) entry(name string) *entry {
	name = dns.CanonicalName(name)
	e := z.names[name]
	if e == nil {
		e = &entry{}
		z.names[name] = e
		for n := name; dns.IsSubDomain(z.domain, n) && !z.exists[n]; {
			z.exists[n] = true
			i, end := dns.NextLabel(n, 0)
			if end {
				break
			}
			n = n[i:]
		}
	}
	return e
}

// Touch makes name exist with no records (it answers NODATA).
func (z *Zone) Touch(name string) { z.entry(name) }

// AddAddr adds A and AAAA records to name.
func (z *Zone) AddAddr(name string, addrs ...netip.Addr) {
	e := z.entry(name)
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			e.v4 = append(e.v4, a)
		} else if a.IsValid() {
			e.v6 = append(e.v6, a)
		}
	}
}

// AddSRV adds SRV records to name ("_http._tcp.web.default.svc.cluster.local").
func (z *Zone) AddSRV(name string, srv ...SRV) {
	e := z.entry(name)
	e.srv = append(e.srv, srv...)
}

// SetCNAME makes name an alias of target.
func (z *Zone) SetCNAME(name, target string) {
	z.entry(name).cname = dns.CanonicalName(target)
}

// Len is the number of names with records.
func (z *Zone) Len() int { return len(z.names) }

// Server answers DNS queries. Its zero value with Domain set is usable;
// without a zone it answers NXDOMAIN in the domain.
type Server struct {
	// Domain is the cluster domain ("cluster.local").
	Domain string
	// Upstreams are the resolvers other names are forwarded to, as
	// "host:port".
	Upstreams []string
	// ForwardTimeout bounds a forwarded query over all upstreams
	// (default 2 s).
	ForwardTimeout time.Duration
	// TTL of the zone's records (default 5 s).
	TTL uint32
	Log *slog.Logger

	zone atomic.Pointer[Zone]
}

// SetZone replaces the records served.
func (s *Server) SetZone(z *Zone) { s.zone.Store(z) }

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Server) ttl() uint32 {
	if s.TTL == 0 {
		return 5
	}
	return s.TTL
}

// Run listens on addr ("10.96.0.10:53"), UDP and TCP, and serves until ctx
// ends. A listen that fails (the port is taken) is retried every 5 s.
func (s *Server) Run(ctx context.Context, addr string) error {
	lc := net.ListenConfig{Control: proxy.Freebind}
	level := slog.LevelWarn
	for {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		var ln net.Listener
		if err == nil {
			ln, err = lc.Listen(ctx, "tcp", addr)
			if err != nil {
				_ = pc.Close()
			}
		}
		if err == nil {
			s.log().Info("DNS server listening", "addr", addr, "domain", s.Domain, "upstreams", s.Upstreams)
			return s.Serve(ctx, pc, ln)
		}
		s.log().Log(ctx, level, "DNS server cannot listen; retrying every 5s", "addr", addr, "err", err)
		level = slog.LevelDebug // said once
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

// Serve answers queries on pc and ln (either may be nil) until ctx ends,
// then closes them.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	var servers []*dns.Server
	if pc != nil {
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: s})
	}
	if ln != nil {
		servers = append(servers, &dns.Server{Listener: ln, Handler: s, ReadTimeout: 5 * time.Second})
	}
	errc := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { errc <- srv.ActivateAndServe() }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("dns server: %w", err)
	}
	for _, srv := range servers {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = srv.ShutdownContext(sctx)
		cancel()
	}
	return err
}

// ServeDNS answers one query; it makes Server a dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := s.Answer(context.Background(), r)
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	if err := w.WriteMsg(m); err != nil {
		s.log().Debug("write DNS answer", "err", err)
	}
}

// Answer returns the reply to r: from the zone in the cluster domain,
// forwarded otherwise.
func (s *Server) Answer(ctx context.Context, r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	if len(r.Question) != 1 || r.Opcode != dns.OpcodeQuery {
		m.SetRcode(r, dns.RcodeFormatError)
		return m
	}
	q := r.Question[0]
	name := dns.CanonicalName(q.Name)
	domain := dns.CanonicalName(s.Domain)
	if !dns.IsSubDomain(domain, name) {
		return s.forward(ctx, r)
	}
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = true
	z := s.zone.Load()
	if z == nil {
		z = NewZone(s.Domain)
	}
	if !s.answer(ctx, z, m, q.Name, name, q.Qtype, 0) {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{s.soa(domain)}
	}
	return m
}

// answer adds to m the records of name of type qtype, following CNAMEs;
// it reports false when the name does not exist.
func (s *Server) answer(ctx context.Context, z *Zone, m *dns.Msg, owner, name string, qtype uint16, depth int) bool {
	e, ok := z.names[name]
	if !ok {
		return z.exists[name]
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: s.ttl()}
	}
	if e.cname != "" {
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: e.cname})
		if qtype == dns.TypeCNAME || depth >= 8 {
			return true
		}
		if dns.IsSubDomain(z.domain, e.cname) {
			s.answer(ctx, z, m, e.cname, e.cname, qtype, depth+1)
			return true
		}
		// An external name: resolve the target upstream, as CoreDNS does;
		// without an answer the client still has the CNAME.
		fq := new(dns.Msg)
		fq.SetQuestion(e.cname, qtype)
		if resp, err := s.exchange(ctx, fq); err == nil && resp.Rcode == dns.RcodeSuccess {
			m.Answer = append(m.Answer, resp.Answer...)
		}
		return true
	}
	if qtype == dns.TypeA || qtype == dns.TypeANY {
		for _, a := range e.v4 {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
		}
	}
	if qtype == dns.TypeAAAA || qtype == dns.TypeANY {
		for _, a := range e.v6 {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	if qtype == dns.TypeSRV || qtype == dns.TypeANY {
		for _, r := range e.srv {
			target := dns.CanonicalName(r.Target)
			m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr(dns.TypeSRV), Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: target})
			if t, ok := z.names[target]; ok {
				th := dns.RR_Header{Name: target, Class: dns.ClassINET, Ttl: s.ttl()}
				for _, a := range t.v4 {
					th.Rrtype = dns.TypeA
					m.Extra = append(m.Extra, &dns.A{Hdr: th, A: a.AsSlice()})
				}
				for _, a := range t.v6 {
					th.Rrtype = dns.TypeAAAA
					m.Extra = append(m.Extra, &dns.AAAA{Hdr: th, AAAA: a.AsSlice()})
				}
			}
		}
	}
	return true
}

func (s *Server) soa(domain string) dns.RR {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl()},
		Ns:  "ns.dns." + domain, Mbox: "hostmaster." + domain,
		Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: s.ttl(),
	}
}

// forward relays r to the upstreams; SERVFAIL when none answers.
func (s *Server) forward(ctx context.Context, r *dns.Msg) *dns.Msg {
	resp, err := s.exchange(ctx, r)
	if err != nil {
		s.log().Debug("forward DNS query", "name", r.Question[0].Name, "err", err)
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		m.RecursionAvailable = true
		return m
	}
	resp.Id = r.Id
	return resp
}

var errNoUpstream = errors.New("no upstream resolver")

func (s *Server) exchange(ctx context.Context, r *dns.Msg) (*dns.Msg, error) {
	if len(s.Upstreams) == 0 {
		return nil, errNoUpstream
	}
	total := s.ForwardTimeout
	if total == 0 {
		total = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	each := max(total/time.Duration(len(s.Upstreams)), 500*time.Millisecond)
	var errs []error
	for _, up := range s.Upstreams {
		if ctx.Err() != nil {
			break
		}
		c := &dns.Client{Net: "udp", Timeout: each}
		resp, _, err := c.ExchangeContext(ctx, r, up)
		if err == nil && resp.Truncated {
			c.Net = "tcp"
			resp, _, err = c.ExchangeContext(ctx, r, up)
		}
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return nil, errors.Join(errs...)
}

// HostUpstreams reads the nameservers of a resolv.conf file as
// "host:port", leaving out the addresses in skip (the cluster DNS
// address itself, which would loop). Loopback resolvers are kept: the
// server forwards from the host, where they answer.
func HostUpstreams(path string, skip ...netip.Addr) ([]string, error) {
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var ups []string
next:
	for _, s := range cfg.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		for _, k := range skip {
			if a.Unmap() == k.Unmap() {
				continue next
			}
		}
		ups = append(ups, net.JoinHostPort(a.String(), cfg.Port))
	}
	return ups, nil
}
