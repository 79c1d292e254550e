package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Policy is how a frontend chooses among its ready backends.
type Policy string

// Policies.
const (
	// RoundRobin takes the ready backends in turn.
	RoundRobin Policy = "round-robin"
	// LeastConnections takes the ready backend with the fewest open
	// connections (UDP: flows), in round-robin order among equals.
	LeastConnections Policy = "least-connections"
)

// Protocols of a frontend.
const (
	TCP = "TCP"
	UDP = "UDP"
)

// Backend is one place a frontend forwards to.
type Backend struct {
	Addr netip.AddrPort
	// Ready backends take new connections; the others only keep the ones
	// they have (a pod that is not ready, or terminating, drains).
	Ready bool
}

// Frontend is one address and port the proxy listens on, with where its
// traffic goes.
type Frontend struct {
	// Name says what the frontend is for, in logs ("default/web:http").
	Name     string
	Protocol string // TCP (the default) or UDP
	Listen   netip.AddrPort
	Backends []Backend
}

func (f Frontend) key() string {
	proto := strings.ToUpper(f.Protocol)
	if proto == "" {
		proto = TCP
	}
	return proto + "/" + f.Listen.String()
}

// Options configure a Proxy; the zero value of each field is its default.
type Options struct {
	Policy Policy // default RoundRobin
	// DialTimeout bounds one dial of a backend (default 2 s); a dial that
	// fails or times out is retried on another ready backend.
	DialTimeout time.Duration
	// UDPIdleTimeout ends a UDP flow after this long without a datagram
	// either way (default 30 s).
	UDPIdleTimeout time.Duration
	// RetryInterval between attempts to open a listener that failed
	// (default 5 s).
	RetryInterval time.Duration
	Log           *slog.Logger
}

// Proxy is the L4 proxy. Create it with New, start Run, then call Sync.
type Proxy struct {
	opts   Options
	dialer net.Dialer

	mu      sync.Mutex
	ctx     context.Context // Run's, once it runs
	stopped bool
	desired []Frontend
	fronts  map[string]*frontend // by key

	connMu sync.Mutex
	conns  map[io.Closer]struct{} // open connections, closed when Run ends
	wg     sync.WaitGroup
}

// New returns a Proxy with the options' defaults filled in.
func New(opts Options) *Proxy {
	if opts.Policy == "" {
		opts.Policy = RoundRobin
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 2 * time.Second
	}
	if opts.UDPIdleTimeout == 0 {
		opts.UDPIdleTimeout = 30 * time.Second
	}
	if opts.RetryInterval == 0 {
		opts.RetryInterval = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Proxy{opts: opts, dialer: net.Dialer{Timeout: opts.DialTimeout},
		fronts: map[string]*frontend{}, conns: map[io.Closer]struct{}{}}
}

// Run serves the frontends until ctx ends, retrying listeners that failed
// to open; then it closes every listener and connection and returns after
// its goroutines have exited.
func (p *Proxy) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.ctx != nil {
		p.mu.Unlock()
		return errors.New("proxy: Run called twice")
	}
	p.ctx = ctx
	if err := p.applyLocked(); err != nil {
		p.opts.Log.Warn("open frontends; retrying", "err", err)
	}
	p.mu.Unlock()
	tick := time.NewTicker(p.opts.RetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			p.mu.Lock()
			p.stopped = true
			for _, f := range p.fronts {
				f.close()
			}
			p.fronts = map[string]*frontend{}
			p.mu.Unlock()
			p.connMu.Lock()
			for c := range p.conns {
				_ = c.Close()
			}
			p.connMu.Unlock()
			p.wg.Wait()
			return nil
		case <-tick.C:
			p.mu.Lock()
			for _, f := range p.fronts {
				if !f.open() {
					if err := p.listen(f); err != nil {
						p.opts.Log.Debug("open frontend", "frontend", f.name, "err", err)
					}
				}
			}
			p.mu.Unlock()
		}
	}
}

// Sync makes the proxy serve exactly fronts. It returns the listeners that
// failed to open (Run retries them); the other frontends apply anyway.
// Before Run starts, Sync only records fronts.
func (p *Proxy) Sync(fronts []Frontend) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.desired = fronts
	if p.ctx == nil || p.stopped {
		return nil
	}
	return p.applyLocked()
}

// Listening reports, per frontend key ("TCP/10.96.0.1:80"), whether its
// listener is open.
func (p *Proxy) Listening() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]bool, len(p.fronts))
	for k, f := range p.fronts {
		m[k] = f.open()
	}
	return m
}

