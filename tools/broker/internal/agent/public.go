package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/relayproof"
)

// lockedSource lets the broker's pushes and the public endpoint share one
// report source: the serial port to the simulator carries one exchange at
// a time, and the guest device is one secure processor.
type lockedSource struct {
	mu  sync.Mutex
	src ReportSource
}

func (l *lockedSource) GetReport(ctx context.Context, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return l.src.GetReport(ctx, rd)
}

// PublicHandler is the relay's public attestation endpoint
// (relayproof.Handler) for this agent's config: reports from the agent's
// own source, keys read from tor's KeyDirectory per answer. Nil, nil when
// the config serves none.
func (a *Agent) PublicHandler() (http.Handler, error) {
	p := a.cfg.PublicAttestation
	if p == nil {
		return nil, nil
	}
	return relayproof.Handler(relayproof.HandlerConfig{
		GetReport: a.source.GetReport,
		KeyDir:    filepath.Join(a.cfg.TorDataDir, "keys"),
		Image:     relayproof.Image{Relay: a.cfg.Relay, Digest: a.cfg.ImageDigest, BuildRecord: p.BuildRecord},
		Logf:      a.log.Printf,
	})
}

// ServePublic answers volunteers on the configured port until ctx ends.
// It returns at once when the config serves none. A listener that cannot
// be opened is an error: the relay would otherwise claim a check it does
// not offer.
func (a *Agent) ServePublic(ctx context.Context) error {
	h, err := a.PublicHandler()
	if err != nil || h == nil {
		return err
	}
	addr := net.JoinHostPort("", strconv.Itoa(a.cfg.PublicAttestation.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("public attestation: %w", err)
	}
	srv := relayproof.NewServer(addr, h)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	a.log.Printf("public attestation: answering on port %d (POST %s)", a.cfg.PublicAttestation.Port, relayproof.AttestationPath)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("public attestation: %w", err)
	}
	<-done
	return nil
}
