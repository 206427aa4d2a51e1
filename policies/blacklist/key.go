package blacklist

import (
	"fmt"
	"net/netip"
	"strings"
)

// maxKeyLen bounds a key: the longest IPv6 prefix is 43 characters.
const maxKeyLen = 64

// parseKey parses a blacklist key: an address or a CIDR prefix without
// host bits. It returns the prefix (a /32 or /128 for an address) and the
// canonical key: the address alone for a single host ("192.0.2.7",
// "2001:db8::7"), the prefix otherwise ("192.0.2.0/24"). IPv4-mapped
// IPv6 forms become IPv4. On failure it returns the problem.
func parseKey(s string) (netip.Prefix, string, string) {
	if len(s) > maxKeyLen {
		return netip.Prefix{}, "", fmt.Sprintf("must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got %d bytes", len(s))
	}
	bad := fmt.Sprintf("must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got %q", s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, "", bad
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, "", fmt.Sprintf("%q has host bits set, did you mean %s?", s, m)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, "", bad
		}
		a = a.Unmap()
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.IsSingleIP() {
		return p, p.Addr().String(), ""
	}
	return p, p.String(), ""
}
