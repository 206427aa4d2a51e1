package bruteforce

import (
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core/config"
)

func TestDefaultsAreValidAndOn(t *testing.T) {
	d := Defaults()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if !d.Enabled || d.SourceFailures == 0 || d.UserFailures == 0 || d.HarvestUsers == 0 {
		t.Fatalf("defaults %+v", d)
	}
}

func decode(t *testing.T, y string) error {
	t.Helper()
	cfg := Defaults()
	root, err := config.Decode([]byte(y), "t.yaml", &cfg)
	if err != nil {
		return err
	}
	return config.Locate(root, "t.yaml", cfg.Validate())
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"days are not a Go duration", "source_lockout: 8d\n",
			[]string{"t.yaml:1:1: cannot unmarshal !!str `8d` into time.Duration"}},
		{"every problem at once", `source_failures: -1
source_window: 0s
user_failures: 1001
user_window: 25h
user_lockout: 500ms
harvest_users: 1
harvest_window: -1m
failure_delay: 31s
rules: [auth, "/x", ""]
exempt: [192.0.2.0/24, nowhere, "::ffff:0.0.0.0/8"]
ipv6_prefix: 16
max_sources: 15
max_users: 16777217
`, []string{
			`t.yaml:1:18: source_failures: must be 0 (off) or between 1 and 1000, got -1`,
			`t.yaml:2:16: source_window: must be between 1s and 24h0m0s, got 0s`,
			`t.yaml:3:16: user_failures: must be 0 (off) or between 1 and 1000, got 1001`,
			`t.yaml:4:14: user_window: must be between 1s and 24h0m0s, got 25h0m0s`,
			`t.yaml:5:15: user_lockout: must be between 1s and 168h0m0s, got 500ms`,
			`t.yaml:6:16: harvest_users: must be 0 (off) or between 2 and 1000, got 1`,
			`t.yaml:7:17: harvest_window: must be between 1s and 24h0m0s, got -1m0s`,
			`t.yaml:8:16: failure_delay: must be between 0s and 30s, got 31s`,
			`t.yaml:9:9: rules[0]: must be a rule such as "auth/failure", got "auth"`,
			`t.yaml:9:15: rules[1]: must be a rule such as "auth/failure", got "/x"`,
			`t.yaml:9:21: rules[2]: must be a rule such as "auth/failure", got ""`,
			`t.yaml:10:24: exempt[1]: must be a CIDR prefix or an address, got "nowhere"`,
			`t.yaml:10:33: exempt[2]: must be a CIDR prefix or an address, got "::ffff:0.0.0.0/8"`,
			`t.yaml:11:14: ipv6_prefix: must be between 32 and 128, got 16`,
			`t.yaml:12:14: max_sources: must be between 16 and 16777216, got 15`,
			`t.yaml:13:12: max_users: must be between 16 and 16777216, got 16777217`,
		}},
		{"no rules", "rules: []\n", []string{`t.yaml:1:8: rules: must list at least one rule`}},
		{"unknown key", "source_limit: 3\n", []string{"t.yaml:1:1: field source_limit not found"}},
		{"everything off is valid", "source_failures: 0\nuser_failures: 0\nharvest_users: 0\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decode(t, tt.yaml)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if tt.name == "every problem at once" && len(config.Flatten(err)) != len(tt.want) {
				t.Errorf("%d errors, want %d:\n%v", len(config.Flatten(err)), len(tt.want), err)
			}
		})
	}
}
