// Package tordoc finds a relay's ed25519 master identity the way a tor
// client knows it: the microdescriptor consensus lists the relay by its RSA
// identity ("r" line) with the SHA-256 of its microdescriptor ("m" line),
// and that microdescriptor carries the identity ("id ed25519"). It reads the
// files a tor client keeps in its DataDirectory: cached-microdesc-consensus
// and cached-microdescs (with its journal cached-microdescs.new).
//
// What it trusts: tor writes cached-microdesc-consensus only after checking
// the directory authorities' signatures on it, and tordoc does not check
// them again; the microdescriptor is then tied to the consensus by its
// digest, which tordoc does check. Use the files of a tor client you run
// yourself.
//
// I/O: reads the named files, each bounded in size; nothing else.
package tordoc

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"diskless-relays/tools/broker/internal/fsutil"
	"diskless-relays/tools/broker/internal/torid"
)

// Bounds on what is read. Tor's own files for the whole public network are
// a few MiB (consensus) and a few tens of MiB (microdescriptors, with the
// journal); these leave ample room and still bound memory.
const (
	MaxConsensusSize  = 32 << 20
	MaxMicrodescsSize = 256 << 20
	// MaxLineLength bounds one line: a "family" line of a large family is
	// the longest in practice (a few KiB).
	MaxLineLength = 64 << 10
	// MaxLines bounds one file's lines.
	MaxLines = 8 << 20
)

// The names tor gives these files in its DataDirectory.
const (
	ConsensusFile       = "cached-microdesc-consensus"
	MicrodescsFile      = "cached-microdescs"
	MicrodescsJournal   = "cached-microdescs.new"
	consensusFirstLine  = "network-status-version 3 microdesc"
	consensusTimeLayout = "2006-01-02 15:04:05"
)

// Entry is one relay as the microdescriptor consensus lists it.
type Entry struct {
	Nickname string
	// RSAFingerprint is the relay's RSA identity: 40 upper-case hex digits.
	RSAFingerprint string
	// MicrodescDigest is the SHA-256 of its microdescriptor.
	MicrodescDigest [sha256.Size]byte
	// Address is the IPv4 address the relay is listed at.
	Address netip.Addr
}

// Consensus is a parsed microdescriptor consensus: its validity and its
// relays by RSA fingerprint.
type Consensus struct {
	ValidAfter, ValidUntil time.Time
	relays                 map[string]Entry
}

// Relay is the entry for fingerprint (40 upper-case hex digits).
func (c *Consensus) Relay(fingerprint string) (Entry, bool) {
	e, ok := c.relays[fingerprint]
	return e, ok
}

// Len is the number of relays listed.
func (c *Consensus) Len() int { return len(c.relays) }

// lines splits data into lines without their "\n", refusing what tor never
// writes: NUL or CR characters, overlong lines, too many lines, and a last
// line without its newline.
func lines(name string, data []byte) ([]string, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: empty file", name)
	}
	if data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("%s: the last line has no newline: a truncated file (let tor finish writing it, or copy it again)", name)
	}
	if i := bytes.IndexAny(data, "\x00\r"); i >= 0 {
		return nil, fmt.Errorf("%s: byte %d is a NUL or CR, which tor's documents never hold", name, i)
	}
	out := strings.Split(string(data[:len(data)-1]), "\n")
	if len(out) > MaxLines {
		return nil, fmt.Errorf("%s: %d lines, limit %d", name, len(out), MaxLines)
	}
	for i, l := range out {
		if len(l) > MaxLineLength {
			return nil, fmt.Errorf("%s:%d: line of %d bytes, limit %d", name, i+1, len(l), MaxLineLength)
		}
	}
	return out, nil
}

