package proxy

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// backend is one backend of a frontend, kept across updates by address so
// its connection count survives them.
type backend struct {
	addr    netip.AddrPort
	ready   atomic.Bool
	removed atomic.Bool  // no longer in the frontend's list
	active  atomic.Int64 // open connections (UDP: flows)
}

// pool chooses backends for one frontend.
type pool struct {
	policy   Policy
	mu       sync.Mutex
	backends []*backend
	next     int // round-robin position
}

// update makes the pool's backends bs, keeping the state of those it has.
func (p *pool) update(bs []Backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := make(map[netip.AddrPort]*backend, len(p.backends))
	for _, b := range p.backends {
		old[b.addr] = b
	}
	next := make([]*backend, 0, len(bs))
	seen := make(map[netip.AddrPort]bool, len(bs))
	for _, w := range bs {
		if seen[w.Addr] {
			continue
		}
		seen[w.Addr] = true
		b := old[w.Addr]
		if b == nil {
			b = &backend{addr: w.Addr}
		}
		b.ready.Store(w.Ready)
		next = append(next, b)
	}
	for a, b := range old {
		if !seen[a] {
			b.removed.Store(true)
			b.ready.Store(false)
		}
	}
	p.backends = next
	if p.next >= len(next) {
		p.next = 0
	}
}

// pick returns a ready backend not in skip, or nil.
func (p *pool) pick(skip map[*backend]bool) *backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.backends)
	var best *backend
	bestAt := 0
	for i := range n {
		at := (p.next + i) % n
		b := p.backends[at]
		if !b.ready.Load() || skip[b] {
			continue
		}
		if p.policy != LeastConnections {
			best, bestAt = b, at
			break
		}
		if best == nil || b.active.Load() < best.active.Load() {
			best, bestAt = b, at
		}
	}
	if best != nil {
		p.next = (bestAt + 1) % n
	}
	return best
}
