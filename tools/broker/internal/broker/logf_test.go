package broker

import (
	"bytes"
	"errors"
	"log"
	"strings"
	"testing"
)

// Text a client controls reaches the operator's log through logf: the JSON
// decoder's errors (which quote), but also a not-yet-verified VCEK's subject
// in a verification error (which does not). logf escapes every string and
// error, so none can start a line of its own, and cuts each to 512 bytes.
func TestLogfEscapesClientText(t *testing.T) {
	var buf bytes.Buffer
	s := &Server{cfg: Config{Log: log.New(&buf, "key-broker: ", 0)}}
	s.logf("refused %s relay=%s: %s", "snp-verification", "r", errors.New("x509: certificate signed by unknown authority (subject \"CN=VCEK\nkey-broker: released relay=forged\")"))
	s.logf("detail %s", "tab\there, bell\a, bidi \u2028 and invalid \xff")
	s.logf("long %s", strings.Repeat("y", 4096))
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("3 log calls wrote %d lines:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], `CN=VCEK\nkey-broker: released relay=forged`) {
		t.Fatalf("the newline is not escaped: %q", lines[0])
	}
	if strings.ContainsAny(lines[1], "\t\a\u2028") || strings.Contains(lines[1], "\xff") {
		t.Fatalf("control characters pass: %q", lines[1])
	}
	if len(lines[2]) > 600 || !strings.Contains(lines[2], "bytes more]") {
		t.Fatalf("a 4 KiB argument was logged as %d bytes", len(lines[2]))
	}
}
