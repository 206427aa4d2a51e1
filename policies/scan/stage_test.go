package scan

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// TestAgents checks the signatures, one request each from a fresh source:
// verdict, rule and whether the source was blocked.
func TestAgents(t *testing.T) {
	const ip = "203.0.113.50:5060"
	svmap := options(ip, "sip:100@192.0.2.10", "friendly-scanner")
	svmap.From = core.Identity{Display: "sipvicious", User: "100", Domain: "1.1.1.1"}
	tests := []struct {
		name   string
		config string
		ev     *core.Event
		action core.Action
		rule   string
		detail string
	}{
		{"svmap", "", svmap, core.Drop, RuleAgent, "Scanner User-Agent"},
		{"svmap -c (no User-Agent): its From name", "", with(options(ip, "sip:100@192.0.2.10", ""), func(ev *core.Event) {
			ev.From = core.Identity{Display: "sipvicious", User: "100", Domain: "1.1.1.1"}
		}), core.Drop, RuleAgent, "Scanner From"},
		{"From user", "", with(registerReq(ip, "sipvicious", ""), func(ev *core.Event) {}), core.Drop, RuleAgent, "Scanner From"},
		{"svwar REGISTER", "", registerReq(ip, "1000", "friendly-scanner"), core.Drop, RuleAgent, "Scanner User-Agent"},
		{"svcrack in a dialog-less BYE", "", with(inDialog(ip, "BYE", "friendly-scanner"), func(ev *core.Event) { ev.InDialog = false }),
			core.Drop, RuleAgent, "Scanner User-Agent"},
		{"in-dialog request with a scanner's agent", "", inDialog(ip, "BYE", "friendly-scanner"), core.Drop, RuleAgent, "Scanner User-Agent"},
		{"sipcli", "", invite(ip, "100", "sip:0046812345@192.0.2.10", "sipcli/v1.8"), core.Drop, RuleAgent, "Scanner User-Agent"},
		{"SIPPTS", "", options(ip, "sip:100@192.0.2.10", "pplsip"), core.Drop, RuleAgent, "Scanner User-Agent"},
		{"VaxSIPUserAgent, any case", "", registerReq(ip, "100", "VaxSIPUserAgent/3.1"), core.Drop, RuleAgent, "Scanner User-Agent"},
		{"sundayddr", "", options(ip, "sip:100@192.0.2.10", "sundayddr"), core.Drop, RuleAgent, "Scanner User-Agent"},
		{"sip-scan in a longer agent", "", options(ip, "sip:100@192.0.2.10", "Mozilla/4.0 (sip-scan 1.1)"), core.Drop, RuleAgent, "Scanner User-Agent"},
		{"iWar", "", invite(ip, "100", "sip:1@192.0.2.10", "iWar"), core.Drop, RuleAgent, "Scanner User-Agent"},
		{"SiVuS", "", options(ip, "sip:100@192.0.2.10", "SIVuS"), core.Drop, RuleAgent, "Scanner User-Agent"},
		{"refused with 403 outside the internet zone", "", with(registerReq(ip, "1000", "friendly-scanner"), func(ev *core.Event) { ev.Src.Zone = "office" }),
			core.Refuse, RuleAgent, "Scanner User-Agent"},
		{"zoneless source refused with 403", "", with(registerReq(ip, "1000", "friendly-scanner"), func(ev *core.Event) { ev.Src.Zone = "" }),
			core.Refuse, RuleAgent, "Scanner User-Agent"},
		{"not on the trunk zone", "", with(registerReq(ip, "1000", "friendly-scanner"), func(ev *core.Event) { ev.Src.Zone = "trunk" }),
			core.Allow, "", ""},
		{"internet zone set to forbidden", "zones: {internet: {response: forbidden}}", registerReq(ip, "1000", "friendly-scanner"),
			core.Refuse, RuleAgent, "Scanner User-Agent"},
		{"tuning the internet zone keeps its silence", "zones: {internet: {max_targets: 100}}", registerReq(ip, "1000", "friendly-scanner"),
			core.Drop, RuleAgent, "Scanner User-Agent"},
		{"the section's response leaves the internet zone's", "response: forbidden", registerReq(ip, "1000", "friendly-scanner"),
			core.Drop, RuleAgent, "Scanner User-Agent"},
		{"section-wide drop", "response: drop", with(registerReq(ip, "1000", "friendly-scanner"), func(ev *core.Event) { ev.Src.Zone = "office" }),
			core.Drop, RuleAgent, "Scanner User-Agent"},
		{"trunk zone turned on", "zones: {trunk: {enabled: true}}", with(registerReq(ip, "1000", "friendly-scanner"), func(ev *core.Event) { ev.Src.Zone = "trunk" }),
			core.Refuse, RuleAgent, "Scanner User-Agent"},
		{"disabled", "enabled: false", registerReq(ip, "1000", "friendly-scanner"), core.Allow, "", ""},
		{"disabled but for one zone", "enabled: false\nzones: {internet: {enabled: true}}", registerReq(ip, "1000", "friendly-scanner"),
			core.Drop, RuleAgent, "Scanner User-Agent"},
		{"response from a scanner's address passes", "", with(options(ip, "sip:100@192.0.2.10", "friendly-scanner"), func(ev *core.Event) {
			ev.Kind, ev.Method = core.KindResponse, "200"
		}), core.Allow, "", ""},

		// What must not match.
		{"Yealink", "", registerReq(ip, "1001", "Yealink SIP-T46S 66.86.0.15"), core.Allow, "", ""},
		{"baresip", "", registerReq(ip, "1001", "baresip v1.0.0 (x86_64/linux)"), core.Allow, "", ""},
		{"Zoiper", "", registerReq(ip, "1001", "Z 5.6.1 v2.10.20.2"), core.Allow, "", ""},
		{"sipp", "", invite(ip, "sipp", "sip:service@192.0.2.10", "sipp-e2e"), core.Allow, "", ""},
		{"sipsak monitoring is not a scan by default", "", options(ip, "sip:192.0.2.10", "sipsak 0.9.8.1"), core.Allow, "", ""},
		{"sipsak where the operator lists it", "agents: [friendly-scanner, sipsak]", options(ip, "sip:192.0.2.10", "sipsak 0.9.8.1"),
			core.Drop, RuleAgent, "Scanner User-Agent"},
		{"PortSIP SDK is a real softphone's too", "", invite(ip, "1001", "sip:2001@192.0.2.10", "PortSIP VoIP SDK 11.2"), core.Allow, "", ""},
		{"PortSIP where the operator lists it", "agents: ['PortSIP VoIP SDK']", invite(ip, "1001", "sip:2001@192.0.2.10", "PortSIP VoIP SDK 11.2"),
			core.Drop, RuleAgent, "Scanner User-Agent"},
		{"a signature inside a word does not match", "", registerReq(ip, "1001", "Kiwari Phone 2.0"), core.Allow, "", ""},
		{"a display name containing a signature's letters", "", with(registerReq(ip, "1001", "Linphone/5.2"), func(ev *core.Event) {
			ev.From.Display = "Sipviciousness Fan Club"
		}), core.Allow, "", ""},
		{"no signatures at all", "agents: []\nfrom_names: []", svmap, core.Allow, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.config)
			v, err := e.s.Decide(context.Background(), tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != tt.action || v.Rule != tt.rule || v.Detail != tt.detail {
				t.Fatalf("verdict = %v %q %q, want %v %q %q", v.Action, v.Rule, v.Detail, tt.action, tt.rule, tt.detail)
			}
			if v.Action != core.Allow && v.Reason != core.ReasonForbidden {
				t.Errorf("reason = %v, want forbidden", v.Reason)
			}
			blocks := e.blocker.list()
			if want := v.Action != core.Allow; (len(blocks) == 1) != want || len(blocks) > 1 {
				t.Errorf("blocks = %q, want one: %v", blocks, want)
			}
		})
	}
}

