package blacklist

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
		{"everything", "enabled: true\nblock_time: 1m\ngrowth: 1.5\nmax_block_time: 168h\nforget_after: 0s\n" +
			"allow_never_block: [198.51.100.0/24, '2001:db8::/32', 192.0.2.1]\nmax_entries: 10", ""},
		{"no growth", "growth: 1\nmax_block_time: 10m", ""},
		{"block time short", "block_time: 500ms", "block_time: must be at least 1s, got 500ms"},
		{"block time zero", "block_time: 0s", "block_time: must be at least 1s, got 0s"},
		{"growth below 1", "growth: 0.5", "growth: must be between 1 and 1000, got 0.5"},
		{"growth nan", "growth: .nan", "growth: must be between 1 and 1000, got NaN"},
		{"growth huge", "growth: 1001", "growth: must be between 1 and 1000, got 1001"},
		{"max below block", "block_time: 1h\nmax_block_time: 30m", "max_block_time: must be at least block_time (1h0m0s), got 30m0s"},
		{"forget negative", "forget_after: -1s", "forget_after: must not be negative, got -1s"},
		{"never bad", "allow_never_block: [192.0.2.1, trunk.example.com]",
			`allow_never_block[1]: must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got "trunk.example.com"`},
		{"never host bits", "allow_never_block: [192.0.2.1/24]",
			`allow_never_block[0]: "192.0.2.1/24" has host bits set, did you mean 192.0.2.0/24?`},
		{"max entries", "max_entries: 0", "max_entries: must be at least 1, got 0"},
		{"every problem at once", "block_time: 0s\ngrowth: 0\nmax_block_time: -1s\nforget_after: -1h\nallow_never_block: [x]\nmax_entries: -1",
			"block_time: must be at least 1s, got 0s\n" +
				"growth: must be between 1 and 1000, got 0\n" +
				"max_block_time: must be at least block_time (0s), got -1s\n" +
				"forget_after: must not be negative, got -1h0m0s\n" +
				`allow_never_block[0]: must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got "x"` + "\n" +
				"max_entries: must be at least 1, got -1"},
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

func TestDecodeErrors(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"blocktime: 1m", "ucgate.yaml:1:1: field blocktime not found"},
		{"\nblock_time: 600", "ucgate.yaml:2:1: cannot unmarshal !!int `600` into time.Duration"},
		{"block_time: ten minutes", "ucgate.yaml:1:1: cannot unmarshal !!str `ten min...` into time.Duration"},
	} {
		cfg := Defaults()
		_, err := config.Decode([]byte(tt.yaml), "ucgate.yaml", &cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%q) = %v, want %s", tt.yaml, err, tt.want)
		}
	}
}

func TestParseKey(t *testing.T) {
	tests := []struct{ in, key string }{
		{"192.0.2.7", "192.0.2.7"},
		{"192.0.2.7/32", "192.0.2.7"},
		{"192.0.2.0/24", "192.0.2.0/24"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.0/120", "192.0.2.0/24"},
		{"2001:db8::7", "2001:db8::7"},
		{"2001:DB8:0::7/128", "2001:db8::7"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"192.0.2.7/24", ""},
		{"fe80::1%eth0", ""},
		{"192.0.2.7 ", ""},
		{"", ""},
		{strings.Repeat("1", 65), ""},
	}
	for _, tt := range tests {
		_, key, msg := parseKey(tt.in)
		if key != tt.key || (key == "") != (msg != "") {
			t.Errorf("parseKey(%q) = %q, %q; want %q", tt.in, key, msg, tt.key)
		}
	}
}

// FuzzParseKey: a key parses to a canonical form that parses to itself,
// names the same prefix and is short.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "192.0.2.0/24", "2001:db8::/32", "::ffff:192.0.2.0/120", "2001:DB8::7/128",
		"192.0.2.7/24", "fe80::1%eth0", "::/0", "0.0.0.0/0", "1.2.3.4/", "/24", "192.0.2.0%2F24"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, key, msg := parseKey(s)
		if msg != "" {
			if key != "" || p.IsValid() {
				t.Fatalf("refused %q but returned %q %v", s, key, p)
			}
			return
		}
		if !p.IsValid() || p.Masked() != p || len(key) > maxKeyLen {
			t.Fatalf("parseKey(%q) = %v %q: not a masked prefix or too long", s, p, key)
		}
		p2, key2, msg2 := parseKey(key)
		if msg2 != "" || key2 != key || p2 != p {
			t.Fatalf("parseKey(%q) = %v %q, which parses back as %v %q (%s)", s, p, key, p2, key2, msg2)
		}
	})
}
