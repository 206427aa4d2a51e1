package auth

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
	if !d.Enabled || len(d.Require) == 0 || d.FailureDelay <= 0 || d.Zones["trunk"].Enabled == nil || *d.Zones["trunk"].Enabled {
		t.Fatalf("defaults %+v", d)
	}
}

// decode reads a policies.auth section over the defaults, as the loader
// does, and validates it with line numbers.
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
	md5 := HA1("MD5", "alice", "ucgate", "x")
	sha := HA1("SHA-256", "alice", "ucgate", "x")
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"every problem at once", `realm: ""
require: [register, bye]
protocols: []
trusted: [192.0.2.0/33, example.com]
algorithms: [SHA-256, md5, SHA-512-256, SHA-256]
match_identity: [invite, everything]
nonce_ttl: 1s
max_nonces: 10
failure_delay: 1m
`, []string{
			`t.yaml:1:8: realm: must not be empty`,
			`t.yaml:2:21: require[1]: must be one of register, invite, message, subscribe, publish, notify, refer, options; got "bye"`,
			`t.yaml:3:12: protocols: must name at least one protocol`,
			`t.yaml:4:11: trusted[0]: must be a CIDR prefix or an address, got "192.0.2.0/33"`,
			`t.yaml:4:25: trusted[1]: must be a CIDR prefix or an address, got "example.com"`,
			`t.yaml:5:23: algorithms[1]: must be spelled "MD5"`,
			`t.yaml:5:28: algorithms[2]: must be one of SHA-256, MD5, SHA-256-sess, MD5-sess; got "SHA-512-256"`,
			`t.yaml:5:41: algorithms[3]: SHA-256 is listed twice`,
			`t.yaml:6:26: match_identity[1]: must be one of`,
			`t.yaml:7:12: nonce_ttl: must be between 10s and 24h, got 1s`,
			`t.yaml:8:13: max_nonces: must be between 1024 and 16777216, got 10`,
			`t.yaml:9:16: failure_delay: must be between 0s and 30s, got 1m0s`,
		}},
		{"a password instead of a hash", "users:\n  - {name: alice, ha1: {MD5: secret, SHA-256: " + sha + "}}\n",
			[]string{`t.yaml:2:30: users[0].ha1.MD5: must be 32 hex digits (the MD5 of name:realm:password), not a password`}},
		{"a hash missing", "users:\n  - {name: alice, ha1: {MD5: " + md5 + "}}\n",
			[]string{`t.yaml:2:24: users[0].ha1: needs the SHA-256 HA1: algorithms offers SHA-256`}},
		{"a hash missing is fine when not offered", "algorithms: [MD5]\nusers:\n  - {name: alice, ha1: {MD5: " + md5 + "}}\n", nil},
		{"bad users", "users:\n  - {name: 'a:b', realm: 'x\"', ha1: {MD5: " + md5 + ", SHA-256: " + sha + ", SHA-1: ab}}\n  - {name: '', ha1: {}}\n  - {name: dup, ha1: {MD5: " + md5 + ", SHA-256: " + sha + "}}\n  - {name: dup, ha1: {MD5: " + md5 + ", SHA-256: " + sha + "}}\n",
			[]string{
				`t.yaml:2:12: users[0].name: must not contain '"', ':' or '\'; got "a:b"`,
				`t.yaml:2:26: users[0].realm: must be at most 128 bytes with no '"', '\' or control characters; got "x\""`,
				`users[0].ha1.SHA-1: must be MD5 or SHA-256`,
				`t.yaml:3:12: users[1].name: must not be empty`,
				`t.yaml:3:21: users[1].ha1: needs the SHA-256 HA1: algorithms offers SHA-256`,
				`t.yaml:5:12: users[3].name: user "dup" is defined twice`,
			}},
		{"bad zone", "zones:\n  internet: {realm: 'a\\\\b', require: [nothing], trusted: [300.1.1.1]}\n",
			[]string{
				`t.yaml:2:21: zones.internet.realm: must be at most 128 bytes`,
				`t.yaml:2:39: zones.internet.require[0]: must be one of`,
				`t.yaml:2:59: zones.internet.trusted[0]: must be a CIDR prefix or an address, got "300.1.1.1"`,
			}},
		{"unknown key", "realms: [a]\n", []string{"t.yaml:1:1: field realms not found"}},
		{"a complete valid section", `enabled: true
realm: example.com
require: [register, invite, message, subscribe, publish, notify, refer, options]
protocols: [sip]
trusted: [192.0.2.0/24, "2001:db8::/32", 198.51.100.7, "::ffff:192.0.2.0/120"]
proxy: false
algorithms: [SHA-256, MD5, SHA-256-sess, MD5-sess]
match_identity: [register, invite]
nonce_ttl: 10m
nonce_key_file: /var/lib/ucgate/nonce.key
max_nonces: 100000
failure_delay: 0s
users:
  - {name: alice, realm: ucgate, disabled: true, ha1: {MD5: ` + md5 + `, SHA-256: ` + sha + `}}
zones:
  trunk: {enabled: false}
  office: {realm: office.example.com, require: [], trusted: [], proxy: true}
`, nil},
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
			got := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("error lacks %q:\n%s", w, got)
				}
			}
			if n := len(config.Flatten(err)); tt.name == "every problem at once" && n != len(tt.want) {
				t.Errorf("%d errors, want %d:\n%s", n, len(tt.want), got)
			}
		})
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7/32",
		"192.0.2.77/24":        "192.0.2.0/24",
		"2001:db8::1/32":       "2001:db8::/32",
		"::ffff:192.0.2.0/120": "192.0.2.0/24",
		"::ffff:192.0.2.9":     "192.0.2.9/32",
	} {
		p, err := parsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("parsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"::ffff:0.0.0.0/64", "192.0.2.0/", "", "10.0.0.0/8/8"} {
		if _, err := parsePrefix(in); err == nil {
			t.Errorf("parsePrefix(%q) accepted", in)
		}
	}
}

func TestCheckUserAndRealm(t *testing.T) {
	for _, ok := range []string{"alice", "1001", "alice@example.com", "Ünïcode", strings.Repeat("a", 128)} {
		if err := CheckUser(ok); err != nil {
			t.Errorf("CheckUser(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a:b", `a"b`, `a\b`, "a\nb", "a\x7f", strings.Repeat("a", 129)} {
		if CheckUser(bad) == nil {
			t.Errorf("CheckUser(%q) accepted", bad)
		}
	}
	if err := CheckRealm("sip:example.com"); err != nil {
		t.Errorf("CheckRealm with a colon: %v", err)
	}
	for _, bad := range []string{"", `a"b`, `a\b`, "a\tb", strings.Repeat("r", 129)} {
		if CheckRealm(bad) == nil {
			t.Errorf("CheckRealm(%q) accepted", bad)
		}
	}
}
