package dialog

import (
	"testing"

	"github.com/ucgate/ucgate/core/config"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"defaults", "", ""},
		{"everything set", "enabled: true\ncheck_source: false\ncheck_sequence: true\nevent_interval: 1m\nmax_sources: 100\n" +
			"zones: {mobile: {check_source: false}, lab: {enabled: false, check_sequence: false}}", ""},
		{"events every time", "event_interval: 0s", ""},
		{"negative interval", "event_interval: -1s", "event_interval: must be between 0s and 1h0m0s, got -1s"},
		{"interval too long", "event_interval: 2h", "event_interval: must be between 0s and 1h0m0s, got 2h0m0s"},
		{"no sources", "max_sources: 0", "max_sources: must be between 1 and 1048576, got 0"},
		{"too many sources", "max_sources: 2000000", "max_sources: must be between 1 and 1048576, got 2000000"},
		{"empty zone name", "zones: {'': {check_source: false}}", "zones: a zone name must not be empty"},
		{"every problem at once", "event_interval: -5s\nmax_sources: -1\nzones: {'': {}}",
			"event_interval: must be between 0s and 1h0m0s, got -5s\n" +
				"max_sources: must be between 1 and 1048576, got -1\n" +
				"zones: a zone name must not be empty"},
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

func TestValidateLines(t *testing.T) {
	doc := "policies:\n  dialog:\n    check_source: true\n    max_sources: 0\n"
	var file struct {
		Policies struct {
			Dialog Config `yaml:"dialog"`
		} `yaml:"policies"`
	}
	file.Policies.Dialog = Defaults()
	root, err := config.Decode([]byte(doc), "ucgate.yaml", &file)
	if err != nil {
		t.Fatal(err)
	}
	err = config.Locate(root, "ucgate.yaml", config.Nest("policies.dialog", file.Policies.Dialog.Validate()))
	const want = "ucgate.yaml:4:18: policies.dialog.max_sources: must be between 1 and 1048576, got 0"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, doc := range []string{"event_interval: soon", "zones: {mobile: {check_source: maybe}}", "check_from: true"} {
		cfg := Defaults()
		if _, err := config.Decode([]byte(doc), "ucgate.yaml", &cfg); err == nil {
			t.Errorf("%q decoded without error", doc)
		}
	}
}
