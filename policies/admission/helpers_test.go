package admission

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

// clock is the tests' time: it moves only when told to.
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

// decode reads a policies.admission YAML snippet over the defaults, the
// way ucgate.yaml is read.
func decode(t testing.TB, snippet string) Config {
	t.Helper()
	cfg := Defaults()
	if _, err := config.Decode([]byte(snippet), "test.yaml", &cfg); err != nil {
		t.Fatalf("decode %q: %v", snippet, err)
	}
	return cfg
}

type fixture struct {
	s   *Stage
	clk *clock
	reg *prometheus.Registry
}

// newFixture builds a stage without its janitor, on the test clock; the
// test calls sweep itself.
func newFixture(t testing.TB, snippet string) *fixture {
	t.Helper()
	clk := newClock()
	reg := prometheus.NewRegistry()
	s, err := newStage(decode(t, snippet), core.Deps{Metrics: reg}, clk.Now, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &fixture{s: s, clk: clk, reg: reg}
}

// call describes one call attempt: "src" is an ip or ip:port, "user"
// user@domain, "route" the trunk, "zone" the source's zone.
type call struct {
	src, user, route, zone string
	kind                   core.Kind
}

func (c call) addr() netip.AddrPort {
	if ap, err := netip.ParseAddrPort(c.src); err == nil {
		return ap
	}
	return netip.AddrPortFrom(netip.MustParseAddr(c.src), 5060)
}

func (c call) from() core.Identity {
	user, domain, _ := strings.Cut(c.user, "@")
	return core.Identity{User: user, Domain: domain}
}

func (c call) zoneOr() string {
	if c.zone == "" {
		return "internet"
	}
	return c.zone
}

func (c call) event() *core.Event {
	kind := c.kind
	if kind == core.KindOther {
		kind = core.KindSessionOffer
	}
	return &core.Event{Kind: kind, Protocol: "sip", Method: "INVITE",
		Src:  core.Source{Addr: c.addr(), Transport: "udp", Zone: c.zoneOr()},
		From: c.from(), To: core.Identity{User: "100", Domain: "pbx.example.com"}, Route: c.route}
}

// session is the session the adapter builds for an admitted call: the
// caller's leg from the source, the callee's toward the route.
func (c call) session() *core.Session {
	from := c.from()
	s := core.NewSession("call", from, core.Identity{User: "100", Domain: "pbx.example.com"},
		core.Leg{Protocol: "sip", Transport: "udp", Zone: c.zoneOr(), Remote: c.addr(), Party: from}, time.Now())
	s.SetCallee(core.Leg{Protocol: "sip", Transport: "udp", Upstream: c.route})
	return s
}

func (f *fixture) decide(t testing.TB, c call) core.Verdict {
	t.Helper()
	v, err := f.s.Decide(context.Background(), c.event())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// admit decides on c and, when allowed, binds its session.
func (f *fixture) admit(t testing.TB, c call) (*core.Session, core.Verdict) {
	t.Helper()
	v := f.decide(t, c)
	if v.Action != core.Allow {
		return nil, v
	}
	sess := c.session()
	f.s.Bind(sess)
	return sess, v
}

// counts are the totals of every kind, as the gauges report them.
func (s *Stage) counts() (src, user, trunk, global, reserved int) {
	st := s.st.Load()
	for _, c := range *st.trunks.Load() {
		trunk += int(c.active.Load())
	}
	return int(st.sources.calls.Load()), int(st.users.calls.Load()), trunk, int(st.global.active.Load()), int(st.global.reserved.Load())
}

// metricValues gathers g into "name{label=value,...}" -> value.
func metricValues(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out
}
