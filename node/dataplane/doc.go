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
//     as on this project's test VMs), so traffic to them from this host
//     or from its pods (whose default route is the host) is delivered
//     locally;
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
// Pods sit on a Podman bridge (the node's --pod-network, "capstan" by
// default: created by the node when missing, see podman.EnsureNetwork)
// with the host as their default gateway. A packet from a pod to a
// cluster IP or the DNS address reaches the host and, since the address
// is local (in the local routing table, whatever link holds it), goes up
// the host's INPUT path to the proxy or the DNS server; answers go back
// over the bridge. Netavark's rules (NAT for published ports, FORWARD
// accepts for the bridge) do not touch that path, and rp_filter does not
// either: the reverse path to the pod's address is the bridge it came
// from. No firewall rule is needed, as the end-to-end test checks (wget
// from a pod on each node). A host with a restrictive INPUT policy must
// accept the bridge's traffic to the service CIDRs (tcp/udp) and to the
// DNS address (53).
//
// # IPv6 (dual stack)
//
// IPv4 always; IPv6 too where the host has it (HostHasIPv6: the kernel's
// IPv6 is on; no global address or route is needed, every path is local
// to the host). Then, by default (--service-cidr-v6 auto):
//
//   - the control plane gives Services a second cluster IP from
//     fd00:10:96::/112 (DefaultServiceCIDRv6; see the reconciler for the
//     family policy);
//   - the node creates the pod network with an IPv6 subnet (a unique
//     local /64 Podman picks), so each pod has an IPv6 address and a
//     default route to the host;
//   - the data plane holds the IPv6 cluster IPs (as /128, without
//     duplicate address detection; the IFB or dummy link carries them, a
//     bridge with no ports cannot: IPv6 waits for a carrier), proxies
//     them, listens on node ports on an IPv6 node address too
//     (NodeAddressV6: ::1 for a loopback node address), and answers AAAA
//     records for service names.
//
// Endpoints stay IPv4 (node address and host port): a client on IPv6
// reaches an IPv4 endpoint through the proxy, which bridges the families.
// So headless names, which answer the endpoints' addresses, have A
// records and no AAAA. The DNS server is reached over IPv4 (every pod has
// an IPv4 address). A data plane without an IPv6 range (a host without
// IPv6, or --service-cidr-v6 none) serves dual-stack Services over IPv4
// alone: no IPv6 address, listener or AAAA record, and no error.
//
// Nothing here writes to the bus.
package dataplane
