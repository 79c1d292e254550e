//go:build !serveronly

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/node/dataplane"
	"github.com/capstan-io/capstan/node/podman"
)

// nodeStack are the node daemon's flags.
type nodeStack struct {
	sharedStack
	nodeName     string
	nodeAddress  string
	nodeLabels   map[string]string
	podmanSocket string

	// The data plane (node/dataplane): see dataplaneFlags.
	dataplane                 bool
	clusterDNS, clusterDomain string
	nodeAddressV6             string
	podNetwork                string
}

var nonLabel = regexp.MustCompile(`[^a-z0-9-]+`)

func defaultNodeName() string {
	h, _ := os.Hostname()
	h = strings.Trim(nonLabel.ReplaceAllString(strings.ToLower(h), "-"), "-")
	if h == "" {
		h = "node"
	}
	return h
}

// dataplaneFlags adds the data plane's flags. --service-cidr is the
// control plane's too when both run in one command (up): it is defined
// once, by whichever adds it first, and read through the flag.
func (f *stackFlags) dataplaneFlags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.dataplane, "dataplane", true, "serve Services on this host: cluster IPs, node ports, cluster DNS (one node daemon per host)")
	if cmd.Flags().Lookup("service-cidr") == nil {
		cmd.Flags().String("service-cidr", dataplane.DefaultServiceCIDR, "range of the Services' cluster IPs (must match the control plane's)")
	}
	f.serviceCIDR = cmd.Flags().Lookup("service-cidr")
	f.serviceCIDRv6Flag(cmd)
	cmd.Flags().StringVar(&f.nodeAddressV6, "node-address-v6", "", "IPv6 address where node ports listen too (default: ::1 for a loopback --node-address, else an IPv6 address of its interface; \"none\": no IPv6 node ports)")
	cmd.Flags().StringVar(&f.clusterDNS, "cluster-dns", dataplane.DefaultClusterDNS, "address of the cluster DNS server that pods resolve with (\"\" keeps the host's resolvers)")
	cmd.Flags().StringVar(&f.clusterDomain, "cluster-domain", dataplane.DefaultDomain, "the cluster's DNS domain")
}

func (f *stackFlags) nodeFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.nodeName, "node-name", defaultNodeName(), "name of this node")
	cmd.Flags().StringVar(&f.nodeAddress, "node-address", "127.0.0.1", "address where this node's host ports are reached")
	cmd.Flags().StringToStringVar(&f.nodeLabels, "node-labels", nil, "extra node labels, k=v,k2=v2")
	cmd.Flags().StringVar(&f.podmanSocket, "podman-socket", "", "Podman API socket URI; when it does not answer, a Podman service is started in the data dir")
	cmd.Flags().StringVar(&f.podNetwork, "pod-network", podman.DefaultNetwork, "Podman network of the pods, created when missing (with IPv6 where this host has it); \"\" uses Podman's default network (IPv4 only)")
	f.dataplaneFlags(cmd)
}

func (f *stackFlags) runNode(ctx context.Context, g *group, conn *natsbus.Conn, log *slog.Logger) (func() error, error) {
	opts := podman.ServiceOptions{SocketURI: f.podmanSocket, DataDir: filepath.Join(f.dataDir, "podman"),
		Logger: log.With("component", "podman-service")}
	uri, stop, err := podman.EnsureService(ctx, opts)
	if err != nil {
		return nil, err
	}
	svc := &service{stops: []func() error{stop}}
	if own, _ := filepath.Abs(podman.SocketPath(opts.DataDir)); uri == "unix://"+own {
		// A service we started that dies is started again; the node shows
		// NotReady meanwhile and stops nothing.
		g.Go("podman service", func(ctx context.Context) error { return svc.supervise(ctx, uri, opts, log) })
	}
	rt, err := podman.New(ctx, uri, podman.WithLogger(log))
	if err != nil {
		_ = svc.stop()
		return nil, err
	}
	// The pods' network, dual stack unless IPv6 is off (by --service-cidr-v6,
	// or for want of it on this host).
	if info, err := rt.EnsureNetwork(ctx, f.podNetwork, f.v6Range() != ""); err != nil {
		_ = svc.stop()
		return nil, fmt.Errorf("%w (--pod-network \"\" uses Podman's default network)", err)
	} else if info.Name != "" {
		log.Info("pod network", "network", info.Name, "subnets", info.Subnets, "ipv6", info.IPv6, "created", info.Created)
		if !info.IPv6 && f.v6Range() != "" {
			log.Warn("the pod network has no IPv6 subnet: pods cannot reach IPv6 cluster IPs", "network", info.Name)
		}
	}
	d := &node.Daemon{Name: f.nodeName, Address: f.nodeAddress, Labels: f.nodeLabels, Runtime: rt,
		Nodes: conn.Nodes, Assignments: conn.Assignments, Status: conn.Status, Events: conn.Events,
		Log: log.With("component", "node"), DataDir: f.dataDir, ClusterDNS: f.clusterDNS, ClusterDomain: f.clusterDomain}
	g.Go("node", d.Run)
	if f.dataplane {
		dp := &dataplane.DataPlane{Objects: conn.Objects, NodeAddress: f.nodeAddress, NodeAddressV6: f.nodeAddressV6,
			ServiceCIDR: strings.Trim(f.serviceCIDR.Value.String()+","+f.v6Range(), ","), ClusterDNS: f.clusterDNS,
			Domain: f.clusterDomain, Log: log.With("component", "dataplane")}
		g.Go("dataplane", dp.Run)
	}
	g.Go("node logs", func(ctx context.Context) error { return d.ServeLogs(ctx, conn.NC) })
	return svc.stop, nil
}

