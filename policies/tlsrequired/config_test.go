package tlsrequired

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
		{"everything set", "enabled: true\nrequired: false\nzones: {internet: {required: true}, trunk: {required: false}, lan: {}}", ""},
		{"empty zone name", "zones: {'': {required: true}}", "zones: a zone name must not be empty"},
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
	for _, doc := range []string{"zones: {internet: {require: true}}", "required: sometimes", "zones: [internet]"} {
		cfg := Defaults()
		if _, err := config.Decode([]byte(doc), "ucgate.yaml", &cfg); err == nil {
			t.Errorf("%q decoded without error", doc)
		}
	}
}
