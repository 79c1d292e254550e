//go:build !serveronly

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/node/fake"
)

// simOptions configure `capstan node --simulate N`: N hollow nodes in one
// process, as Kubernetes' kubemark runs hollow kubelets, named
// <prefix>-0000, <prefix>-0001... Each is a real
// node.Daemon (registration, heartbeats, its own assignments watch, status
// reports, events, the logs endpoint) over an in-memory node/fake runtime
// that starts nothing; only the runtime is simulated.
type simOptions struct {
	count      int
	startDelay time.Duration // how long the fake runtime takes to start a container
	// heartbeat and relist are the daemons' base intervals; each daemon
	// gets its own, up to 20 % longer, so a thousand of them do not tick
	// in step.
	heartbeat, relist time.Duration
	// perConn daemons share one NATS connection.
	perConn int
	// prefix names the nodes <prefix>-0000, <prefix>-0001...; default "sim".
	prefix string
	// reportSeen publishes, on SeenSubject, when each daemon's watch
	// delivered an assignment (for the fan-out benchmark).
	reportSeen bool
	dataDir    string
	server     string
	creds      string
	// config is the client config whose identity (an admin's) the
	// simulated nodes share, unless creds or insecure.
	config   string
	insecure bool
}

// SeenSubject carries a seenReport per assignment a simulated node's watch
// delivers, when --simulate-report-seen is set.
const SeenSubject = "capstan.bench.seen"

// seenReport says when an assignment was written (its message time on the
// bus) and when the node's watch delivered it.
type seenReport struct {
	Key     string    `json:"key"`
	Written time.Time `json:"written"`
	Seen    time.Time `json:"seen"`
}

// seenStore passes a daemon's watch through and reports each delivered
// put; every other method is the store's own.
type seenStore struct {
	bus.Store
	nc *nats.Conn
}

func (s seenStore) Watch(ctx context.Context, pattern string) (<-chan bus.Entry, error) {
	in, err := s.Store.Watch(ctx, pattern)
	if err != nil {
		return nil, err
	}
	out := make(chan bus.Entry)
	go func() {
		defer close(out)
		for e := range in {
			if e.Op == bus.OpPut {
				if b, err := json.Marshal(seenReport{Key: e.Key, Written: e.Time, Seen: time.Now()}); err == nil {
					_ = s.nc.Publish(SeenSubject, b)
				}
			}
			select {
			case out <- e:
			case <-ctx.Done():
				// The daemon stopped reading; drain so the store's
				// watch can end.
				for range in {
				}
				return
			}
		}
	}()
	return out, nil
}

// runSimulated runs o.count hollow node daemons until ctx ends, and returns
// once all have stopped.
func runSimulated(ctx context.Context, log *slog.Logger, o simOptions) error {
	if o.count <= 0 {
		return fmt.Errorf("--simulate %d: want at least one node", o.count)
	}
	if o.perConn <= 0 {
		o.perConn = 250
	}
	if o.prefix == "" {
		o.prefix = "sim"
	}
	// One connection serves many simulated nodes, so it cannot be a
	// node's identity: the simulator runs as the admin of the client config.
	var nopts []nats.Option
	if !o.insecure && o.creds == "" {
		cfg, err := natsauth.LoadClientConfig(o.config)
		if err != nil {
			return fmt.Errorf("simulated nodes use an admin's client config: %w", err)
		}
		if nopts, err = cfg.Options(); err != nil {
			return err
		}
	}
	g := newGroup(ctx, log)
	var conns []*natsbus.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	jitter := func(d time.Duration) time.Duration {
		if d <= 0 {
			return 0 // the daemon's default
		}
		return d + time.Duration(rand.Int64N(int64(d)/5+1))
	}
	var conn *natsbus.Conn
	for i := range o.count {
		if i%o.perConn == 0 {
			var err error
			conn, err = natsbus.ConnectBound(g.ctx, o.server, natsbus.Options{
				Name: fmt.Sprintf("capstan-sim-%d", i/o.perConn), CredentialsFile: o.creds, NATSOptions: nopts, Logger: log})
			if err != nil {
				g.cancel()
				_ = g.Wait()
				return fmt.Errorf("connect simulated nodes: %w", err)
			}
			conns = append(conns, conn)
		}
		name := fmt.Sprintf("%s-%04d", o.prefix, i)
		var assignments bus.Store = conn.Assignments
		if o.reportSeen {
			assignments = seenStore{Store: conn.Assignments, nc: conn.NC}
		}
		d := &node.Daemon{
			Name: name, Address: "127.0.0.1",
			Labels:  map[string]string{"capstan.io/simulated": "true"},
			Runtime: fake.New(fake.Options{StartDelay: o.startDelay, AnyImage: true}),
			Nodes:   conn.Nodes, Assignments: assignments, Status: conn.Status, Events: conn.Events,
			Log:               log.With("component", "node"),
			DataDir:           filepath.Join(o.dataDir, "simulated", name),
			HeartbeatInterval: jitter(o.heartbeat),
			RelistInterval:    jitter(o.relist),
		}
		nc := conn.NC
		g.Go(name, d.Run)
		g.Go(name+" logs", func(ctx context.Context) error { return d.ServeLogs(ctx, nc) })
	}
	log.Info("simulated nodes running", "count", o.count, "connections", len(conns),
		"start_delay", o.startDelay, "heartbeat", o.heartbeat, "relist", o.relist)
	return g.Wait()
}
