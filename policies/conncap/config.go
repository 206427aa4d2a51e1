package conncap

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the conncap section of ucgate.yaml (policies.conncap).
type Config struct {
	// Enabled turns the stage on: caps and timeouts. Default true.
	Enabled bool `yaml:"enabled"`
	// PerSource is how many connections one source may hold at once;
	// beyond it new ones are closed at once (rule conncap/source).
	// Default 32: a small office of TCP or TLS phones behind one NAT
	// holds one each.
	PerSource int `yaml:"per_source"`
	// Total is how many connections the gateway holds at once, all sources
	// together; beyond it new ones are closed at once (rule
	// conncap/total). Default 4096.
	Total int `yaml:"total"`
	// HandshakeTimeout is how long a new connection may take to send its
	// first bytes, its TLS handshake included; the adapter closes it
	// after that. 0: no limit. Default 5s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// IdleTimeout is how long a connection may stay silent; the adapter
	// closes it after that. It must exceed the peers' keep-alive interval
	// (RFC 5626: at most 120s over TCP). 0: no limit. Default 300s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Zones overrides per_source by zone name (the zone of the listener).
	// Default none.
	Zones map[string]Zone `yaml:"zones"`
	// IPv4Prefix is the prefix length that makes one IPv4 source. Default
	// 32: each address.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	// IPv6Prefix is the prefix length that makes one IPv6 source. Default
	// 64: a host owns a whole /64.
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// Zone is one zone's overrides.
type Zone struct {
	// PerSource replaces per_source for the zone's sources.
	PerSource int `yaml:"per_source"`
}

// maxConns bounds the caps.
const maxConns = 1 << 24

// Defaults returns the conncap configuration used when ucgate.yaml says
// nothing.
func Defaults() Config {
	return Config{
		Enabled:          true,
		PerSource:        32,
		Total:            4096,
		HandshakeTimeout: 5 * time.Second,
		IdleTimeout:      300 * time.Second,
		IPv4Prefix:       32,
		IPv6Prefix:       64,
	}
}

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	if c.PerSource < 1 || c.PerSource > maxConns {
		errs = append(errs, config.Invalid("per_source", "must be between 1 and %d, got %d", maxConns, c.PerSource))
	}
	if c.Total < 1 || c.Total > maxConns {
		errs = append(errs, config.Invalid("total", "must be between 1 and %d, got %d", maxConns, c.Total))
	}
	if c.HandshakeTimeout < 0 {
		errs = append(errs, config.Invalid("handshake_timeout", "must not be negative (0: no limit), got %v", c.HandshakeTimeout))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, config.Invalid("idle_timeout", "must not be negative (0: no limit), got %v", c.IdleTimeout))
	}
	names := make([]string, 0, len(c.Zones))
	for n := range c.Zones {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if strings.TrimSpace(n) == "" {
			errs = append(errs, config.Invalid("zones", "zone names must not be empty"))
			continue
		}
		if p := c.Zones[n].PerSource; p < 1 || p > maxConns {
			errs = append(errs, config.Invalid("zones."+n+".per_source", "must be between 1 and %d, got %d", maxConns, p))
		}
	}
	if c.IPv4Prefix < 1 || c.IPv4Prefix > 32 {
		errs = append(errs, config.Invalid("ipv4_prefix", "must be between 1 and 32, got %d", c.IPv4Prefix))
	}
	if c.IPv6Prefix < 1 || c.IPv6Prefix > 128 {
		errs = append(errs, config.Invalid("ipv6_prefix", "must be between 1 and 128, got %d", c.IPv6Prefix))
	}
	return errors.Join(errs...)
}
