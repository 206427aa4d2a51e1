package validate

import (
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
		{"everything set", "enabled: true\nmax_size: 65536\nmax_headers: 128\nmax_header_length: 4096\nmax_hops: 32\n" +
			"require_max_forwards: [sip, my-proto2]\nzones: {trunk: {max_header_length: 8192, require_max_forwards: []}}", ""},
		{"disabled still validated", "enabled: false\nmax_hops: 0", "max_hops: must be between 1 and 1024, got 0"},
		{"size too small", "max_size: 100", "max_size: must be between 512 and 16777216, got 100"},
		{"size too large", "max_size: 16777217", "max_size: must be between 512 and 16777216, got 16777217"},
		{"headers", "max_headers: 7", "max_headers: must be between 8 and 4096, got 7"},
		{"header length", "max_header_length: 0", "max_header_length: must be between 128 and 1048576, got 0"},
		{"hops", "max_hops: 1025", "max_hops: must be between 1 and 1024, got 1025"},
		{"protocol upper case", "require_max_forwards: [SIP]",
			`require_max_forwards[0]: must be a protocol name in lower case (sip, xmpp, ...), got "SIP"`},
		{"protocol empty", "require_max_forwards: [sip, '']",
			`require_max_forwards[1]: must be a protocol name in lower case (sip, xmpp, ...), got ""`},
		{"zone limit", "zones: {trunk: {max_hops: -1}}", "zones.trunk.max_hops: must be between 1 and 1024, got -1"},
		{"a bad limit is reported once, not per zone", "max_headers: 1\nzones: {trunk: {max_hops: 4}, lab: {}}",
			"max_headers: must be between 8 and 4096, got 1"},
		{"empty zone name", "zones: {'': {max_hops: 4}}", "zones: a zone name must not be empty"},
		{"every problem at once", "max_size: 1\nmax_headers: 1\nmax_header_length: 1\nmax_hops: 0\nrequire_max_forwards: [x y]\n" +
			"zones: {b: {max_size: 2, require_max_forwards: [Z]}, a: {max_hops: 2000, max_headers: 9}}",
			"max_size: must be between 512 and 16777216, got 1\n" +
				"max_headers: must be between 8 and 4096, got 1\n" +
				"max_header_length: must be between 128 and 1048576, got 1\n" +
				"max_hops: must be between 1 and 1024, got 0\n" +
				`require_max_forwards[0]: must be a protocol name in lower case (sip, xmpp, ...), got "x y"` + "\n" +
				"zones.a.max_hops: must be between 1 and 1024, got 2000\n" +
				"zones.b.max_size: must be between 512 and 16777216, got 2\n" +
				`zones.b.require_max_forwards[0]: must be a protocol name in lower case (sip, xmpp, ...), got "Z"`},
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

// TestValidateLines checks that errors point at the offending line once
// the loader nests them under policies.validate.
func TestValidateLines(t *testing.T) {
	doc := "policies:\n  validate:\n    max_hops: 0\n    zones:\n      trunk:\n        max_size: 10\n        require_max_forwards: [sip, SIP]\n"
	var file struct {
		Policies struct {
			Validate Config `yaml:"validate"`
		} `yaml:"policies"`
	}
	file.Policies.Validate = Defaults()
	root, err := config.Decode([]byte(doc), "ucgate.yaml", &file)
	if err != nil {
		t.Fatal(err)
	}
	err = config.Locate(root, "ucgate.yaml", config.Nest("policies.validate", file.Policies.Validate.Validate()))
	want := "ucgate.yaml:3:15: policies.validate.max_hops: must be between 1 and 1024, got 0\n" +
		"ucgate.yaml:6:19: policies.validate.zones.trunk.max_size: must be between 512 and 16777216, got 10\n" +
		`ucgate.yaml:7:37: policies.validate.zones.trunk.require_max_forwards[1]: must be a protocol name in lower case (sip, xmpp, ...), got "SIP"`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestUnknownKey(t *testing.T) {
	cfg := Defaults()
	_, err := config.Decode([]byte("max_via: 3"), "ucgate.yaml", &cfg)
	if err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestDefaultsAreFresh(t *testing.T) {
	a := Defaults()
	a.RequireMaxForwards[0] = "xmpp"
	if Defaults().RequireMaxForwards[0] != "sip" {
		t.Error("Defaults shares its slice between calls")
	}
}
