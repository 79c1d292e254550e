// Package proxy is the data plane's L4 proxy: it listens on frontends
// (a service's cluster IP and port, a node port) and forwards each new TCP
// connection, or each UDP flow, to one ready backend (an endpoint's node
// address and host port).
//
// Sync replaces the whole set of frontends at once; it opens listeners for
// new frontends, closes those of removed ones, and swaps the backends of
// the others in place, so an update takes effect for the next connection.
// Connections in flight are never cut by an update: a backend that turns
// not ready (or terminating) gets no new connections while its current ones
// finish (drain). UDP flows are kept in a flow table per frontend and end
// after UDPIdleTimeout of silence, or at once when their backend leaves the
// frontend's list altogether.
//
// Backends are chosen by round robin (the default) or least connections,
// among ready backends only; a TCP dial that fails is retried on another
// ready backend. With no ready backend a TCP connection is accepted and
// reset at once (the client sees "connection reset", not a hang) and a UDP
// datagram is dropped.
//
// Listening sockets are opened with IP_FREEBIND, so a frontend can be
// opened before its address is on an interface. A listen that fails (the
// port is taken) is retried by Run every RetryInterval.
//
// A Proxy is safe for concurrent use; Run must be running for Sync to
// apply.
package proxy
