package media

import (
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // every error, one per line; empty when valid
	}{
		{"defaults", "", ""},
		{"everything", "enabled: true\nipv4: {address: 0.0.0.0, advertise: 192.0.2.1, ports: 20000-20099}\n" +
			"ipv6: {address: '2001:db8::1', ports: 20000-20099}\ntimeout: 30s\nlatch: always\nrelatch: false\nrelatch_after: 0s\n" +
			"max_packets_per_second: 0\nmax_bitrate: 0", ""},
		{"ipv6 off", "ipv6: {address: ''}", ""},
		{"no family", "ipv4: {address: ''}\nipv6: {address: ''}", "ipv4.address and ipv6.address are both empty: no family to relay on"},
		{"wrong families", "ipv4: {address: '::1'}\nipv6: {address: 127.0.0.1}",
			"ipv4.address: must be an IPv4 address, got \"::1\"\nipv6.address: must be an IPv6 address, got \"127.0.0.1\""},
		{"unspecified without advertise", "ipv4: {address: 0.0.0.0}", "ipv4.advertise: must be set when address is unspecified (0.0.0.0)"},
		{"bad advertise", "ipv4: {advertise: '::'}", "ipv4.advertise: must be a specified IPv4 address, got \"::\""},
		{"ports", "ipv4: {ports: '40000'}\nipv6: {ports: 40001-40001}",
			"ipv4.ports: must be \"low-high\", got \"40000\"\nipv6.ports: must hold at least one even port and the next, got \"40001-40001\""},
		{"ports out of range", "ipv4: {ports: 0-70000}", "ipv4.ports: must be \"low-high\" with ports between 1 and 65535, got \"0-70000\""},
		{"timeout", "timeout: -1s", "timeout: must not be negative (0: never), got -1s"},
		{"latch", "latch: sometimes", "latch: must be \"strict\", \"nat\" or \"always\", got \"sometimes\""},
		{"relatch after", "relatch_after: 0s", "relatch_after: must be above 0 when relatch is on, got 0s"},
		{"rates", "max_packets_per_second: -1\nmax_bitrate: -2",
			"max_packets_per_second: must not be negative (0: no limit), got -1\nmax_bitrate: must not be negative (0: no limit), got -2"},
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
	_, err := config.Decode([]byte("\nlatching: nat\n"), "ucgate.yaml", &cfg)
	if err == nil || !strings.Contains(err.Error(), "ucgate.yaml:2:1: field latching not found") {
		t.Fatalf("err = %v, want unknown field latching at line 2", err)
	}
}

func TestNewDisabled(t *testing.T) {
	cfg := Defaults()
	cfg.Enabled = false
	if _, err := New(cfg, core.Deps{}); !errIs(err, ErrDisabled) {
		t.Fatalf("err %v, want ErrDisabled", err)
	}
}
