package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/capstan-io/capstan/bus"
)

// Stream names.
const (
	StreamEvents = "events"
	StreamAudit  = "audit"
)

// Defaults for Options.
const (
	DefaultName            = "capstan"
	DefaultLeaseTTL        = 15 * time.Second
	DefaultEventsMaxAge    = time.Hour
	DefaultEventsPerObject = 100
	DefaultAuditMaxBytes   = 1 << 30
)

// Options configures Connect. The zero value connects without credentials
// to a single server and uses the defaults above.
type Options struct {
	// Name is the client name the server shows; default "capstan".
	Name string
	// CredentialsFile is a NATS .creds file (user JWT and nkey seed).
	CredentialsFile string
	// User and Password authenticate with a user name.
	User, Password string
	// Token authenticates with a token.
	Token string

	// Replicas of every bucket and stream; 0 chooses by the servers
	// connected to (ClusterReplicas): 1 for a single server, 3 for a
	// cluster of three or more.
	Replicas int
	// ObjectsHistory is how many revisions of each object the objects
	// bucket keeps (1 to 64); default 1. Nothing in Capstan reads older
	// revisions yet; more history costs disk per object.
	ObjectsHistory uint8
	// LeaseTTL is how long a lease lives after its last write; default
	// 15 s, at least 1 s. A holder must renew well within it.
	LeaseTTL time.Duration
	// EventsMaxAge is how long events are kept; default 1 h.
	EventsMaxAge time.Duration
	// EventsPerObject is how many events are kept, and listed, per object;
	// default 100.
	EventsPerObject int
	// AuditMaxBytes bounds the audit stream, which has no age limit: the
	// oldest records go first once it is full. Default 1 GiB.
	AuditMaxBytes int64
	// NotifiedTTL is how long the notified bucket remembers a notice sent
	// after its last write (bounding it); default 30 days.
	NotifiedTTL time.Duration

	// EventWriter names who records events on this connection (a node's
	// name; empty for the control plane): the last token of their
	// subjects, which a node's permissions hold to its own name.
	EventWriter string

	// NATSOptions are added to the connection's options: TLS and
	// credentials (natsauth.ClientConfig.Options).
	NATSOptions []nats.Option

	// Logger receives connection events (disconnects, reconnects, errors);
	// nil discards them.
	Logger *slog.Logger

	// Bind looks the buckets up instead of creating or updating them: for
	// the clients of a bus the control plane has set up (the CLI, node
	// daemons). Such a client needs no right to create or change streams,
	// and a connection is one read-only lookup per bucket instead of a
	// create and an update, each of which rewrote the stream's
	// configuration. The bucket settings above are then the control
	// plane's to choose; EventsPerObject still bounds what Events.List
	// returns. A bucket not set up yet fails Connect with ErrNotSetUp.
	Bind bool
}

