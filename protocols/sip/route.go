package sip

import "strings"

// route is a compiled routing rule.
type route struct {
	domain    string
	prefix    string
	def       bool
	strip     int
	upstreams []*upstream
}

// match finds the first route for a Request-URI's user and host and
// returns the user to send (with a prefix stripped) and the upstreams to
// try in order.
func matchRoute(routes []route, user, host string) (string, []*upstream, bool) {
	for _, r := range routes {
		switch {
		case r.def:
		case r.domain != "":
			if !strings.EqualFold(r.domain, host) {
				continue
			}
		case r.prefix != "":
			if !strings.HasPrefix(user, r.prefix) {
				continue
			}
			if r.strip > 0 {
				if r.strip >= len(user) {
					continue
				}
				user = user[r.strip:]
			}
		default:
			continue
		}
		return user, r.upstreams, true
	}
	return "", nil, false
}
