package conncap

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

func fixture(t testing.TB, yaml string, reg prometheus.Registerer) *Stage {
	t.Helper()
	cfg := Defaults()
	if _, err := config.Decode([]byte(yaml), "ucgate.yaml", &cfg); err != nil {
		t.Fatalf("decode: %v", err)
	}
	s, err := New(cfg, core.Deps{Metrics: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

var local = netip.MustParseAddrPort("192.0.2.1:5061")

// conn is the meta of connection i from addr.
func conn(addr, zone string, i int) *core.PacketMeta {
	return &core.PacketMeta{Src: netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(40000+i)), Local: local,
		Transport: "tls", Zone: zone, Conn: true}
}

type opened struct {
	addr, zone string
	n          int
}

func TestDecidePacket(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		before []opened
		check  opened
		action core.Action
		rule   string
	}{
		{"first", "", nil, opened{"198.51.100.7", "internet", 1}, core.Allow, ""},
		{"up to the cap", "", []opened{{"198.51.100.7", "internet", 31}}, opened{"198.51.100.7", "internet", 1}, core.Allow, ""},
		{"over the cap", "", []opened{{"198.51.100.7", "internet", 32}}, opened{"198.51.100.7", "internet", 1}, core.Drop, RuleSource},
		{"mapped is the same source", "", []opened{{"198.51.100.7", "", 32}}, opened{"::ffff:198.51.100.7", "", 1}, core.Drop, RuleSource},
		{"other source", "", []opened{{"198.51.100.7", "internet", 32}}, opened{"198.51.100.8", "internet", 1}, core.Allow, ""},
		{"v6 /64 is one source", "per_source: 2", []opened{{"2001:db8::1", "", 1}, {"2001:db8::2", "", 1}}, opened{"2001:db8::ffff", "", 1}, core.Drop, RuleSource},
		{"v6 per address", "per_source: 2\nipv6_prefix: 128", []opened{{"2001:db8::1", "", 2}}, opened{"2001:db8::2", "", 1}, core.Allow, ""},
		{"v4 /24", "per_source: 2\nipv4_prefix: 24", []opened{{"198.51.100.1", "", 2}}, opened{"198.51.100.2", "", 1}, core.Drop, RuleSource},
		{"zone cap", "zones: {trunk: {per_source: 100}}", []opened{{"203.0.113.5", "trunk", 99}}, opened{"203.0.113.5", "trunk", 1}, core.Allow, ""},
		{"zone cap spent", "zones: {trunk: {per_source: 2}}", []opened{{"203.0.113.5", "trunk", 2}}, opened{"203.0.113.5", "trunk", 1}, core.Drop, RuleSource},
		{"other zone default cap", "zones: {trunk: {per_source: 100}}", []opened{{"203.0.113.5", "internet", 32}}, opened{"203.0.113.5", "internet", 1}, core.Drop, RuleSource},
		{"total", "total: 3", []opened{{"198.51.100.1", "", 1}, {"198.51.100.2", "", 1}, {"2001:db8::1", "", 1}}, opened{"198.51.100.4", "", 1}, core.Drop, RuleTotal},
		{"source before total", "total: 3\nper_source: 3", []opened{{"198.51.100.1", "", 3}}, opened{"198.51.100.1", "", 1}, core.Drop, RuleSource},
		{"disabled", "enabled: false\nper_source: 1\ntotal: 1", []opened{{"198.51.100.1", "", 5}}, opened{"198.51.100.1", "", 1}, core.Allow, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fixture(t, tt.yaml, nil)
			i := 0
			for _, o := range tt.before {
				for range o.n {
					if v := s.DecidePacket(conn(o.addr, o.zone, i)); v.Action != core.Allow {
						t.Fatalf("setup connection %d from %s: %v %q", i, o.addr, v.Action, v.Rule)
					}
					i++
				}
			}
			v := s.DecidePacket(conn(tt.check.addr, tt.check.zone, i))
			if v.Action != tt.action || v.Rule != tt.rule {
				t.Errorf("DecidePacket = %v %q, want %v %q", v.Action, v.Rule, tt.action, tt.rule)
			}
		})
	}
}

func TestDatagramsPass(t *testing.T) {
	s := fixture(t, "per_source: 1\ntotal: 1", nil)
	s.DecidePacket(conn("198.51.100.7", "", 0))
	m := &core.PacketMeta{Src: netip.MustParseAddrPort("198.51.100.7:5060"), Transport: "udp", Data: []byte("OPTIONS")}
	for range 10 {
		if v := s.DecidePacket(m); v.Action != core.Allow {
			t.Fatalf("datagram refused: %q", v.Rule)
		}
	}
	if v, err := s.Decide(context.Background(), &core.Event{}); err != nil || v.Action != core.Allow {
		t.Fatalf("Decide = %v %v", v, err)
	}
}

