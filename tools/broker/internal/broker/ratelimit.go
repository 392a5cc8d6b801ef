package broker

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Per-source limits of the relay protocol: a token bucket per client address
// (an IPv6 client by its /64, which one host usually holds whole). A relay
// makes two requests per boot and two per push; the defaults let a few
// dozen relays behind one address boot at once, and hold a flooding source
// to a few requests a second.
const (
	DefaultSourceRate  = 10  // requests per second, sustained
	DefaultSourceBurst = 120 // requests at once
	// maxSources bounds the table; idle sources (full buckets) go first.
	maxSources = 65536
)

type bucket struct {
	tokens float64
	last   time.Time
}

type sourceLimiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	now     func() time.Time
	buckets map[netip.Prefix]*bucket
}

func newSourceLimiter(rate, burst float64, now func() time.Time) *sourceLimiter {
	return &sourceLimiter{rate: rate, burst: burst, now: now, buckets: map[netip.Prefix]*bucket{}}
}

// sourceOf is the address a limit applies to: the IPv4 address, or the /64
// of an IPv6 one.
func sourceOf(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	addr = addr.Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

func (l *sourceLimiter) allow(source netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[source]
	if b == nil {
		if len(l.buckets) >= maxSources {
			l.evictLocked(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[source] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evictLocked forgets sources whose bucket has refilled; if none has, the
// table is full of active sources and is cleared (they start full again).
func (l *sourceLimiter) evictLocked(now time.Time) {
	for p, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, p)
		}
	}
	if len(l.buckets) >= maxSources {
		clear(l.buckets)
	}
}

func (s *Server) allowSource(r *http.Request) bool {
	if s.limiter == nil {
		return true
	}
	return s.limiter.allow(sourceOf(r.RemoteAddr))
}
