package natsbus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerOptions configures an embedded NATS server. Only DataDir is
// required.
type ServerOptions struct {
	// DataDir holds the JetStream file store (in DataDir/jetstream).
	DataDir string
	// Host to listen on; default 127.0.0.1.
	Host string
	// Port to listen on; 0 means 4222, -1 picks a free port (for tests).
	Port int
	// ServerName names the server; default "capstan".
	ServerName string
	// SyncAlways makes JetStream fsync every write before acknowledging it.
	// Off, acknowledged writes reach the OS at once but the disk only every
	// SyncInterval, so a power failure or OS crash (not a process crash)
	// can lose the last interval's writes. On, writes are much slower
	// (BenchmarkKV, docs/BENCHMARKS.md).
	SyncAlways bool
	// SyncInterval is how often JetStream fsyncs when SyncAlways is off;
	// 0 keeps the server's default (2 minutes).
	SyncInterval time.Duration
	// MaxStore bounds the JetStream file store in bytes; 0 lets the server
	// pick from the free disk space.
	MaxStore int64
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger
	// Debug also passes the server's debug lines to Logger.
	Debug bool
	// ConfigFile is a nats-server configuration read first (Capstan's
	// is natsauth's: operator mode and TLS); the options above win over
	// it.
	ConfigFile string

	// The cluster fields make the server a member of a NATS cluster; all
	// are optional and, with ClusterPort 0, the server is alone as before.
	// A member needs its own ServerName (JetStream tells the members
	// apart by it) and the same ClusterName as its peers. How routes are
	// secured is the configuration file's (natsauth.PrepareCluster: TLS
	// with the bus's CA, both ways).

	// ClusterName names the cluster; default "capstan".
	ClusterName string
	// ClusterHost is the address routes are accepted on; default Host.
	ClusterHost string
	// ClusterPort is the port routes are accepted on: 0 means no cluster,
	// -1 picks a free port (for tests; ClusterURL tells which).
	ClusterPort int
	// Routes are the peers' cluster URLs (nats://host:port), this server's
	// own among them or not: it connects to each and learns of the
	// others' peers from them.
	Routes []string
}

// DefaultClusterName names a cluster whose ServerOptions name none.
const DefaultClusterName = "capstan"

// clustered reports whether the options make a cluster member.
func (opts ServerOptions) clustered() bool { return opts.ClusterPort != 0 }

// Server is an embedded NATS server with JetStream. Create it with
// NewServer, then Start it; Shutdown stops it. Its methods are safe for
// concurrent use.
type Server struct {
	opts  ServerOptions
	sopts *server.Options // what the server runs with
	ns    *server.Server
}

// NewServer checks opts and builds the server without starting it.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("natsbus: server needs a data dir")
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.clustered() {
		if opts.ServerName == "" {
			return nil, errors.New("natsbus: a cluster member needs a server name of its own")
		}
		if opts.ClusterName == "" {
			opts.ClusterName = DefaultClusterName
		}
		if opts.ClusterHost == "" {
			opts.ClusterHost = opts.Host
		}
	} else if len(opts.Routes) > 0 {
		return nil, errors.New("natsbus: routes need a cluster port")
	}
	if opts.ServerName == "" {
		opts.ServerName = "capstan"
	}
	sopts, err := opts.serverOptions()
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("natsbus: new server: %w", err)
	}
	if opts.Logger != nil {
		ns.SetLoggerV2(&slogAdapter{l: opts.Logger.With("component", "nats-server")}, opts.Debug, false, false)
	}
	return &Server{opts: opts, sopts: sopts, ns: ns}, nil
}

// serverOptions builds the server's options: the configuration file's,
// then the fields of o.
func (opts ServerOptions) serverOptions() (*server.Options, error) {
	sopts := &server.Options{}
	if opts.ConfigFile != "" {
		var err error
		if sopts, err = server.ProcessConfigFile(opts.ConfigFile); err != nil {
			return nil, fmt.Errorf("natsbus: server configuration: %w", err)
		}
	}
	sopts.ServerName = opts.ServerName
	sopts.Host, sopts.Port = opts.Host, opts.Port
	sopts.NoSigs = true
	sopts.NoLog, sopts.Debug = opts.Logger == nil, opts.Debug
	sopts.JetStream, sopts.StoreDir = true, opts.DataDir
	sopts.SyncAlways, sopts.SyncInterval = opts.SyncAlways, opts.SyncInterval
	sopts.JetStreamMaxStore = opts.MaxStore
	// Every node watches its assignments through one consumer of the
	// assignments stream; the server's default of 1,000 consumers per
	// stream would cap a cluster at 1,000 nodes.
	sopts.JetStreamLimits = server.JSLimitOpts{DefaultMaxConsumers: -1}
	if opts.clustered() {
		sopts.Cluster.Name = opts.ClusterName
		sopts.Cluster.Host, sopts.Cluster.Port = opts.ClusterHost, opts.ClusterPort
		sopts.Routes = nil
		for _, r := range opts.Routes {
			u, err := url.Parse(strings.TrimSpace(r))
			if err != nil || u.Scheme != "nats" || u.Port() == "" {
				return nil, fmt.Errorf("natsbus: route %q: not a nats://host:port URL", r)
			}
			sopts.Routes = append(sopts.Routes, u)
		}
	}
	return sopts, nil
}

