package proxy

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// observable reports whether the proxy reads the username a SASL
// mechanism offers (PLAIN, SCRAM-* without channel binding), or the
// mechanism has none (ANONYMOUS). Only these are offered and relayed:
// the failures of any other could not be counted per account.
func observable(mech string) bool {
	switch {
	case mech == "PLAIN", mech == "ANONYMOUS":
		return true
	case strings.HasPrefix(mech, "SCRAM-") && !strings.HasSuffix(mech, "-PLUS"):
		return true
	}
	return false
}

// maxUser bounds the usernames the proxy remembers and journals.
const maxUser = 128

// saslUser returns the username a SASL initial response offers (RFC 4616
// PLAIN: the authentication identity; RFC 5802 SCRAM: the n= attribute),
// or "" when the mechanism is another or the response is not well formed.
// It never fails on hostile input; what it returns is bounded, valid
// UTF-8 without control characters.
func saslUser(mech, b64 string) string {
	b64 = strings.TrimSpace(b64)
	if b64 == "" || b64 == "=" || len(b64) > 4096 {
		return ""
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return ""
	}
	s := string(data)
	var user string
	switch {
	case mech == "PLAIN":
		parts := strings.Split(s, "\x00")
		if len(parts) != 3 {
			return ""
		}
		user = parts[1]
	case strings.HasPrefix(mech, "SCRAM-"):
		// gs2-header: "n,," / "y,," / "p=cb,", an optional "a=authzid", ","
		i := strings.IndexByte(s, ',')
		if i < 0 {
			return ""
		}
		j := strings.IndexByte(s[i+1:], ',')
		if j < 0 {
			return ""
		}
		rest := s[i+1+j+1:]
		if !strings.HasPrefix(rest, "n=") {
			return ""
		}
		user, _, _ = strings.Cut(rest[2:], ",")
		user = strings.NewReplacer("=2C", ",", "=3D", "=").Replace(user)
	default:
		return ""
	}
	return cleanUser(user)
}

// cleanUser bounds u and keeps it printable; a username that is not is
// dropped.
func cleanUser(u string) string {
	if len(u) > maxUser || !utf8.ValidString(u) {
		return ""
	}
	for _, r := range u {
		if r < 0x20 || r == 0x7f {
			return ""
		}
	}
	return u
}
