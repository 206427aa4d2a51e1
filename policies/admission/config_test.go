package admission

import (
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

func TestDefaultsAreValidAndOn(t *testing.T) {
	cfg := Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if !cfg.Enabled || cfg.Source.Concurrent == 0 || cfg.User.Rate == 0 || cfg.Global.Concurrent == 0 {
		t.Errorf("defaults are not a working configuration: %+v", cfg)
	}
	// Each call to Defaults is a fresh copy: decoding onto one must not
	// change the next.
	cfg.Zones["x"] = Zone{}
	if _, ok := Defaults().Zones["x"]; ok {
		t.Error("Defaults shares its zones map")
	}
}

func TestDecodeKeepsDefaults(t *testing.T) {
	cfg := decode(t, "source: {rate: 50}\nzones: {internet: {user: {concurrent: 3}}}\ntrunks: {pbx: {concurrent: 30}}")
	if cfg.Source != (Limit{Concurrent: 20, Rate: 50, Burst: 10}) {
		t.Errorf("source: %+v", cfg.Source)
	}
	if _, ok := cfg.Zones["trunk"]; !ok {
		t.Error("zones given in the file dropped the default trunk zone")
	}
	if z := cfg.Zones["internet"]; z.User.Concurrent == nil || *z.User.Concurrent != 3 || z.User.Rate != nil || z.Source.Concurrent != nil {
		t.Errorf("zone internet: %+v", z)
	}
	if cfg.Trunks["pbx"] != (Limit{Concurrent: 30}) {
		t.Errorf("trunk: %+v", cfg.Trunks["pbx"])
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name, conf string
		want       []string // every problem, in order
	}{
		{"zero limits are off", "source: {concurrent: 0, rate: 0}\nuser: {concurrent: 0, rate: 0}\nglobal: {concurrent: 0, rate: 0}\nretry_after: 0s", nil},
		{"over", "over: drop", []string{`over: must be "unavailable" or "busy", got "drop"`}},
		{"retry_after", "retry_after: 2h", []string{"retry_after: must be from 0 to 1h, got 2h0m0s"}},
		{"negative retry_after", "retry_after: -1s", []string{"retry_after: must be from 0 to 1h, got -1s"}},
		{"every problem of a limit", "source: {concurrent: -1, rate: -2, burst: -3}", []string{
			"source.concurrent: must be from 0 (no limit) to 1073741824, got -1",
			"source.rate: must be from 0 (no limit) to 1e+06 calls per second, got -2",
			"source.burst: must be from 0 (the rate, rounded up) to 1073741824, got -3",
		}},
		{"rate too high", "global: {rate: 2e6}", []string{"global.rate: must be from 0 (no limit) to 1e+06 calls per second, got 2e+06"}},
		{"trunk", "trunks: {pbx: {concurrent: -5}}", []string{"trunks.pbx.concurrent: must be from 0 (no limit) to 1073741824, got -5"}},
		{"zone override", "zones: {internet: {user: {rate: -1}}}", []string{"zones.internet.user.rate: must be from 0 (no limit) to 1e+06 calls per second, got -1"}},
		{"ipv6_prefix", "ipv6_prefix: 16", []string{"ipv6_prefix: must be from 32 to 128, got 16"}},
		{"reserve_timeout", "reserve_timeout: 100ms", []string{"reserve_timeout: must be from 1s to 5m, got 100ms"}},
		{"max_keys", "max_keys: 10", []string{"max_keys: must be from 1024 to 16777216, got 10"}},
		{"several at once", "over: no\nmax_keys: 0", []string{
			`over: must be "unavailable" or "busy", got "no"`,
			"max_keys: must be from 1024 to 16777216, got 0",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decode(t, tt.conf).Validate()
			var got []string
			for _, e := range config.Flatten(err) {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestValidateLocatesLines(t *testing.T) {
	doc := "policies:\n  admission:\n    source:\n      rate: -1\n"
	var root struct {
		Policies struct {
			Admission Config `yaml:"admission"`
		} `yaml:"policies"`
	}
	root.Policies.Admission = Defaults()
	node, err := config.Decode([]byte(doc), "ucgate.yaml", &root)
	if err != nil {
		t.Fatal(err)
	}
	err = config.Locate(node, "ucgate.yaml", config.Nest("policies.admission", root.Policies.Admission.Validate()))
	want := "ucgate.yaml:4:13: policies.admission.source.rate: must be from 0 (no limit) to 1e+06 calls per second, got -1"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestUnknownKeysAreRejected(t *testing.T) {
	cfg := Defaults()
	if _, err := config.Decode([]byte("sources: {concurrent: 1}"), "t.yaml", &cfg); err == nil {
		t.Error("unknown key accepted")
	}
}

func TestNewLimit(t *testing.T) {
	tests := []struct {
		in   Limit
		want limit
	}{
		{Limit{}, limit{}},
		{Limit{Concurrent: 3}, limit{concurrent: 3}},
		{Limit{Rate: 5}, limit{interval: int64(200 * time.Millisecond), tolerance: int64(time.Second)}},
		{Limit{Rate: 5, Burst: 2}, limit{interval: int64(200 * time.Millisecond), tolerance: int64(400 * time.Millisecond)}},
		{Limit{Rate: 0.5}, limit{interval: int64(2 * time.Second), tolerance: int64(2 * time.Second)}},
		{Limit{Rate: 2.5}, limit{interval: int64(400 * time.Millisecond), tolerance: int64(1200 * time.Millisecond)}},
		{Limit{Burst: 4}, limit{}},
	}
	for _, tt := range tests {
		if got := newLimit(tt.in); got != tt.want {
			t.Errorf("newLimit(%+v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}
