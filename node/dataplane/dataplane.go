package dataplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	dnssrv "github.com/capstan-io/capstan/node/dataplane/dns"
	"github.com/capstan-io/capstan/node/dataplane/proxy"
)

// AddressSyncer holds the data plane's local addresses (cluster IPs and
// the cluster DNS address) so that traffic to them is delivered to this
// host. Interface is the real one.
type AddressSyncer interface {
	// Sync makes the held addresses exactly want.
	Sync(ctx context.Context, want []netip.Addr) error
}

// Defaults of DataPlane's fields.
const (
	DefaultServiceCIDR = "10.96.0.0/16"
	DefaultClusterDNS  = "10.96.0.10"
	DefaultDomain      = "cluster.local"
	DefaultInterface   = "capstan0"
)

// DataPlane serves every Service of the cluster on this node: cluster IPs
// held on a local interface, an L4 proxy on cluster IPs and node ports,
// and a DNS server for pods. Fields are read once by Run.
type DataPlane struct {
	// Objects is the objects bucket; the data plane only watches it.
	Objects bus.Store
	// NodeAddress is where node ports listen ("0.0.0.0" for every
	// address); empty means no node ports.
	NodeAddress string
	// NodeAddressV6 is where node ports listen over IPv6 as well, when the
	// data plane serves IPv6: empty derives it from NodeAddress
	// (NodeAddressV6: ::1 for a loopback one), "none" turns it off.
	NodeAddressV6 string
	// ServiceCIDR is the range cluster IPs come from, comma-separated for
	// dual stack (default 10.96.0.0/16); the data plane owns the
	// interface's addresses in it. IPv6 is served (cluster IPs, node
	// ports, AAAA records) only when it holds an IPv6 range; without one,
	// dual-stack Services are served over IPv4 alone.
	ServiceCIDR string
	// ClusterDNS is the DNS server's address (default 10.96.0.10); it is
	// held on the interface too.
	ClusterDNS string
	// DNSListen overrides where the DNS server listens (default
	// ClusterDNS:53).
	DNSListen string
	// Domain is the cluster domain (default cluster.local).
	Domain string
	// ResolvConf is where the upstream resolvers come from (default
	// /etc/resolv.conf).
	ResolvConf string
	// Addresses holds the addresses (default: the Interface
	// DefaultInterface over netlink).
	Addresses AddressSyncer
	// Proxy configures the proxy.
	Proxy proxy.Options
	// Resync re-applies everything this often (default 30 s), healing
	// addresses removed and listeners that failed behind its back.
	Resync time.Duration
	Log    *slog.Logger

	mu       sync.Mutex
	services map[string]*manifests.Service
	slices   map[string]*manifests.EndpointSlice
	sliceOf  map[string]string // slice "<ns>/<name>" -> its service's key
	synced   map[string]bool   // watch pattern -> has listed
	lastErr  map[string]string // what was last logged, per part
	proxy    *proxy.Proxy
	dns      *dnssrv.Server
	ipv6     bool       // an IPv6 range is served
	nodeV6   netip.Addr // where node ports listen over IPv6
}

// Run serves until ctx ends. It then removes the addresses it holds (so a
// stopped data plane leaves no address that nothing answers on) and
// returns after its goroutines exit. Failures to hold an address or open
// a listener are logged and retried; they do not stop it.
func (d *DataPlane) Run(ctx context.Context) error {
	if d.Objects == nil {
		return errors.New("dataplane: no objects store")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.ServiceCIDR == "" {
		d.ServiceCIDR = DefaultServiceCIDR
	}
	if d.ClusterDNS == "" {
		d.ClusterDNS = DefaultClusterDNS
	}
	if d.Domain == "" {
		d.Domain = DefaultDomain
	}
	if d.ResolvConf == "" {
		d.ResolvConf = "/etc/resolv.conf"
	}
	if d.Resync == 0 {
		d.Resync = 30 * time.Second
	}
	d.Domain = strings.TrimSuffix(d.Domain, ".")
	prefixes, err := ParseCIDRs(d.ServiceCIDR)
	if err != nil {
		return err
	}
	for _, p := range prefixes {
		d.ipv6 = d.ipv6 || p.Addr().Is6()
	}
	switch d.NodeAddressV6 {
	case "none":
	case "":
		if a, err := netip.ParseAddr(d.NodeAddress); err == nil && d.ipv6 {
			d.nodeV6 = NodeAddressV6(a)
		}
	default:
		a, err := netip.ParseAddr(d.NodeAddressV6)
		if err != nil || !a.Is6() || a.Is4In6() {
			return fmt.Errorf("IPv6 node address %q: not an IPv6 address", d.NodeAddressV6)
		}
		d.nodeV6 = a
	}
	dnsAddr, err := netip.ParseAddr(d.ClusterDNS)
	if err != nil {
		return fmt.Errorf("cluster DNS address %q: %w", d.ClusterDNS, err)
	}
	dnsAddr = dnsAddr.Unmap()
	if d.DNSListen == "" {
		d.DNSListen = net.JoinHostPort(dnsAddr.String(), "53")
	}
	if d.Addresses == nil {
		d.Addresses = &Interface{Name: DefaultInterface, Owned: append(prefixes, netip.PrefixFrom(dnsAddr, dnsAddr.BitLen())), Log: d.Log}
	}
	ups, err := dnssrv.HostUpstreams(d.ResolvConf, dnsAddr)
	if err != nil {
		d.Log.Warn("no upstream resolvers; names outside the cluster domain will fail", "err", err)
	}
	if d.Proxy.Log == nil {
		d.Proxy.Log = d.Log.With("part", "proxy")
	}
	d.proxy = proxy.New(d.Proxy)
	d.dns = &dnssrv.Server{Domain: d.Domain, Upstreams: ups, Log: d.Log.With("part", "dns")}
	d.services = map[string]*manifests.Service{}
	d.slices = map[string]*manifests.EndpointSlice{}
	d.sliceOf = map[string]string{}
	d.synced = map[string]bool{}
	d.lastErr = map[string]string{}

	d.Log.Info("data plane starting", "service_cidr", d.ServiceCIDR, "cluster_dns", d.ClusterDNS,
		"domain", d.Domain, "node_address", d.NodeAddress, "node_address_v6", d.nodeV6, "ipv6", d.ipv6, "upstreams", ups)
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.proxy.Run(ctx) })
	wg.Go(func() {
		if err := d.dns.Run(ctx, d.DNSListen); err != nil {
			d.Log.Error("DNS server stopped", "err", err)
		}
	})
	for _, pattern := range []string{"Service.>", "EndpointSlice.>"} {
		wg.Go(func() {
			_ = bus.Reflect(ctx, d.Objects, pattern, d.Log, func(e bus.Entry) {
				if d.observe(pattern, e) {
					poke()
				}
			})
		})
	}
	tick := time.NewTicker(d.Resync)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-changed:
			d.apply(ctx, dnsAddr)
		case <-tick.C:
			d.apply(ctx, dnsAddr)
		}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := d.Addresses.Sync(cctx, nil); err != nil {
		d.Log.Warn("remove the data plane's addresses", "err", err)
	}
	wg.Wait()
	d.Log.Info("data plane stopped")
	return nil
}

