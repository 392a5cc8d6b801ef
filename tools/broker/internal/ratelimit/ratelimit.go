// Package ratelimit holds a token bucket per client source, for the
// network services that anyone can reach (the key broker's relay protocol,
// a relay's public attestation endpoint): a client address, or the /64 of
// an IPv6 one (which one host usually holds whole), gets burst requests at
// once and rate a second sustained.
package ratelimit

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// MaxSources bounds the table; idle sources (full buckets) go first.
const MaxSources = 65536

type bucket struct {
	tokens float64
	last   time.Time
}

// Limiter is a token bucket per source; safe for concurrent use.
type Limiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	now     func() time.Time
	buckets map[netip.Prefix]*bucket
}

// New makes a limiter of rate requests a second and burst at once per
// source; now is the clock (time.Now when nil).
func New(rate, burst float64, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{rate: rate, burst: burst, now: now, buckets: map[netip.Prefix]*bucket{}}
}

// SourceOf is the address a limit applies to: the IPv4 address, or the /64
// of an IPv6 one; the zero Prefix when remoteAddr is not an address.
func SourceOf(remoteAddr string) netip.Prefix {
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

// Allow takes a token from source's bucket, if it has one.
func (l *Limiter) Allow(source netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[source]
	if b == nil {
		if len(l.buckets) >= MaxSources {
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

// AllowRequest is Allow for the request's peer address.
func (l *Limiter) AllowRequest(r *http.Request) bool { return l.Allow(SourceOf(r.RemoteAddr)) }

// evictLocked forgets sources whose bucket has refilled; if none has, the
// table is full of active sources and is cleared (they start full again).
func (l *Limiter) evictLocked(now time.Time) {
	for p, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, p)
		}
	}
	if len(l.buckets) >= MaxSources {
		clear(l.buckets)
	}
}