// TestDetectionOnce checks what a detection does: one block, one security
// event, and the source's next requests refused for refuse_for without
// further blocks or events, whatever they carry.
func TestDetectionOnce(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	const ip = "203.0.113.50:5062"
	scanner := with(options(ip, "sip:100@192.0.2.10", "friendly-scanner"), func(ev *core.Event) {
		ev.From = core.Identity{Display: "sipvicious", User: "100\r\nX-Injected: 1", Domain: "1.1.1.1"}
	})
	if v, _ := e.s.Decide(ctx, scanner); v.Action != core.Drop {
		t.Fatalf("first request: %+v", v)
	}
	for i := range 50 {
		e.clk.advance(10 * time.Second) // 500 s in all: within refuse_for
		ev := []*core.Event{scanner, registerReq(ip, "1001", "Yealink SIP-T46S"), inDialog(ip, "BYE", "")}[i%3]
		if v, _ := e.s.Decide(ctx, ev); v.Action != core.Drop || v.Rule != RuleAgent {
			t.Fatalf("request %d from the detected source: %+v", i, v)
		}
	}
	e.clk.advance(15*time.Minute - 500*time.Second) // refuse_for has passed
	if v, _ := e.s.Decide(ctx, registerReq(ip, "1001", "Yealink SIP-T46S")); v.Action != core.Allow {
		t.Errorf("after refuse_for: %+v", v)
	}
	if v, _ := e.s.Decide(ctx, scanner); v.Action != core.Drop {
		t.Errorf("scanner back after refuse_for: %+v", v)
	}

	if got, want := e.blocker.list(), []string{
		`203.0.113.50 scan/agent User-Agent matches "friendly-scanner"`,
		`203.0.113.50 scan/agent User-Agent matches "friendly-scanner"`,
	}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("blocks:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	evs := e.events()
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	want := []core.SecurityEvent{
		{Time: t0, Rule: RuleAgent, Action: "block", Src: ip, Zone: "internet", User: "100X-Injected: 1", Protocol: "sip",
			Detail: `User-Agent matches "friendly-scanner"`},
		{Time: t0.Add(15 * time.Minute), Rule: RuleAgent, Action: "block", Src: ip, Zone: "internet", User: "100X-Injected: 1", Protocol: "sip",
			Detail: `User-Agent matches "friendly-scanner"`},
	}
	if len(evs) != len(want) {
		t.Fatalf("events: %+v", evs)
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d =\n%+v\nwant\n%+v", i, evs[i], want[i])
		}
	}
	if n := e.metric(t, "ucgate_scan_detections_total", "user_agent"); n != 2 {
		t.Errorf("detections{user_agent} = %v, want 2", n)
	}
	if n := e.metric(t, "ucgate_scan_refused_total", RuleAgent); n != 52 {
		t.Errorf("refused{agent} = %v, want 52", n)
	}
}

