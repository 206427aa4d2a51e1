package ratelimit

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the ratelimit section of ucgate.yaml (policies.ratelimit).
type Config struct {
	// Enabled turns the stage on. Default true.
	Enabled bool `yaml:"enabled"`
	// Budget is what one untrusted source may send. Default 50 packets/s
	// (burst 100) and 65536 bytes/s (burst 131072): a phone sends a few
	// packets a second, a flood thousands.
	Budget Budget `yaml:"budget"`
	// TrustedBudget is what one trusted source (see Trusted and Zones) may
	// send. Default ten times Budget: 500 packets/s (burst 1000) and
	// 655360 bytes/s (burst 1310720).
	TrustedBudget Budget `yaml:"trusted_budget"`
	// Trusted lists trusted sources (trunks, PBXs), addresses or CIDR
	// prefixes: they get TrustedBudget, are never handed to the blacklist
	// for flooding, and are never refused by the global budget. Default
	// empty.
	Trusted []string `yaml:"trusted"`
	// Zones overrides budgets by zone name (the zone of the listener or
	// upstream). A zone with trusted: true treats every source in it as
	// trusted; a zone's budget replaces Budget for its untrusted sources,
	// its fields left out or 0 taking Budget's values. Default: the zone
	// "trunk" is trusted.
	Zones map[string]Zone `yaml:"zones"`
	// GlobalPackets is the packets per second all untrusted sources
	// together may send once each is within its own budget; beyond it
	// their packets are dropped (rule ratelimit/global), so that the
	// gateway stays responsive under a flood from many sources. Trusted
	// sources count against it but are never refused. 0 turns it off.
	// Default 20000.
	GlobalPackets float64 `yaml:"global_packets"`
	// GlobalBurst is the packets the global budget lets through at once.
	// Default 40000.
	GlobalBurst int `yaml:"global_burst"`
	// FloodDrops is how many packets of one source may be dropped within
	// FloodWindow before the source is handed to the blacklist (rule
	// ratelimit/flood) and a security event is raised, once per flood: a
	// source is flooding again only after a FloodWindow without drops.
	// Default 250.
	FloodDrops int `yaml:"flood_drops"`
	// FloodWindow is the window of FloodDrops (a Go duration). Default 10s.
	FloodWindow time.Duration `yaml:"flood_window"`
	// MaxSources bounds the sources tracked at once (about 150 bytes
	// each). When full, a new source evicts the least recently seen one
	// of a sample; a flood of spoofed sources cannot grow the table.
	// Default 65536.
	MaxSources int `yaml:"max_sources"`
	// IPv4Prefix is the prefix length that makes one IPv4 source: 32 (the
	// default) counts each address on its own.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	// IPv6Prefix is the prefix length that makes one IPv6 source. Default
	// 64: a host owns a whole /64 and could otherwise rotate addresses to
	// escape its budget.
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// Budget is a pair of token buckets: packets and bytes.
type Budget struct {
	// Packets is the sustained packets (datagrams, connections, stream
	// messages) per second. Beyond it packets are dropped (rule
	// ratelimit/packets).
	Packets float64 `yaml:"packets"`
	// PacketBurst is how many packets may come at once after a quiet time.
	PacketBurst int `yaml:"packet_burst"`
	// Bytes is the sustained bytes per second. Beyond it packets are
	// dropped (rule ratelimit/bytes).
	Bytes float64 `yaml:"bytes"`
	// ByteBurst is how many bytes may come at once; at least 65535, the
	// largest datagram.
	ByteBurst int `yaml:"byte_burst"`
}

// Zone is one zone's overrides.
type Zone struct {
	// Trusted gives every source of the zone the trusted budget.
	Trusted bool `yaml:"trusted"`
	// Budget replaces the untrusted budget in this zone; fields left out
	// take Budget's values.
	Budget *Budget `yaml:"budget"`
}

// Limits of the configuration.
const (
	maxPackets     = 1e7
	maxBytes       = 1e11
	minByteBurst   = 65535
	maxBurst       = 1 << 40
	minFloodWindow = 100 * time.Millisecond
)

// Defaults returns the ratelimit configuration used when ucgate.yaml says
// nothing.
func Defaults() Config {
	return Config{
		Enabled:       true,
		Budget:        Budget{Packets: 50, PacketBurst: 100, Bytes: 64 << 10, ByteBurst: 128 << 10},
		TrustedBudget: Budget{Packets: 500, PacketBurst: 1000, Bytes: 640 << 10, ByteBurst: 1280 << 10},
		Zones:         map[string]Zone{"trunk": {Trusted: true}},
		GlobalPackets: 20000,
		GlobalBurst:   40000,
		FloodDrops:    250,
		FloodWindow:   10 * time.Second,
		MaxSources:    65536,
		IPv4Prefix:    32,
		IPv6Prefix:    64,
	}
}

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	errs := []error{
		config.Nest("budget", c.Budget.Validate()),
		config.Nest("trusted_budget", c.TrustedBudget.Validate()),
	}
	for i, s := range c.Trusted {
		if _, msg := parsePrefix(s); msg != "" {
			errs = append(errs, config.Invalid(fmt.Sprintf("trusted[%d]", i), "%s", msg))
		}
	}
	names := make([]string, 0, len(c.Zones))
	for n := range c.Zones {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		z := c.Zones[n]
		if strings.TrimSpace(n) == "" {
			errs = append(errs, config.Invalid("zones", "zone names must not be empty"))
			continue
		}
		if z.Budget != nil {
			if z.Trusted {
				errs = append(errs, config.Invalid("zones."+n+".budget", "must not be set in a trusted zone (its sources get trusted_budget)"))
			}
			errs = append(errs, config.Nest("zones."+n+".budget", z.Budget.merge(c.Budget).Validate()))
		}
	}
	if !(c.GlobalPackets >= 0 && c.GlobalPackets <= maxPackets) {
		errs = append(errs, config.Invalid("global_packets", "must be between 0 (off) and %g, got %v", float64(maxPackets), c.GlobalPackets))
	}
	if c.GlobalPackets > 0 && (c.GlobalBurst < 1 || c.GlobalBurst > maxBurst) {
		errs = append(errs, config.Invalid("global_burst", "must be between 1 and %d, got %d", maxBurst, c.GlobalBurst))
	}
	if c.FloodDrops < 1 {
		errs = append(errs, config.Invalid("flood_drops", "must be at least 1, got %d", c.FloodDrops))
	}
	if c.FloodWindow < minFloodWindow {
		errs = append(errs, config.Invalid("flood_window", "must be at least %v, got %v", minFloodWindow, c.FloodWindow))
	}
	if c.MaxSources < 1 {
		errs = append(errs, config.Invalid("max_sources", "must be at least 1, got %d", c.MaxSources))
	}
	if c.IPv4Prefix < 1 || c.IPv4Prefix > 32 {
		errs = append(errs, config.Invalid("ipv4_prefix", "must be between 1 and 32, got %d", c.IPv4Prefix))
	}
	if c.IPv6Prefix < 1 || c.IPv6Prefix > 128 {
		errs = append(errs, config.Invalid("ipv6_prefix", "must be between 1 and 128, got %d", c.IPv6Prefix))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with a budget.
func (b Budget) Validate() error {
	var errs []error
	if !(b.Packets > 0 && b.Packets <= maxPackets) {
		errs = append(errs, config.Invalid("packets", "must be above 0 and at most %g, got %v", float64(maxPackets), b.Packets))
	}
	if b.PacketBurst < 1 || b.PacketBurst > maxBurst {
		errs = append(errs, config.Invalid("packet_burst", "must be between 1 and %d, got %d", maxBurst, b.PacketBurst))
	}
	if !(b.Bytes > 0 && b.Bytes <= maxBytes) {
		errs = append(errs, config.Invalid("bytes", "must be above 0 and at most %g, got %v", float64(maxBytes), b.Bytes))
	}
	if b.ByteBurst < minByteBurst || b.ByteBurst > maxBurst {
		errs = append(errs, config.Invalid("byte_burst", "must be between %d (the largest datagram) and %d, got %d", minByteBurst, maxBurst, b.ByteBurst))
	}
	return errors.Join(errs...)
}

// merge returns b with its zero fields taken from def.
func (b *Budget) merge(def Budget) Budget {
	out := *b
	if out.Packets == 0 {
		out.Packets = def.Packets
	}
	if out.PacketBurst == 0 {
		out.PacketBurst = def.PacketBurst
	}
	if out.Bytes == 0 {
		out.Bytes = def.Bytes
	}
	if out.ByteBurst == 0 {
		out.ByteBurst = def.ByteBurst
	}
	return out
}

// parsePrefix parses a trusted entry: an address or a CIDR prefix without
// host bits; IPv4-mapped forms become IPv4. On failure it returns the
// problem.
func parsePrefix(s string) (netip.Prefix, string) {
	bad := fmt.Sprintf("must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got %q", s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, bad
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Sprintf("%q has host bits set, did you mean %s?", s, m)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p, ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, bad
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), ""
}
