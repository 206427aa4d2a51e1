package sip

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/ucgate/ucgate/core"
)

// credentials parses a request's Authorization (or Proxy-Authorization)
// header into the core's neutral form. A header that does not parse is
// reported as credentials with no username: the auth stage refuses them.
func credentials(req *sip.Request) *core.Credentials {
	h, proxy := req.GetHeader("Authorization"), false
	if h == nil {
		h, proxy = req.GetHeader("Proxy-Authorization"), true
	}
	if h == nil {
		return nil
	}
	v := h.Value()
	if len(v) > 4096 {
		return &core.Credentials{Scheme: "digest", Proxy: proxy, Method: string(req.Method)}
	}
	c, err := digest.ParseCredentials(v)
	if err != nil {
		return &core.Credentials{Scheme: "digest", Proxy: proxy, Method: string(req.Method)}
	}
	out := &core.Credentials{
		Scheme: "digest", Proxy: proxy, Username: c.Username, Realm: c.Realm, Nonce: c.Nonce,
		URI: c.URI, Response: c.Response, Algorithm: c.Algorithm, QOP: c.QOP,
		CNonce: c.Cnonce, Opaque: c.Opaque, Method: string(req.Method),
	}
	if c.Nc > 0 {
		out.NC = fmt.Sprintf("%08x", c.Nc)
	}
	return out
}

// shape measures a message's form for the validate stage: sizes and
// counts, and the SIP rules it breaks that the parser let through.
func shape(m message) core.Shape {
	s := core.Shape{DeclaredLength: -1, MaxForwards: -1, BodyLength: len(m.Body())}
	size := 0
	for _, h := range m.Headers() {
		n := len(h.Name()) + 2 + len(h.Value())
		size += n + 2
		s.Headers++
		if n > s.LongestHeader {
			s.LongestHeader = n
		}
		switch lowerName(h.Name()) {
		case "via", "v":
			s.Hops++
		}
	}
	s.Size = size + 2 + s.BodyLength
	if cl := m.ContentLength(); cl != nil {
		s.DeclaredLength = int(*cl)
	}
	if req, ok := m.(*sip.Request); ok {
		s.Size += len(req.Method) + len(req.Recipient.String()) + 12
		if mf := req.MaxForwards(); mf != nil {
			s.MaxForwards = int(mf.Val())
		}
		if cs := req.CSeq(); cs != nil && cs.MethodName != req.Method && !(req.IsAck() && cs.MethodName == sip.INVITE) {
			s.Problems = append(s.Problems, "CSeq Method Mismatch")
		}
		if !validURI(&req.Recipient) {
			s.Problems = append(s.Problems, "Invalid Request-URI")
		}
		if f := req.From(); f != nil && !validURI(&f.Address) {
			s.Problems = append(s.Problems, "Invalid From URI")
		}
		if t := req.To(); t != nil && !validURI(&t.Address) {
			s.Problems = append(s.Problems, "Invalid To URI")
		}
		if !validMethod(string(req.Method)) {
			s.Problems = append(s.Problems, "Invalid Method")
		}
	} else if res, ok := m.(*sip.Response); ok {
		s.Size += len(res.Reason) + 13
		if res.StatusCode < 100 || res.StatusCode > 699 {
			s.Problems = append(s.Problems, "Invalid Status Code")
		}
		if res.CSeq() == nil || res.CallID() == nil || res.From() == nil || res.To() == nil || res.Via() == nil {
			s.Problems = append(s.Problems, "Missing Mandatory Header")
		}
	}
	return s
}

// validURI checks what sipgo's lenient parser lets through in a SIP URI:
// a host, and only the characters RFC 3261 (25.1) allows in the user part
// and the host: no control characters, no NUL, no raw non-ASCII.
func validURI(u *sip.Uri) bool {
	if u.Scheme != "sip" && u.Scheme != "sips" {
		return u.Scheme != "" // tel:, urn: are judged by whoever routes them
	}
	if u.Host == "" || len(u.Host) > 255 || len(u.User) > 255 {
		return false
	}
	for i := 0; i < len(u.User); i++ {
		c := u.User[i]
		if !(alnum(c) || strings.IndexByte("-_.!~*'()%&=+$,;?/", c) >= 0) {
			return false
		}
	}
	for i := 0; i < len(u.Host); i++ {
		c := u.Host[i]
		if !(alnum(c) || strings.IndexByte("-.:[]", c) >= 0) {
			return false
		}
	}
	return true
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }

// validMethod reports whether a method is a SIP token (RFC 3261 25.1).
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}

// challengeHeaders renders an AuthChallenge as one WWW-Authenticate (or
// Proxy-Authenticate) header per offered algorithm, strongest first.
func challengeHeaders(c *core.AuthChallenge) []sip.Header {
	name := "WWW-Authenticate"
	if c.Proxy {
		name = "Proxy-Authenticate"
	}
	algs := c.Algorithms
	if len(algs) == 0 {
		algs = []string{"MD5"}
	}
	out := make([]sip.Header, 0, len(algs))
	for _, alg := range algs {
		ch := digest.Challenge{Realm: c.Realm, Nonce: c.Nonce, Opaque: c.Opaque, Algorithm: alg, Stale: c.Stale}
		if c.QOP != "" {
			ch.QOP = []string{c.QOP}
		}
		out = append(out, sip.NewHeader(name, ch.String()))
	}
	return out
}
