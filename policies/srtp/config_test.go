package srtp

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
		{"everything set", "enabled: true\nrequired: false\nzones: {internet: {required: true}, trunk: {required: false}, lan: {}}\n" +
			"suites: [AES_CM_128_HMAC_SHA1_80, aead_aes_256_gcm, AES_256_CM_HMAC_SHA1_32]", ""},
		{"empty zone name", "zones: {'': {required: true}}", "zones: a zone name must not be empty"},
		{"no suites", "suites: []", "suites: must name at least one suite (known: " + strings.Join(KnownSuites, ", ") + ")"},
		{"unknown and duplicate suites", "suites: [AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_81, aes_cm_128_hmac_sha1_80]",
			`suites[1]: unknown suite "AES_CM_128_HMAC_SHA1_81" (known: ` + strings.Join(KnownSuites, ", ") + ")\n" +
				`suites[2]: "aes_cm_128_hmac_sha1_80" is listed twice`},
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

func TestValidateLocatesLines(t *testing.T) {
	const doc = "zones:\n  internet:\n    required: true\nsuites:\n  - AES_CM_128_HMAC_SHA1_80\n  - AES_CM_128_SHA1_80\n"
	var file struct {
		Policies struct {
			Section Config `yaml:"srtp"`
		} `yaml:"policies"`
	}
	file.Policies.Section = Defaults()
	wrapped := "policies:\n  srtp:\n" + indent(doc, "    ")
	root, err := config.Decode([]byte(wrapped), "ucgate.yaml", &file)
	if err != nil {
		t.Fatal(err)
	}
	err = config.Locate(root, "ucgate.yaml", config.Nest("policies.srtp", file.Policies.Section.Validate()))
	if err == nil || !strings.HasPrefix(err.Error(), `ucgate.yaml:8:9: policies.srtp.suites[1]: unknown suite "AES_CM_128_SHA1_80"`) {
		t.Fatalf("err = %v, want it at line 8", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, doc := range []string{"zones: {internet: {require: true}}", "required: sometimes", "zones: [internet]", "suites: AES_CM_128_HMAC_SHA1_80: x"} {
		cfg := Defaults()
		if _, err := config.Decode([]byte(doc), "ucgate.yaml", &cfg); err == nil {
			t.Errorf("%q decoded without error", doc)
		}
	}
}

func indent(s, pre string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(pre + l)
		}
	}
	return b.String()
}
