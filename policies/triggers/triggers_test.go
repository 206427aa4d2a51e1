package triggers

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ucgate/ucgate/core"
)

func TestWebhookDelivery(t *testing.T) {
	h := newHook(t)
	f := newFixture(t, "list:\n  - name: notify\n    match: [\"scan/*\"]\n    webhook:\n      url: "+h.URL+"/hook\n"+
		"      headers: {Authorization: Bearer s3cret, X-Site: office}\n", core.Deps{})
	if f.tr.Name() != "triggers" {
		t.Errorf("name %q", f.tr.Name())
	}
	ev := event("scan/agent", "192.0.2.7:5060")
	ev.User, ev.Protocol, ev.Session = "alice", "sip", "abc123"
	f.tr.Alert(ev)
	r := h.receive(t)
	if r.method != http.MethodPost {
		t.Errorf("method %s", r.method)
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "Authorization": "Bearer s3cret",
		"X-Site": "office", "X-Ucgate-Trigger": "notify", "User-Agent": "ucgate-triggers"} {
		if got := r.header.Get(k); got != v {
			t.Errorf("header %s: %q, want %q", k, got, v)
		}
	}
	if r.event != *ev {
		t.Errorf("body\n got %+v\nwant %+v", r.event, *ev)
	}
	f.tr.Close()
	if f.metric(t, "ucgate_triggers_fired_total", "notify") != 1 || f.metric(t, "ucgate_triggers_failed_total", "notify") != 0 {
		t.Error("metrics: want 1 fired, 0 failed")
	}
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name     string
		extra    string
		statuses []int
		requests int
		sleeps   []time.Duration
		failed   float64
	}{
		{"retried on 500 and 503", "", []int{500, 503}, 3, []time.Duration{time.Second, 2 * time.Second}, 0},
		{"retried on 429 and 408", "", []int{429, 408}, 3, []time.Duration{time.Second, 2 * time.Second}, 0},
		{"gives up after the retries", "      retries: 2\n", []int{500, 500, 500, 500}, 3, []time.Duration{time.Second, 2 * time.Second}, 1},
		{"no retries", "      retries: 0\n", []int{502}, 1, nil, 1},
		{"not retried on 404", "", []int{404}, 1, nil, 1},
		{"not retried on 400", "", []int{400}, 1, nil, 1},
		{"a redirect is not followed", "", []int{302}, 1, nil, 1},
		{"default retries back off 1s 2s 4s", "", []int{500, 500, 500, 500}, 4,
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHook(t, tt.statuses...)
			f := newFixture(t, "list:\n  - name: notify\n    match: [\"*\"]\n    webhook:\n      url: "+h.URL+"\n"+tt.extra, core.Deps{})
			f.tr.Alert(event("auth/failure", "192.0.2.7"))
			f.tr.Close() // drains: the delivery and its retries are over
			if n := len(h.reqs); n != tt.requests {
				t.Errorf("%d requests, want %d", n, tt.requests)
			}
			if got := f.sleeps.got(); !slices.Equal(got, tt.sleeps) {
				t.Errorf("backoff %v, want %v", got, tt.sleeps)
			}
			if got := f.metric(t, "ucgate_triggers_failed_total", "notify"); got != tt.failed {
				t.Errorf("failed %v, want %v", got, tt.failed)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
}

func TestWebhookTimeout(t *testing.T) {
	h := newHook(t)
	h.hold = make(chan struct{}) // never answers: each attempt times out
	defer close(h.hold)
	var logs strings.Builder
	var mu sync.Mutex
	f := &fixture{clk: newClock(), sleeps: &sleeps{}, reg: prometheus.NewRegistry()}
	tr, err := newTriggers(decode(t, "list:\n  - name: notify\n    match: [\"*\"]\n    webhook: {url: \""+h.URL+"/token-abc\", timeout: 50ms, retries: 1}\n"),
		core.Deps{Metrics: f.reg, Log: slogTo(&logs, &mu)}, f.clk.Now, f.sleeps.sleep, false)
	if err != nil {
		t.Fatal(err)
	}
	f.tr = tr
	tr.Alert(event("auth/failure", "192.0.2.7"))
	h.receive(t)
	h.receive(t)
	tr.Close()
	if got := f.metric(t, "ucgate_triggers_failed_total", "notify"); got != 1 {
		t.Errorf("failed %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "context deadline exceeded") {
		t.Errorf("log does not say why: %s", logs.String())
	}
	if strings.Contains(logs.String(), "token-abc") {
		t.Errorf("log leaks the webhook URL: %s", logs.String())
	}
}

func TestWebhookVerifiesCertificates(t *testing.T) {
	reached := make(chan struct{}, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached <- struct{}{} }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	defer srv.Close()
	f := newFixture(t, webhookConf(srv.URL, ""), core.Deps{})
	f.tr.Alert(event("scan/agent", "192.0.2.7"))
	f.tr.Close()
	select {
	case <-reached:
		t.Fatal("a webhook with an untrusted certificate was called")
	default:
	}
	if got := f.metric(t, "ucgate_triggers_failed_total", "notify"); got != 1 {
		t.Errorf("failed %v", got)
	}
}

func TestRateLimitAndSummary(t *testing.T) {
	h := newHook(t)
	f := newFixture(t, webhookConf(h.URL, "    rate: {events: 2, per: 1m}\n"), core.Deps{})
	for range 5 {
		f.tr.Alert(event("scan/agent", "192.0.2.7"))
	}
	h.receive(t)
	h.receive(t)
	if got := f.metric(t, "ucgate_triggers_suppressed_total", "notify"); got != 3 {
		t.Errorf("suppressed %v", got)
	}
	f.clk.Advance(59 * time.Second)
	f.flush()
	f.tr.Alert(event("scan/agent", "192.0.2.7")) // still the same window
	f.clk.Advance(time.Second)
	f.flush() // the window reopens: one summary
	r := h.receive(t)
	want := core.SecurityEvent{Time: f.clk.Now(), Rule: "triggers/notify", Action: "suppressed",
		Detail: "4 events suppressed (rate limit 2 per 1m0s)"}
	if !r.event.Time.Equal(want.Time) || r.event.Rule != want.Rule || r.event.Action != want.Action || r.event.Detail != want.Detail {
		t.Errorf("summary\n got %+v\nwant %+v", r.event, want)
	}
	f.flush() // nothing more to sum up
	for range 2 {
		f.tr.Alert(event("auth/failure", "192.0.2.8"))
	}
	if r := h.receive(t); r.event.Rule != "auth/failure" {
		t.Errorf("after the summary: %+v", r.event)
	}
	h.receive(t)
	f.tr.Close()
	h.none(t)
	if got := f.metric(t, "ucgate_triggers_fired_total", "notify"); got != 4 {
		t.Errorf("fired %v", got)
	}
}

func TestSummaryOnTheNextEvent(t *testing.T) {
	h := newHook(t)
	f := newFixture(t, webhookConf(h.URL, "      workers: 1\n    rate: {events: 1, per: 10s}\n"), core.Deps{})
	f.tr.Alert(event("scan/agent", "192.0.2.7"))
	f.tr.Alert(event("scan/agent", "192.0.2.7"))
	h.receive(t)
	f.clk.Advance(10 * time.Second)
	f.tr.Alert(event("auth/failure", "192.0.2.9")) // opens the next window before any flush
	if r := h.receive(t); r.event.Action != "suppressed" || r.event.Detail != "1 events suppressed (rate limit 1 per 10s)" {
		t.Errorf("summary first: %+v", r.event)
	}
	if r := h.receive(t); r.event.Rule != "auth/failure" {
		t.Errorf("then the event: %+v", r.event)
	}
}

func TestDefaultRateIs60PerMinute(t *testing.T) {
	h := newHook(t)
	f := newFixture(t, webhookConf(h.URL, "      queue: 1000\n"), core.Deps{})
	for range 70 {
		f.tr.Alert(event("scan/agent", "192.0.2.7"))
	}
	f.tr.Close() // sends the summary of the window still open
	if got := f.metric(t, "ucgate_triggers_fired_total", "notify"); got != 60 {
		t.Errorf("fired %v", got)
	}
	if n := len(h.reqs); n != 61 {
		t.Errorf("%d requests, want 60 and a summary", n)
	}
}

func TestCloseDrainsAndSendsPendingSummary(t *testing.T) {
	h := newHook(t)
	f := newFixture(t, webhookConf(h.URL, "    rate: {events: 100, per: 1h}\n"), core.Deps{})
	for range 150 {
		f.tr.Alert(event("scan/agent", "192.0.2.7"))
	}
	f.tr.Close()
	if n := len(h.reqs); n != 101 {
		t.Fatalf("%d requests delivered by Close, want 100 and a summary", n)
	}
	var summaries int
	for range 101 {
		if r := <-h.reqs; r.event.Action == "suppressed" {
			summaries++
			if r.event.Detail != "50 events suppressed (rate limit 100 per 1h0m0s)" {
				t.Errorf("summary: %q", r.event.Detail)
			}
		}
	}
	if summaries != 1 {
		t.Errorf("%d summaries", summaries)
	}
	f.tr.Alert(event("scan/agent", "192.0.2.7")) // after Close: ignored, no panic
	f.tr.Close()
	h.none(t)
}

func TestCloseGivesUpOnAStuckWebhook(t *testing.T) {
	h := newHook(t)
	h.hold = make(chan struct{})
	defer close(h.hold)
	f := newFixture(t, webhookConf(h.URL, "      timeout: 1m\n"), core.Deps{})
	f.tr.drain = 50 * time.Millisecond
	f.tr.Alert(event("scan/agent", "192.0.2.7"))
	h.receive(t)
	done := make(chan struct{})
	go func() { f.tr.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Close waits on a stuck webhook")
	}
	if got := f.metric(t, "ucgate_triggers_failed_total", "notify"); got != 1 {
		t.Errorf("failed %v", got)
	}
}

// TestAlertDoesNotBlock fires thousands of events at a webhook that does
// not answer: Alert returns at once and the excess is dropped.
func TestAlertDoesNotBlock(t *testing.T) {
	h := newHook(t)
	h.hold = make(chan struct{})
	f := newFixture(t, webhookConf(h.URL, "      queue: 4\n      workers: 1\n    rate: {events: 0}\n"), core.Deps{})
	f.tr.Alert(event("scan/agent", "192.0.2.7"))
	h.receive(t) // the worker is stuck in this delivery
	done := make(chan struct{})
	go func() {
		for range 10000 {
			f.tr.Alert(event("scan/agent", "192.0.2.7"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Alert blocked")
	}
	if got := f.metric(t, "ucgate_triggers_dropped_total", "notify"); got != 10000-4 {
		t.Errorf("dropped %v, want %d", got, 10000-4)
	}
	close(h.hold)
	f.tr.Close()
	if got := f.metric(t, "ucgate_triggers_fired_total", "notify"); got != 5 {
		t.Errorf("fired %v", got)
	}
}

func TestMatching(t *testing.T) {
	tests := []struct {
		match, zones string
		rule, zone   string
		want         bool
	}{
		{`["scan/*"]`, "", "scan/agent", "internet", true},
		{`["scan/*"]`, "", "scan/", "internet", true},
		{`["scan/*"]`, "", "scanner/agent", "internet", false},
		{`["scan/*"]`, "", "auth/failure", "internet", false},
		{`["auth/failure"]`, "", "auth/failure", "", true},
		{`["auth/failure"]`, "", "auth/failures", "", false},
		{`["auth/fail?re"]`, "", "auth/failure", "", true},
		{`["*"]`, "", "ratelimit/flood", "", true},
		{`["*/flood"]`, "", "ratelimit/flood", "", true},
		{`["scan/*", "ratelimit/flood"]`, "", "ratelimit/flood", "", true},
		{`["*"]`, "", "triggers/ban", "", false},
		{`["trig*"]`, "", "triggers/ban", "", false},
		{`["triggers/*"]`, "", "triggers/ban", "", true},
		{`["triggers/ban"]`, "", "triggers/ban", "", true},
		{`["*"]`, `[internet]`, "scan/agent", "internet", true},
		{`["*"]`, `[internet]`, "scan/agent", "trunk", false},
		{`["*"]`, `[internet]`, "scan/agent", "", false},
		{`["*"]`, `[trunk, internet]`, "scan/agent", "internet", true},
	}
	for _, tt := range tests {
		conf := "list:\n  - name: t\n    match: " + tt.match + "\n    webhook: {url: \"http://192.0.2.1/\"}\n"
		if tt.zones != "" {
			conf += "    zones: " + tt.zones + "\n"
		}
		f := newFixture(t, conf, core.Deps{})
		if got := f.tr.list[0].match(tt.rule, tt.zone); got != tt.want {
			t.Errorf("match %s zones %s on %q in %q: %v, want %v", tt.match, tt.zones, tt.rule, tt.zone, got, tt.want)
		}
	}
}

func TestBlacklistAction(t *testing.T) {
	b := newBlocker()
	f := newFixture(t, "list:\n  - name: ban\n    match: [\"scan/*\", \"auth/*\"]\n    blacklist: {}\n", core.Deps{Blocker: b})
	f.tr.Alert(event("scan/agent", "192.0.2.7:5060"))
	want := blockCall{src: netip.MustParseAddr("192.0.2.7"), rule: "triggers/ban", reason: "security event scan/agent"}
	if c := b.receive(t); c != want {
		t.Errorf("block %+v, want %+v", c, want)
	}
	f.tr.Alert(event("auth/failure", "[2001:db8::7]:5061"))
	if c := b.receive(t); c.src != netip.MustParseAddr("2001:db8::7") {
		t.Errorf("block %+v", c)
	}
	f.tr.Alert(event("scan/agent", ""))                    // no source
	f.tr.Alert(event("scan/agent", "192.0.2.0/24"))        // a prefix: not a source
	f.tr.Alert(event("scan/agent", "sip.example.com"))     // not an address
	f.tr.Alert(event("ratelimit/flood", "198.51.100.7"))   // not matched
	f.tr.Alert(event("scan/agent", "192.0.2.7"))           // blocked a moment ago
	f.tr.Alert(event("scan/agent", "::ffff:198.51.100.9")) // IPv4-mapped
	if c := b.receive(t); c.src != netip.MustParseAddr("198.51.100.9") {
		t.Errorf("block %+v", c)
	}
	f.clk.Advance(time.Minute) // the block's default skip time is over
	f.tr.Alert(event("scan/agent", "192.0.2.7"))
	f.tr.Close()
	if n := len(b.all()); n != 4 {
		t.Errorf("%d blocks, want 4: %+v", n, b.all())
	}
	if got := f.metric(t, "ucgate_triggers_fired_total", "ban"); got != 4 {
		t.Errorf("fired %v", got)
	}
}

func TestBlacklistDuration(t *testing.T) {
	b := durationBlocker{newBlocker()}
	f := newFixture(t, "list:\n  - name: ban\n    match: [\"*\"]\n    blacklist: {duration: 2h}\n", core.Deps{Blocker: b})
	f.tr.Alert(event("scan/agent", "192.0.2.7"))
	want := blockCall{src: netip.MustParseAddr("192.0.2.7"), d: 2 * time.Hour, rule: "triggers/ban", reason: "security event scan/agent"}
	if c := b.receive(t); c != want {
		t.Errorf("block %+v, want %+v", c, want)
	}
	f.clk.Advance(time.Hour) // skipped for the block's duration
	f.tr.Alert(event("scan/agent", "192.0.2.7"))
	f.tr.Close()
	if n := len(b.all()); n != 1 {
		t.Errorf("%d blocks", n)
	}
}

func TestBlacklistSummaryIsLogged(t *testing.T) {
	b := newBlocker()
	var logs strings.Builder
	var mu sync.Mutex
	tr, err := newTriggers(decode(t, "list:\n  - name: ban\n    match: [\"*\"]\n    blacklist: {}\n    rate: {events: 1, per: 1m}\n"),
		core.Deps{Blocker: b, Log: slogTo(&logs, &mu)}, newClock().Now, (&sleeps{}).sleep, false)
	if err != nil {
		t.Fatal(err)
	}
	tr.Alert(event("scan/agent", "192.0.2.7"))
	tr.Alert(event("scan/agent", "192.0.2.8"))
	tr.Alert(event("scan/agent", "192.0.2.9"))
	tr.Close()
	if n := len(b.all()); n != 1 {
		t.Errorf("%d blocks, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "trigger suppressed events") || !strings.Contains(logs.String(), "count=2") {
		t.Errorf("summary not logged: %s", logs.String())
	}
}

func TestNewNeedsABlocker(t *testing.T) {
	conf := decode(t, "list:\n  - name: ban\n    match: [\"*\"]\n    blacklist: {}\n")
	if _, err := New(conf, core.Deps{}); !errors.Is(err, ErrNoBlocker) {
		t.Errorf("no blocker: %v", err)
	}
	conf = decode(t, "list:\n  - name: ban\n    match: [\"*\"]\n    blacklist: {duration: 1h}\n")
	if _, err := New(conf, core.Deps{Blocker: newBlocker()}); !errors.Is(err, ErrNoDuration) {
		t.Errorf("a blocker without durations: %v", err)
	}
	conf.Enabled = false // disabled: the list is not built, nothing is needed
	tr, err := New(conf, core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	tr.Alert(event("scan/agent", "192.0.2.7"))
	tr.Close()
	if _, err := New(decode(t, "list:\n  - name: x\n"), core.Deps{}); err == nil {
		t.Error("an invalid configuration was built")
	}
}

// TestNoLoop wires the triggers to real core.Alerts and a blacklist that
// raises a security event for each block, as the blacklist stage does: a
// trigger matching every rule must block once, not feed on its own
// blocks; an explicit "triggers/*" webhook sees the block.
func TestNoLoop(t *testing.T) {
	for _, blockRule := range []string{"", "blacklist/block"} {
		t.Run("block event rule "+blockRule, func(t *testing.T) {
			alerts := core.NewAlerts(64)
			b := newBlocker()
			b.raise = func(c blockCall) {
				rule := c.rule // the blacklist stage raises the block's own rule
				if blockRule != "" {
					rule = blockRule // a blacklist that renames it must not loop either
				}
				alerts.Alert(&core.SecurityEvent{Rule: rule, Action: "block", Src: c.src.String()})
			}
			h := newHook(t)
			f := newFixture(t, "list:\n  - name: ban\n    match: [\"*\"]\n    blacklist: {}\n"+
				"  - name: audit\n    match: [\"triggers/*\"]\n    webhook: {url: \""+h.URL+"\"}\n", core.Deps{Blocker: b})
			seen := make(chan string, 100)
			alerts.Subscribe(f.tr)
			alerts.Subscribe(core.AlertFunc(func(e *core.SecurityEvent) { seen <- e.Rule }))
			alerts.Alert(event("scan/agent", "192.0.2.7"))
			b.receive(t)
			// The block's own event has been dispatched once a later event is.
			alerts.Alert(&core.SecurityEvent{Rule: "test/sentinel"})
			for rule := ""; rule != "test/sentinel"; {
				select {
				case rule = <-seen:
				case <-time.After(wait):
					t.Fatal("the sentinel was not dispatched")
				}
			}
			f.tr.Close()
			alerts.Close()
			if n := len(b.all()); n != 1 {
				t.Errorf("%d blocks, want 1", n)
			}
			if blockRule == "" {
				if r := h.receive(t); r.event.Rule != "triggers/ban" || r.event.Action != "block" {
					t.Errorf("audit got %+v", r.event)
				}
			}
			h.none(t)
		})
	}
}

func TestMetricsSurviveAReload(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHook(t)
	conf := decode(t, webhookConf(h.URL, ""))
	first, err := New(conf, core.Deps{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	first.Alert(event("scan/agent", "192.0.2.7"))
	second, err := New(conf, core.Deps{Metrics: reg})
	if err != nil {
		t.Fatalf("second on the same registry: %v", err)
	}
	second.Alert(event("scan/agent", "192.0.2.7"))
	first.Close()
	second.Close()
	f := &fixture{reg: reg}
	if got := f.metric(t, "ucgate_triggers_fired_total", "notify"); got != 2 {
		t.Errorf("fired %v", got)
	}
	squat := prometheus.NewRegistry()
	squat.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "ucgate_triggers_failed_total", Help: "x"}))
	if _, err := New(conf, core.Deps{Metrics: squat}); !errors.Is(err, ErrMetrics) {
		t.Errorf("conflicting metric: %v", err)
	}
}

func TestSleepCtx(t *testing.T) {
	if !sleepCtx(context.Background(), time.Microsecond) {
		t.Error("did not wait")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if sleepCtx(ctx, time.Hour) {
		t.Error("waited on a cancelled context")
	}
}

// TestInherit is a configuration reload: the new triggers continue the
// old ones' windows and skips, and the old ones stop acting.
func TestInherit(t *testing.T) {
	h := newHook(t)
	b := newBlocker()
	conf := webhookConf(h.URL, "      workers: 1\n    rate: {events: 2, per: 1m}\n") +
		"  - name: ban\n    match: [\"scan/*\"]\n    blacklist: {}\n"
	old := newFixture(t, conf, core.Deps{Blocker: b})
	for range 3 {
		old.tr.Alert(event("scan/agent", "192.0.2.7"))
	}
	h.receive(t)
	h.receive(t)
	b.receive(t)
	next, err := newTriggers(decode(t, conf+"  - name: extra\n    match: [\"*\"]\n    blacklist: {}\n"),
		core.Deps{Blocker: b}, old.clk.Now, old.sleeps.sleep, false)
	if err != nil {
		t.Fatal(err)
	}
	next.Inherit(old.tr)
	next.Inherit(next) // harmless
	next.Inherit(nil)
	old.tr.Alert(event("auth/failure", "198.51.100.1")) // retired: nothing
	next.Alert(event("scan/agent", "192.0.2.7"))        // same window: suppressed; ban skips it, extra blocks it
	if c := b.receive(t); c.rule != "triggers/extra" {
		t.Errorf("block %+v", c)
	}
	old.clk.Advance(time.Minute)
	next.flush(old.clk.Now(), false, next.send)
	if r := h.receive(t); r.event.Detail != "2 events suppressed (rate limit 2 per 1m0s)" {
		t.Errorf("summary after the reload: %+v", r.event)
	}
	old.tr.Close() // the old summary went to the new triggers: nothing more
	next.Close()
	h.none(t)
	if n := len(b.all()); n != 2 {
		t.Errorf("%d blocks, want 2: %+v", n, b.all())
	}
}
