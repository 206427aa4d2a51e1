package acl

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the acl section of ucgate.yaml (policies.acl).
type Config struct {
	// Enabled turns the stage on. Default true.
	Enabled bool `yaml:"enabled"`
	// Allow, when not empty, is the only set of sources let in: a packet
	// from any other address is dropped (rule acl/not_allowed). Entries are
	// addresses (192.0.2.7, 2001:db8::7) or CIDR prefixes (192.0.2.0/24,
	// 2001:db8::/32). Default empty: every source is allowed. A zone may
	// replace it (see Zones).
	Allow []string `yaml:"allow"`
	// Deny lists sources that are always dropped (rule acl/deny), in every
	// zone; deny wins over allow. Same syntax as Allow. Default empty.
	Deny []string `yaml:"deny"`
	// DenyInvalid drops packets whose source address can never be a real
	// peer: unspecified (0.0.0.0/8, ::), multicast (224.0.0.0/4, ff00::/8)
	// and reserved or broadcast (240.0.0.0/4) sources, which only spoofed
	// packets carry (rule acl/invalid_source). Default true.
	DenyInvalid bool `yaml:"deny_invalid"`
	// Zones holds per-zone lists, by zone name (the zone of the listener
	// or upstream: "internet", "trunk", ...). A zone's allow, when given,
	// replaces the top-level allow for that zone (an explicit empty list,
	// allow: [], lets every source into that zone); a zone's deny is added
	// to the top-level deny. Zones not listed use the top-level lists.
	// Default none.
	Zones map[string]Zone `yaml:"zones"`
}

// Zone is one zone's lists.
type Zone struct {
	// Allow replaces the top-level allow list in this zone when present.
	Allow []string `yaml:"allow"`
	// Deny is added to the top-level deny list in this zone.
	Deny []string `yaml:"deny"`
}

// Defaults returns the acl configuration used when ucgate.yaml says
// nothing: on, no allow or deny lists, invalid sources dropped.
func Defaults() Config {
	return Config{Enabled: true, DenyInvalid: true}
}

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	errs := []error{checkList("allow", c.Allow), checkList("deny", c.Deny)}
	for _, name := range sortedZones(c.Zones) {
		z := c.Zones[name]
		if strings.TrimSpace(name) == "" {
			errs = append(errs, config.Invalid("zones", "zone names must not be empty"))
			continue
		}
		errs = append(errs,
			config.Nest("zones."+name, checkList("allow", z.Allow)),
			config.Nest("zones."+name, checkList("deny", z.Deny)))
	}
	return errors.Join(errs...)
}

func checkList(key string, list []string) error {
	var errs []error
	for i, s := range list {
		if _, msg := parsePrefix(s); msg != "" {
			errs = append(errs, config.Invalid(fmt.Sprintf("%s[%d]", key, i), "%s", msg))
		}
	}
	return errors.Join(errs...)
}

func sortedZones(m map[string]Zone) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// parsePrefix parses an access-list entry: an address (a /32 or /128) or
// a CIDR prefix without host bits. IPv4-mapped IPv6 prefixes of /96 or
// longer become the IPv4 prefix they carry. Zones (fe80::1%eth0) are
// refused: an access list names networks, not interfaces. On failure it
// returns the problem, for Validate.
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

// parseList parses a validated list.
func parseList(list []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, msg := parsePrefix(s); msg == "" {
			out = append(out, p)
		}
	}
	return out
}
