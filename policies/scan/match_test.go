package scan

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	sigs := newSignatures([]string{"friendly-scanner", "iwar", "VaxSIPUserAgent", "PortSIP VoIP SDK"})
	tests := []struct {
		text string
		want int
	}{
		{"friendly-scanner", 0},
		{"FRIENDLY-SCANNER", 0},
		{"x friendly-scanner/1.0", 0},
		{"friendly-scanners", -1},
		{"unfriendly-scanner", -1},
		{"iWar", 1},
		{"iWar/1.0", 1},
		{"iwar2", 1},
		{"Kiwari", -1},
		{"iwarx iwar", 1},
		{"vaxsipuseragent/3.1", 2},
		{"PortSIP VoIP SDK 11.2", 3},
		{"PortSIP VoIP SDKs", -1},
		{"", -1},
		{"Yealink SIP-T46S", -1},
		{strings.Repeat("a", 300) + " iWar", 1}, // longer than the stack buffer
		{strings.Repeat("a", 300) + "iWar", -1},
	}
	for _, tt := range tests {
		if got := sigs.match(tt.text); got != tt.want {
			t.Errorf("match(%.40q) = %d, want %d", tt.text, got, tt.want)
		}
	}
}

func TestUserOf(t *testing.T) {
	for in, want := range map[string]string{
		"sip:1001@example.com":                    "1001",
		"sips:alice@example.com;transport=tls":    "alice",
		"sip:1001:secret@192.0.2.1:5060":          "1001",
		"sip:example.com":                         "",
		"sip:192.0.2.1:5060":                      "",
		"tel:+15551234;phone-context=example.com": "+15551234",
		"TEL:911":                 "911",
		"tel:":                    "",
		"alice@example.com/phone": "alice",
		"@example.com":            "",
		"":                        "",
		"sip:user;par=u%40example.net@example.com": "user;par=u%40example.net",
	} {
		if got := userOf(in); got != want {
			t.Errorf("userOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// reference is a plain restatement of the matching rule: lower-case both
// (ASCII only: a User-Agent's other bytes are not letters to the rule),
// then look at every position.
func reference(words []string, text string) int {
	asciiLower := func(s string) string {
		b := []byte(s)
		for i, c := range b {
			if c >= 'A' && c <= 'Z' {
				b[i] = c + 32
			}
		}
		return string(b)
	}
	low := asciiLower(text)
	isLetter := func(c byte) bool { return c >= 'a' && c <= 'z' }
	for i, w := range words {
		w = asciiLower(w)
		for j := 0; j+len(w) <= len(low); j++ {
			if low[j:j+len(w)] == w && (j == 0 || !isLetter(low[j-1])) && (j+len(w) == len(low) || !isLetter(low[j+len(w)])) {
				return i
			}
		}
	}
	return -1
}

// FuzzMatch checks the signature matcher against the reference on
// arbitrary User-Agents, for the default signatures and one from the
// fuzzer.
func FuzzMatch(f *testing.F) {
	for _, seed := range []string{"friendly-scanner", "sipcli/v1.8", "VaxSIPUserAgent/3.1", "pplsip", "Kiwari",
		"Yealink SIP-T46S 66.86.0.15", "sipsak 0.9.8.1", "iWar\xffiwar", strings.Repeat("sip-scan ", 40), "ÄIWARÄ", "\u212aiwar"} {
		f.Add(seed, "iwar")
	}
	f.Fuzz(func(t *testing.T, text, extra string) {
		words := append([]string{}, DefaultAgents...)
		if validSignature(extra) {
			words = append(words, extra)
		}
		sigs := newSignatures(words)
		if got, want := sigs.match(text), reference(words, text); got != want {
			t.Fatalf("match(%q) with %q = %d, reference %d", text, words, got, want)
		}
	})
}

// FuzzUserOf checks that userOf returns a substring of its input with no
// '@', and the user of every URI built from a user and a host.
func FuzzUserOf(f *testing.F) {
	for _, seed := range []string{"sip:1001@example.com", "tel:+15551234;x=y", "sip:a:b@c", "alice@example.com/r", "sip:host", "@", ":@:"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		u := userOf(in)
		if !strings.Contains(in, u) || strings.Contains(u, "@") {
			t.Fatalf("userOf(%q) = %q", in, u)
		}
		if !strings.ContainsAny(in, "@:") {
			if got := userOf("sip:" + in + "@example.com"); got != in {
				t.Fatalf("userOf(sip:%s@example.com) = %q", in, got)
			}
		}
	})
}
