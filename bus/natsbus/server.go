package natsbus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
}

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
	if err := s.ns.ReloadOptions(sopts); err != nil {
		return fmt.Errorf("natsbus: reload TLS: %w", err)
	}
	s.sopts = sopts
	return nil
}

// Start starts the server and returns once it accepts connections, or with
// an error when it does not before ctx ends (10 s without a deadline).
func (s *Server) Start(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
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
	return nil
}

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
