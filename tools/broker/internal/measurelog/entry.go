// Package measurelog is the public, append-only log of the launch
// measurements of published relay images: a git repository whose every
// commit adds one JSON entry under entries/ and is signed with the image
// signing key (an OpenSSH key; git signs with gpg.format=ssh).
//
// Why git: a volunteer checks such a log with tools already on their machine.
// `git verify-commit` (backed by `ssh-keygen -Y verify`) checks each
// signature against an allowed-signers file, and `git merge-base
// --is-ancestor OLD NEW` shows that a newer copy only extends an older one:
// a rewritten history changes every later commit id.
//
// Entry decodes and checks one entry; Append adds one, signed; Verify checks
// a copy of the log (signatures, linear history, add-only commits, entries)
// and only then hands out a Log, whose Find answers "is this measurement
// published?".
package measurelog

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"diskless-relays/tools/broker/internal/protocol"
)

// MaxEntrySize bounds one entry file; a canonical entry is about 450 bytes.
const MaxEntrySize = 4 << 10

// MaxVCPUs bounds the vCPU count (QEMU's own limit for a q35 machine is far
// below this; the bound only keeps the number a small integer).
const MaxVCPUs = 1024

// MaxVCPUTypeLength bounds the vCPU model name (QEMU's are short: EPYC-Milan-v2).
const MaxVCPUTypeLength = 64

// Entry is one published image's launch measurement and what it was
// computed from. The field order is the file's field order.
type Entry struct {
	// Relay is the relay's name (protocol.ValidRelay).
	Relay string `json:"relay"`
	// ImageDigest is the image's SHA-256, lowercase hex (protocol.ValidImageDigest).
	ImageDigest string `json:"imageDigest"`
	// Measurement is the 48-byte SNP launch measurement, 96 lowercase hex digits.
	Measurement string `json:"measurement"`
	// Policy is the 64-bit SNP guest policy as "0x" and lowercase hex without
	// leading zeros: the form snpcheck.Result.PolicyString prints, so a
	// report's policy and the entry's compare as strings.
	Policy string `json:"policy"`
	// VCPUs is the number of vCPUs the guest launches with (one VMSA each).
	VCPUs int `json:"vcpus"`
	// VCPUType is the QEMU CPU model (its signature is in every VMSA).
	VCPUType string `json:"vcpuType"`
	// BuildRecordSHA256 is the SHA-256 of the signed build record (the
	// published artifacts/relays/RELAY/DIGEST12.json), lowercase hex.
	BuildRecordSHA256 string `json:"buildRecordSha256"`
	// Time is when the entry was made, RFC 3339 in UTC to the second.
	Time string `json:"time"`
}

var (
	policyRe = regexp.MustCompile(`^0x[0-9a-f]{1,16}$`)
)

// Check reports the first field that breaks the entry's rules, naming it.
func (e Entry) Check() error {
	if !protocol.ValidRelay(e.Relay) {
		return fmt.Errorf("relay %q is not a relay name (pattern %s)", e.Relay, protocol.RelayNamePattern)
	}
	if !protocol.ValidImageDigest(e.ImageDigest) {
		return fmt.Errorf("imageDigest %q is not a SHA-256 in 64 lowercase hex digits", e.ImageDigest)
	}
	// ParseMeasurement also takes "0x" and upper case; the log keeps one
	// spelling so that equal measurements are equal strings.
	if m, err := protocol.ParseMeasurement(e.Measurement); err != nil || hex.EncodeToString(m) != e.Measurement {
		return fmt.Errorf("measurement %q: must be %d lowercase hex digits (%d bytes)", e.Measurement, 2*protocol.MeasurementSize, protocol.MeasurementSize)
	}
	if _, err := e.PolicyValue(); err != nil {
		return err
	}
	if e.VCPUs < 1 || e.VCPUs > MaxVCPUs {
		return fmt.Errorf("vcpus %d: must be 1 to %d", e.VCPUs, MaxVCPUs)
	}
	// The model rule is the program's (protocol, from lib/core/plain-values.ts);
	// the length bound keeps an entry small.
	if len(e.VCPUType) > MaxVCPUTypeLength || !protocol.ValidCPUModel(e.VCPUType) {
		return fmt.Errorf("vcpuType %q is not a QEMU CPU model name like EPYC-v4", e.VCPUType)
	}
	// The image digest's rule is the rule of any SHA-256 in hex.
	if !protocol.ValidImageDigest(e.BuildRecordSHA256) {
		return fmt.Errorf("buildRecordSha256 %q is not a SHA-256 in 64 lowercase hex digits", e.BuildRecordSHA256)
	}
	if _, err := e.When(); err != nil {
		return err
	}
	return nil
}