// TestNoBlocker checks that without a blacklist the stage still refuses,
// and says so in its event.
func TestNoBlocker(t *testing.T) {
	alerts, rec := core.NewAlerts(16), &recorder{}
	alerts.Subscribe(rec)
	s, _ := newStage(t, "", core.Deps{Alerts: alerts})
	v, _ := s.Decide(context.Background(), registerReq("203.0.113.50:5060", "1000", "friendly-scanner"))
	if v.Action != core.Drop {
		t.Fatalf("verdict %+v", v)
	}
	v, _ = s.Decide(context.Background(), with(registerReq("203.0.113.51:5060", "1000", "friendly-scanner"), func(ev *core.Event) { ev.Src.Zone = "office" }))
	if v.Action != core.Refuse {
		t.Fatalf("verdict %+v", v)
	}
	alerts.Close()
	if len(rec.events) != 2 || rec.events[0].Action != "drop" || rec.events[1].Action != "refuse" {
		t.Errorf("events %+v, want actions drop and refuse", rec.events)
	}
}

// TestNoAddress checks a request without a source address (a plugin's
// protocol that has none): judged on its own, never remembered or blocked.
func TestNoAddress(t *testing.T) {
	e := newEnv(t, "")
	ev := registerReq("203.0.113.50:5060", "1000", "friendly-scanner")
	ev.Src.Addr = netip.AddrPort{}
	if v, _ := e.s.Decide(context.Background(), ev); v.Action != core.Drop || v.Rule != RuleAgent {
		t.Errorf("verdict %+v", v)
	}
	ev.Agent = "Yealink"
	for i := range 200 {
		ev.To.User = fmt.Sprint(1000 + i)
		if v, _ := e.s.Decide(context.Background(), ev); v.Action != core.Allow {
			t.Fatalf("request %d: %+v", i, v)
		}
	}
	if len(e.blocker.list()) != 0 || e.s.table.size() != 0 {
		t.Errorf("blocks %q, table %d: want none", e.blocker.list(), e.s.table.size())
	}
	if evs := e.events(); len(evs) != 1 || evs[0].Src != "" || evs[0].Action != "drop" {
		t.Errorf("events %+v", evs)
	}
}