// ParseConsensus reads a microdescriptor consensus (dir-spec's "network
// status document", flavour microdesc); name is for error messages. It reads
// the header's validity and every "r" and "m" line; it checks no signature
// (see the package comment).
func ParseConsensus(name string, data []byte) (*Consensus, error) {
	if len(data) > MaxConsensusSize {
		return nil, fmt.Errorf("%s: %d bytes, limit %d", name, len(data), MaxConsensusSize)
	}
	ls, err := lines(name, data)
	if err != nil {
		return nil, err
	}
	if ls[0] != consensusFirstLine {
		return nil, fmt.Errorf("%s: first line is %q, not %q: not a microdescriptor consensus (tor's %s)", name, clip(ls[0]), consensusFirstLine, ConsensusFile)
	}
	c := &Consensus{relays: map[string]Entry{}}
	var cur *Entry
	haveDigest := false
	finish := func(line int) error {
		if cur == nil {
			return nil
		}
		if !haveDigest {
			return fmt.Errorf("%s:%d: relay %s has no \"m\" line before the next entry", name, line, cur.RSAFingerprint)
		}
		if _, dup := c.relays[cur.RSAFingerprint]; dup {
			return fmt.Errorf("%s:%d: relay %s is listed twice", name, line, cur.RSAFingerprint)
		}
		c.relays[cur.RSAFingerprint] = *cur
		cur, haveDigest = nil, false
		return nil
	}
	footer := false
	for i, l := range ls {
		n := i + 1
		keyword, rest, _ := strings.Cut(l, " ")
		switch {
		case keyword == "valid-after" || keyword == "valid-until":
			if cur != nil {
				return nil, fmt.Errorf("%s:%d: %q after the first relay entry", name, n, keyword)
			}
			t, err := time.Parse(consensusTimeLayout, rest)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %s %q is not \"YYYY-MM-DD HH:MM:SS\"", name, n, keyword, clip(rest))
			}
			if keyword == "valid-after" {
				c.ValidAfter = t
			} else {
				c.ValidUntil = t
			}
		case keyword == "r" && !footer:
			if err := finish(n); err != nil {
				return nil, err
			}
			e, err := parseR(rest)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", name, n, err)
			}
			cur = &e
		case keyword == "m" && cur != nil && !footer:
			if haveDigest {
				return nil, fmt.Errorf("%s:%d: relay %s has two \"m\" lines", name, n, cur.RSAFingerprint)
			}
			d, err := decodeDigest(rest)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: relay %s: %v", name, n, cur.RSAFingerprint, err)
			}
			cur.MicrodescDigest, haveDigest = d, true
		case keyword == "directory-footer":
			if err := finish(n); err != nil {
				return nil, err
			}
			footer = true
		}
	}
	if !footer {
		return nil, fmt.Errorf("%s: no \"directory-footer\" line: a truncated consensus", name)
	}
	if c.ValidAfter.IsZero() || c.ValidUntil.IsZero() || !c.ValidUntil.After(c.ValidAfter) {
		return nil, fmt.Errorf("%s: no valid-after and later valid-until in the header", name)
	}
	return c, nil
}

// parseR reads an "r" line's arguments in a microdescriptor consensus:
// nickname, identity (base64 of the 20-byte RSA identity digest, no
// padding), publication date and time, IPv4 address, ORPort, DirPort.
func parseR(args string) (Entry, error) {
	f := strings.Split(args, " ")
	if len(f) != 7 {
		return Entry{}, fmt.Errorf("\"r\" line has %d arguments, want 7 (nickname identity date time address orport dirport)", len(f))
	}
	id, err := base64.RawStdEncoding.Strict().DecodeString(f[1])
	if err != nil || len(id) != 20 {
		return Entry{}, fmt.Errorf("\"r\" line of %q: identity %q is not 20 bytes in base64 without padding", clip(f[0]), clip(f[1]))
	}
	addr, err := netip.ParseAddr(f[4])
	if err != nil || !addr.Is4() {
		return Entry{}, fmt.Errorf("\"r\" line of %q: address %q is not an IPv4 address", clip(f[0]), clip(f[4]))
	}
	return Entry{Nickname: f[0], RSAFingerprint: strings.ToUpper(hex.EncodeToString(id)), Address: addr}, nil
}

// decodeDigest reads an "m" line's digest: base64 of 32 bytes, no padding.
func decodeDigest(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	raw, err := base64.RawStdEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) != sha256.Size {
		return d, fmt.Errorf("\"m\" digest %q is not 32 bytes in base64 without padding", clip(s))
	}
	copy(d[:], raw)
	return d, nil
}

// Microdesc is one microdescriptor as tor stores it.
type Microdesc struct {
	// Digest is the SHA-256 of Body: the value the consensus's "m" line holds.
	Digest [sha256.Size]byte
	// Body runs from the "onion-key" line up to the next microdescriptor's
	// annotations or "onion-key" line: the bytes tor hashes
	// (microdescs_parse_from_string); the "@last-listed" annotations that
	// tor writes before it in its cache are not part of it.
	Body []byte
	// Ed25519 is the "id ed25519" identity; nil when the microdescriptor
	// lists none.
	Ed25519 ed25519.PublicKey
	// Line is where Body starts in its file.
	Line int
}

