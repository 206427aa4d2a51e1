package triggers

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

// wait bounds every wait on a channel in these tests.
const wait = 5 * time.Second

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sleeps records the backoff waits instead of waiting.
type sleeps struct {
	mu sync.Mutex
	ds []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) bool {
	s.mu.Lock()
	s.ds = append(s.ds, d)
	s.mu.Unlock()
	return ctx.Err() == nil
}

func (s *sleeps) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.ds...)
}

func decode(t testing.TB, snippet string) Config {
	t.Helper()
	cfg := Defaults()
	if _, err := config.Decode([]byte(snippet), "test.yaml", &cfg); err != nil {
		t.Fatalf("decode %q: %v", snippet, err)
	}
	return cfg
}

type fixture struct {
	tr     *Triggers
	clk    *clock
	sleeps *sleeps
	reg    *prometheus.Registry
}

// newFixture builds triggers on the test clock, with instant backoff and
// no flusher (tests call flush).
func newFixture(t testing.TB, snippet string, deps core.Deps) *fixture {
	t.Helper()
	f := &fixture{clk: newClock(), sleeps: &sleeps{}, reg: prometheus.NewRegistry()}
	deps.Metrics = f.reg
	tr, err := newTriggers(decode(t, snippet), deps, f.clk.Now, f.sleeps.sleep, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	f.tr = tr
	return f
}

func (f *fixture) flush() { f.tr.flush(f.clk.Now(), false, f.tr.send) }

// metric returns a counter's value by trigger.
func (f *fixture) metric(t testing.TB, name, trigger string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "trigger" && l.GetValue() == trigger {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// request is what a webhook server received.
type request struct {
	method string
	header http.Header
	event  core.SecurityEvent
}

// hook is a webhook endpoint answering with the scripted statuses, then
// 200; every request it reads is sent on reqs.
type hook struct {
	*httptest.Server
	reqs chan request
	mu   sync.Mutex
	next []int
	// hold, when set, keeps each request until it is closed.
	hold chan struct{}
}

func newHook(t testing.TB, statuses ...int) *hook {
	h := &hook{reqs: make(chan request, 1000), next: statuses}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	h.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(h.Close)
	return h
}

func (h *hook) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ev core.SecurityEvent
	json.Unmarshal(body, &ev)
	h.reqs <- request{method: r.Method, header: r.Header.Clone(), event: ev}
	if h.hold != nil {
		select {
		case <-h.hold:
		case <-r.Context().Done():
		}
	}
	h.mu.Lock()
	status := http.StatusOK
	if len(h.next) > 0 {
		status, h.next = h.next[0], h.next[1:]
	}
	h.mu.Unlock()
	w.WriteHeader(status)
}

// receive waits for the next request.
func (h *hook) receive(t testing.TB) request {
	t.Helper()
	select {
	case r := <-h.reqs:
		return r
	case <-time.After(wait):
		t.Fatal("no request reached the webhook")
		return request{}
	}
}

// none checks that no request is waiting.
func (h *hook) none(t testing.TB) {
	t.Helper()
	select {
	case r := <-h.reqs:
		t.Fatalf("unexpected request: %+v", r.event)
	default:
	}
}

func webhookConf(url, extra string) string {
	return "list:\n  - name: notify\n    match: [\"*\"]\n    webhook:\n      url: \"" + url + "\"\n" + extra
}

// blockCall is one call to a recording blocker.
type blockCall struct {
	src          netip.Addr
	d            time.Duration
	rule, reason string
}

// blocker records blocks: a test double for the core.Blocker the
// blacklist stage implements. raise, when set, is called for each block,
// as the blacklist raises its security event.
type blocker struct {
	mu    sync.Mutex
	calls []blockCall
	ch    chan blockCall
	raise func(blockCall)
}

func newBlocker() *blocker { return &blocker{ch: make(chan blockCall, 100)} }

func (b *blocker) Block(src netip.Addr, rule, reason string) {
	b.record(blockCall{src: src, rule: rule, reason: reason})
}

func (b *blocker) record(c blockCall) {
	b.mu.Lock()
	b.calls = append(b.calls, c)
	b.mu.Unlock()
	if b.raise != nil {
		b.raise(c)
	}
	b.ch <- c
}

func (b *blocker) all() []blockCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]blockCall(nil), b.calls...)
}

func (b *blocker) receive(t testing.TB) blockCall {
	t.Helper()
	select {
	case c := <-b.ch:
		return c
	case <-time.After(wait):
		t.Fatal("no block")
		return blockCall{}
	}
}

// durationBlocker also blocks for a given time.
type durationBlocker struct{ *blocker }

func (b durationBlocker) BlockFor(src netip.Addr, d time.Duration, rule, reason string) {
	b.record(blockCall{src: src, d: d, rule: rule, reason: reason})
}

func event(rule, src string) *core.SecurityEvent {
	return &core.SecurityEvent{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Rule: rule, Action: "refuse",
		Src: src, Zone: "internet", Detail: "test " + strings.ReplaceAll(rule, "/", " ")}
}

// lockedWriter lets a test read what a logger wrote from other goroutines.
type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func slogTo(b *strings.Builder, mu *sync.Mutex) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{mu: mu, b: b}, nil))
}
