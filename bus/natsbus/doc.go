// Package natsbus is Capstan's bus on NATS JetStream: the bus.Store,
// bus.Events and bus.Audit implementations, and an embeddable NATS server.
// (It is not named jetstream, to keep clear of nats.go's package.)
//
// # Server
//
// NewServer and Server.Start run nats-server in-process with JetStream,
// its file store in a data dir, listening on 127.0.0.1:4222 unless told
// otherwise, without signal handlers, logging through slog. A larger
// installation runs an external NATS cluster instead and only calls Connect.
//
// # Connect
//
// Connect dials NATS (reconnecting forever once connected) and creates or
// updates, with file storage and the configured replicas (1 embedded, 3 on a
// cluster):
//
//	bucket      history  TTL        keys
//	objects     1 (opt)  none       <kind>.<namespace>.<name>
//	assignments 1        none       <node>.<namespace>.<pod>
//	status      1        none       <node>.<namespace>.<pod>
//	nodes       1        none       <node>
//	leases      1        15 s       <name>; an expired lease leaves a delete marker
//	notified    1        30 days    a hash of <destination, source, event>: the last notice sent
//	identities  1        none       token.<id>, node.<name>, user.<name>: who holds credentials
//
//	stream  subjects                                    limits
//	events  capstan.events.<ns or _>.<kind>.<name>.<writer>  1 h, 100 per object and writer
//	audit   capstan.audit.<source>                      no age limit, 1 GiB, oldest dropped
//
// Subject tokens are made safe by escaping every byte other than letters,
// digits, '-' and '_' as '=' and two hex digits ("web.v1" -> "web=2Ev1");
// the records keep the real names, and readers match on those.
//
// # Stores
//
// KV is a bus.Store over one bucket. Revisions are stream sequence numbers,
// shared by all keys of a bucket. JetStream errors become bus.ErrNotFound,
// bus.ErrExists and bus.ErrConflict by error value and API code (10071 and,
// on replicated streams, 10164), never by message text. List and Watch read
// through an ordered consumer on the latest message of each key; a Watch
// channel never drops an entry (a slow reader holds the consumer back) and
// closes when its context ends or the connection closes. Deleted keys leave
// delete markers; KV.PurgeDeletes removes old ones.
//
// # Durability
//
// JetStream acknowledges a write once it reaches the OS, and fsyncs every
// two minutes unless ServerOptions.SyncAlways (fsync before each
// acknowledgement) or a shorter SyncInterval is set; the setting is per
// server, not per stream. Without it, a power failure or OS crash can lose
// acknowledged writes; a crash of the process alone cannot. Everything in
// the buckets can be rebuilt (objects from Git, assignments by the
// scheduler, status and nodes by the nodes); the audit stream cannot.
// BenchmarkKV shows what SyncAlways costs.
//
// Everything here is safe for concurrent use.
package natsbus
