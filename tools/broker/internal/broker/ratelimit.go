package broker

import (
	"net/http"
)

// Per-source limits of the relay protocol: a token bucket per client address
// (internal/ratelimit). A relay makes two requests per boot and two per
// push; the defaults let a few dozen relays behind one address boot at
// once, and hold a flooding source to a few requests a second.
const (
	DefaultSourceRate  = 10  // requests per second, sustained
	DefaultSourceBurst = 120 // requests at once
)

func (s *Server) allowSource(r *http.Request) bool {
	if s.limiter == nil {
		return true
	}
	return s.limiter.AllowRequest(r)
}
