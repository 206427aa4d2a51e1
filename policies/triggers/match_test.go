package triggers

import (
	"bufio"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "scan/agent", true},
		{"scan/*", "scan/agent", true},
		{"scan/*", "scan", false},
		{"scan*", "scan", true},
		{"*/flood", "ratelimit/flood", true},
		{"*/flood", "ratelimit/floods", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a*b*c", "acb", false},
		{"?", "", false},
		{"?", "x", true},
		{"auth/fail?re", "auth/failure", true},
		{"**", "x/y", true},
		{"*a", "aaaa", true},
		{"*aab", "aaaaaab", true},
		{"a*", "b", false},
		{"*", "*0", true}, // found by FuzzGlob: a "*" meeting a "*" is still a wildcard
		{"a*c", "a*c", true},
		{"a*c", "a*b", false},
		{strings.Repeat("*a", 60) + "b", strings.Repeat("a", 2000), false}, // no exponential backtracking
	}
	for _, tt := range tests {
		if got := glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

// globRegexp is the reference: the pattern as an anchored regular
// expression.
func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)\A`)
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`\z`)
	return regexp.MustCompile(b.String())
}

// FuzzGlob checks glob against a regular expression built from the
// pattern, on ASCII input (a "?" is one byte, a regexp "." one rune).
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"scan/*", "scan/agent"}, {"*/flood", "ratelimit/flood"}, {"a*b?c", "axxbyc"},
		{"triggers/*", "triggers/ban"}, {"*", ""}, {"?*?", "ab"}, {"a**b", "ab"}, {"*aab", "aaaaaab"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 64 || len(s) > 256 || !ascii(pattern) || !ascii(s) {
			return
		}
		if got, want := glob(pattern, s), globRegexp(pattern).MatchString(s); got != want {
			t.Fatalf("glob(%q, %q) = %v, regexp says %v", pattern, s, got, want)
		}
		if !glob(pattern, pattern) && !strings.ContainsAny(pattern, "*?") {
			t.Fatalf("a literal pattern %q does not match itself", pattern)
		}
	})
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func TestParseSrc(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for not a source
	}{
		{"192.0.2.7", "192.0.2.7"},
		{"192.0.2.7:5060", "192.0.2.7"},
		{"2001:db8::7", "2001:db8::7"},
		{"[2001:db8::7]:5061", "2001:db8::7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:5060", "192.0.2.7"},
		{"fe80::1%eth0", "fe80::1"},
		{"", ""},
		{"192.0.2.0/24", ""},
		{"sip.example.com", ""},
		{"sip.example.com:5060", ""},
		{"192.0.2.7:", ""},
		{" 192.0.2.7", ""},
	}
	for _, tt := range tests {
		a, ok := parseSrc(tt.in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tt.want {
			t.Errorf("parseSrc(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParseSrc checks that what parseSrc accepts is a valid address
// without zone or IPv4 mapping, which the input names.
func FuzzParseSrc(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "192.0.2.7:5060", "[2001:db8::7]:5061", "::ffff:192.0.2.7",
		"fe80::1%eth0", "192.0.2.0/24", "", "[::1]:0", "1.2.3.4:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := parseSrc(s)
		if !ok {
			return
		}
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("parseSrc(%q) = %v", s, a)
		}
		b, err := netip.ParseAddr(s)
		if err != nil {
			ap, err := netip.ParseAddrPort(s)
			if err != nil {
				t.Fatalf("parseSrc accepted %q, which netip does not", s)
			}
			b = ap.Addr()
		}
		if b.Unmap().WithZone("") != a {
			t.Fatalf("parseSrc(%q) = %v, the input names %v", s, a, b)
		}
	})
}

// FuzzHeader checks that a header accepted by the configuration goes
// over the wire and comes back as it was.
func FuzzHeader(f *testing.F) {
	for _, s := range [][2]string{{"Authorization", "Bearer abc"}, {"X-Tag", "a\tb"}, {"X-Split", "a\r\nB: c"},
		{"Bad Name", "x"}, {"X-Pad", " x "}, {"X-Del", "a\x7fb"}, {"X-Utf8", "héllo"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		if !validHeaderName(name) || !validHeaderValue(value) || reservedHeaders[strings.ToLower(name)] {
			return
		}
		req, err := http.NewRequest(http.MethodPost, "http://192.0.2.1/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(name, value)
		var wire strings.Builder
		if err := req.Write(&wire); err != nil {
			t.Fatalf("write %q: %q: %v", name, value, err)
		}
		back, err := http.ReadRequest(bufio.NewReader(strings.NewReader(wire.String())))
		if err != nil {
			t.Fatalf("read back %q: %q: %v\n%s", name, value, err, wire.String())
		}
		if vs := back.Header.Values(name); len(vs) != 1 || vs[0] != value {
			t.Fatalf("%q: %q came back as %q", name, value, vs)
		}
	})
}
