package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/client"
	"golang.org/x/sys/unix"

	"diskless-relays/tools/broker/internal/protocol"
)

// ReportSource produces an SEV-SNP attestation report carrying reportData,
// with the extended report's certificate table when there is one.
type ReportSource interface {
	GetReport(ctx context.Context, reportData [protocol.ReportDataSize]byte) (report, certs []byte, err error)
}

// ReportSourceFunc adapts a function.
type ReportSourceFunc func(ctx context.Context, reportData [protocol.ReportDataSize]byte) ([]byte, []byte, error)

// GetReport calls f.
func (f ReportSourceFunc) GetReport(ctx context.Context, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
	return f(ctx, rd)
}

// NewReportSource returns the source a config names.
func NewReportSource(spec string) (ReportSource, error) {
	switch {
	case spec == "sev-guest":
		return quoteSource{qp: &client.LinuxIoctlQuoteProvider{}}, nil
	case spec == "configfs-tsm":
		return quoteSource{qp: &client.LinuxConfigFsQuoteProvider{}}, nil
	case strings.HasPrefix(spec, "serial:"):
		return &SerialSource{Path: strings.TrimPrefix(spec, "serial:"), Timeout: 30 * time.Second}, nil
	}
	return nil, fmt.Errorf("unknown report source %q", spec)
}

// quoteSource asks the guest kernel through go-sev-guest: /dev/sev-guest
// (SNP_GET_EXT_REPORT) or configfs-tsm. The raw quote is the report
// followed by the certificate table.
type quoteSource struct {
	qp client.QuoteProvider
}

func (q quoteSource) GetReport(_ context.Context, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
	raw, err := q.qp.GetRawQuote(rd)
	if err != nil {
		return nil, nil, err
	}
	if len(raw) < abi.ReportSize {
		return nil, nil, fmt.Errorf("quote is %d bytes, shorter than a report", len(raw))
	}
	return raw[:abi.ReportSize], raw[abi.ReportSize:], nil
}

// SerialSource talks to the host-side SNP simulator over a character device
// (a virtio-serial port): one JSON line out, one JSON line back.
type SerialSource struct {
	Path    string
	Timeout time.Duration
}

// GetReport implements ReportSource.
func (s *SerialSource) GetReport(ctx context.Context, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
	f, err := os.OpenFile(s.Path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	// A tty (e.g. a pty or a serial console used instead of virtio) would
	// echo and cook the lines: make it raw. (Through SyscallConn: f.Fd()
	// would switch the file to blocking mode and disable deadlines.)
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var rawErr error
	if err := rc.Control(func(fd uintptr) {
		if t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS); err == nil {
			makeRaw(t)
			rawErr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
		}
	}); err != nil {
		return nil, nil, err
	}
	if rawErr != nil {
		return nil, nil, fmt.Errorf("set raw mode on %s: %v", s.Path, rawErr)
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := f.SetDeadline(deadline); err != nil {
		// Not pollable: unblock the read by closing the file instead.
		t := time.AfterFunc(time.Until(deadline), func() { f.Close() })
		defer t.Stop()
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	return Exchange(f, rd)
}

func makeRaw(t *unix.Termios) {
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
}

// Exchange writes one request line and reads answer lines until one carries
// a report for this very REPORT_DATA; answers left over from an earlier,
// abandoned request are skipped.
func Exchange(rw io.ReadWriter, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
	req, _ := json.Marshal(protocol.SerialRequest{ReportData: rd[:]})
	if _, err := rw.Write(append(req, '\n')); err != nil {
		return nil, nil, fmt.Errorf("write request: %w", err)
	}
	r := bufio.NewReader(rw)
	for {
		line, err := protocol.ReadSerialLine(r)
		if err != nil {
			return nil, nil, fmt.Errorf("read answer: %w", err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var resp protocol.SerialResponse
		if err := json.Unmarshal(line, &resp); err != nil {
			continue // noise on the line
		}
		if resp.Error != "" {
			return nil, nil, fmt.Errorf("secure processor: %s", resp.Error)
		}
		if len(resp.Report) != abi.ReportSize {
			continue
		}
		if !bytes.Equal(resp.Report[0x50:0x90], rd[:]) {
			continue // a stale answer
		}
		return resp.Report, resp.Certs, nil
	}
}
