package main

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/plugins/host"
)

func TestPluginsConfig(t *testing.T) {
	const head = "sip:\n  listeners:\n    - {zone: internet, transport: udp, listen: \"127.0.0.1:5060\"}\nplugins:\n"
	sum := strings.Repeat("ab", 32)
	cfg, err := parseConfig([]byte(head+"  - {name: irc, kind: protocol, binary: /x, sha256: "+sum+", domain: irc.example.com}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Plugins) != 1 || cfg.Plugins[0].Domain != "irc.example.com" {
		t.Fatalf("plugins %+v", cfg.Plugins)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"  - {name: irc, kind: video, binary: /x, sha256: " + sum + "}\n", `t.yaml:5:23: plugins[0].kind: must be protocol, media or stage, got "video"`},
		{"  - {name: f, kind: stage, binary: /x, sha256: 12}\n", "plugins[0].sha256: must be the 64 hex digits"},
		{"  - {name: f, kind: stage, binary: /x, sha256: " + sum + ", failure_mode: maybe}\n", `plugins[0].failure_mode: must be "closed" or "open"`},
		{"  - {name: f, kind: stage, binary: /x, sha256: " + sum + ", colour: red}\n", "colour"},
	} {
		_, err := parseConfig([]byte(head+tc.yaml), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestCmdPlugins(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/plugins" {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, []host.Status{{Name: "irc", Kind: "protocol", State: host.StateRunning, Contract: 2,
			Software: "ucgate-irc", Version: "0.1.0", Since: time.Now(), Restarts: 1, Calls: 7}})
	}))
	defer srv.Close()
	var out bytes.Buffer
	if err := cmdPlugins([]string{"-admin", strings.TrimPrefix(srv.URL, "http://")}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") ||
		!strings.Contains(lines[1], "irc") || !strings.Contains(lines[1], "v2") || !strings.Contains(lines[1], "ucgate-irc 0.1.0") || !strings.Contains(lines[1], "running") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// TestReloadWarnsOfPluginChanges: a SIGHUP reload does not restart plugins;
// a changed plugins section (or webrtc.transcoder) is said to need a
// restart, an unchanged one is not.
func TestReloadWarnsOfPluginChanges(t *testing.T) {
	const head = "sip:\n  listeners:\n    - {zone: internet, transport: udp, listen: \"127.0.0.1:5060\"}\nplugins:\n"
	sum := strings.Repeat("ab", 32)
	parse := func(args string) Config {
		t.Helper()
		cfg, err := parseConfig([]byte(head+"  - {name: f, kind: stage, binary: /x, sha256: "+sum+", args: ["+args+"]}\n"), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	var log bytes.Buffer
	gw := &gateway{cfg: parse("-a"), log: slog.New(slog.NewTextHandler(&log, nil))}
	if gw.warnPluginChanges(parse("-a")) || log.Len() != 0 {
		t.Fatalf("warned of an unchanged section: %s", log.String())
	}
	if !gw.warnPluginChanges(parse("-b")) || !strings.Contains(log.String(), "until ucgate restarts") {
		t.Fatalf("no warning for changed arguments: %q", log.String())
	}
}