// ErrNotSetUp is returned by a binding Connect (Options.Bind) when a bucket
// does not exist yet: the control plane creates them when it starts.
var ErrNotSetUp = errors.New("natsbus: the bus is not set up yet (the control plane creates its buckets when it starts)")

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.NotifiedTTL <= 0 {
		o.NotifiedTTL = 30 * 24 * time.Hour
	}
	if o.ObjectsHistory == 0 {
		o.ObjectsHistory = 1
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.EventsMaxAge <= 0 {
		o.EventsMaxAge = DefaultEventsMaxAge
	}
	if o.EventsPerObject <= 0 {
		o.EventsPerObject = DefaultEventsPerObject
	}
	if o.AuditMaxBytes <= 0 {
		o.AuditMaxBytes = DefaultAuditMaxBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Conn is a connection to NATS with Capstan's buckets and streams. Its
// fields are set by Connect and must not be changed; it is safe for
// concurrent use.
type Conn struct {
	// The buckets, each a *KV (type-assert for PurgeDeletes or Bucket).
	Objects, Assignments, Status, Nodes, Leases bus.Store
	// Notified is the notifications' de-duplication memory.
	Notified bus.Store
	// Identities records the credentials issued on the bus (natsauth).
	Identities bus.Store

	Events bus.Events
	Audit  bus.Audit

	// NC is the connection itself, for request/reply (such as logs).
	NC *nats.Conn
	// JS is the JetStream context the stores use.
	JS jetstream.JetStream
}

// Connect connects to url (one or more comma-separated server URLs),
// reconnecting forever once connected, and creates or updates the buckets
// and streams (or looks the buckets up: Options.Bind). Credentials never appear in logs or errors.
func Connect(ctx context.Context, url string, opts Options) (*Conn, error) {
	opts.setDefaults()
	if opts.LeaseTTL < time.Second {
		return nil, errors.New("natsbus: lease TTL under 1s")
	}
	log := opts.Logger
	deny := &denials{}
	nopts := []nats.Option{
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "server", nc.ConnectedUrlRedacted(), "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			deny.heard(err)
			if errors.Is(err, nats.ErrPermissionViolation) {
				log.Warn("the bus refused an operation to this identity", "err", err)
				return
			}
			if sub != nil {
				log.Error("nats subscription error", "subject", sub.Subject, "err", err)
				return
			}
			log.Error("nats error", "err", err)
		}),
	}
	nopts = append(nopts, opts.NATSOptions...)
	if opts.CredentialsFile != "" {
		nopts = append(nopts, nats.UserCredentials(opts.CredentialsFile))
	}
	if opts.User != "" {
		nopts = append(nopts, nats.UserInfo(opts.User, opts.Password))
	}
	if opts.Token != "" {
		nopts = append(nopts, nats.Token(opts.Token))
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		// nats.Connect's errors name the failure, not the credentials.
		return nil, fmt.Errorf("natsbus: connect: %w", err)
	}
	c, err := setup(ctx, nc, opts, deny)
	if err != nil {
		nc.Close()
		return nil, err
	}
	log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
	return c, nil
}

func setup(ctx context.Context, nc *nats.Conn, opts Options, deny *denials) (*Conn, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: jetstream: %w", err)
	}
	c := &Conn{NC: nc, JS: js}
	if opts.Replicas <= 0 {
		opts.Replicas = ClusterReplicas(nc)
	}
	buckets := []struct {
		dst *bus.Store
		cfg jetstream.KeyValueConfig
	}{
		{&c.Objects, jetstream.KeyValueConfig{Bucket: bus.BucketObjects, History: opts.ObjectsHistory}},
		{&c.Status, jetstream.KeyValueConfig{Bucket: bus.BucketStatus}},
		{&c.Nodes, jetstream.KeyValueConfig{Bucket: bus.BucketNodes}},
		// An expired lease leaves a delete marker, so watchers see it go.
		{&c.Leases, jetstream.KeyValueConfig{Bucket: bus.BucketLeases, TTL: opts.LeaseTTL, LimitMarkerTTL: opts.LeaseTTL}},
		{&c.Notified, jetstream.KeyValueConfig{Bucket: bus.BucketNotified, TTL: opts.NotifiedTTL}},
		{&c.Identities, jetstream.KeyValueConfig{Bucket: bus.BucketIdentities}},
	}
	// The assignments buckets come last, without a destination: together
	// they are one sharded store.
	for i := range AssignmentShards {
		buckets = append(buckets, struct {
			dst *bus.Store
			cfg jetstream.KeyValueConfig
		}{nil, jetstream.KeyValueConfig{Bucket: AssignmentsBucket(i)}})
	}
	// The buckets are set up in parallel: in series, their round trips
	// dominate a CLI command against a loaded server.
	kvs := make([]*KV, len(buckets))
	errs := make([]error, len(buckets))
	var wg sync.WaitGroup
	for i, b := range buckets {
		wg.Go(func() {
			var kv jetstream.KeyValue
			var err error
			if opts.Bind {
				if kv, err = js.KeyValue(ctx, b.cfg.Bucket); errors.Is(err, jetstream.ErrBucketNotFound) {
					errs[i] = ErrNotSetUp // named below, with the others missing
					return
				}
			} else {
				b.cfg.Storage = jetstream.FileStorage
				b.cfg.Replicas = opts.Replicas
				kv, err = js.CreateOrUpdateKeyValue(ctx, b.cfg)
			}
			if err != nil {
				errs[i] = fmt.Errorf("natsbus: bucket %s: %w", b.cfg.Bucket, err)
				return
			}
			kvs[i] = &KV{kv: kv, deny: deny}
		})
	}
	wg.Wait()
	var missing []string
	for i, err := range errs {
		if err == ErrNotSetUp {
			missing, errs[i] = append(missing, buckets[i].cfg.Bucket), nil
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: no bucket %s", ErrNotSetUp, strings.Join(missing, ", "))
	}
	for i, b := range buckets {
		if b.dst != nil {
			*b.dst = kvs[i]
		}
	}
	c.Assignments = NewSharded(kvs[len(kvs)-AssignmentShards:])
	streams := []jetstream.StreamConfig{{
		Name:              StreamEvents,
		Subjects:          []string{"capstan.events.>"},
		Storage:           jetstream.FileStorage,
		Replicas:          opts.Replicas,
		MaxAge:            opts.EventsMaxAge,
		MaxMsgsPerSubject: int64(opts.EventsPerObject),
		Discard:           jetstream.DiscardOld,
	}, {
		Name:     StreamAudit,
		Subjects: []string{"capstan.audit.>"},
		Storage:  jetstream.FileStorage,
		Replicas: opts.Replicas,
		MaxBytes: opts.AuditMaxBytes,
		Discard:  jetstream.DiscardOld,
	}}
	for _, cfg := range streams {
		if opts.Bind {
			break // publishing and reading need no handle on them
		}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("natsbus: stream %s: %w", cfg.Name, err)
		}
	}
	c.Events = &Events{js: js, deny: deny, limit: opts.EventsPerObject, writer: opts.EventWriter}
	c.Audit = &Audit{js: js, deny: deny}
	return c, nil
}