// PolicyValue is the guest policy as a number.
func (e Entry) PolicyValue() (uint64, error) {
	if policyRe.MatchString(e.Policy) {
		v, err := strconv.ParseUint(e.Policy[2:], 16, 64)
		if err == nil && fmt.Sprintf("0x%x", v) == e.Policy {
			return v, nil
		}
	}
	return 0, fmt.Errorf("policy %q: must be the 64-bit guest policy as 0x and lowercase hex without leading zeros, like 0x30000", e.Policy)
}

// MeasurementBytes is the measurement decoded.
func (e Entry) MeasurementBytes() []byte {
	b, _ := hex.DecodeString(e.Measurement)
	return b
}

// When is the entry's time.
func (e Entry) When() (time.Time, error) {
	t, err := time.Parse(time.RFC3339, e.Time)
	if err != nil || t.UTC().Format(time.RFC3339) != e.Time {
		return time.Time{}, fmt.Errorf("time %q: must be RFC 3339 in UTC to the second, like 2026-01-02T03:04:05Z", e.Time)
	}
	return t, nil
}

// SameImage reports whether the two entries describe the same launch: all
// fields but the time equal. Appending an entry that is already in the log
// this way is a no-op; one that differs is refused.
func (e Entry) SameImage(o Entry) bool {
	e.Time, o.Time = "", ""
	return e == o
}

// Encode is the entry's file content: the canonical form a log holds, one
// field per line in the order of Entry, and a final newline.
func (e Entry) Encode() []byte {
	out, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		// Entry holds only strings and an int: encoding cannot fail.
		panic(err)
	}
	return append(out, '\n')
}

// ParseEntry decodes an entry given as input (to Append): one JSON object,
// unknown fields refused, every field checked. Layout is free.
func ParseEntry(data []byte) (Entry, error) {
	if len(data) > MaxEntrySize {
		return Entry{}, fmt.Errorf("%d bytes, more than an entry's %d", len(data), MaxEntrySize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Entry
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("not an entry: %v (fields: relay, imageDigest, measurement, policy, vcpus, vcpuType, buildRecordSha256, time)", err)
	}
	if dec.More() {
		return Entry{}, fmt.Errorf("more than one JSON value")
	}
	if err := e.Check(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// DecodeLogged decodes an entry file as a log holds it: ParseEntry's rules,
// and the bytes must be exactly the canonical encoding. So every entry has
// one spelling, and a file with a duplicated key (which JSON parsers resolve
// differently) or a hidden extra value never passes.
func DecodeLogged(data []byte) (Entry, error) {
	e, err := ParseEntry(data)
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(data, e.Encode()) {
		return Entry{}, fmt.Errorf("not in the canonical form (Entry.Encode: two-space indent, fields in order, one final newline)")
	}
	return e, nil
}

// EntryPath is the file of the n-th entry (from 1): entries/000042.json.
// Six digits keep a million entries in name order; past that the names
// grow and still sort by length, then name.
func EntryPath(n int) string { return fmt.Sprintf("entries/%06d.json", n) }

// entryNumber is the inverse of EntryPath: 0 for a name that is not one.
func entryNumber(path string) int {
	name, ok := strings.CutPrefix(path, "entries/")
	if !ok {
		return 0
	}
	digits, ok := strings.CutSuffix(name, ".json")
	if !ok || len(digits) < 6 {
		return 0
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 1 || EntryPath(n) != path {
		return 0
	}
	return n
}