// ReloadTLS has the server use cfg for new connections (a renewed
// certificate) without a restart: established connections stay.
func (s *Server) ReloadTLS(cfg *tls.Config) error {
	sopts := s.sopts.Clone()
	sopts.TLSConfig = cfg
	// The server derived these from the trusted operators at start; given
	// both, it refuses the options.
	if len(sopts.TrustedOperators) > 0 {
		sopts.TrustedKeys = nil
	}
	if a, ok := s.ns.Addr().(*net.TCPAddr); ok {
		sopts.Port = a.Port // a port picked at start (-1) stays
	}
	if a := s.ns.ClusterAddr(); a != nil {
		sopts.Cluster.Port = a.Port // likewise
	}
	if err := s.ns.ReloadOptions(sopts); err != nil {
		return fmt.Errorf("natsbus: reload TLS: %w", err)
	}
	s.sopts = sopts
	return nil
}

// Start starts the server and returns once it accepts connections, or with
// an error when it does not before ctx ends (10 s without a deadline). A
// cluster member returns once JetStream's meta group has a leader, which
// takes a majority of the members: the first of three waits for a second
// (a minute without a deadline).
func (s *Server) Start(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		wait := 10 * time.Second
		if s.opts.clustered() {
			wait = time.Minute
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	s.ns.Start()
	for !s.ns.ReadyForConnections(100 * time.Millisecond) {
		if err := ctx.Err(); err != nil {
			s.Shutdown()
			return fmt.Errorf("natsbus: server not ready: %w", err)
		}
	}
	if !s.ns.JetStreamEnabled() {
		s.Shutdown()
		return errors.New("natsbus: server started without JetStream")
	}
	if s.opts.clustered() {
		if err := s.awaitMetaLeader(ctx); err != nil {
			s.Shutdown()
			return err
		}
	}
	return nil
}

// awaitMetaLeader waits until the server knows JetStream's meta leader:
// before, no bucket or stream can be created or looked up.
func (s *Server) awaitMetaLeader(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.MetaLeader() != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsbus: cluster %s has no JetStream leader (routed to %d of its peers: %v; a majority must be up): %w",
				s.opts.ClusterName, len(s.Peers()), s.Peers(), ctx.Err())
		case <-tick.C:
		}
	}
}

// MetaLeader is the name of the server leading JetStream's meta group, or
// "" when none is known (or the server is alone).
func (s *Server) MetaLeader() string {
	if !s.ns.JetStreamIsClustered() {
		return ""
	}
	jsz, err := s.ns.Jsz(nil)
	if err != nil || jsz.Meta == nil {
		return ""
	}
	return jsz.Meta.Leader
}

// Peers names the servers this one has routes to, sorted.
func (s *Server) Peers() []string {
	rz, err := s.ns.Routez(nil)
	if err != nil {
		return nil
	}
	var names []string
	for _, r := range rz.Routes {
		names = append(names, r.RemoteName)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// ClusterURL is the URL peers route to, such as nats://127.0.0.1:6222, or
// "" when the server is not a cluster member.
func (s *Server) ClusterURL() string {
	a := s.ns.ClusterAddr()
	if a == nil {
		return ""
	}
	return "nats://" + net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port))
}

// LastSeq is the last sequence of this server's own copy of stream in
// account (an account's public key in operator mode), and whether it has
// one: on a cluster member, a replica catching up shows here before any
// client could tell it from the others.
func (s *Server) LastSeq(account, stream string) (uint64, bool) {
	jsz, err := s.ns.Jsz(&server.JSzOptions{Account: account, Streams: true})
	if err != nil {
		return 0, false
	}
	for _, a := range jsz.AccountDetails {
		for _, st := range a.Streams {
			if st.Name == stream {
				return st.State.LastSeq, true
			}
		}
	}
	return 0, false
}

// Name is the server's name.
func (s *Server) Name() string { return s.opts.ServerName }

// ClientURL is the URL clients connect to, such as nats://127.0.0.1:4222.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server, flushing JetStream's files, and waits for it.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// slogAdapter is the server's Logger over slog. The server formats its own
// lines; they arrive here as the message.
type slogAdapter struct{ l *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.l.Info(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
