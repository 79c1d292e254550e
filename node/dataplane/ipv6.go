package dataplane

import (
	"net"
	"net/netip"
	"os"
	"strings"
)

// DefaultServiceCIDRv6 is the IPv6 service range used where the host has
// IPv6 (the control plane's default too: controllers.DefaultServiceCIDRv6).
const DefaultServiceCIDRv6 = "fd00:10:96::/112"

// HostHasIPv6 reports whether this host can serve IPv6 to its pods: the
// kernel has IPv6 on (not disabled for new interfaces, so a container
// bridge gets it) and a socket binds on ::1. No global address or IPv6
// route is needed: cluster IPs and pods' addresses are local to the host.
func HostHasIPv6() bool {
	if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6"); err == nil && strings.TrimSpace(string(b)) == "1" {
		return false
	}
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// NodeAddressV6 is where node ports listen over IPv6 beside the IPv4 node
// address v4: ::1 for a loopback address, otherwise the first IPv6
// address (global or unique local, not link-local) of the interface that
// holds v4. It is invalid when there is none, and for an unspecified v4
// (0.0.0.0): a listener on it takes every address already, and one on ::
// would clash with it.
func NodeAddressV6(v4 netip.Addr) netip.Addr {
	v4 = v4.Unmap()
	switch {
	case !v4.IsValid() || v4.IsUnspecified():
		return netip.Addr{}
	case v4.IsLoopback():
		return netip.IPv6Loopback()
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		var v6 []netip.Addr
		holds := false
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			switch {
			case ip == v4:
				holds = true
			case ip.Is6() && !ip.IsLinkLocalUnicast() && !ip.IsLoopback():
				v6 = append(v6, ip)
			}
		}
		if holds && len(v6) > 0 {
			return v6[0]
		}
	}
	return netip.Addr{}
}