// ClusterReplicas is how many replicas a bucket or stream should have on
// the servers nc is connected to: 3 when they are a cluster of at least
// three servers, 1 otherwise (a single server, or a cluster of two, where
// R3 cannot be placed and R2 would not survive the loss of either). It
// counts the servers the connection knows: those it was given and those
// the cluster announced, so a member not yet routed when the connection
// was made is not counted.
func ClusterReplicas(nc *nats.Conn) int {
	if nc.ConnectedClusterName() == "" {
		return 1
	}
	if len(nc.Servers()) >= 3 {
		return 3
	}
	return 1
}

// ConnectBound is Connect with Options.Bind, for a client that may start
// before its control plane (a node daemon): while the bus is not set up
// it says so once and tries again every second, until ctx ends.
func ConnectBound(ctx context.Context, url string, opts Options) (*Conn, error) {
	opts.Bind = true
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	said := false
	for {
		c, err := Connect(ctx, url, opts)
		if !errors.Is(err, ErrNotSetUp) {
			return c, err
		}
		if !said {
			log.Info("waiting for the control plane to set up the bus", "err", err)
			said = true
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Second):
		}
	}
}

// legacyBuckets are buckets an older Capstan wrote that nothing reads
// now: "assignments", the one bucket of assignments before they were
// sharded over sixteen (docs/ARCHITECTURE.md).
var legacyBuckets = []string{bus.BucketAssignments}

// DropLegacy deletes the buckets an older Capstan left that nothing reads
// any more, and returns the names of those it found. The control plane
// calls it when it starts.
func (c *Conn) DropLegacy(ctx context.Context) ([]string, error) {
	var dropped []string
	for _, b := range legacyBuckets {
		err := c.JS.DeleteKeyValue(ctx, b)
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound):
		case err != nil:
			return dropped, fmt.Errorf("natsbus: delete the legacy bucket %s: %w", b, err)
		default:
			dropped = append(dropped, b)
		}
	}
	return dropped, nil
}

// Close closes the connection; watches end and close their channels.
func (c *Conn) Close() { c.NC.Close() }