// ParseMicrodescs reads a file of microdescriptors as tor keeps them
// (cached-microdescs, cached-microdescs.new): each one optionally preceded
// by "@" annotation lines and starting at an "onion-key" line.
func ParseMicrodescs(name string, data []byte) ([]Microdesc, error) {
	if len(data) > MaxMicrodescsSize {
		return nil, fmt.Errorf("%s: %d bytes, limit %d", name, len(data), MaxMicrodescsSize)
	}
	ls, err := lines(name, data)
	if err != nil {
		return nil, err
	}
	var out []Microdesc
	var cur *Microdesc
	var body strings.Builder
	endMicrodesc := func() {
		if cur == nil {
			return
		}
		cur.Body = []byte(body.String())
		cur.Digest = sha256.Sum256(cur.Body)
		out = append(out, *cur)
		cur = nil
		body.Reset()
	}
	for i, l := range ls {
		n := i + 1
		switch {
		case strings.HasPrefix(l, "@"):
			endMicrodesc()
		case strings.HasPrefix(l, "onion-key"):
			endMicrodesc()
			if l != "onion-key" {
				return nil, fmt.Errorf("%s:%d: %q: an \"onion-key\" line has no arguments", name, n, clip(l))
			}
			cur = &Microdesc{Line: n}
		case cur == nil:
			return nil, fmt.Errorf("%s:%d: %q outside a microdescriptor (each starts at an \"onion-key\" line)", name, n, clip(l))
		}
		if cur == nil {
			continue
		}
		body.WriteString(l)
		body.WriteByte('\n')
		if rest, ok := strings.CutPrefix(l, "id ed25519 "); ok {
			if cur.Ed25519 != nil {
				return nil, fmt.Errorf("%s:%d: two \"id ed25519\" lines in one microdescriptor", name, n)
			}
			key, err := torid.ParseEd25519ID(rest)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", name, n, err)
			}
			cur.Ed25519 = key
		}
	}
	endMicrodesc()
	return out, nil
}

// Identity is what the directory says about one relay.
type Identity struct {
	Entry
	// Ed25519Master is the identity its microdescriptor lists.
	Ed25519Master ed25519.PublicKey
	// Consensus is the consensus's validity, for the caller to judge.
	ValidAfter, ValidUntil time.Time
	// Source names the file and line of the microdescriptor.
	Source string
}

// Files are the directory files to read: one consensus and the
// microdescriptor files (tor keeps a cache and its journal).
type Files struct {
	Consensus  string
	Microdescs []string
}

// DataDirFiles are the files a tor client keeps in its DataDirectory dir:
// the microdescriptor cache and its journal, those of them that exist (a
// tor that has run only briefly has only the journal), or the cache's name
// when neither does, for the error to name.
func DataDirFiles(dir string) Files {
	f := Files{Consensus: filepath.Join(dir, ConsensusFile)}
	for _, name := range []string{MicrodescsFile, MicrodescsJournal} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			f.Microdescs = append(f.Microdescs, filepath.Join(dir, name))
		}
	}
	if len(f.Microdescs) == 0 {
		f.Microdescs = []string{filepath.Join(dir, MicrodescsFile)}
	}
	return f
}

// Lookup finds the ed25519 master identity of the relay whose RSA
// fingerprint is fingerprint (40 upper-case hex digits): its consensus
// entry, then the microdescriptor whose SHA-256 is the entry's "m" digest.
func Lookup(files Files, fingerprint string) (Identity, error) {
	if !torid.ValidRSAFingerprint(fingerprint) {
		return Identity{}, fmt.Errorf("fingerprint %q is not 40 upper-case hex digits", clip(fingerprint))
	}
	data, err := fsutil.ReadBounded(files.Consensus, MaxConsensusSize)
	if err != nil {
		return Identity{}, err
	}
	c, err := ParseConsensus(files.Consensus, data)
	if err != nil {
		return Identity{}, err
	}
	entry, ok := c.Relay(fingerprint)
	if !ok {
		return Identity{}, fmt.Errorf("relay %s is not in this consensus (%s, valid-after %s, %d relays): check the fingerprint, or let tor fetch a current consensus", fingerprint, files.Consensus, c.ValidAfter.Format(consensusTimeLayout), c.Len())
	}
	if len(files.Microdescs) == 0 {
		return Identity{}, errors.New("no microdescriptor file given")
	}
	for _, name := range files.Microdescs {
		data, err := fsutil.ReadBounded(name, MaxMicrodescsSize)
		if err != nil {
			return Identity{}, err
		}
		mds, err := ParseMicrodescs(name, data)
		if err != nil {
			return Identity{}, err
		}
		for _, md := range mds {
			if md.Digest != entry.MicrodescDigest {
				continue
			}
			if md.Ed25519 == nil {
				return Identity{}, fmt.Errorf("%s:%d: the microdescriptor of relay %s lists no \"id ed25519\": the relay has no ed25519 identity", name, md.Line, fingerprint)
			}
			return Identity{Entry: entry, Ed25519Master: md.Ed25519, ValidAfter: c.ValidAfter, ValidUntil: c.ValidUntil, Source: fmt.Sprintf("%s:%d", name, md.Line)}, nil
		}
	}
	return Identity{}, fmt.Errorf("relay %s (%s) is in the consensus, but its microdescriptor (sha256 %s) is not in %s: let tor fetch it (it does within minutes of a new consensus), or copy the files again", fingerprint, entry.Nickname, base64.RawStdEncoding.EncodeToString(entry.MicrodescDigest[:]), strings.Join(files.Microdescs, " or "))
}

// clip shortens a value from a file before it goes into an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
