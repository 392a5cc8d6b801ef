package protocol_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"

	"diskless-relays/tools/broker/internal/protocol"
)

// The file-set check sees whatever a push's plaintext or an admin upload
// carries: it must never panic, and what it passes must hold every rule.
func FuzzCheckFiles(f *testing.F) {
	f.Add([]byte(`{"state":"eA==","cached-consensus":"bmV0d29yay1zdGF0dXMtdmVyc2lvbiAzCg=="}`))
	f.Add([]byte(`{"keys/../state":"eA==","/etc/passwd":""}`))
	f.Add([]byte(`{"keys/secret_id_key":"AAAA","keys/ops.secret_family_key":"AA=="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var files protocol.Files
		if json.Unmarshal(data, &files) != nil {
			return
		}
		if protocol.CheckFiles(files, nil) != nil {
			return
		}
		total := 0
		for name, content := range files {
			if !protocol.IsBundleFile(name) || len(content) > protocol.MaxSizeOf(name) {
				t.Fatalf("passed %q (%d bytes)", name, len(content))
			}
			total += len(content)
		}
		if total > protocol.MaxBundleSize {
			t.Fatalf("passed a bundle of %d bytes", total)
		}
	})
}

// The serial protocol's line reader, on both sides of the virtio-serial
// channel: never a line over MaxSerialLine, never a panic.
func FuzzReadSerialLine(f *testing.F) {
	f.Add([]byte("{\"report\":\"\"}\n{\"error\":\"x\"}\n"))
	f.Add(bytes.Repeat([]byte("a"), 5000))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		for i := 0; i < 1000; i++ {
			line, err := protocol.ReadSerialLine(r)
			if err != nil {
				return
			}
			if len(line) > protocol.MaxSerialLine {
				t.Fatalf("a line of %d bytes", len(line))
			}
		}
	})
}
