package scan

import "strings"

// signatures finds configured signatures in peer-controlled text (a
// User-Agent, a From name), ignoring ASCII case, as whole words: the bytes
// right before and after a match must not be letters. One pass over the
// text looks only at the positions that start a word and only at the
// signatures beginning with the byte found there; it does not allocate.
type signatures struct {
	words   [][]byte // lower case
	names   []string // as configured, for events
	byFirst [256][]int
}

func newSignatures(list []string) signatures {
	s := signatures{names: list}
	for i, w := range list {
		low := []byte(strings.ToLower(w))
		s.words = append(s.words, low)
		s.byFirst[low[0]] = append(s.byFirst[low[0]], i)
	}
	return s
}

// match returns the index of the first signature (in configured order)
// found in text, or -1.
func (s *signatures) match(text string) int {
	best := -1
	for i := 0; i < len(text); i++ {
		if i > 0 && isLetter(text[i-1]) {
			continue
		}
		for _, w := range s.byFirst[lower(text[i])] {
			if (best < 0 || w < best) && wordAt(text, i, s.words[w]) {
				best = w
			}
		}
		if best == 0 {
			break
		}
	}
	return best
}

// wordAt reports whether w (lower case) is at text[i:], ignoring case,
// and not followed by a letter.
func wordAt(text string, i int, w []byte) bool {
	end := i + len(w)
	if end > len(text) || end < len(text) && isLetter(text[end]) {
		return false
	}
	for j, c := range w {
		if lower(text[i+j]) != c {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// userOf returns the user part of a request target: "1001" of
// "sip:1001@example.com;transport=udp" (and of "sip:1001:pw@host"),
// "+15551234" of "tel:+15551234;phone-context=x", "alice" of an XMPP
// "alice@example.com/phone"; "" when it names no user. The result is a
// substring of target.
func userOf(target string) string {
	at := strings.IndexByte(target, '@')
	if at < 0 {
		if len(target) > 4 && strings.EqualFold(target[:4], "tel:") {
			u := target[4:]
			if i := strings.IndexByte(u, ';'); i >= 0 {
				u = u[:i]
			}
			return u
		}
		return ""
	}
	u := target[:at]
	if i := strings.IndexByte(u, ':'); i >= 0 { // the scheme
		u = u[i+1:]
	}
	if i := strings.IndexByte(u, ':'); i >= 0 { // a password
		u = u[:i]
	}
	return u
}
