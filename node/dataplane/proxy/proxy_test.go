package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/capstan-io/capstan/internal/testwait"
)

// echoServer is a TCP backend on loopback: to each connection it first
// writes its id and a newline, then echoes lines back.
func echoServer(t *testing.T, id string) netip.AddrPort {
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
				_, _ = io.Copy(c, c)
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// freeAddr returns a loopback address and port nothing listens on (TCP and
// UDP), for a frontend or a dead backend.
func freeAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		ln.Close()
		if pc, err := net.ListenPacket("udp", ap.String()); err == nil {
			pc.Close()
			return ap
		}
	}
	t.Fatal("no free port")
	return netip.AddrPort{}
}

func startProxy(t *testing.T, opts Options) *Proxy {
	t.Helper()
	p := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its context's end")
		}
	})
	// Sync applies only once Run has started.
	testwait.For(t, 5*time.Second, "Run starts", func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.ctx == nil {
			return errors.New("not started")
		}
		return nil
	})
	return p
}

func mustSync(t *testing.T, p *Proxy, fronts ...Frontend) {
	t.Helper()
	if err := p.Sync(fronts); err != nil {
		t.Fatal(err)
	}
}

// conn is a client connection through the proxy.
type conn struct {
	net.Conn
	r *bufio.Reader
}

// dial connects to addr and reads the backend's id.
func dial(addr netip.AddrPort) (*conn, string, error) {
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		return nil, "", err
	}
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	cc := &conn{Conn: c, r: bufio.NewReader(c)}
	id, err := cc.r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", err
	}
	return cc, strings.TrimSpace(id), nil
}

// ask connects, reads the backend's id and hangs up.
func ask(t *testing.T, addr netip.AddrPort) string {
	t.Helper()
	c, id, err := dial(addr)
	if err != nil {
		t.Fatalf("connect through %s: %v", addr, err)
	}
	c.Close()
	return id
}