func TestConnClosedCountsDown(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := fixture(t, "per_source: 2\ntotal: 3", reg)
	a0, a1 := conn("198.51.100.7", "", 0), conn("198.51.100.7", "", 1)
	b0 := conn("198.51.100.8", "", 0)
	for _, m := range []*core.PacketMeta{a0, a1, b0} {
		if v := s.DecidePacket(m); v.Action != core.Allow {
			t.Fatal(v.Rule)
		}
	}
	if v := s.DecidePacket(conn("198.51.100.7", "", 2)); v.Rule != RuleSource {
		t.Fatalf("third of a source: %q", v.Rule)
	}
	if v := s.DecidePacket(conn("198.51.100.9", "", 0)); v.Rule != RuleTotal {
		t.Fatalf("fourth in total: %q", v.Rule)
	}
	s.ConnClosed(a0)
	if total, src := s.Open(netip.MustParseAddr("198.51.100.7")); total != 2 || src != 1 {
		t.Fatalf("after a close: total %d, source %d", total, src)
	}
	if v := s.DecidePacket(conn("198.51.100.7", "", 3)); v.Action != core.Allow {
		t.Fatalf("after a close the source may connect again: %q", v.Rule)
	}
	// Closing what was never counted changes nothing: a refused
	// connection, one reported twice, one from before a reload.
	s.ConnClosed(conn("198.51.100.7", "", 2))
	s.ConnClosed(a0)
	s.ConnClosed(conn("203.0.113.1", "", 0))
	if total, src := s.Open(netip.MustParseAddr("198.51.100.7")); total != 3 || src != 2 {
		t.Fatalf("after stray closes: total %d, source %d", total, src)
	}
	for _, m := range []*core.PacketMeta{a1, b0, conn("198.51.100.7", "", 3)} {
		s.ConnClosed(m)
	}
	if total, src := s.Open(netip.MustParseAddr("198.51.100.7")); total != 0 || src != 0 {
		t.Fatalf("all closed: total %d, source %d", total, src)
	}
	tab := s.tab.Load()
	for i := range tab.shards {
		if len(tab.shards[i].perSource) != 0 || len(tab.shards[i].conns) != 0 {
			t.Fatalf("shard %d keeps %v %v", i, tab.shards[i].perSource, tab.shards[i].conns)
		}
	}
	if got := gauge(t, reg, "ucgate_conncap_connections"); got != 0 {
		t.Fatalf("gauge = %v", got)
	}
}

func TestSameAddressTwice(t *testing.T) {
	// Connections with the same addresses (a source the adapter could not
	// name) are counted in total, not against one source, and uncounted
	// as often as they were counted.
	s := fixture(t, "per_source: 1", nil)
	m := &core.PacketMeta{Transport: "ws", Conn: true}
	for range 2 {
		if v := s.DecidePacket(m); v.Action != core.Allow {
			t.Fatalf("unnamed source capped: %q", v.Rule)
		}
	}
	s.ConnClosed(m)
	if total, _ := s.Open(netip.Addr{}); total != 1 {
		t.Fatalf("total %d, want 1", total)
	}
	s.ConnClosed(m)
	s.ConnClosed(m)
	if total, _ := s.Open(netip.Addr{}); total != 0 {
		t.Fatalf("total %d, want 0", total)
	}
}

func TestInherit(t *testing.T) {
	reg := prometheus.NewRegistry()
	old := fixture(t, "per_source: 4\ntotal: 10", reg)
	a := []*core.PacketMeta{conn("198.51.100.7", "", 0), conn("198.51.100.7", "", 1), conn("198.51.100.7", "", 2)}
	for _, m := range a {
		old.DecidePacket(m)
	}
	// The reload lowers the cap: the source already holds more.
	s := fixture(t, "per_source: 2\ntotal: 10", reg)
	s.Inherit(old)
	s.Inherit(s) // harmless
	s.Inherit(nil)
	if v := s.DecidePacket(conn("198.51.100.7", "", 3)); v.Rule != RuleSource {
		t.Fatalf("the new stage does not see the old connections: %q", v.Rule)
	}
	// Connections of the old pipeline close through the old stage.
	old.ConnClosed(a[0])
	old.ConnClosed(a[1])
	if total, src := s.Open(netip.MustParseAddr("198.51.100.7")); total != 1 || src != 1 {
		t.Fatalf("after old closes: total %d, source %d", total, src)
	}
	m := conn("198.51.100.7", "", 4)
	if v := s.DecidePacket(m); v.Action != core.Allow {
		t.Fatalf("new connection refused: %q", v.Rule)
	}
	s.ConnClosed(m)
	old.ConnClosed(a[2])
	if total, _ := s.Open(netip.Addr{}); total != 0 {
		t.Fatalf("total %d", total)
	}
	if got := gauge(t, reg, "ucgate_conncap_connections"); got != 0 {
		t.Fatalf("gauge = %v", got)
	}
}