func TestStageContract(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, _ := newStage(t, "", core.Deps{Metrics: reg})
	if s.Name() != "scan" || s.Layer() != core.Application {
		t.Errorf("Name, Layer = %q, %v", s.Name(), s.Layer())
	}
	// A reload: a second stage on the same registry shares the collectors.
	s2, _ := newStage(t, "", core.Deps{Metrics: reg})
	s.Decide(context.Background(), registerReq("198.51.100.1:5060", "1001", "Yealink"))
	s2.Decide(context.Background(), registerReq("198.51.100.2:5060", "1001", "Yealink"))
	e := &env{reg: reg}
	if n := e.metric(t, "ucgate_scan_sources", ""); n != 2 {
		t.Errorf("sources = %v, want 2", n)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if n := e.metric(t, "ucgate_scan_sources", ""); n != 1 {
		t.Errorf("sources after the old stage closed = %v, want 1", n)
	}
	cfg := Defaults()
	cfg.Response = "tarpit"
	if _, err := New(cfg, core.Deps{}); !errors.Is(err, ErrConfig) {
		t.Errorf("New with a bad config: %v, want ErrConfig", err)
	}
}

func TestExempt(t *testing.T) {
	e := newEnv(t, "exempt: ['192.0.2.10', '198.51.100.0/24', '2001:db8:1::/48', '::ffff:203.0.113.0/120']")
	ctx := context.Background()
	for _, ip := range []string{"192.0.2.10:5060", "198.51.100.77:5060", "[2001:db8:1:2::9]:5060", "203.0.113.5:5060", "[::ffff:192.0.2.10]:5060"} {
		if v, _ := e.s.Decide(ctx, registerReq(ip, "1", "sipsak friendly-scanner")); v.Action != core.Allow {
			t.Errorf("exempt %s: %+v", ip, v)
		}
		if first, _ := sweep(e, 200, time.Millisecond, func(i int) *core.Event { return registerReq(ip, fmt.Sprint(i), "") }); first != -1 {
			t.Errorf("exempt %s refused at request %d", ip, first)
		}
	}
	for _, ip := range []string{"192.0.2.11:5060", "[2001:db8:2::9]:5060"} {
		if v, _ := e.s.Decide(ctx, registerReq(ip, "1", "friendly-scanner")); v.Action != core.Drop {
			t.Errorf("%s is not exempt: %+v", ip, v)
		}
	}
}

// TestIPv6Prefix checks that an IPv6 host cannot spread an enumeration
// over the addresses of its /64, and that the /64 next door is another
// source.
func TestIPv6Prefix(t *testing.T) {
	e := newEnv(t, "")
	first, v := sweep(e, 100, 10*time.Millisecond, func(i int) *core.Event {
		return registerReq(fmt.Sprintf("[2001:db8:5:6::%x]:5060", i+1), fmt.Sprint(1000+i), "")
	})
	if first != 60 || v.Rule != RuleBehaviour {
		t.Fatalf("first refused %d (%+v), want 60", first, v)
	}
	if b := e.blocker.list(); len(b) != 1 || !strings.HasPrefix(b[0], "2001:db8:5:6::3d scan/behaviour") {
		t.Errorf("blocks %q, want the address that passed the threshold", b)
	}
	if v, _ := e.s.Decide(context.Background(), inDialog("[2001:db8:5:6:ffff::1]:5060", "BYE", "")); v.Action != core.Drop {
		t.Errorf("another address of the /64 after detection: %+v", v)
	}
	if v, _ := e.s.Decide(context.Background(), registerReq("[2001:db8:5:7::1]:5060", "1", "")); v.Action != core.Allow {
		t.Errorf("the next /64: %+v", v)
	}
	e2 := newEnv(t, "ipv6_prefix: 128")
	if first, _ := sweep(e2, 100, 10*time.Millisecond, func(i int) *core.Event {
		return registerReq(fmt.Sprintf("[2001:db8:5:6::%x]:5060", i+1), fmt.Sprint(1000+i), "")
	}); first != -1 {
		t.Errorf("with ipv6_prefix 128 each address is its own source, yet request %d was refused", first)
	}
}