// observe records a watch entry; it reports whether the view changed.
func (d *DataPlane) observe(pattern string, e bus.Entry) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e.Op == bus.OpSynced {
		d.synced[pattern] = true
		return true
	}
	kind, ns, name, err := manifests.SplitKey(e.Key)
	if err != nil {
		return false
	}
	key := ns + "/" + name
	if e.Op == bus.OpDelete {
		switch kind {
		case "Service":
			delete(d.services, key)
		case "EndpointSlice":
			delete(d.slices, d.sliceOf[key])
			delete(d.sliceOf, key)
		}
		return true
	}
	switch kind {
	case "Service":
		var s manifests.Service
		if err := json.Unmarshal(e.Value, &s); err != nil {
			d.Log.Warn("decode service", "key", e.Key, "err", err)
			return false
		}
		s.Namespace, s.Name = ns, name
		d.services[key] = &s
	case "EndpointSlice":
		var s manifests.EndpointSlice
		if err := json.Unmarshal(e.Value, &s); err != nil {
			d.Log.Warn("decode endpoint slice", "key", e.Key, "err", err)
			return false
		}
		svc := key
		if n := s.Labels[LabelServiceName]; n != "" {
			svc = ns + "/" + n
		}
		if old, ok := d.sliceOf[key]; ok && old != svc {
			delete(d.slices, old)
		}
		d.sliceOf[key] = svc
		d.slices[svc] = &s
	}
	return true
}

// apply serves the current view; until both watches have listed it does
// nothing, so a partial view never removes what a complete one holds.
func (d *DataPlane) apply(ctx context.Context, dnsAddr netip.Addr) {
	d.mu.Lock()
	if !d.synced["Service.>"] || !d.synced["EndpointSlice.>"] {
		d.mu.Unlock()
		return
	}
	in := PlanInput{Services: d.services, Slices: d.slices, Domain: d.Domain, IPv4Only: !d.ipv6, NodeAddressV6: d.nodeV6}
	if a, err := netip.ParseAddr(d.NodeAddress); err == nil {
		in.NodeAddress = a.Unmap()
	}
	plan := BuildPlan(in)
	nsvc := len(d.services)
	d.mu.Unlock()

	want := append([]netip.Addr{dnsAddr}, plan.ClusterIPs...)
	d.report("addresses", d.Addresses.Sync(ctx, want))
	d.report("proxy", d.proxy.Sync(plan.Frontends))
	d.dns.SetZone(plan.Zone)
	d.Log.Debug("data plane applied", "services", nsvc, "frontends", len(plan.Frontends), "names", plan.Zone.Len())
}

// report logs a part's error when it changes, not on every resync.
func (d *DataPlane) report(part string, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	d.mu.Lock()
	last := d.lastErr[part]
	d.lastErr[part] = msg
	d.mu.Unlock()
	switch {
	case msg != "" && msg != last:
		d.Log.Warn("data plane: "+part+" failed; retrying", "err", err)
	case msg == "" && last != "":
		d.Log.Info("data plane: " + part + " recovered")
	}
}

// ParseCIDRs parses a comma-separated list of prefixes.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("service CIDR %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("service CIDR %q: no prefix", s)
	}
	return out, nil
}
