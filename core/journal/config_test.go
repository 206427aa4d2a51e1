package journal

import (
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", 49)
	tests := []struct {
		name string
		yaml string
		want string // every error, one per line; empty when valid
	}{
		{"defaults", "", ""},
		{"everything on", "sqlite: {path: /var/lib/ucgate/j.db, synchronous: full}\njsonl: {path: journal.jsonl}\n" +
			"syslog: {address: '[2001:db8::1]:6514', network: tcp, facility: daemon, app_name: gw-1}\nqueue: 1", ""},
		{"sqlite off needs no path", "sqlite: {enabled: false, path: ''}", ""},
		{"sqlite path empty", "sqlite: {path: ''}", "sqlite.path: must not be empty when the sink is enabled"},
		{"synchronous off", "sqlite: {synchronous: 'off'}", `sqlite.synchronous: must be "normal" or "full", got "off"`},
		{"synchronous upper case", "sqlite: {synchronous: FULL}", `sqlite.synchronous: must be "normal" or "full", got "FULL"`},
		{"queue zero", "queue: 0", "queue: must be between 1 and 16777216, got 0"},
		{"retention five years", "retention: 43830h", ""},
		{"retention 0s keeps everything", "retention: 0s", ""},
		{"retention one hour", "retention: 1h", ""},
		{"retention too short", "retention: 59m", "retention: must be 0s (keep everything) or at least 1h0m0s, got 59m0s"},
		{"retention negative", "retention: -1h", "retention: must be 0s (keep everything) or at least 1h0m0s, got -1h0m0s"},
		{"queue huge", "queue: 16777217", "queue: must be between 1 and 16777216, got 16777217"},
		{"address without port", "syslog: {address: logs.example.com}", `syslog.address: must be host:port, got "logs.example.com"`},
		{"address without host", "syslog: {address: ':514'}", `syslog.address: must be host:port, got ":514"`},
		{"address port zero", "syslog: {address: 'logs.example.com:0'}", `syslog.address: must be host:port, got "logs.example.com:0"`},
		{"address named port", "syslog: {address: 'logs.example.com:syslog'}", `syslog.address: must be host:port, got "logs.example.com:syslog"`},
		{"network unix", "syslog: {network: unix}", `syslog.network: must be "udp" or "tcp", got "unix"`},
		{"facility local8", "syslog: {facility: local8}", `syslog.facility: must be a syslog facility (user, daemon, local0 to local7, ...), got "local8"`},
		{"app name empty", "syslog: {app_name: ''}", `syslog.app_name: must be 1 to 48 printable ASCII characters without spaces, got ""`},
		{"app name space", "syslog: {app_name: 'uc gate'}", `syslog.app_name: must be 1 to 48 printable ASCII characters without spaces, got "uc gate"`},
		{"app name long", "syslog: {app_name: " + long + "}", `syslog.app_name: must be 1 to 48 printable ASCII characters without spaces, got "` + long + `"`},
		{"every problem at once", "sqlite: {path: '', synchronous: extra}\nsyslog: {address: x, network: sctp, facility: '', app_name: ''}\nqueue: -1\nretention: 1s",
			"sqlite.path: must not be empty when the sink is enabled\n" +
				`sqlite.synchronous: must be "normal" or "full", got "extra"` + "\n" +
				`syslog.address: must be host:port, got "x"` + "\n" +
				`syslog.network: must be "udp" or "tcp", got "sctp"` + "\n" +
				`syslog.facility: must be a syslog facility (user, daemon, local0 to local7, ...), got ""` + "\n" +
				`syslog.app_name: must be 1 to 48 printable ASCII characters without spaces, got ""` + "\n" +
				"queue: must be between 1 and 16777216, got -1\n" +
				"retention: must be 0s (keep everything) or at least 1h0m0s, got 1s"},
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

func TestDecodeRejectsUnknownKeys(t *testing.T) {
	cfg := Defaults()
	_, err := config.Decode([]byte("syslog:\n  appname: x\n"), "ucgate.yaml", &cfg)
	if err == nil || !strings.Contains(err.Error(), "ucgate.yaml:2:1: field appname not found") {
		t.Fatalf("err = %v, want unknown field appname at line 2", err)
	}
}

func TestDefaultRetention(t *testing.T) {
	if got := Defaults().Retention; got != 90*24*time.Hour {
		t.Fatalf("default retention %v, want 90 days", got)
	}
}
