package scan

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

// newStage builds a stage from a YAML snippet over the defaults, with a
// clock the test moves.
func newStage(t testing.TB, yaml string, deps core.Deps) (*Stage, *clock) {
	t.Helper()
	cfg := Defaults()
	if _, err := config.Decode([]byte(yaml), "ucgate.yaml", &cfg); err != nil {
		t.Fatalf("decode %q: %v", yaml, err)
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	clk := &clock{t: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)}
	s.now = clk.now
	return s, clk
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// blocker records the blocks a stage asks for.
type blocker struct {
	mu    sync.Mutex
	calls []string // "addr rule reason"
}

func (b *blocker) Block(src netip.Addr, rule, reason string) {
	b.mu.Lock()
	b.calls = append(b.calls, src.String()+" "+rule+" "+reason)
	b.mu.Unlock()
}

func (b *blocker) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.calls...)
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

// env is a stage with a blocker, alerts and a registry to look at.
type env struct {
	s       *Stage
	clk     *clock
	blocker *blocker
	alerts  *core.Alerts
	rec     *recorder
	reg     *prometheus.Registry
}

func newEnv(t testing.TB, yaml string) *env {
	t.Helper()
	e := &env{blocker: &blocker{}, alerts: core.NewAlerts(1 << 16), rec: &recorder{}, reg: prometheus.NewRegistry()}
	e.alerts.Subscribe(e.rec)
	t.Cleanup(func() { e.alerts.Close() })
	e.s, e.clk = newStage(t, yaml, core.Deps{Blocker: e.blocker, Alerts: e.alerts, Metrics: e.reg})
	return e
}

// events closes the alerts and returns what they delivered.
func (e *env) events() []core.SecurityEvent {
	e.alerts.Close()
	return e.rec.events
}

// metric reads a counter or gauge from the registry; label "" reads one
// without labels.
func (e *env) metric(t testing.TB, name, label string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" && len(m.GetLabel()) == 0 || len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Requests as the SIP adapter describes them.

func src(s string) core.Source {
	return core.Source{Addr: netip.MustParseAddrPort(s), Zone: "internet", Transport: "udp"}
}

func registerReq(from, user, agent string) *core.Event {
	return &core.Event{Kind: core.KindRegister, Protocol: "sip", Method: "REGISTER", Src: src(from),
		From: core.Identity{User: user, Domain: "example.com"}, To: core.Identity{User: user, Domain: "example.com"},
		Target: "sip:example.com", Agent: agent}
}

func options(from, target, agent string) *core.Event {
	return &core.Event{Kind: core.KindProbe, Protocol: "sip", Method: "OPTIONS", Src: src(from),
		From: core.Identity{User: "1001", Domain: "example.com"}, To: core.Identity{User: userOf(target), Domain: "example.com"},
		Target: target, Agent: agent}
}

func invite(from, fromUser, target, agent string) *core.Event {
	return &core.Event{Kind: core.KindSessionOffer, Protocol: "sip", Method: "INVITE", Src: src(from),
		From: core.Identity{User: fromUser, Domain: "example.com"}, To: core.Identity{User: userOf(target), Domain: "example.com"},
		Target: target, Agent: agent}
}

func inDialog(from, method, agent string) *core.Event {
	return &core.Event{Kind: core.KindSessionEnd, Protocol: "sip", Method: method, Src: src(from),
		From: core.Identity{User: "1001", Domain: "example.com"}, To: core.Identity{User: "2001", Domain: "example.com"},
		Target: "sip:2001@192.0.2.50:5060", Agent: agent, InDialog: true, DialogKnown: true, DialogSameSource: true, DialogSeqOK: true}
}

func with(ev *core.Event, f func(*core.Event)) *core.Event { f(ev); return ev }
