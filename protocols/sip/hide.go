package sip

import (
	"bytes"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Topology hiding works by omission: a header crosses from one leg to the
// other only if it is on one of these lists. Everything that names a host,
// a route or a device (Via, Route, Record-Route, Contact, Call-ID, tags,
// Server, User-Agent, Warning, Call-Info, P-Asserted-Identity, X-*) stays on
// its own leg. Compact forms are listed beside the long names.
var safeRequestHeaders = headerSet(
	"accept", "accept-encoding", "accept-language", "allow", "allow-events", "u",
	"supported", "k", "require", "content-disposition", "content-encoding", "e",
	"content-language", "subject", "s", "priority", "session-expires", "x",
	"min-se", "expires", "event", "o", "subscription-state", "authorization",
	"proxy-authorization", "date", "privacy", "reason", "timestamp",
	"mime-version", "rseq",
)

var safeResponseHeaders = headerSet(
	"accept", "accept-encoding", "accept-language", "allow", "allow-events", "u",
	"supported", "k", "require", "unsupported", "content-disposition",
	"content-encoding", "e", "content-language", "session-expires", "x", "min-se",
	"expires", "min-expires", "retry-after", "www-authenticate",
	"proxy-authenticate", "authentication-info", "rseq", "reason", "date",
	"timestamp", "mime-version",
)

func headerSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// message is what both *sip.Request and *sip.Response offer.
type message interface {
	sip.Message
	Headers() []sip.Header
	ContentType() *sip.ContentTypeHeader
}

// copySafe appends clones of the headers of from that are in safe.
func copySafe(from message, to sip.Message, safe map[string]bool) {
	for _, h := range from.Headers() {
		if safe[lowerName(h.Name())] {
			to.AppendHeader(sip.HeaderClone(h))
		}
	}
}

// copyRequest appends clones of the request headers of from that may
// cross to the other leg. Authorization and Proxy-Authorization cross
// only when they answer a challenge of someone else's realm (a PBX behind
// the gateway authenticating its users): credentials for one of the
// gateway's own realms were checked here and stay on their leg, and so do
// credentials that do not parse, so that an upstream never sees a user's
// digest response for the gateway.
func (a *Adapter) copyRequest(from message, to sip.Message) {
	for _, h := range from.Headers() {
		n := lowerName(h.Name())
		if !safeRequestHeaders[n] {
			continue
		}
		if (n == "authorization" || n == "proxy-authorization") && !a.foreignCredentials(h.Value()) {
			continue
		}
		to.AppendHeader(sip.HeaderClone(h))
	}
}

// foreignCredentials reports whether a credentials header value parses
// and names a realm that is not one of the gateway's.
func (a *Adapter) foreignCredentials(v string) bool {
	if len(v) > 4096 {
		return false
	}
	c, err := digest.ParseCredentials(v)
	if err != nil || c.Realm == "" {
		return false
	}
	own := a.ownRealm
	return own != nil && !own(c.Realm)
}

// lowerName lower-cases a header name without allocating for the common
// already-canonical names.
func lowerName(n string) string {
	for i := 0; i < len(n); i++ {
		if c := n[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(n)
		}
	}
	return n
}

// hideSDP rewrites the origin line of an SDP body so that it names the
// gateway, not the peer: "o=- <sess-id> <sess-version> IN IP4 <gateway>".
// Session id and version pass through so the far end still sees re-offers
// as such. Every other line passes unchanged. A body without an origin
// line is returned as is.
func hideSDP(body []byte, host string) []byte {
	i := 0
	if !bytes.HasPrefix(body, []byte("o=")) {
		i = bytes.Index(body, []byte("\no="))
		if i < 0 {
			return body
		}
		i++
	}
	end := bytes.IndexByte(body[i:], '\n')
	if end < 0 {
		end = len(body)
	} else {
		end += i
	}
	line := bytes.TrimRight(body[i:end], "\r")
	f := bytes.Fields(line[2:])
	if len(f) < 6 {
		return body
	}
	addrType := "IP4"
	if strings.Contains(host, ":") {
		addrType = "IP6"
	}
	out := make([]byte, 0, len(body)+len(host))
	out = append(out, body[:i]...)
	out = append(out, "o=- "...)
	out = append(out, f[1]...)
	out = append(out, ' ')
	out = append(out, f[2]...)
	out = append(out, " IN "...)
	out = append(out, addrType...)
	out = append(out, ' ')
	out = append(out, host...)
	if end < len(body) {
		if body[end-1] == '\r' {
			out = append(out, '\r')
		}
		out = append(out, body[end:]...)
	}
	return out
}

// isSDP reports whether a message's body is a session description.
func isSDP(m message) bool {
	ct := m.ContentType()
	if ct == nil {
		return false
	}
	v := strings.ToLower(strings.TrimSpace(ct.Value()))
	return strings.HasPrefix(v, "application/sdp")
}
