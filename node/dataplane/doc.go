// Package dataplane is the node's share of Services: every node daemon
// that runs it serves every Service of the cluster, so a client on any
// node reaches any service without an overlay network.
//
// DataPlane.Run watches Services and EndpointSlices in the objects bucket
// (read-only, through bus.Reflect, so the watch re-establishes itself) and,
// on every change and every Resync, applies one Plan (BuildPlan, pure):
//
//   - the cluster IPs and the cluster DNS address are held on a local
//     interface (Interface: a dummy link "capstan0" over netlink, created
//     when missing; an IFB device where the kernel has no dummy driver,
//     as on this project's test VMs), so traffic to them from this host or from its pods
//     (whose default route is the host) is delivered locally;
//   - the proxy (package proxy) listens on each cluster IP and port (TCP
//     or UDP) and on the node address and node port of NodePort services,
//     and forwards to ready endpoints: an endpoint's address is its node's
//     address and the host port its pod publishes (EndpointSlice
//     Endpoint.HostPorts), on this node or any other;
//   - the DNS server (package dns) answers <svc>.<ns>.svc.<domain> with the
//     cluster IP, a headless service's name with its ready endpoints'
//     addresses, each endpoint by its hostname (StatefulSet pods) or pod
//     name, SRV records per named port, ExternalName as a CNAME, and
//     forwards every other name to the host's resolvers.
//
// Pods use the DNS server through the resolver configuration the node
// daemon gives them (node.PodConfig.DNS: the cluster DNS address, search
// "<ns>.svc.<domain> svc.<domain> <domain>", options ndots:5).
//
// The data plane owns the interface's addresses inside the service CIDR and
// the cluster DNS address; it adds and removes only those, and removes them
// when it stops. Two data planes with the same service CIDR on one host
// would fight over them: run it on one node daemon per host
// (--dataplane=false on the others).
//
// # Reachability from pods
//
// Pods sit on Podman's bridge (10.88.0.0/16) with the host (10.88.0.1) as
// their default gateway. A packet from a pod to a cluster IP or the DNS
// address reaches the host and, since the address is local (in the local
// routing table, whatever link holds it), goes up the host's INPUT path to
// the proxy or the DNS server; answers go back over the bridge. Netavark's
// rules (NAT for published ports, FORWARD accepts for the bridge) do not
// touch that path, and rp_filter does not either: the reverse path to the
// pod's address is the bridge it came from. No firewall rule is needed,
// as the end-to-end test checks (wget from a pod on each node). A host
// with a restrictive INPUT policy must accept the bridge's traffic to the
// service CIDR (tcp/udp) and to the DNS address (53).
//
// # IPv6
//
// IPv4 always. IPv6 cluster IPs (from the control plane's
// --service-cidr-v6) are held (as /128, without duplicate address
// detection), proxied, and answered in AAAA records, and endpoints may have
// IPv6 addresses; the IFB or dummy link carries them (a bridge with no
// ports cannot: IPv6 waits for a carrier). Pods on Podman's default
// network have no IPv6, so they use the IPv4 cluster IP and DNS address.
//
// Nothing here writes to the bus.
package dataplane
