package acl

import (
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core/config"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // every error, one per line; empty when valid
	}{
		{"defaults", "", ""},
		{"everything", "enabled: true\nallow: [192.0.2.0/24, '2001:db8::/32', 198.51.100.7, '::ffff:203.0.113.0/120']\n" +
			"deny: [192.0.2.128/25]\ndeny_invalid: false\nzones:\n  trunk: {allow: [198.51.100.0/24], deny: ['2001:db8:1::/48']}\n  internet: {allow: []}", ""},
		{"off", "enabled: false", ""},
		{"not an address", "allow: [example.com]",
			`allow[0]: must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got "example.com"`},
		{"host bits", "deny: [192.0.2.0/24, 192.0.2.7/24]",
			`deny[1]: "192.0.2.7/24" has host bits set, did you mean 192.0.2.0/24?`},
		{"prefix too long", "deny: [192.0.2.0/33]",
			`deny[0]: must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got "192.0.2.0/33"`},
		{"zone in address", "allow: ['fe80::1%eth0']",
			`allow[0]: must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got "fe80::1%eth0"`},
		{"empty entry", "allow: ['']",
			`allow[0]: must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got ""`},
		{"every problem at once", "allow: [x]\ndeny: ['2001:db8::1/32']\nzones:\n  trunk: {allow: [y], deny: [z]}\n  '': {}",
			`allow[0]: must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got "x"` + "\n" +
				`deny[0]: "2001:db8::1/32" has host bits set, did you mean 2001:db8::/32?` + "\n" +
				"zones: zone names must not be empty\n" +
				`zones.trunk.allow[0]: must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got "y"` + "\n" +
				`zones.trunk.deny[0]: must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got "z"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			if _, err := config.Decode([]byte(tt.yaml), "ucgate.yaml", &cfg); err != nil {
				t.Fatalf("decode: %v", err)
			}
			got := ""
			if err := cfg.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestValidateLineNumbers(t *testing.T) {
	doc := "allow:\n  - 192.0.2.0/24\n  - nonsense\n"
	cfg := Defaults()
	root, err := config.Decode([]byte(doc), "ucgate.yaml", &cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = config.Locate(root, "ucgate.yaml", cfg.Validate())
	want := `ucgate.yaml:3:5: allow[1]: must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got "nonsense"`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestDecodeRejectsUnknownKeys(t *testing.T) {
	cfg := Defaults()
	_, err := config.Decode([]byte("zones:\n  trunk:\n    allowed: [192.0.2.1]\n"), "ucgate.yaml", &cfg)
	if err == nil || !strings.Contains(err.Error(), "ucgate.yaml:3:1: field allowed not found") {
		t.Fatalf("err = %v, want unknown field allowed at line 3", err)
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"192.0.2.0/24", "192.0.2.0/24"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"2001:db8::7", "2001:db8::7/128"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.0/120", "192.0.2.0/24"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"::/0", "::/0"},
		{"192.0.2.7/24", ""},
		{"192.0.2.0/-1", ""},
		{"fe80::1%eth0", ""},
		{"", ""},
	}
	for _, tt := range tests {
		p, msg := parsePrefix(tt.in)
		got := ""
		if msg == "" {
			got = p.String()
		}
		if got != tt.want {
			t.Errorf("parsePrefix(%q) = %q (%s), want %q", tt.in, got, msg, tt.want)
		}
	}
}

// FuzzParsePrefix: an accepted entry is a masked prefix that parses back
// to itself and contains its own address; a refused one says why.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "192.0.2.0/24", "2001:db8::/32", "::ffff:192.0.2.0/120",
		"192.0.2.7/24", "fe80::1%eth0", "::/0", "0.0.0.0/0", "1.2.3.4/", "/24", "::ffff:0:0/95"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, msg := parsePrefix(s)
		if msg != "" {
			if p.IsValid() {
				t.Fatalf("refused %q but returned %v", s, p)
			}
			return
		}
		if !p.IsValid() || p.Masked() != p || !p.Contains(p.Addr()) {
			t.Fatalf("parsePrefix(%q) = %v: not a valid masked prefix", s, p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			t.Fatalf("parsePrefix(%q) = %v: mapped prefix not unmapped", s, p)
		}
		q, msg := parsePrefix(p.String())
		if msg != "" || q != p {
			t.Fatalf("parsePrefix(%q) = %v, which parses back as %v (%s)", s, p, q, msg)
		}
	})
}
