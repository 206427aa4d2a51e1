package conncap

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
		{"everything", "enabled: true\nper_source: 1\ntotal: 16777216\nhandshake_timeout: 0s\nidle_timeout: 1h\n" +
			"zones:\n  trunk: {per_source: 256}\nipv4_prefix: 24\nipv6_prefix: 128", ""},
		{"per source zero", "per_source: 0", "per_source: must be between 1 and 16777216, got 0"},
		{"total huge", "total: 16777217", "total: must be between 1 and 16777216, got 16777217"},
		{"timeouts negative", "handshake_timeout: -1s\nidle_timeout: -1ms",
			"handshake_timeout: must not be negative (0: no limit), got -1s\nidle_timeout: must not be negative (0: no limit), got -1ms"},
		{"zone", "zones:\n  trunk: {}\n  '': {per_source: 3}",
			"zones: zone names must not be empty\nzones.trunk.per_source: must be between 1 and 16777216, got 0"},
		{"prefixes", "ipv4_prefix: 0\nipv6_prefix: 129",
			"ipv4_prefix: must be between 1 and 32, got 0\nipv6_prefix: must be between 1 and 128, got 129"},
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

func TestDecodeRejectsUnknownKeys(t *testing.T) {
	cfg := Defaults()
	_, err := config.Decode([]byte("\nper_ip: 5\n"), "ucgate.yaml", &cfg)
	if err == nil || !strings.Contains(err.Error(), "ucgate.yaml:2:1: field per_ip not found") {
		t.Fatalf("err = %v, want unknown field per_ip at line 2", err)
	}
}
