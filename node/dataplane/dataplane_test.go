package dataplane

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
)

// addrs is an AddressSyncer that records what it is asked to hold.
type addrs struct {
	mu   sync.Mutex
	held []netip.Addr
}

func (a *addrs) Sync(_ context.Context, want []netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held = slices.Clone(want)
	slices.SortFunc(a.held, func(x, y netip.Addr) int { return x.Compare(y) })
	return nil
}

func (a *addrs) get() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.held)
}

// backend is a TCP server that answers each connection with its id.
func backend(t *testing.T, id string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", id)
				_, _ = io.Copy(io.Discard, c)
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func reach(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	s, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(s), err
}

func freePort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func put(t *testing.T, s bus.Store, obj manifests.Object) {
	t.Helper()
	manifests.SetKind(obj)
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(context.Background(), manifests.KeyOf(obj), b); err != nil {
		t.Fatal(err)
	}
}

// TestDataPlaneFollowsTheBus runs the data plane against a real NATS
// server, with cluster IPs in 127.0.0.0/8 (local without an interface, so
// no root is needed) and the addresses recorded instead of held.
func TestDataPlaneFollowsTheBus(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The harness writes the Services and slices as the control plane; the
	// data plane reads them as its node, n1, does in production.
	nb := natsauthtest.Start(t)
	conn := nb.ControlPlane
	n1 := nb.Connect(t, natsauth.RoleNode, "n1", natsbus.Options{})

	a, b := backend(t, "a"), backend(t, "b")
	web := svc("default", "web", manifests.ServiceNodePort, "127.77.0.20",
		manifests.ServicePort{Name: "http", Port: int32(freePort(t)), NodePort: int32(freePort(t))})
	// Dual stack, but this data plane has no IPv6 range: it serves the
	// IPv4 address alone (see the addresses held below).
	web.Spec.ClusterIPs = []string{"127.77.0.20", "fd00:77::20"}
	put(t, conn.Objects, web)
	put(t, conn.Objects, slice("default", "web",
		ep{addr: "127.0.0.1", ready: true, pod: "web-a", ports: map[string]int32{"http": int32(a.Port())}},
		ep{addr: "127.0.0.1", ready: true, pod: "web-b", ports: map[string]int32{"http": int32(b.Port())}}))

	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	held := &addrs{}
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dp := &DataPlane{Objects: n1.Objects, NodeAddress: "127.0.0.1", ServiceCIDR: "127.77.0.0/16",
		ClusterDNS: "127.77.0.10", DNSListen: dnsAddr, ResolvConf: resolv, Addresses: held,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	done := make(chan error, 1)
	go func() { done <- dp.Run(ctx) }()

	clusterAddr := fmt.Sprintf("127.77.0.20:%d", web.Spec.Ports[0].Port)
	nodeAddr := fmt.Sprintf("127.0.0.1:%d", web.Spec.Ports[0].NodePort)
	testwait.For(t, 10*time.Second, "both endpoints through the cluster IP and the node port", func() error {
		seen := map[string]bool{}
		for _, addr := range []string{clusterAddr, clusterAddr, nodeAddr, nodeAddr} {
			id, err := reach(addr)
			if err != nil {
				return err
			}
			seen[id] = true
		}
		if len(seen) != 2 {
			return fmt.Errorf("reached %v", seen)
		}
		return nil
	})
	if got, want := held.get(), []netip.Addr{netip.MustParseAddr("127.77.0.10"), netip.MustParseAddr("127.77.0.20")}; !slices.Equal(got, want) {
		t.Errorf("addresses held %v, want %v", got, want)
	}
	lookup := func(name string) ([]string, int, error) {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		resp, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, dnsAddr)
		if err != nil {
			return nil, 0, err
		}
		var out []string
		for _, rr := range resp.Answer {
			if a, ok := rr.(*dns.A); ok {
				out = append(out, a.A.String())
			}
		}
		return out, resp.Rcode, nil
	}
	testwait.For(t, 10*time.Second, "the service's name", func() error {
		got, _, err := lookup("web.default.svc.cluster.local.")
		if err != nil {
			return err
		}
		if !slices.Equal(got, []string{"127.77.0.20"}) {
			return fmt.Errorf("answer %v", got)
		}
		return nil
	})

	// b turns not ready: new connections go to a only.
	put(t, conn.Objects, slice("default", "web",
		ep{addr: "127.0.0.1", ready: true, pod: "web-a", ports: map[string]int32{"http": int32(a.Port())}},
		ep{addr: "127.0.0.1", ready: false, pod: "web-b", ports: map[string]int32{"http": int32(b.Port())}}))
	testwait.For(t, 10*time.Second, "only a", func() error {
		for range 4 {
			if id, err := reach(clusterAddr); err != nil || id != "a" {
				return fmt.Errorf("reached %q (%v)", id, err)
			}
		}
		return nil
	})

	// The service goes: its name, addresses and listeners go with it.
	if err := conn.Objects.Delete(ctx, manifests.KeyOf(web), 0); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the service gone", func() error {
		if _, err := reach(clusterAddr); err == nil {
			return fmt.Errorf("%s still answers", clusterAddr)
		}
		if got := held.get(); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("127.77.0.10")}) {
			return fmt.Errorf("addresses held %v", got)
		}
		if _, rcode, err := lookup("web.default.svc.cluster.local."); err != nil || rcode != dns.RcodeNameError {
			return fmt.Errorf("lookup: %s %v", dns.RcodeToString[rcode], err)
		}
		return nil
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if got := held.get(); len(got) != 0 {
		t.Errorf("addresses held after stop: %v", got)
	}
}
