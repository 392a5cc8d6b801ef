package snpsim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"

	"diskless-relays/tools/broker/internal/protocol"
)

// ListenUnix listens on a unix socket at path, replacing a stale socket
// (but no other kind of file) left there.
func ListenUnix(path string) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Serve answers report requests on every connection accepted from ln until
// ln is closed. Each connection (QEMU's chardev) carries any number of
// request lines.
func (s *Simulator) Serve(ln net.Listener, logger *log.Logger) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			if err := s.ServeConn(c); err != nil && logger != nil {
				logger.Printf("connection: %v", err)
			}
		}()
	}
}

// ServeConn answers request lines on one stream until EOF.
func (s *Simulator) ServeConn(rw io.ReadWriter) error {
	r := bufio.NewReaderSize(rw, 4096)
	for {
		line, err := protocol.ReadSerialLine(r)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if len(line) == 0 {
			continue
		}
		var resp protocol.SerialResponse
		var req protocol.SerialRequest
		if err := json.Unmarshal(line, &req); err != nil {
			resp.Error = "malformed request"
		} else if len(req.ReportData) != protocol.ReportDataSize {
			resp.Error = fmt.Sprintf("reportData must be %d bytes", protocol.ReportDataSize)
		} else {
			var rd [protocol.ReportDataSize]byte
			copy(rd[:], req.ReportData)
			resp.Report, resp.Certs, err = s.Report(rd)
			if err != nil {
				resp.Error = err.Error()
			}
		}
		out, _ := json.Marshal(resp)
		if _, err := rw.Write(append(out, '\n')); err != nil {
			return err
		}
	}
}
