package dialog

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

func newStage(t testing.TB, yaml string, deps core.Deps) *Stage {
	t.Helper()
	cfg := Defaults()
	if _, err := config.Decode([]byte(yaml), "ucgate.yaml", &cfg); err != nil {
		t.Fatalf("decode %q: %v", yaml, err)
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// bye is a BYE for a live call, from its peer, in sequence; callers break
// one fact at a time.
func bye(src string) *core.Event {
	return &core.Event{
		Kind: core.KindSessionEnd, Protocol: "sip", Method: "BYE",
		Src:      core.Source{Addr: netip.MustParseAddrPort(src), Zone: "internet", Transport: "udp"},
		From:     core.Identity{User: "alice", Domain: "example.com"},
		InDialog: true, DialogKnown: true, DialogSameSource: true, DialogSeqOK: true,
		Session: "c0ffee",
	}
}

func with(ev *core.Event, f func(*core.Event)) *core.Event { f(ev); return ev }

func TestDecide(t *testing.T) {
	const src = "192.0.2.7:5060"
	unknown := func(ev *core.Event) {
		ev.DialogKnown, ev.DialogSameSource, ev.DialogSeqOK, ev.Session = false, false, false, ""
	}
	moved := func(ev *core.Event) { ev.DialogSameSource = false }
	stale := func(ev *core.Event) { ev.DialogSeqOK = false }
	tests := []struct {
		name   string
		config string
		ev     *core.Event
		action core.Action
		reason core.Reason
		rule   string
		detail string
	}{
		{"live dialog, its peer, in sequence", "", bye(src), core.Allow, 0, "", ""},
		{"new call (no dialog claimed)", "", with(bye(src), func(ev *core.Event) {
			ev.Kind, ev.Method, ev.InDialog = core.KindSessionOffer, "INVITE", false
			unknown(ev)
		}), core.Allow, 0, "", ""},
		{"BYE for a dialog that never existed", "", with(bye(src), unknown),
			core.Refuse, core.ReasonNoDialog, RuleUnknown, "Unknown Dialog"},
		{"re-INVITE for a dialog that never existed", "", with(bye(src), func(ev *core.Event) {
			ev.Kind, ev.Method = core.KindSessionUpdate, "INVITE"
			unknown(ev)
		}), core.Refuse, core.ReasonNoDialog, RuleUnknown, "Unknown Dialog"},
		{"stray ACK is dropped", "", with(bye(src), func(ev *core.Event) { ev.Kind, ev.Method = core.KindInDialog, "ACK"; unknown(ev) }),
			core.Drop, core.ReasonNoDialog, RuleUnknown, "Unknown Dialog"},
		{"BYE for a live call from another address", "", with(bye(src), moved),
			core.Refuse, core.ReasonForbidden, RuleSource, "Dialog Source Mismatch"},
		{"BYE out of sequence", "", with(bye(src), stale),
			core.Refuse, core.ReasonMalformed, RuleSequence, "CSeq Out Of Order"},
		{"source checked before sequence", "", with(bye(src), func(ev *core.Event) { moved(ev); stale(ev) }),
			core.Refuse, core.ReasonForbidden, RuleSource, "Dialog Source Mismatch"},
		{"check_source off", "check_source: false", with(bye(src), moved), core.Allow, 0, "", ""},
		{"check_source off still checks sequence", "check_source: false", with(bye(src), func(ev *core.Event) { moved(ev); stale(ev) }),
			core.Refuse, core.ReasonMalformed, RuleSequence, "CSeq Out Of Order"},
		{"check_sequence off", "check_sequence: false", with(bye(src), stale), core.Allow, 0, "", ""},
		{"unknown dialog even with both checks off", "check_source: false\ncheck_sequence: false", with(bye(src), unknown),
			core.Refuse, core.ReasonNoDialog, RuleUnknown, "Unknown Dialog"},
		{"mobile zone: the peer may move", "zones: {mobile: {check_source: false}}", with(bye(src), func(ev *core.Event) {
			ev.Src.Zone = "mobile"
			moved(ev)
		}), core.Allow, 0, "", ""},
		{"mobile zone's override stays there", "zones: {mobile: {check_source: false}}", with(bye(src), moved),
			core.Refuse, core.ReasonForbidden, RuleSource, "Dialog Source Mismatch"},
		{"mobile zone keeps the sequence check", "zones: {mobile: {check_source: false}}", with(bye(src), func(ev *core.Event) {
			ev.Src.Zone = "mobile"
			stale(ev)
		}), core.Refuse, core.ReasonMalformed, RuleSequence, "CSeq Out Of Order"},
		{"zone turned off", "zones: {lab: {enabled: false}}", with(bye(src), func(ev *core.Event) { ev.Src.Zone = "lab"; unknown(ev) }),
			core.Allow, 0, "", ""},
		{"zone turned on when the section is off", "enabled: false\nzones: {internet: {enabled: true}}", with(bye(src), unknown),
			core.Refuse, core.ReasonNoDialog, RuleUnknown, "Unknown Dialog"},
		{"disabled", "enabled: false", with(bye(src), unknown), core.Allow, 0, "", ""},
		{"responses pass", "", with(bye(src), func(ev *core.Event) { ev.Kind, ev.Method = core.KindResponse, "200"; unknown(ev) }),
			core.Allow, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStage(t, tt.config, core.Deps{})
			v, err := s.Decide(context.Background(), tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != tt.action || v.Reason != tt.reason || v.Rule != tt.rule || v.Detail != tt.detail {
				t.Errorf("verdict = %v %v %q %q, want %v %v %q %q", v.Action, v.Reason, v.Rule, v.Detail,
					tt.action, tt.reason, tt.rule, tt.detail)
			}
		})
	}
}

// recorder collects security events; read them after closing the Alerts
// that deliver them.
type recorder struct {
	mu     sync.Mutex
	events []core.SecurityEvent
}

func (r *recorder) Alert(e *core.SecurityEvent) {
	r.mu.Lock()
	r.events = append(r.events, *e)
	r.mu.Unlock()
}

func newAlerts() (*core.Alerts, *recorder) {
	a, r := core.NewAlerts(1024), &recorder{}
	a.Subscribe(r)
	return a, r
}

// clock is a settable time for the stage's now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestSecurityEvents(t *testing.T) {
	alerts, rec := newAlerts()
	s := newStage(t, "", core.Deps{Alerts: alerts})
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	s.now = clk.now
	ctx := context.Background()

	s.Decide(ctx, with(bye("192.0.2.7:5060"), func(ev *core.Event) {
		ev.DialogKnown, ev.Session = false, ""
		ev.From.User = "mallory\r\n" + strings.Repeat("x", 100)
	}))
	s.Decide(ctx, with(bye("198.51.100.9:5070"), func(ev *core.Event) { ev.DialogSameSource = false; ev.Src.Zone = "trunk" }))
	s.Decide(ctx, with(bye("198.51.100.10:5060"), func(ev *core.Event) { ev.DialogSeqOK = false }))                    // no event
	s.Decide(ctx, with(bye("198.51.100.11:5060"), func(ev *core.Event) { ev.Method = "ACK"; ev.DialogKnown = false })) // no event
	s.Decide(ctx, with(bye("[2001:db8::5]:5060"), func(ev *core.Event) { ev.Method = "B\x00YE"; ev.DialogKnown = false }))
	s.Decide(ctx, bye("192.0.2.8:5060")) // allowed, no event
	alerts.Close()

	want := []core.SecurityEvent{
		{Time: clk.t, Rule: RuleUnknown, Action: "refuse", Src: "192.0.2.7:5060", Zone: "internet",
			User: "mallory" + strings.Repeat("x", 57), Protocol: "sip", Detail: "BYE for a dialog that does not exist"},
		{Time: clk.t, Rule: RuleSource, Action: "refuse", Src: "198.51.100.9:5070", Zone: "trunk", User: "alice",
			Session: "c0ffee", Protocol: "sip", Detail: "BYE for a live dialog, from another address than its peer's"},
		{Time: clk.t, Rule: RuleUnknown, Action: "refuse", Src: "[2001:db8::5]:5060", Zone: "internet", User: "alice",
			Session: "c0ffee", Protocol: "sip", Detail: "request for a dialog that does not exist"},
	}
	if len(rec.events) != len(want) {
		t.Fatalf("got %d events, want %d: %+v", len(rec.events), len(want), rec.events)
	}
	for i := range want {
		if rec.events[i] != want[i] {
			t.Errorf("event %d =\n%+v\nwant\n%+v", i, rec.events[i], want[i])
		}
	}
}

// TestEventRateLimit checks that a flood of bogus BYEs from one source
// raises one event per event_interval, every refusal still refused, and
// the rest counted.
func TestEventRateLimit(t *testing.T) {
	alerts, rec := newAlerts()
	reg := prometheus.NewRegistry()
	s := newStage(t, "", core.Deps{Alerts: alerts, Metrics: reg})
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	s.now = clk.now
	ctx := context.Background()
	bogus := func(src string) *core.Event { return with(bye(src), func(ev *core.Event) { ev.DialogKnown = false }) }

	for range 100 { // a flood: one event
		if v, _ := s.Decide(ctx, bogus("192.0.2.7:5060")); v.Rule != RuleUnknown {
			t.Fatalf("flood request allowed: %+v", v)
		}
		clk.advance(50 * time.Millisecond)
	}
	// 4.95 s in: another source gets its own event; a spoofed BYE for a
	// live call from the flooding source is limited with its other events.
	s.Decide(ctx, bogus("192.0.2.8:5060"))
	s.Decide(ctx, with(bye("192.0.2.7:6000"), func(ev *core.Event) { ev.DialogSameSource = false }))
	clk.advance(10*time.Second - 100*50*time.Millisecond - time.Millisecond) // 9.999 s after the first
	s.Decide(ctx, bogus("192.0.2.7:5060"))
	clk.advance(time.Millisecond) // 10 s after the first: a new event
	s.Decide(ctx, bogus("192.0.2.7:5060"))
	alerts.Close()

	var got []string
	for _, e := range rec.events {
		got = append(got, e.Src+" "+e.Rule+" "+e.Time.Format("05.000"))
	}
	want := []string{
		"192.0.2.7:5060 dialog/unknown 00.000",
		"192.0.2.8:5060 dialog/unknown 05.000",
		"192.0.2.7:5060 dialog/unknown 10.000",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := metric(t, reg, "ucgate_dialog_events_suppressed_total", ""); n != 101 {
		t.Errorf("suppressed = %v, want 101", n)
	}
	if n := metric(t, reg, "ucgate_dialog_security_events_total", RuleUnknown); n != 3 {
		t.Errorf("security events{unknown} = %v, want 3", n)
	}
	if n := metric(t, reg, "ucgate_dialog_refused_total", RuleUnknown); n != 103 {
		t.Errorf("refused{unknown} = %v, want 103", n)
	}
	if n := metric(t, reg, "ucgate_dialog_refused_total", RuleSource); n != 1 {
		t.Errorf("refused{source} = %v, want 1", n)
	}
}

func TestEventEveryRefusal(t *testing.T) {
	alerts, rec := newAlerts()
	s := newStage(t, "event_interval: 0s", core.Deps{Alerts: alerts})
	for range 5 {
		s.Decide(context.Background(), with(bye("192.0.2.7:5060"), func(ev *core.Event) { ev.DialogKnown = false }))
	}
	alerts.Close()
	if len(rec.events) != 5 {
		t.Errorf("got %d events, want 5", len(rec.events))
	}
}

// TestEventLimitBounded checks that the limit remembers at most
// max_sources sources, forgets expired ones first, and lets a forgotten
// source raise again.
func TestEventLimitBounded(t *testing.T) {
	alerts, rec := newAlerts()
	s := newStage(t, "max_sources: 3", core.Deps{Alerts: alerts})
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	s.now = clk.now
	ctx := context.Background()
	bogus := func(ip string) { s.Decide(ctx, with(bye(ip+":5060"), func(ev *core.Event) { ev.DialogKnown = false })) }

	for i := range 1000 { // a flood from many sources within one interval
		bogus(netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 250)}).String())
		if n := s.events.size(); n > 3 {
			t.Fatalf("after %d sources the limit remembers %d, want at most 3", i+1, n)
		}
	}
	clk.advance(10 * time.Second)
	bogus("192.0.2.1")
	bogus("192.0.2.2")
	bogus("192.0.2.3")
	bogus("192.0.2.4") // the table is full of fresh sources: one is forgotten
	if n := s.events.size(); n != 3 {
		t.Errorf("limit remembers %d sources, want 3", n)
	}
	alerts.Close()
	raised := map[string]bool{}
	for _, e := range rec.events {
		if strings.HasPrefix(e.Src, "192.0.2.") {
			raised[e.Src] = true
		}
	}
	if len(raised) != 4 {
		t.Errorf("fresh sources that raised an event: %v, want all 4", raised)
	}
}