func TestTimeouts(t *testing.T) {
	for _, tt := range []struct {
		yaml            string
		handshake, idle time.Duration
	}{
		{"", 5 * time.Second, 300 * time.Second},
		{"handshake_timeout: 2s\nidle_timeout: 0s", 2 * time.Second, 0},
		{"enabled: false", 0, 0},
	} {
		h, i := fixture(t, tt.yaml, nil).Timeouts()
		if h != tt.handshake || i != tt.idle {
			t.Errorf("%q: Timeouts() = %v, %v; want %v, %v", tt.yaml, h, i, tt.handshake, tt.idle)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := fixture(t, "per_source: 1\ntotal: 2", reg)
	s.DecidePacket(conn("198.51.100.1", "", 0))
	s.DecidePacket(conn("198.51.100.1", "", 1))
	s.DecidePacket(conn("198.51.100.2", "", 0))
	s.DecidePacket(conn("198.51.100.3", "", 0))
	// A reload: the new stage counts its own; the gauge sums both.
	s2 := fixture(t, "per_source: 1\ntotal: 2", reg)
	s2.DecidePacket(conn("198.51.100.4", "", 0))
	s.ConnClosed(conn("198.51.100.1", "", 0))
	mfs, _ := reg.Gather()
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			if m.GetCounter() != nil {
				got[name] = m.GetCounter().GetValue()
			} else {
				got[name] = m.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{
		"ucgate_conncap_refused_total/source": 1,
		"ucgate_conncap_refused_total/total":  1,
		"ucgate_conncap_connections":          2,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("metrics = %v, want %v", got, want)
	}
}

func gauge(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

func TestConcurrentOpenAndClose(t *testing.T) {
	s := fixture(t, "per_source: 8\ntotal: 100", nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				m := &core.PacketMeta{Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 20)}), uint16(g*5000+i%5000)),
					Local: local, Conn: true}
				if s.DecidePacket(m).Action == core.Allow {
					if total, src := s.Open(m.Src.Addr()); total > 100 || src > 8 {
						t.Errorf("caps exceeded: total %d, source %d", total, src)
						return
					}
					s.ConnClosed(m)
				}
			}
		})
	}
	wg.Wait()
	if total, _ := s.Open(netip.Addr{}); total != 0 {
		t.Fatalf("total %d after every connection closed", total)
	}
}

func TestRefusedDoesNotAllocate(t *testing.T) {
	s := fixture(t, "per_source: 1", prometheus.NewRegistry())
	s.DecidePacket(conn("198.51.100.7", "", 0))
	m := conn("198.51.100.7", "", 1)
	d := &core.PacketMeta{Src: netip.MustParseAddrPort("198.51.100.7:5060"), Data: []byte("x")}
	if n := testing.AllocsPerRun(1000, func() { s.DecidePacket(m); s.DecidePacket(d) }); n != 0 {
		t.Fatalf("refused connection and datagram allocate %v times", n)
	}
}

func BenchmarkDecidePacket(b *testing.B) {
	b.Run("datagram", func(b *testing.B) {
		s := fixture(b, "", prometheus.NewRegistry())
		m := &core.PacketMeta{Src: netip.MustParseAddrPort("198.51.100.7:5060"), Data: make([]byte, 500)}
		b.ReportAllocs()
		for b.Loop() {
			s.DecidePacket(m)
		}
	})
	b.Run("accept_and_close", func(b *testing.B) {
		s := fixture(b, "", prometheus.NewRegistry())
		m := conn("198.51.100.7", "", 0)
		b.ReportAllocs()
		for b.Loop() {
			s.DecidePacket(m)
			s.ConnClosed(m)
		}
	})
	b.Run("refused_source", func(b *testing.B) {
		s := fixture(b, "per_source: 1", prometheus.NewRegistry())
		s.DecidePacket(conn("198.51.100.7", "", 0))
		m := conn("198.51.100.7", "", 1)
		b.ReportAllocs()
		for b.Loop() {
			s.DecidePacket(m)
		}
	})
	b.Run("refused_total", func(b *testing.B) {
		s := fixture(b, "total: 1", prometheus.NewRegistry())
		s.DecidePacket(conn("198.51.100.7", "", 0))
		m := conn("2001:db8::7", "", 1)
		b.ReportAllocs()
		for b.Loop() {
			s.DecidePacket(m)
		}
	})
}
