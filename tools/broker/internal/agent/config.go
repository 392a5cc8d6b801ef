// Package agent is the in-guest relay agent: it proves to the key broker
// that it runs the registered image (SEV-SNP report, or a one-time boot
// token), installs the released keys for tor, and pushes tor's current onion
// keys and state back.
package agent

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"diskless-relays/tools/broker/internal/agecrypt"
	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/relayproof"
)

// Config is the agent's JSON configuration file.
type Config struct {
	Relay                  string `json:"relay"`
	ImageDigest            string `json:"imageDigest"`
	BrokerURL              string `json:"brokerUrl"`
	BrokerSigningPublicKey []byte `json:"brokerSigningPublicKey"`
	PushRecipient          string `json:"pushRecipient"`
	Attestation            string `json:"attestation"`
	ReportSource           string `json:"reportSource,omitempty"`
	TokenFile              string `json:"tokenFile,omitempty"`
	TorDataDir             string `json:"torDataDir"`
	TorUser                *int   `json:"torUser"`
	TorGroup               *int   `json:"torGroup"`
	PushIntervalSeconds    int    `json:"pushIntervalSeconds"`
	// Optional extensions.
	// BrokerCAFile pins the CA (PEM) for an https brokerUrl instead of the
	// system roots.
	BrokerCAFile string `json:"brokerCaFile,omitempty"`
	// RuntimeDir holds the per-boot push secret of a token-mode relay
	// (root-only, in RAM). Default /run/relay-agent.
	RuntimeDir string `json:"runtimeDir,omitempty"`
	// HealthCommand is run (no arguments, no shell) before each push; its
	// output, the relay's health report, travels with the push so the
	// build host's rollout gate can judge the relay without reaching it.
	HealthCommand string `json:"healthCommand,omitempty"`
	// PublicAttestation, for an "snp" relay, serves anyone a fresh report
	// bound to the relay's Tor identity (internal/relayproof): absent, the
	// relay answers no one but its broker.
	PublicAttestation *PublicAttestation `json:"publicAttestation,omitempty"`
}

// PublicAttestation is where the relay answers volunteers' nonces.
type PublicAttestation struct {
	// Port is the TCP port, on every address of the guest.
	Port int `json:"port"`
	// BuildRecord says where the image's signed build record is published
	// (a path in the operator's artifacts or a URL); it travels in each
	// answer as a pointer, and verify-relay trusts the log, not it.
	BuildRecord string `json:"buildRecord,omitempty"`
}

// DefaultRuntimeDir is where a token-mode push secret is kept.
const DefaultRuntimeDir = "/run/relay-agent"

// LoadConfig reads and validates a config file. Unknown fields, trailing
// data and invalid values are refused.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(data)
}

// ParseConfig parses and validates a config.
func ParseConfig(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("config: trailing data after the JSON object")
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}

func (c *Config) validate() error {
	if !protocol.ValidRelay(c.Relay) {
		return errors.New("relay must match " + protocol.RelayNamePattern)
	}
	if !protocol.ValidImageDigest(c.ImageDigest) {
		return errors.New("imageDigest must be 64 lowercase hex digits")
	}
	u, err := url.Parse(c.BrokerURL)
	if err != nil || u.Host == "" {
		return errors.New("brokerUrl must be an absolute http(s) URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return errors.New("brokerUrl must use https (plain http is allowed only to a loopback address)")
		}
	default:
		return errors.New("brokerUrl must be an http(s) URL")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("brokerUrl must not have a query or fragment")
	}
	if len(c.BrokerSigningPublicKey) != ed25519.PublicKeySize {
		return fmt.Errorf("brokerSigningPublicKey must be %d bytes (base64)", ed25519.PublicKeySize)
	}
	if _, err := agecrypt.ParseRecipient(c.PushRecipient); err != nil {
		return fmt.Errorf("pushRecipient: %v", err)
	}
	switch c.Attestation {
	case protocol.AttestationSNP:
		if err := validSource(c.ReportSource); err != nil {
			return err
		}
		if c.TokenFile != "" {
			return errors.New(`tokenFile is only for attestation "none"`)
		}
	case protocol.AttestationNone:
		if c.TokenFile == "" || !filepath.IsAbs(c.TokenFile) {
			return errors.New(`attestation "none" needs an absolute tokenFile`)
		}
		if c.ReportSource != "" {
			return errors.New(`reportSource is only for attestation "snp"`)
		}
	default:
		return errors.New(`attestation must be "snp" or "none"`)
	}
	if !filepath.IsAbs(c.TorDataDir) || filepath.Clean(c.TorDataDir) != c.TorDataDir || c.TorDataDir == "/" {
		return errors.New("torDataDir must be a clean absolute path other than /")
	}
	if c.TorUser == nil || *c.TorUser < 0 || c.TorGroup == nil || *c.TorGroup < 0 {
		return errors.New("torUser and torGroup must be numeric uid/gid >= 0")
	}
	if c.PushIntervalSeconds < 1 || c.PushIntervalSeconds > 86400 {
		return errors.New("pushIntervalSeconds must be between 1 and 86400")
	}
	if c.BrokerCAFile != "" && !filepath.IsAbs(c.BrokerCAFile) {
		return errors.New("brokerCaFile must be an absolute path")
	}
	if c.HealthCommand != "" && (!filepath.IsAbs(c.HealthCommand) || filepath.Clean(c.HealthCommand) != c.HealthCommand) {
		return errors.New("healthCommand must be a clean absolute path")
	}
	if p := c.PublicAttestation; p != nil {
		if c.Attestation != protocol.AttestationSNP {
			return errors.New(`publicAttestation is only for attestation "snp": a relay without a secure processor has no report to show`)
		}
		if p.Port < 1 || p.Port > 65535 {
			return errors.New("publicAttestation.port must be a TCP port (1-65535)")
		}
		// The evidence's own rule (relayproof), so that no answer the agent makes is one verify-relay refuses.
		if len(p.BuildRecord) > relayproof.MaxBuildRecordSize || strings.ContainsFunc(p.BuildRecord, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			return fmt.Errorf("publicAttestation.buildRecord must be at most %d printable ASCII characters without spaces", relayproof.MaxBuildRecordSize)
		}
	}
	if c.RuntimeDir == "" {
		c.RuntimeDir = DefaultRuntimeDir
	}
	if !filepath.IsAbs(c.RuntimeDir) || filepath.Clean(c.RuntimeDir) != c.RuntimeDir || c.RuntimeDir == "/" {
		return errors.New("runtimeDir must be a clean absolute path other than /")
	}
	return nil
}

func validSource(s string) error {
	switch {
	case s == "sev-guest", s == "configfs-tsm":
		return nil
	case strings.HasPrefix(s, "serial:"):
		p := strings.TrimPrefix(s, "serial:")
		if !filepath.IsAbs(p) {
			return errors.New("reportSource serial:PATH needs an absolute path")
		}
		return nil
	}
	return errors.New(`reportSource must be "sev-guest", "configfs-tsm" or "serial:/dev/virtio-ports/NAME"`)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
