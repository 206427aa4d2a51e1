package ratelimit

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
		{"everything", "enabled: true\nbudget: {packets: 20, packet_burst: 40, bytes: 32768, byte_burst: 65535}\n" +
			"trusted_budget: {packets: 2000.5, packet_burst: 4000, bytes: 1e7, byte_burst: 2e7}\n" +
			"trusted: [198.51.100.0/24, '2001:db8:100::/48', 192.0.2.10]\n" +
			"zones:\n  trunk: {trusted: true}\n  internet: {budget: {packets: 10}}\n" +
			"global_packets: 0\nflood_drops: 1\nflood_window: 100ms\nmax_sources: 1\nipv4_prefix: 24\nipv6_prefix: 128", ""},
		{"budget zero", "budget: {packets: 0, packet_burst: 0, bytes: 0, byte_burst: 0}",
			"budget.packets: must be above 0 and at most 1e+07, got 0\n" +
				"budget.packet_burst: must be between 1 and 1099511627776, got 0\n" +
				"budget.bytes: must be above 0 and at most 1e+11, got 0\n" +
				"budget.byte_burst: must be between 65535 (the largest datagram) and 1099511627776, got 0"},
		{"trusted byte burst small", "trusted_budget: {byte_burst: 1500}",
			"trusted_budget.byte_burst: must be between 65535 (the largest datagram) and 1099511627776, got 1500"},
		{"packets nan", "budget: {packets: .nan}", "budget.packets: must be above 0 and at most 1e+07, got NaN"},
		{"trusted bad", "trusted: [192.0.2.1, pbx.example.com, 192.0.2.1/24]",
			`trusted[1]: must be an address or a prefix like 192.0.2.0/24 or 2001:db8::/32, got "pbx.example.com"` + "\n" +
				`trusted[2]: "192.0.2.1/24" has host bits set, did you mean 192.0.2.0/24?`},
		{"zone budget partial bad", "zones:\n  internet: {budget: {packets: -1}}",
			"zones.internet.budget.packets: must be above 0 and at most 1e+07, got -1"},
		{"zone budget and trusted", "zones:\n  trunk: {trusted: true, budget: {packets: 5}}",
			"zones.trunk.budget: must not be set in a trusted zone (its sources get trusted_budget)"},
		{"zone empty name", "zones:\n  '': {trusted: true}", "zones: zone names must not be empty"},
		{"global negative", "global_packets: -1", "global_packets: must be between 0 (off) and 1e+07, got -1"},
		{"global burst zero", "global_burst: 0", "global_burst: must be between 1 and 1099511627776, got 0"},
		{"global off needs no burst", "global_packets: 0\nglobal_burst: 0", ""},
		{"flood", "flood_drops: 0\nflood_window: 10ms",
			"flood_drops: must be at least 1, got 0\nflood_window: must be at least 100ms, got 10ms"},
		{"sources", "max_sources: 0", "max_sources: must be at least 1, got 0"},
		{"prefixes", "ipv4_prefix: 33\nipv6_prefix: 0",
			"ipv4_prefix: must be between 1 and 32, got 33\nipv6_prefix: must be between 1 and 128, got 0"},
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

func TestDecodeKeepsDefaultZones(t *testing.T) {
	cfg := Defaults()
	if _, err := config.Decode([]byte("zones:\n  internet: {budget: {packets: 5}}\n"), "ucgate.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.Zones["trunk"].Trusted || cfg.Zones["internet"].Budget.Packets != 5 {
		t.Fatalf("zones = %+v", cfg.Zones)
	}
}

func TestDecodeRejectsUnknownKeys(t *testing.T) {
	cfg := Defaults()
	_, err := config.Decode([]byte("budget:\n  pps: 5\n"), "ucgate.yaml", &cfg)
	if err == nil || !strings.Contains(err.Error(), "ucgate.yaml:2:1: field pps not found") {
		t.Fatalf("err = %v, want unknown field pps at line 2", err)
	}
}

// FuzzParsePrefix: an accepted trusted entry is a masked prefix that
// parses back to itself.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "192.0.2.0/24", "2001:db8::/32", "::ffff:192.0.2.0/120", "192.0.2.7/24", "fe80::1%eth0", "::/0"} {
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
		if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() && p.Bits() >= 96 {
			t.Fatalf("parsePrefix(%q) = %v", s, p)
		}
		if q, msg := parsePrefix(p.String()); msg != "" || q != p {
			t.Fatalf("parsePrefix(%q) = %v, parses back as %v (%s)", s, p, q, msg)
		}
	})
}
