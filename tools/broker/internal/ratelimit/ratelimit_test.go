package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

// A source gets burst requests at once, then rate a second; another source
// has its own bucket; the addresses of one IPv6 /64 share one.
func TestBucketPerSource(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(2, 3, func() time.Time { return now })
	a := SourceOf("192.0.2.1:5555")
	for i := 0; i < 3; i++ {
		if !l.Allow(a) {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if l.Allow(a) {
		t.Fatal("a fourth request at once was allowed")
	}
	if !l.Allow(SourceOf("192.0.2.2:1")) {
		t.Fatal("another source was refused")
	}
	now = now.Add(500 * time.Millisecond) // one token at 2/s
	if !l.Allow(a) || l.Allow(a) {
		t.Fatal("after half a second, want exactly one more request")
	}
	v6a, v6b := SourceOf("[2001:db8:1:2::1]:1"), SourceOf("[2001:db8:1:2:ffff::9]:2")
	if v6a != v6b || v6a != netip.MustParsePrefix("2001:db8:1:2::/64") {
		t.Fatalf("IPv6 sources %v and %v, want both 2001:db8:1:2::/64", v6a, v6b)
	}
	if SourceOf("[::ffff:192.0.2.1]:1") != a {
		t.Fatal("an IPv4-mapped address is not its IPv4 source")
	}
}