// echo checks that c still carries data both ways.
func (c *conn) echo(msg string) error {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		return err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

func TestRoundRobinTCP(t *testing.T) {
	t.Parallel()
	p := startProxy(t, Options{})
	front := freeAddr(t)
	ids := []string{"a", "b", "c"}
	var bs []Backend
	for _, id := range ids {
		bs = append(bs, Backend{Addr: echoServer(t, id), Ready: true})
	}
	mustSync(t, p, Frontend{Name: "rr", Listen: front, Backends: bs})
	var got []string
	for range 9 {
		got = append(got, ask(t, front))
	}
	// In turn: each backend once per round, in the same order every round.
	for i := 3; i < len(got); i++ {
		if got[i] != got[i-3] {
			t.Fatalf("not round robin: %v", got)
		}
	}
	seen := map[string]bool{}
	for _, id := range got[:3] {
		seen[id] = true
	}
	if len(seen) != 3 {
		t.Fatalf("first round %v does not visit every backend", got[:3])
	}
}

func TestRetriesAnotherBackendWhenADialFails(t *testing.T) {
	t.Parallel()
	p := startProxy(t, Options{})
	front := freeAddr(t)
	dead := freeAddr(t) // nothing listens: the dial is refused
	mustSync(t, p, Frontend{Name: "retry", Listen: front, Backends: []Backend{
		{Addr: dead, Ready: true}, {Addr: echoServer(t, "live"), Ready: true}}})
	for i := range 6 {
		if id := ask(t, front); id != "live" {
			t.Fatalf("connection %d reached %q", i, id)
		}
	}
}

func TestRefusesPromptlyWithoutReadyBackend(t *testing.T) {
	t.Parallel()
	p := startProxy(t, Options{})
	front := freeAddr(t)
	notReady := echoServer(t, "draining")
	for _, tc := range []struct {
		name     string
		backends []Backend
	}{
		{"no backend", nil},
		{"none ready", []Backend{{Addr: notReady, Ready: false}}},
		{"all dead", []Backend{{Addr: freeAddr(t), Ready: true}, {Addr: freeAddr(t), Ready: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustSync(t, p, Frontend{Name: "refuse", Listen: front, Backends: tc.backends})
			begin := time.Now()
			_, id, err := dial(front)
			if err == nil {
				t.Fatalf("reached %q", id)
			}
			if d := time.Since(begin); d > time.Second {
				t.Fatalf("refused after %s, want promptly", d)
			}
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("want a reset or refusal, got %v", err)
			}
		})
	}
	// A ready backend arriving takes effect at the next connection.
	mustSync(t, p, Frontend{Name: "refuse", Listen: front, Backends: []Backend{{Addr: notReady, Ready: true}}})
	if id := ask(t, front); id != "draining" {
		t.Fatalf("reached %q", id)
	}
}

func TestDrainKeepsConnectionsInFlight(t *testing.T) {
	t.Parallel()
	p := startProxy(t, Options{})
	front := freeAddr(t)
	a, b := echoServer(t, "a"), echoServer(t, "b")
	mustSync(t, p, Frontend{Name: "drain", Listen: front, Backends: []Backend{{Addr: a, Ready: true}, {Addr: b, Ready: true}}})
	// Open connections until one is on a.
	var inflight *conn
	for range 4 {
		c, id, err := dial(front)
		if err != nil {
			t.Fatal(err)
		}
		if id == "a" {
			inflight = c
			break
		}
		c.Close()
	}
	if inflight == nil {
		t.Fatal("no connection reached a")
	}
	defer inflight.Close()

	// a turns not ready: new connections go to b only, the old one lives.
	mustSync(t, p, Frontend{Name: "drain", Listen: front, Backends: []Backend{{Addr: a, Ready: false}, {Addr: b, Ready: true}}})
	for i := range 6 {
		if id := ask(t, front); id != "b" {
			t.Fatalf("new connection %d went to %q after a turned not ready", i, id)
		}
		if err := inflight.echo(fmt.Sprintf("ping %d", i)); err != nil {
			t.Fatalf("in-flight connection to a: %v", err)
		}
	}
	// a leaves the list altogether (its pod is deleted): still drained.
	mustSync(t, p, Frontend{Name: "drain", Listen: front, Backends: []Backend{{Addr: b, Ready: true}}})
	if err := inflight.echo("after removal"); err != nil {
		t.Fatalf("in-flight connection after a was removed: %v", err)
	}
	// The frontend going away closes its listener but not the connection.
	mustSync(t, p)
	if err := inflight.echo("after frontend removal"); err != nil {
		t.Fatalf("in-flight connection after the frontend was removed: %v", err)
	}
	if c, err := net.DialTimeout("tcp", front.String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the removed frontend still accepts connections")
	}
}

// udpServer is a UDP backend that answers each datagram with "<id>:<data>".
func udpServer(t *testing.T, id string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(id+":"+string(buf[:n])), from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// udpAsk sends msg from c and returns the answer ("" when none comes
// within wait).
func udpAsk(t *testing.T, c *net.UDPConn, msg string, wait time.Duration) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func udpClient(t *testing.T, front netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(front))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestUDPFlows(t *testing.T) {
	t.Parallel()
	p := startProxy(t, Options{UDPIdleTimeout: 500 * time.Millisecond})
	front := freeAddr(t)
	a, b := udpServer(t, "a"), udpServer(t, "b")
	both := []Backend{{Addr: a, Ready: true}, {Addr: b, Ready: true}}
	mustSync(t, p, Frontend{Name: "udp", Protocol: UDP, Listen: front, Backends: both})

	// Each flow sticks to one backend; flows are spread.
	count := map[string]int{}
	for i := range 4 {
		c := udpClient(t, front)
		first := udpAsk(t, c, "x", 2*time.Second)
		backend, _, ok := strings.Cut(first, ":")
		if !ok {
			t.Fatalf("flow %d: answer %q", i, first)
		}
		for j := range 3 {
			if got := udpAsk(t, c, fmt.Sprint(j), 2*time.Second); got != backend+":"+fmt.Sprint(j) {
				t.Fatalf("flow %d datagram %d: %q, want from %s", i, j, got, backend)
			}
		}
		count[backend]++
	}
	if count["a"] != 2 || count["b"] != 2 {
		t.Fatalf("flows per backend %v, want 2 and 2", count)
	}

	// A flow whose backend leaves the list moves to a current one.
	c := udpClient(t, front)
	first, _, _ := strings.Cut(udpAsk(t, c, "x", 2*time.Second), ":")
	other := map[string]netip.AddrPort{"a": b, "b": a}[first]
	mustSync(t, p, Frontend{Name: "udp", Protocol: UDP, Listen: front, Backends: []Backend{{Addr: other, Ready: true}}})
	if got, _, _ := strings.Cut(udpAsk(t, c, "y", 2*time.Second), ":"); got == first {
		t.Fatalf("flow still on removed backend %s", first)
	}

	// No ready backend: datagrams are dropped.
	mustSync(t, p, Frontend{Name: "udp", Protocol: UDP, Listen: front, Backends: []Backend{{Addr: a, Ready: false}}})
	if got := udpAsk(t, udpClient(t, front), "z", 300*time.Millisecond); got != "" {
		t.Fatalf("answer %q with no ready backend", got)
	}
}

func TestListenFailureIsReportedAndRetried(t *testing.T) {
	t.Parallel()
	p := startProxy(t, Options{RetryInterval: 50 * time.Millisecond})
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := taken.Addr().(*net.TCPAddr).AddrPort()
	f := Frontend{Name: "taken", Listen: front, Backends: []Backend{{Addr: echoServer(t, "x"), Ready: true}}}
	if err := p.Sync([]Frontend{f}); err == nil {
		t.Fatal("Sync on a taken port: no error")
	}
	taken.Close()
	testwait.For(t, 5*time.Second, "the listener opened again after the port was freed", func() error {
		if !p.Listening()[f.key()] {
			return errors.New("not listening")
		}
		return nil
	})
	if id := ask(t, front); id != "x" {
		t.Fatalf("reached %q", id)
	}
}

func TestLeastConnectionsThroughProxy(t *testing.T) {
	t.Parallel()
	p := startProxy(t, Options{Policy: LeastConnections})
	front := freeAddr(t)
	mustSync(t, p, Frontend{Name: "lc", Listen: front, Backends: []Backend{
		{Addr: echoServer(t, "a"), Ready: true}, {Addr: echoServer(t, "b"), Ready: true}}})
	// Hold a connection: every next one goes to the other backend while
	// it stays open, since each short one is closed before the next.
	held, heldID, err := dial(front)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for i := range 4 {
		c, id, err := dial(front)
		if err != nil {
			t.Fatal(err)
		}
		if id == heldID {
			t.Fatalf("connection %d went to %s, which holds one while the other holds none", i, id)
		}
		c.Close()
		// Wait for the proxy to see it closed.
		testwait.For(t, 3*time.Second, "the proxy sees the connection closed", func() error {
			if n := p.active(front); n != 1 {
				return fmt.Errorf("%d active connections", n)
			}
			return nil
		})
	}
}

// active is the number of open connections of a frontend's backends.
func (p *Proxy) active(front netip.AddrPort) int64 {
	p.mu.Lock()
	f := p.fronts[TCP+"/"+front.String()]
	p.mu.Unlock()
	f.pool.mu.Lock()
	defer f.pool.mu.Unlock()
	var n int64
	for _, b := range f.pool.backends {
		n += b.active.Load()
	}
	return n
}

// TestPoolProperties checks the choice of backends over random pools:
// only ready backends not skipped are chosen; round robin gives each
// ready backend exactly its share over whole rounds; least connections
// always takes one with the fewest connections.
func TestPoolProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(4, 2))
	for iter := range 2000 {
		n := 1 + rng.IntN(8)
		var bs []Backend
		for i := range n {
			bs = append(bs, Backend{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 80), Ready: rng.IntN(3) > 0})
		}
		policy := RoundRobin
		if rng.IntN(2) == 0 {
			policy = LeastConnections
		}
		p := &pool{policy: policy}
		p.update(bs)
		// A second update with the same list keeps the state.
		for _, b := range p.backends {
			b.active.Store(int64(rng.IntN(4)))
		}
		p.update(bs)
		ready := 0
		for _, b := range p.backends {
			if b.ready.Load() {
				ready++
			}
		}
		skip := map[*backend]bool{}
		for _, b := range p.backends {
			if rng.IntN(4) == 0 {
				skip[b] = true
			}
		}
		eligible := 0
		for _, b := range p.backends {
			if b.ready.Load() && !skip[b] {
				eligible++
			}
		}
		if got := p.pick(skip); (got == nil) != (eligible == 0) {
			t.Fatalf("iter %d: pick %v with %d eligible", iter, got, eligible)
		} else if got != nil && (!got.ready.Load() || skip[got]) {
			t.Fatalf("iter %d: picked %v (ready %v, skipped %v)", iter, got.addr, got.ready.Load(), skip[got])
		}
		if ready == 0 {
			continue
		}
		rounds := 1 + rng.IntN(5)
		count := map[*backend]int{}
		for range rounds * ready {
			b := p.pick(nil)
			if b == nil || !b.ready.Load() {
				t.Fatalf("iter %d: picked %v", iter, b)
			}
			if policy == LeastConnections {
				for _, o := range p.backends {
					if o.ready.Load() && o.active.Load() < b.active.Load() {
						t.Fatalf("iter %d: least connections picked %d over %d", iter, b.active.Load(), o.active.Load())
					}
				}
				b.active.Add(1)
			}
			count[b]++
		}
		if policy == RoundRobin {
			for b, c := range count {
				if c != rounds {
					t.Fatalf("iter %d: %v picked %d times in %d rounds of %d ready", iter, b.addr, c, rounds, ready)
				}
			}
			if len(count) != ready {
				t.Fatalf("iter %d: %d of %d ready backends picked", iter, len(count), ready)
			}
		}
	}
}

func TestIPv6(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	ln.Close()
	p := startProxy(t, Options{})
	front := netip.AddrPortFrom(netip.IPv6Loopback(), ln.Addr().(*net.TCPAddr).AddrPort().Port())
	back, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	go func() {
		for {
			c, err := back.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "six\n")
			c.Close()
		}
	}()
	mustSync(t, p, Frontend{Name: "v6", Listen: front, Backends: []Backend{
		{Addr: back.Addr().(*net.TCPAddr).AddrPort(), Ready: true}}})
	if id := ask(t, front); id != "six" {
		t.Fatalf("reached %q", id)
	}
}
