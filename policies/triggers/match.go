package triggers

import (
	"net/netip"
	"strings"
)

// glob reports whether s matches pattern, where "*" matches any run of
// bytes ("/" included) and "?" any one byte. It runs in O(len(pattern) *
// len(s)) at worst, without recursion.
func glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0 // the last "*" seen in pattern, and where s stood then
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*': // before the literal case: "*" may meet a "*"
			star, mark = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case star >= 0:
			// Let the last star swallow one more byte and try again.
			mark++
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matcher is a trigger's compiled match: patterns and zones.
type matcher struct {
	patterns []string
	zones    map[string]bool // nil: every zone
}

// match reports whether the rule and zone of an event match. A rule of
// the triggers' own ("triggers/...") matches only a pattern that names
// the prefix literally.
func (m *matcher) match(rule, zone string) bool {
	if m.zones != nil && !m.zones[zone] {
		return false
	}
	own := strings.HasPrefix(rule, triggerPrefix)
	for _, p := range m.patterns {
		if own && !strings.HasPrefix(p, triggerPrefix) {
			continue
		}
		if glob(p, rule) {
			return true
		}
	}
	return false
}

// parseSrc reads a security event's source: an address ("192.0.2.7",
// "2001:db8::7") or an address and port ("192.0.2.7:5060",
// "[2001:db8::7]:5060"). An IPv4-mapped IPv6 address is read as IPv4 and
// a zone is dropped. A prefix or anything else is not a source to block.
func parseSrc(s string) (netip.Addr, bool) {
	var a netip.Addr
	// Pick the parser that fits, so that the common forms cost no error
	// value: an IPv6 address has two colons or more, "[v6]:port" a
	// bracket, "v4:port" one colon.
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	} else {
		var err error
		if a, err = netip.ParseAddr(s); err != nil {
			return netip.Addr{}, false
		}
	}
	a = a.Unmap().WithZone("")
	return a, a.IsValid()
}
