package triggers

import (
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core/config"
)

func TestDefaults(t *testing.T) {
	cfg := Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if !cfg.Enabled || len(cfg.List) != 0 {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestValidate(t *testing.T) {
	const hook = "    webhook: {url: \"https://hooks.example.com/ucgate\"}\n"
	tests := []struct {
		name, conf string
		want       []string
	}{
		{"webhook", "list:\n  - name: notify\n    match: [\"scan/*\", \"auth/failure\"]\n    zones: [internet]\n" + hook +
			"    rate: {events: 10, per: 1m}\n", nil},
		{"blacklist", "list:\n  - name: ban\n    match: [\"scan/*\"]\n    blacklist: {duration: 1h}\n", nil},
		{"every webhook key", "list:\n  - name: notify\n    match: [\"*\"]\n    webhook:\n      url: http://192.0.2.1:8080/x?y=1\n" +
			"      timeout: 2s\n      headers: {Authorization: Bearer x, X-Tag: \"a\\tb\"}\n      retries: 0\n      queue: 10\n      workers: 3\n", nil},
		{"no name", "list:\n  - match: [\"*\"]\n" + hook, []string{"list[0].name: must be set"}},
		{"bad name", "list:\n  - name: Notify Me\n    match: [\"*\"]\n" + hook,
			[]string{`list[0].name: must be 1 to 64 lower-case letters, digits, - or _, got "Notify Me"`}},
		{"duplicate name", "list:\n  - name: a\n    match: [\"*\"]\n" + hook + "  - name: a\n    match: [\"*\"]\n" + hook,
			[]string{`list[1].name: "a" is used twice`}},
		{"no match", "list:\n  - name: a\n" + hook, []string{"list[0].match: at least one rule pattern is needed"}},
		{"bad pattern", "list:\n  - name: a\n    match: [\"scan agent\", \"\"]\n" + hook, []string{
			`list[0].match[0]: must be printable ASCII without spaces, got "scan agent"`,
			`list[0].match[1]: must be 1 to 128 bytes, got ""`,
		}},
		{"empty zone", "list:\n  - name: a\n    match: [\"*\"]\n    zones: [\"\"]\n" + hook, []string{"list[0].zones[0]: must name a zone"}},
		{"no action", "list:\n  - name: a\n    match: [\"*\"]\n", []string{"list[0]: needs an action: webhook or blacklist"}},
		{"two actions", "list:\n  - name: a\n    match: [\"*\"]\n    blacklist: {}\n" + hook,
			[]string{"list[0]: has two actions: keep webhook or blacklist"}},
		{"blacklist on its own events", "list:\n  - name: a\n    match: [\"triggers/*\"]\n    blacklist: {}\n",
			[]string{`list[0].match[0]: a blacklist action cannot match the triggers' own events, got "triggers/*"`}},
		{"blacklist duration", "list:\n  - name: a\n    match: [\"*\"]\n    blacklist: {duration: -1s}\n",
			[]string{"list[0].blacklist.duration: must be from 0 (the blacklist's block time) to 100 years, got -1s"}},
		{"rate", "list:\n  - name: a\n    match: [\"*\"]\n" + hook + "    rate: {events: -1, per: 10ms}\n", []string{
			"list[0].rate.events: must be from 0 (no limit) to 1000000, got -1",
			"list[0].rate.per: must be from 1s to 24h, got 10ms",
		}},
		{"url scheme", "list:\n  - name: a\n    match: [\"*\"]\n    webhook: {url: \"file:///etc/passwd\"}\n",
			[]string{`list[0].webhook.url: must be an http or https URL, got scheme "file"`}},
		{"url missing", "list:\n  - name: a\n    match: [\"*\"]\n    webhook: {timeout: 1s}\n", []string{"list[0].webhook.url: must be set"}},
		{"url without host", "list:\n  - name: a\n    match: [\"*\"]\n    webhook: {url: \"https:///x\"}\n", []string{"list[0].webhook.url: must name a host"}},
		{"url credentials", "list:\n  - name: a\n    match: [\"*\"]\n    webhook: {url: \"https://u:p@hooks.example.com/\"}\n",
			[]string{"list[0].webhook.url: must not carry credentials: put them in headers"}},
		{"url not a url", "list:\n  - name: a\n    match: [\"*\"]\n    webhook: {url: \"http://[::1\"}\n", []string{"list[0].webhook.url: is not a URL"}},
		{"url fragment", "list:\n  - name: a\n    match: [\"*\"]\n    webhook: {url: \"https://hooks.example.com/#x\"}\n",
			[]string{"list[0].webhook.url: must not have a fragment"}},
		{"webhook numbers", "list:\n  - name: a\n    match: [\"*\"]\n    webhook:\n      url: https://hooks.example.com/\n" +
			"      timeout: 2m\n      retries: 11\n      queue: -1\n      workers: 65\n", []string{
			"list[0].webhook.timeout: must be from 1ms to 1m, got 2m0s",
			"list[0].webhook.retries: must be from 0 to 10, got 11",
			"list[0].webhook.queue: must be from 1 to 65536, got -1",
			"list[0].webhook.workers: must be from 1 to 64, got 65",
		}},
		{"headers", "list:\n  - name: a\n    match: [\"*\"]\n    webhook:\n      url: https://hooks.example.com/\n" +
			"      headers: {\"Bad Name\": x, Content-Type: text/plain, X-Split: \"a\\r\\nInjected: 1\", X-Pad: \" x\"}\n", []string{
			`list[0].webhook.headers: "Bad Name" is not a header field name`,
			"list[0].webhook.headers.Content-Type: is set by the gateway",
			"list[0].webhook.headers.X-Pad: must be at most 4096 bytes without control characters",
			"list[0].webhook.headers.X-Split: must be at most 4096 bytes without control characters",
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

func TestTooManyTriggers(t *testing.T) {
	var b strings.Builder
	b.WriteString("list:\n")
	for i := range maxTriggers + 1 {
		b.WriteString("  - {name: t" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + string(rune('a'+i/26)) +
			", match: [\"*\"], webhook: {url: \"https://hooks.example.com/\"}}\n")
	}
	err := decode(t, b.String()).Validate()
	if err == nil || !strings.Contains(err.Error(), "list: at most 64 triggers, got 65") {
		t.Errorf("got %v", err)
	}
}

func TestValidateLocatesLines(t *testing.T) {
	doc := "policies:\n  triggers:\n    list:\n      - name: notify\n        match: [\"*\"]\n        webhook:\n          url: ftp://hooks.example.com/\n"
	var root struct {
		Policies struct {
			Triggers Config `yaml:"triggers"`
		} `yaml:"policies"`
	}
	root.Policies.Triggers = Defaults()
	node, err := config.Decode([]byte(doc), "ucgate.yaml", &root)
	if err != nil {
		t.Fatal(err)
	}
	err = config.Locate(node, "ucgate.yaml", config.Nest("policies.triggers", root.Policies.Triggers.Validate()))
	want := `ucgate.yaml:7:16: policies.triggers.list[0].webhook.url: must be an http or https URL, got scheme "ftp"`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestUnknownKeysAreRejected(t *testing.T) {
	cfg := Defaults()
	if _, err := config.Decode([]byte("list:\n  - name: a\n    matches: [\"*\"]\n"), "t.yaml", &cfg); err == nil {
		t.Error("unknown key accepted")
	}
}