func (p *Proxy) applyLocked() error {
	want := make(map[string]Frontend, len(p.desired))
	for _, f := range p.desired {
		want[f.key()] = f
	}
	for k, f := range p.fronts {
		if _, ok := want[k]; !ok {
			f.close()
			delete(p.fronts, k)
			p.opts.Log.Debug("frontend removed", "frontend", f.name, "listen", k)
		}
	}
	var errs []error
	for k, w := range want {
		f, ok := p.fronts[k]
		if !ok {
			f = &frontend{key: k, name: w.Name, proto: strings.ToUpper(w.Protocol), listen: w.Listen, pool: &pool{policy: p.opts.Policy}}
			if f.proto == "" {
				f.proto = TCP
			}
			p.fronts[k] = f
		}
		f.pool.update(w.Backends)
		if !f.open() {
			if err := p.listen(f); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// listen opens f's socket and starts serving it; p.mu is held.
func (p *Proxy) listen(f *frontend) error {
	lc := net.ListenConfig{Control: Freebind}
	addr := f.listen.String()
	switch f.proto {
	case TCP:
		ln, err := lc.Listen(p.ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("listen tcp %s for %s: %w", addr, f.name, err)
		}
		f.ln = ln
		p.wg.Go(func() { p.acceptLoop(f, ln) })
	case UDP:
		pc, err := lc.ListenPacket(p.ctx, "udp", addr)
		if err != nil {
			return fmt.Errorf("listen udp %s for %s: %w", addr, f.name, err)
		}
		f.pc = pc.(*net.UDPConn)
		p.wg.Go(func() { p.udpLoop(f, f.pc) })
	default:
		return fmt.Errorf("frontend %s: protocol %q: want TCP or UDP", f.name, f.proto)
	}
	p.opts.Log.Debug("frontend listening", "frontend", f.name, "listen", f.key)
	return nil
}

func (p *Proxy) track(c io.Closer) bool {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.ctx.Err() != nil {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c io.Closer) {
	p.connMu.Lock()
	delete(p.conns, c)
	p.connMu.Unlock()
	_ = c.Close()
}

// frontend is one open (or failed) listener and its backends.
type frontend struct {
	key, name, proto string
	listen           netip.AddrPort
	pool             *pool
	ln               net.Listener // TCP
	pc               *net.UDPConn // UDP
	closed           atomic.Bool
}

func (f *frontend) open() bool { return f.ln != nil || f.pc != nil }

func (f *frontend) close() {
	f.closed.Store(true)
	if f.ln != nil {
		_ = f.ln.Close()
	}
	if f.pc != nil {
		_ = f.pc.Close()
	}
}

func (p *Proxy) acceptLoop(f *frontend, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.closed.Load() || p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: pause, do not spin.
			p.opts.Log.Warn("accept", "frontend", f.name, "err", err)
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if !p.track(c) {
			return
		}
		p.wg.Go(func() { p.serveTCP(f, c) })
	}
}

// serveTCP connects c to a ready backend, trying the others when a dial
// fails, and resets c when none is left.
func (p *Proxy) serveTCP(f *frontend, c net.Conn) {
	defer p.untrack(c)
	var tried map[*backend]bool
	for {
		b := f.pool.pick(tried)
		if b == nil {
			p.opts.Log.Debug("no ready backend; refusing", "frontend", f.name, "client", c.RemoteAddr())
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // close sends RST: a prompt refusal
			}
			return
		}
		b.active.Add(1)
		up, err := p.dialer.DialContext(p.ctx, "tcp", b.addr.String())
		if err != nil {
			b.active.Add(-1)
			p.opts.Log.Debug("dial backend; trying another", "frontend", f.name, "backend", b.addr, "err", err)
			if tried == nil {
				tried = map[*backend]bool{}
			}
			tried[b] = true
			continue
		}
		if p.track(up) {
			pipe(c, up)
			p.untrack(up)
		}
		b.active.Add(-1)
		return
	}
}

// pipe copies both ways until both directions end, passing half-closes
// on; an error either way closes both.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if err != nil {
			_ = dst.Close()
			_ = src.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Go(func() { cp(a, b) })
	cp(b, a)
	wg.Wait()
}

// flow is one UDP client's association with a backend.
type flow struct {
	b    *backend
	up   *net.UDPConn
	last atomic.Int64 // unix nanos of the last datagram either way
}

func (p *Proxy) udpLoop(f *frontend, pc *net.UDPConn) {
	var mu sync.Mutex
	flows := map[netip.AddrPort]*flow{}
	buf := make([]byte, 64*1024)
	for {
		n, src, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if f.closed.Load() || p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			p.opts.Log.Debug("read udp", "frontend", f.name, "err", err)
			continue
		}
		mu.Lock()
		fl := flows[src]
		if fl != nil && fl.b.removed.Load() {
			// The backend left the service: the client's next datagram
			// goes to a current one.
			_ = fl.up.Close()
			delete(flows, src)
			fl = nil
		}
		if fl == nil {
			b := f.pool.pick(nil)
			if b == nil {
				mu.Unlock()
				continue // no ready backend: drop
			}
			up, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(b.addr))
			if err != nil {
				mu.Unlock()
				p.opts.Log.Debug("dial udp backend", "frontend", f.name, "backend", b.addr, "err", err)
				continue
			}
			if !p.track(up) {
				mu.Unlock()
				return
			}
			b.active.Add(1)
			fl = &flow{b: b, up: up}
			fl.last.Store(time.Now().UnixNano()) // before its reader reads it
			flows[src] = fl
			p.wg.Go(func() {
				p.udpReplies(f, pc, src, fl)
				mu.Lock()
				if flows[src] == fl {
					delete(flows, src)
				}
				mu.Unlock()
				p.untrack(up)
				b.active.Add(-1)
			})
		}
		fl.last.Store(time.Now().UnixNano())
		_, err = fl.up.Write(buf[:n])
		mu.Unlock()
		if err != nil {
			p.opts.Log.Debug("write udp backend", "frontend", f.name, "backend", fl.b.addr, "err", err)
		}
	}
}

// udpReplies sends the backend's datagrams back to the client until the
// flow has been idle for UDPIdleTimeout or fails.
func (p *Proxy) udpReplies(f *frontend, pc *net.UDPConn, client netip.AddrPort, fl *flow) {
	buf := make([]byte, 64*1024)
	idle := p.opts.UDPIdleTimeout
	for {
		last := time.Unix(0, fl.last.Load())
		_ = fl.up.SetReadDeadline(last.Add(idle))
		n, err := fl.up.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, fl.last.Load())) < idle {
				continue // a datagram came from the client meanwhile
			}
			return
		}
		fl.last.Store(time.Now().UnixNano())
		if _, err := pc.WriteToUDPAddrPort(buf[:n], client); err != nil {
			if f.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			p.opts.Log.Debug("write udp client", "frontend", f.name, "client", client, "err", err)
		}
	}
}