// service supervises a Podman service that Capstan started.
type service struct {
	mu    sync.Mutex
	stops []func() error
}

func (s *service) supervise(ctx context.Context, uri string, opts podman.ServiceOptions, log *slog.Logger) error {
	down := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
		if podman.Ping(ctx, uri) == nil {
			down = false
			continue
		}
		if !down {
			log.Warn("podman service stopped answering; starting it again", "socket", uri)
			down = true
		}
		if _, stop, err := podman.EnsureService(ctx, opts); err != nil {
			log.Debug("restart podman service", "err", err)
		} else {
			s.mu.Lock()
			s.stops = append(s.stops, stop)
			s.mu.Unlock()
		}
	}
}

func (s *service) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, stop := range s.stops {
		errs = append(errs, stop())
	}
	return errors.Join(errs...)
}

func nodeCmd(gl *globals) *cobra.Command {
	f := &stackFlags{}
	var creds, token string
	var sim simOptions
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run the node daemon for this host against a Capstan bus (--server; --token the first time)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := gl.logger()
			if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
				return err
			}
			if cmd.Flags().Changed("simulate") { // simulate.go
				sim.dataDir, sim.server, sim.creds, sim.insecure = f.dataDir, gl.serverURL(nil), creds, gl.insecure
				sim.config = gl.configPath()
				return runSimulated(cmd.Context(), log, sim)
			}
			url := gl.serverURL(nil)
			nopts, err := nodeIdentity(cmd.Context(), f.dataDir, url, token, creds, f.nodeName, gl.insecure, log)
			if err != nil {
				return err
			}
			conn, err := natsbus.ConnectBound(cmd.Context(), url, natsbus.Options{Name: "capstan-node-" + f.nodeName,
				NATSOptions: nopts, EventWriter: f.nodeName, Logger: log})
			if err != nil {
				return natsauth.Explain(err, redactURL(url))
			}
			defer conn.Close()
			g := newGroup(cmd.Context(), log)
			if !gl.insecure {
				path := nodeCredsPath(f.dataDir, creds)
				g.Go("renew credentials", func(ctx context.Context) error { return renewCreds(ctx, conn.NC, path, log) })
			}
			stop, err := f.runNode(g.ctx, g, conn, log)
			if err != nil {
				return err
			}
			defer func() { _ = stop() }()
			return g.Wait()
		},
	}
	cmd.Flags().StringVar(&f.dataDir, "data-dir", defaultDataDir(), "where the Podman service keeps its files")
	cmd.Flags().StringVar(&creds, "creds", "", "NATS credentials file of this node's identity (default <data-dir>/"+nodeCredsFile+", written when the node joins with --token)")
	cmd.Flags().StringVar(&token, "token", "", "join token (capstan token create): exchanged once for this node's own credentials")
	f.nodeFlags(cmd)
	cmd.Flags().IntVar(&sim.count, "simulate", 0, "run this many simulated nodes (sim-0000...) over an in-memory runtime, for scale tests")
	cmd.Flags().DurationVar(&sim.startDelay, "simulate-start-delay", 0, "how long a simulated node takes to start a container")
	cmd.Flags().DurationVar(&sim.heartbeat, "simulate-heartbeat-interval", 10*time.Second, "base heartbeat interval of simulated nodes (each adds up to 20 % jitter)")
	cmd.Flags().DurationVar(&sim.relist, "simulate-relist-interval", 10*time.Second, "base relist interval of simulated nodes (a real node relists every 1 s; changes are acted on at once either way)")
	cmd.Flags().StringVar(&sim.prefix, "simulate-prefix", "sim", "simulated nodes are named <prefix>-0000...")
	cmd.Flags().BoolVar(&sim.reportSeen, "simulate-report-seen", false, "publish when each assignment reaches a simulated node (benchmarks)")
	for _, n := range []string{"simulate-heartbeat-interval", "simulate-relist-interval", "simulate-prefix", "simulate-report-seen"} {
		_ = cmd.Flags().MarkHidden(n)
	}
	return cmd
}
