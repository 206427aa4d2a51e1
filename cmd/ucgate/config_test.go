package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

func TestEmbeddedDefaultIsValid(t *testing.T) {
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.SIP.Listeners) == 0 || cfg.SIP.Upstreams[0].Builtin != "echo" || cfg.SIP.RingTimeout != 120*time.Second {
		t.Fatalf("default config = %+v", cfg.SIP)
	}
	for _, l := range cfg.SIP.Listeners {
		if !strings.HasPrefix(l.Listen, "127.") && !strings.HasPrefix(l.Listen, "[::1]") {
			t.Fatalf("default listener %s is not on loopback", l.Listen)
		}
	}
}

func TestConfigErrorsHaveLines(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown key", "data_dir: /tmp/x\nsip:\n  listners: []\n",
			[]string{"t.yaml:3:1: field listners not found"}},
		{"bad values", `data_dir: /tmp/x
log:
  level: loud
sip:
  listeners:
    - {zone: internet, transport: udp, listen: 127.0.0.1:5060}
    - {zone: internet, transport: sctp, listen: "nowhere"}
  upstreams:
    - {name: pbx, address: 192.0.2.10:5060}
  routes:
    - {prefix: "00", upstreams: [carrier]}
  ring_timeout: -1s
`, []string{
			`t.yaml:3:10: log.level: must be debug, info, warn or error; got "loud"`,
			`t.yaml:7:35: sip.listeners[1].transport: must be one of udp, tcp, tls, ws, wss; got "sctp"`,
			`t.yaml:7:49: sip.listeners[1].listen: must be ip:port (IPv6 in brackets), got "nowhere"`,
			`t.yaml:11:34: sip.routes[0].upstreams[0]: no upstream named "carrier"`,
			`t.yaml:12:17: sip.ring_timeout: must be above 0, got -1s`,
		}},
		{"route needs exactly one matcher", `sip:
  listeners: [{zone: a, transport: udp, listen: 127.0.0.1:5060}]
  upstreams: [{name: u, address: 127.0.0.1:5070}]
  routes:
    - {default: true, prefix: "9", upstreams: [u]}
`, []string{"t.yaml:5:7: sip.routes[0]: needs exactly one of domain, prefix or default"}},
		{"not yaml", "sip: [\n", []string{"t.yaml"}},
		{"journal section", "sip:\n  listeners: [{zone: a, transport: udp, listen: 127.0.0.1:5060}]\njournal:\n  syslog: {address: 'x', network: carrier-pigeon}\n",
			[]string{"t.yaml:4:", "journal.syslog"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tt.yaml), "t.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestEveryStageInOrderHasAConstructor(t *testing.T) {
	for _, n := range core.StageOrder {
		if _, ok := stageConstructors[n]; !ok {
			t.Errorf("stage %q in core.StageOrder has no constructor", n)
		}
	}
	for n := range stageConstructors {
		found := false
		for _, o := range core.StageOrder {
			found = found || o == n
		}
		if !found {
			t.Errorf("constructor %q is not in core.StageOrder", n)
		}
	}
}

func TestCheckCommand(t *testing.T) {
	var out, errb strings.Builder
	if code := realMain([]string{"check"}, &out, &errb); code == 0 {
		t.Fatal("check without -c succeeded")
	}
	if code := realMain([]string{"defaults"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "listeners") {
		t.Fatalf("defaults: %d %q", code, out.String())
	}
}