// TestEventLimitSweep checks that expired sources are swept before an
// arbitrary one is forgotten.
func TestEventLimitSweep(t *testing.T) {
	l := eventLimit{interval: 10 * time.Second, max: 3, last: map[netip.Addr]time.Time{}}
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	a, b, c, d := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.4")
	l.allow(a, t0)
	l.allow(b, t0)
	l.allow(c, t0.Add(9*time.Second))
	if !l.allow(d, t0.Add(11*time.Second)) { // a and b expired: swept, c kept
		t.Fatal("new source refused")
	}
	if l.allow(c, t0.Add(12*time.Second)) {
		t.Error("c was forgotten although a and b had expired")
	}
	if l.size() != 2 {
		t.Errorf("size = %d, want 2 (c and d)", l.size())
	}
}

func TestStageContract(t *testing.T) {
	s := newStage(t, "", core.Deps{})
	if s.Name() != "dialog" || s.Layer() != core.Application || s.Close() != nil {
		t.Errorf("Name, Layer = %q, %v", s.Name(), s.Layer())
	}
	cfg := Defaults()
	cfg.MaxSources = 0
	if _, err := New(cfg, core.Deps{}); !errors.Is(err, ErrConfig) {
		t.Errorf("New with a bad config: %v, want ErrConfig", err)
	}
	// A refusal without Alerts raises nothing and does not fail.
	if v, _ := s.Decide(context.Background(), with(bye("192.0.2.7:5060"), func(ev *core.Event) { ev.DialogKnown = false })); v.Rule != RuleUnknown {
		t.Errorf("verdict %+v", v)
	}
	if _, err := New(Defaults(), core.Deps{Metrics: prometheus.NewRegistry()}); err != nil {
		t.Error(err)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"alice": "alice", "": "", "a\x00b\r\nc": "abc", strings.Repeat("é", 40): "",
		strings.Repeat("y", 70): strings.Repeat("y", 64),
	} {
		if got := clean(in, 64); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// metric reads a counter from reg; rule "" reads one without labels.
func metric(t *testing.T, reg *prometheus.Registry, name, rule string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if rule == "" && len(m.GetLabel()) == 0 || len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == rule {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func BenchmarkDecide(b *testing.B) {
	alerts, _ := newAlerts()
	defer alerts.Close()
	s := newStage(b, "zones: {mobile: {check_source: false}}", core.Deps{Alerts: alerts, Metrics: prometheus.NewRegistry()})
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		ev   *core.Event
	}{
		{"new call", with(bye("192.0.2.7:5060"), func(ev *core.Event) { ev.InDialog = false })},
		{"live dialog", bye("192.0.2.7:5060")},
		{"bogus BYE flood (events limited)", with(bye("192.0.2.7:5060"), func(ev *core.Event) { ev.DialogKnown = false })},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Decide(ctx, tt.ev)
			}
		})
	}
}
