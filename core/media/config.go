package media

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the media section of ucgate.yaml (top-level key media).
type Config struct {
	// Enabled anchors media: every call's RTP and RTCP is relayed through
	// the gateway. When false the adapters pass descriptions through
	// unchanged and New refuses to build an engine. Default true.
	Enabled bool `yaml:"enabled"`
	// IPv4 is where relay sockets for IPv4 legs are bound. Default
	// address 127.0.0.1, ports 40000-59999.
	IPv4 FamilyConfig `yaml:"ipv4"`
	// IPv6 is where relay sockets for IPv6 legs are bound; an empty
	// address disables IPv6 legs. Default address ::1, ports
	// 40000-59999. When the address cannot be bound at start the family
	// is disabled with a warning.
	IPv6 FamilyConfig `yaml:"ipv6"`
	// Timeout ends an answered call whose streams received nothing (RTP
	// or RTCP) for this long; the adapter hears it as "media_timeout".
	// Streams that are all inactive (on hold) do not count. 0: never.
	// Default 60s.
	Timeout time.Duration `yaml:"timeout"`
	// Latch says whose packets the relay accepts and where it sends:
	// "strict" only the address and port each description named (RTCP:
	// its a=rtcp or port+1), "nat" the first source of a stream when the
	// signalling says the leg is behind NAT and else as strict, "always"
	// the first source that sends valid RTP (after SRTP authentication on
	// an SRTP leg). Default "nat". A DTLS-SRTP (WebRTC) leg is always
	// learnt, from authenticated packets of an address that passed ICE,
	// and sent nothing before: ICE, not its description, says where it is.
	Latch string `yaml:"latch"`
	// Relatch lets a latched stream move to a new source (Wi-Fi to 4G)
	// when the new source keeps the stream's SSRC and sequence
	// progression and the old source has been silent for relatch_after.
	// Strict streams never move. Default true.
	Relatch bool `yaml:"relatch"`
	// RelatchAfter is how long the latched source must have been silent
	// before another may take its place. Default 2s.
	RelatchAfter time.Duration `yaml:"relatch_after"`
	// MaxPacketsPerSecond is the sustained packet rate one direction of
	// one stream may send (bursts of a fifth of a second above it pass);
	// beyond it packets are dropped (rule media/rate). 0: no limit.
	// Default 1000.
	MaxPacketsPerSecond int `yaml:"max_packets_per_second"`
	// MaxBitrate is the sustained rate in bytes per second one direction
	// of one stream may send, with the same burst allowance; beyond it
	// packets are dropped (rule media/rate). 0: no limit. Default
	// 2000000 (2 MB/s, ample for HD video).
	MaxBitrate int `yaml:"max_bitrate"`
}

// FamilyConfig is where one address family's relay sockets live.
type FamilyConfig struct {
	// Address is the local address relay sockets are bound to; empty
	// disables the family.
	Address string `yaml:"address"`
	// Advertise is the address written into descriptions sent to the
	// legs (a public address in front of a 1:1 NAT). Default: address.
	// Required when address is unspecified (0.0.0.0, ::).
	Advertise string `yaml:"advertise"`
	// Ports is the range relay ports are taken from, "low-high"
	// inclusive. Each stream takes an even port for RTP and the next one
	// for RTCP on each leg, so a range of N ports relays N/4 two-leg
	// streams; when it is spent new offers fail (the adapter answers
	// 503). Default 40000-59999: 5000 two-leg streams. The default lies
	// in Linux's ephemeral port range (32768-60999): a port an outgoing
	// connection holds is skipped; narrow the ephemeral range
	// (net.ipv4.ip_local_port_range) or move this one on a busy host.
	Ports string `yaml:"ports"`
}

// Latch modes.
const (
	LatchStrict = "strict"
	LatchNAT    = "nat"
	LatchAlways = "always"
)

// Defaults returns the media configuration used when ucgate.yaml says
// nothing.
func Defaults() Config {
	return Config{
		Enabled:             true,
		IPv4:                FamilyConfig{Address: "127.0.0.1", Ports: "40000-59999"},
		IPv6:                FamilyConfig{Address: "::1", Ports: "40000-59999"},
		Timeout:             60 * time.Second,
		Latch:               LatchNAT,
		Relatch:             true,
		RelatchAfter:        2 * time.Second,
		MaxPacketsPerSecond: 1000,
		MaxBitrate:          2_000_000,
	}
}

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, config.Nest("ipv4", c.IPv4.validate(false)))
	errs = append(errs, config.Nest("ipv6", c.IPv6.validate(true)))
	if c.IPv4.Address == "" && c.IPv6.Address == "" {
		errs = append(errs, config.Invalid("", "ipv4.address and ipv6.address are both empty: no family to relay on"))
	}
	if c.Timeout < 0 {
		errs = append(errs, config.Invalid("timeout", "must not be negative (0: never), got %v", c.Timeout))
	}
	switch c.Latch {
	case LatchStrict, LatchNAT, LatchAlways:
	default:
		errs = append(errs, config.Invalid("latch", `must be "strict", "nat" or "always", got %q`, c.Latch))
	}
	if c.Relatch && c.RelatchAfter <= 0 {
		errs = append(errs, config.Invalid("relatch_after", "must be above 0 when relatch is on, got %v", c.RelatchAfter))
	}
	if c.MaxPacketsPerSecond < 0 {
		errs = append(errs, config.Invalid("max_packets_per_second", "must not be negative (0: no limit), got %d", c.MaxPacketsPerSecond))
	}
	if c.MaxBitrate < 0 {
		errs = append(errs, config.Invalid("max_bitrate", "must not be negative (0: no limit), got %d", c.MaxBitrate))
	}
	return errors.Join(errs...)
}

func (f FamilyConfig) validate(v6 bool) error {
	if f.Address == "" {
		return nil
	}
	want := "IPv4"
	if v6 {
		want = "IPv6"
	}
	var errs []error
	a, err := netip.ParseAddr(f.Address)
	switch {
	case err != nil:
		errs = append(errs, config.Invalid("address", "must be an %s address, got %q", want, f.Address))
	case a.Zone() != "" || a.Is6() != v6 || a.Is4In6():
		errs = append(errs, config.Invalid("address", "must be an %s address, got %q", want, f.Address))
	case a.IsUnspecified() && f.Advertise == "":
		errs = append(errs, config.Invalid("advertise", "must be set when address is unspecified (%s)", f.Address))
	}
	if f.Advertise != "" {
		b, err := netip.ParseAddr(f.Advertise)
		if err != nil || b.Is6() != v6 || b.Is4In6() || b.Zone() != "" || b.IsUnspecified() {
			errs = append(errs, config.Invalid("advertise", "must be a specified %s address, got %q", want, f.Advertise))
		}
	}
	if _, _, err := parsePorts(f.Ports); err != nil {
		errs = append(errs, config.Invalid("ports", "%v", err))
	}
	return errors.Join(errs...)
}

// parsePorts reads "low-high" and returns the first even port and the
// last port that can hold an RTCP port after an even RTP port.
func parsePorts(s string) (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return 0, 0, fmt.Errorf(`must be "low-high", got %q`, s)
	}
	l, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil || l == 0 {
		return 0, 0, fmt.Errorf(`must be "low-high" with ports between 1 and 65535, got %q`, s)
	}
	if l%2 == 1 {
		l++
	}
	if h < l+1 {
		return 0, 0, fmt.Errorf("must hold at least one even port and the next, got %q", s)
	}
	return uint16(l), uint16(h), nil
}
