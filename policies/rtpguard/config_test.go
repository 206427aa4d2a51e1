package rtpguard

import (
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // every error, one per line; empty when valid
	}{
		{"defaults", "", ""},
		{"everything set", "enabled: true\npayload_types: lenient\nsequence_behind: 32767\nsequence_ahead: 1\n" +
			"max_timestamp_jump: 100ms\nrestart_packets: 100000\nrestart_after: 1h\n" +
			"audio_rate: {packets: 0.1, packet_burst: 1, bytes: 100, byte_burst: 65535}\n" +
			"video_rate: {packets: 1e7, packet_burst: 10000000, bytes: 1e11, byte_burst: 1000000000000}\n" +
			"zones:\n  trunk: {payload_types: lenient, video_rate: {packets: 100}}\n  lan: {enabled: false}\n  internet: {}", ""},
		{"zeros", "payload_types: ''\nsequence_behind: 0\nsequence_ahead: 0\nmax_timestamp_jump: 0s\nrestart_packets: 0\nrestart_after: 0s\n" +
			"audio_rate: {packets: 0, packet_burst: 0, bytes: 0, byte_burst: 0}",
			`payload_types: must be "strict" or "lenient", got ""` + "\n" +
				"sequence_behind: must be between 1 and 32767 packets, got 0\n" +
				"sequence_ahead: must be between 1 and 32767 packets, got 0\n" +
				"max_timestamp_jump: must be between 100ms and 10m0s, got 0s\n" +
				"restart_packets: must be between 1 and 100000, got 0\n" +
				"restart_after: must be between 100ms and 1h0m0s, got 0s\n" +
				"audio_rate.packets: must be between 0.1 and 1e+07 per second, got 0\n" +
				"audio_rate.packet_burst: must be between 1 and 10000000, got 0\n" +
				"audio_rate.bytes: must be between 100 and 1e+11 per second, got 0\n" +
				"audio_rate.byte_burst: must be between 65535 (the largest datagram) and 1000000000000, got 0"},
		{"too large", "payload_types: loose\nsequence_behind: 40000\nsequence_ahead: 65535\nmax_timestamp_jump: 1h\nrestart_packets: 1000000\nrestart_after: 2h\n" +
			"video_rate: {packets: .nan, packet_burst: -1, bytes: 1e12, byte_burst: 1500}",
			`payload_types: must be "strict" or "lenient", got "loose"` + "\n" +
				"sequence_behind: must be between 1 and 32767 packets, got 40000\n" +
				"sequence_ahead: must be between 1 and 32767 packets, got 65535\n" +
				"max_timestamp_jump: must be between 100ms and 10m0s, got 1h0m0s\n" +
				"restart_packets: must be between 1 and 100000, got 1000000\n" +
				"restart_after: must be between 100ms and 1h0m0s, got 2h0m0s\n" +
				"video_rate.packets: must be between 0.1 and 1e+07 per second, got NaN\n" +
				"video_rate.packet_burst: must be between 1 and 10000000, got -1\n" +
				"video_rate.bytes: must be between 100 and 1e+11 per second, got 1e+12\n" +
				"video_rate.byte_burst: must be between 65535 (the largest datagram) and 1000000000000, got 1500"},
		{"zone overrides", "zones:\n  trunk: {payload_types: any, sequence_ahead: -5, audio_rate: {byte_burst: 10}}\n  '': {}",
			"zones: a zone name must not be empty\n" +
				`zones.trunk.payload_types: must be "strict" or "lenient", got "any"` + "\n" +
				"zones.trunk.sequence_ahead: must be between 1 and 32767 packets, got -5\n" +
				"zones.trunk.audio_rate.byte_burst: must be between 65535 (the largest datagram) and 1000000000000, got 10"},
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

func TestZoneMerge(t *testing.T) {
	cfg := Defaults()
	doc := "restart_after: 5s\nzones:\n  trunk: {payload_types: lenient, audio_rate: {packets: 50}}\n"
	if _, err := config.Decode([]byte(doc), "ucgate.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	got := cfg.Zones["trunk"].Limits.merge(cfg.Limits)
	want := cfg.Limits
	want.PayloadTypes = PayloadLenient
	want.AudioRate.Packets = 50
	if got != want {
		t.Fatalf("merged =\n%+v\nwant\n%+v", got, want)
	}
	if got.RestartAfter != 5*time.Second {
		t.Fatalf("restart_after = %v, want the section's 5s", got.RestartAfter)
	}
}

func TestValidateLocatesLines(t *testing.T) {
	doc := "policies:\n  rtpguard:\n    sequence_ahead: 3000\n    zones:\n      trunk:\n        restart_after: 5ms\n"
	var file struct {
		Policies struct {
			Section Config `yaml:"rtpguard"`
		} `yaml:"policies"`
	}
	file.Policies.Section = Defaults()
	root, err := config.Decode([]byte(doc), "ucgate.yaml", &file)
	if err != nil {
		t.Fatal(err)
	}
	err = config.Locate(root, "ucgate.yaml", config.Nest("policies.rtpguard", file.Policies.Section.Validate()))
	if err == nil || err.Error() != "ucgate.yaml:6:24: policies.rtpguard.zones.trunk.restart_after: must be between 100ms and 1h0m0s, got 5ms" {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, doc := range []string{"sequence_window: 5", "zones: {trunk: {required: true}}", "restart_after: soon",
		"audio_rate: {pps: 5}", "zones: [trunk]"} {
		cfg := Defaults()
		_, err := config.Decode([]byte(doc), "ucgate.yaml", &cfg)
		if err == nil {
			t.Errorf("%q decoded without error", doc)
		} else if !strings.Contains(err.Error(), "ucgate.yaml:1:") {
			t.Errorf("%q: %v, want line 1", doc, err)
		}
	}
}
