package scan

import (
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core/config"
)

func TestValidate(t *testing.T) {
	long := strings.Repeat("x", 65)
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"defaults", "", ""},
		{"everything set", "enabled: true\nagents: [friendly-scanner, sipsak, 'PortSIP VoIP SDK']\nfrom_names: [sipvicious, scanner]\n" +
			"response: drop\nwindow: 5m\nmax_targets: 100\nmax_options_targets: 0\nmax_register_users: 1000\nrefuse_for: 24h\nmax_sources: 1048576\n" +
			"zones: {internet: {response: forbidden, max_targets: 10}, trunk: {enabled: true}, office: {max_register_users: 200}}", ""},
		{"no signatures", "agents: []\nfrom_names: []", ""},
		{"signature too short", "agents: [ab]",
			`agents[0]: must be 3 to 64 printable ASCII characters with a letter or digit and no space at either end, got "ab"`},
		{"signature too long", "agents: [" + long + "]",
			`agents[0]: must be 3 to 64 printable ASCII characters with a letter or digit and no space at either end, got "` + long + `"`},
		{"signature with a space at the end", "from_names: [ok, 'scan ']",
			`from_names[0]: must be 3 to 64 printable ASCII characters with a letter or digit and no space at either end, got "ok"` + "\n" +
				`from_names[1]: must be 3 to 64 printable ASCII characters with a letter or digit and no space at either end, got "scan "`},
		{"signature of punctuation", "agents: ['---']",
			`agents[0]: must be 3 to 64 printable ASCII characters with a letter or digit and no space at either end, got "---"`},
		{"signature not ASCII", "agents: [scänner]",
			`agents[0]: must be 3 to 64 printable ASCII characters with a letter or digit and no space at either end, got "scänner"`},
		{"response", "response: tarpit", `response: must be "drop" or "forbidden", got "tarpit"`},
		{"window too short", "window: 500ms", "window: must be between 1s and 1h0m0s, got 500ms"},
		{"window too long", "window: 2h", "window: must be between 1s and 1h0m0s, got 2h0m0s"},
		{"refuse_for zero", "refuse_for: 0s", "refuse_for: must be between 1s and 24h0m0s, got 0s"},
		{"thresholds", "max_targets: -1\nmax_options_targets: 1001\nmax_register_users: 5000",
			"max_targets: must be between 0 (off) and 1000, got -1\n" +
				"max_options_targets: must be between 0 (off) and 1000, got 1001\n" +
				"max_register_users: must be between 0 (off) and 1000, got 5000"},
		{"sources", "max_sources: 0", "max_sources: must be between 1 and 1048576, got 0"},
		{"zone", "zones: {internet: {response: reject, max_targets: 2000}}",
			`zones.internet.response: must be "drop" or "forbidden", got "reject"` + "\n" +
				"zones.internet.max_targets: must be between 0 (off) and 1000, got 2000"},
		{"empty zone name", "zones: {'': {}}", "zones: a zone name must not be empty"},
		{"exempt", "exempt: [192.0.2.1, '198.51.100.0/24', '2001:db8::/32', '::ffff:192.0.2.0/120']", ""},
		{"exempt not an address", "exempt: [192.0.2.1, example.com, '192.0.2.0/33', '::ffff:0:0/95']",
			`exempt[1]: must be a CIDR prefix or an address, got "example.com"` + "\n" +
				`exempt[2]: must be a CIDR prefix or an address, got "192.0.2.0/33"` + "\n" +
				`exempt[3]: must be a CIDR prefix or an address, got "::ffff:0:0/95"`},
		{"ipv6 prefix", "ipv6_prefix: 16", "ipv6_prefix: must be between 32 and 128, got 16"},
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

func TestTooManySignatures(t *testing.T) {
	cfg := Defaults()
	cfg.Agents = make([]string, 257)
	for i := range cfg.Agents {
		cfg.Agents[i] = "agent"
	}
	if err := cfg.Validate(); err == nil || err.Error() != "agents: must have at most 256 entries, got 257" {
		t.Errorf("Validate() = %v", err)
	}
}

func TestValidateLines(t *testing.T) {
	doc := "policies:\n  scan:\n    agents:\n      - friendly-scanner\n      - x\n    zones:\n      internet:\n        response: silence\n"
	var file struct {
		Policies struct {
			Scan Config `yaml:"scan"`
		} `yaml:"policies"`
	}
	file.Policies.Scan = Defaults()
	root, err := config.Decode([]byte(doc), "ucgate.yaml", &file)
	if err != nil {
		t.Fatal(err)
	}
	err = config.Locate(root, "ucgate.yaml", config.Nest("policies.scan", file.Policies.Scan.Validate()))
	want := `ucgate.yaml:5:9: policies.scan.agents[1]: must be 3 to 64 printable ASCII characters with a letter or digit and no space at either end, got "x"` + "\n" +
		`ucgate.yaml:8:19: policies.scan.zones.internet.response: must be "drop" or "forbidden", got "silence"`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestDefaultsAreFresh(t *testing.T) {
	a := Defaults()
	a.Agents[0] = "changed"
	*a.Zones["internet"].Response = "forbidden"
	b := Defaults()
	if b.Agents[0] != "friendly-scanner" || *b.Zones["internet"].Response != "drop" || DefaultAgents[0] != "friendly-scanner" {
		t.Error("Defaults shares memory between calls")
	}
}
