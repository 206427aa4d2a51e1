package ratelimit

import (
	"context"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// blocker records the blocks it is asked for.
type blocker struct {
	mu    sync.Mutex
	calls []string
}

func (b *blocker) Block(src netip.Addr, rule, reason string) {
	b.mu.Lock()
	b.calls = append(b.calls, src.String()+" "+rule)
	b.mu.Unlock()
}

func (b *blocker) n() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.calls)
}

// fixture builds a stage from a config snippet, with the clock c (nil:
// time.Now).
func fixture(t testing.TB, yaml string, deps core.Deps, c *clock) *Stage {
	t.Helper()
	cfg := Defaults()
	if _, err := config.Decode([]byte(yaml), "ucgate.yaml", &cfg); err != nil {
		t.Fatalf("decode: %v", err)
	}
	now := time.Now
	if c != nil {
		now = c.now
	}
	s, err := newStage(cfg, deps, now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func meta(src, zone string, size int) *core.PacketMeta {
	return &core.PacketMeta{Src: netip.MustParseAddrPort(src), Zone: zone, Transport: "udp", Data: make([]byte, size)}
}

type send struct {
	src  string
	zone string
	size int
	n    int
}

func TestDecidePacket(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		before []send // sent at the same instant, before the packet checked
		check  send
		action core.Action
		rule   string
	}{
		{"first packet", "", nil, send{"192.0.2.7:5060", "internet", 500, 1}, core.Allow, ""},
		{"burst", "", []send{{"192.0.2.7:5060", "internet", 500, 99}}, send{"192.0.2.7:5060", "internet", 500, 1}, core.Allow, ""},
		{"burst spent", "", []send{{"192.0.2.7:5060", "internet", 500, 100}}, send{"192.0.2.7:5060", "internet", 500, 1}, core.Drop, RulePackets},
		{"other port same source", "", []send{{"192.0.2.7:5060", "internet", 500, 100}}, send{"192.0.2.7:5061", "internet", 0, 1}, core.Drop, RulePackets},
		{"other source", "", []send{{"192.0.2.7:5060", "internet", 500, 100}}, send{"192.0.2.8:5060", "internet", 500, 1}, core.Allow, ""},
		{"mapped is the same source", "", []send{{"192.0.2.7:5060", "", 0, 100}}, send{"[::ffff:192.0.2.7]:5060", "", 0, 1}, core.Drop, RulePackets},
		{"bytes spent", "", []send{{"192.0.2.7:5060", "internet", 65535, 2}}, send{"192.0.2.7:5060", "internet", 3, 1}, core.Drop, RuleBytes},
		{"bytes to the last", "", []send{{"192.0.2.7:5060", "internet", 65535, 2}}, send{"192.0.2.7:5060", "internet", 2, 1}, core.Allow, ""},
		{"largest datagram fits", "budget: {byte_burst: 65535}", nil, send{"192.0.2.7:5060", "internet", 65535, 1}, core.Allow, ""},
		{"bytes within", "", []send{{"192.0.2.7:5060", "internet", 65535, 2}}, send{"192.0.2.7:5060", "internet", 0, 1}, core.Allow, ""},
		{"trusted prefix", "trusted: [192.0.2.0/24]", []send{{"192.0.2.7:5060", "internet", 500, 999}}, send{"192.0.2.7:5060", "internet", 500, 1}, core.Allow, ""},
		{"trusted burst spent", "trusted: [192.0.2.0/24]", []send{{"192.0.2.7:5060", "internet", 500, 1000}}, send{"192.0.2.7:5060", "internet", 500, 1}, core.Drop, RulePackets},
		{"trusted v6", "trusted: ['2001:db8:100::/48']", []send{{"[2001:db8:100::1]:5060", "", 0, 500}}, send{"[2001:db8:100::1]:5060", "", 0, 1}, core.Allow, ""},
		{"trunk zone trusted", "", []send{{"198.51.100.1:5060", "trunk", 500, 999}}, send{"198.51.100.1:5060", "trunk", 500, 1}, core.Allow, ""},
		{"trunk zone not trusted", "zones: {trunk: {trusted: false}}", []send{{"198.51.100.1:5060", "trunk", 500, 100}}, send{"198.51.100.1:5060", "trunk", 500, 1}, core.Drop, RulePackets},
		{"zone budget", "zones: {internet: {budget: {packets: 1, packet_burst: 5}}}", []send{{"192.0.2.7:5060", "internet", 0, 5}}, send{"192.0.2.7:5060", "internet", 0, 1}, core.Drop, RulePackets},
		{"zone budget inherits bytes", "zones: {internet: {budget: {packet_burst: 500}}}", []send{{"192.0.2.7:5060", "internet", 65535, 2}}, send{"192.0.2.7:5060", "internet", 3, 1}, core.Drop, RuleBytes},
		{"other zone default budget", "zones: {internet: {budget: {packets: 1, packet_burst: 5}}}", []send{{"192.0.2.7:5060", "lab", 0, 5}}, send{"192.0.2.7:5060", "lab", 0, 1}, core.Allow, ""},
		{"v6 /64 is one source", "", []send{{"[2001:db8::1]:5060", "", 0, 100}}, send{"[2001:db8::ffff:2]:5060", "", 0, 1}, core.Drop, RulePackets},
		{"v6 other /64", "", []send{{"[2001:db8::1]:5060", "", 0, 100}}, send{"[2001:db8:0:1::1]:5060", "", 0, 1}, core.Allow, ""},
		{"v6 per address", "ipv6_prefix: 128", []send{{"[2001:db8::1]:5060", "", 0, 100}}, send{"[2001:db8::2]:5060", "", 0, 1}, core.Allow, ""},
		{"v4 /24 is one source", "ipv4_prefix: 24", []send{{"192.0.2.1:5060", "", 0, 100}}, send{"192.0.2.200:5060", "", 0, 1}, core.Drop, RulePackets},
		{"global spent", "global_packets: 10\nglobal_burst: 5", []send{{"192.0.2.1:5060", "", 0, 1}, {"192.0.2.2:5060", "", 0, 2}, {"192.0.2.3:5060", "", 0, 2}},
			send{"192.0.2.4:5060", "", 0, 1}, core.Drop, RuleGlobal},
		{"global spares trusted", "global_packets: 10\nglobal_burst: 5\ntrusted: [198.51.100.1]", []send{{"192.0.2.1:5060", "", 0, 5}},
			send{"198.51.100.1:5060", "", 0, 1}, core.Allow, ""},
		{"trusted spend global", "global_packets: 10\nglobal_burst: 5\ntrusted: [198.51.100.1]", []send{{"198.51.100.1:5060", "", 0, 5}},
			send{"192.0.2.1:5060", "", 0, 1}, core.Drop, RuleGlobal},
		{"global off", "global_packets: 0", []send{{"192.0.2.1:5060", "", 0, 100}, {"192.0.2.2:5060", "", 0, 100}}, send{"192.0.2.3:5060", "", 0, 1}, core.Allow, ""},
		{"disabled", "enabled: false", []send{{"192.0.2.7:5060", "internet", 65535, 1000}}, send{"192.0.2.7:5060", "internet", 65535, 1}, core.Allow, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fixture(t, tt.yaml, core.Deps{}, newClock())
			for _, b := range tt.before {
				m := meta(b.src, b.zone, b.size)
				for i := range b.n {
					if v := s.DecidePacket(m); v.Action != core.Allow {
						t.Fatalf("setup packet %d from %s: %v %q", i, b.src, v.Action, v.Rule)
					}
				}
			}
			v := s.DecidePacket(meta(tt.check.src, tt.check.zone, tt.check.size))
			if v.Action != tt.action || v.Rule != tt.rule {
				t.Errorf("DecidePacket = %v %q, want %v %q", v.Action, v.Rule, tt.action, tt.rule)
			}
			if v.Action != core.Allow && v.Reason != core.ReasonRateLimited {
				t.Errorf("reason = %v", v.Reason)
			}
		})
	}
}

func TestUnnamedSourcesPass(t *testing.T) {
	s := fixture(t, "budget: {packets: 1, packet_burst: 1}\nglobal_packets: 1\nglobal_burst: 1", core.Deps{}, newClock())
	ev := &core.Event{Src: core.Source{Transport: "tcp"}, Size: 100}
	for range 5 {
		if v, _ := s.Decide(context.Background(), ev); v.Action != core.Allow {
			t.Fatalf("event without a source limited: %q", v.Rule)
		}
	}
	if s.Len() != 0 {
		t.Fatalf("%d sources tracked", s.Len())
	}
}

func TestConnectionsCountAsPackets(t *testing.T) {
	s := fixture(t, "budget: {packets: 1, packet_burst: 3}", core.Deps{}, newClock())
	m := &core.PacketMeta{Src: netip.MustParseAddrPort("192.0.2.7:40000"), Transport: "tls", Conn: true}
	for range 3 {
		if v := s.DecidePacket(m); v.Action != core.Allow {
			t.Fatalf("connection refused early: %q", v.Rule)
		}
	}
	if v := s.DecidePacket(m); v.Action != core.Drop || v.Rule != RulePackets {
		t.Fatalf("4th connection: %v %q", v.Action, v.Rule)
	}
}

func TestDecideChargesStreamsOnly(t *testing.T) {
	s := fixture(t, "budget: {packets: 1, packet_burst: 2}", core.Deps{}, newClock())
	ctx := context.Background()
	udp := &core.Event{Src: core.Source{Addr: netip.MustParseAddrPort("192.0.2.7:5060"), Transport: "udp"}, Size: 500}
	for range 10 {
		if v, err := s.Decide(ctx, udp); err != nil || v.Action != core.Allow {
			t.Fatalf("udp event charged twice: %v %v", v, err)
		}
	}
	tcp := &core.Event{Src: core.Source{Addr: netip.MustParseAddrPort("192.0.2.8:40000"), Transport: "tcp"}, Size: 500}
	for i, want := range []string{"", "", RulePackets} {
		v, err := s.Decide(ctx, tcp)
		if err != nil || v.Rule != want {
			t.Fatalf("tcp message %d: %v %q %v, want %q", i, v.Action, v.Rule, err, want)
		}
	}
	big := &core.Event{Src: core.Source{Addr: netip.MustParseAddrPort("192.0.2.9:40000"), Transport: "wss"}, Size: 200000}
	if v, _ := s.Decide(ctx, big); v.Rule != RuleBytes {
		t.Fatalf("a 200 kB message over the byte burst: %q", v.Rule)
	}
}

func TestRefill(t *testing.T) {
	c := newClock()
	s := fixture(t, "budget: {packets: 50, packet_burst: 100}", core.Deps{}, c)
	m := meta("192.0.2.7:5060", "internet", 100)
	count := func() int {
		n := 0
		for s.DecidePacket(m).Action == core.Allow {
			n++
		}
		return n
	}
	if n := count(); n != 100 {
		t.Fatalf("burst = %d, want 100", n)
	}
	c.add(19 * time.Millisecond)
	if n := count(); n != 0 {
		t.Fatalf("after 19ms: %d allowed, want 0", n)
	}
	c.add(time.Millisecond)
	if n := count(); n != 1 {
		t.Fatalf("after 20ms: %d allowed, want 1", n)
	}
	c.add(time.Second)
	if n := count(); n != 50 {
		t.Fatalf("after 1s: %d allowed, want 50", n)
	}
	c.add(time.Hour)
	if n := count(); n != 100 {
		t.Fatalf("after an hour: %d allowed, want the burst of 100", n)
	}
	// Bytes refill at 64 KiB/s: 128 KiB of burst, then 64 KiB a second.
	mb := meta("192.0.2.8:5060", "internet", 16384)
	for i := range 8 {
		if v := s.DecidePacket(mb); v.Action != core.Allow {
			t.Fatalf("16 KiB datagram %d refused: %q", i, v.Rule)
		}
	}
	if v := s.DecidePacket(mb); v.Rule != RuleBytes {
		t.Fatalf("byte burst not spent: %q", v.Rule)
	}
	c.add(250 * time.Millisecond)
	if v := s.DecidePacket(mb); v.Action != core.Allow {
		t.Fatalf("16 KiB after 250ms refused: %q", v.Rule)
	}
	if v := s.DecidePacket(mb); v.Rule != RuleBytes {
		t.Fatalf("second 16 KiB after 250ms: %q", v.Rule)
	}
}

func TestFloodBlocksOncePerEpisode(t *testing.T) {
	c := newClock()
	bl := &blocker{}
	alerts := core.NewAlerts(64)
	events := make(chan *core.SecurityEvent, 64)
	alerts.Subscribe(core.AlertFunc(func(e *core.SecurityEvent) { events <- e }))
	reg := prometheus.NewRegistry()
	s := fixture(t, "flood_drops: 250\nflood_window: 10s", core.Deps{Blocker: bl, Alerts: alerts, Metrics: reg}, c)
	m := meta("192.0.2.66:5060", "internet", 200)
	flood := func(d time.Duration) {
		// 2000 packets a second for d.
		for range int(d / (500 * time.Microsecond)) {
			s.DecidePacket(m)
			c.add(500 * time.Microsecond)
		}
	}
	// 100 of burst, then 249 drops: not yet a flood.
	for range 100 + 250 {
		s.DecidePacket(m)
	}
	if bl.n() != 0 {
		t.Fatalf("blocked after %d drops", 250)
	}
	s.DecidePacket(m) // the 251st drop
	if bl.n() != 1 {
		t.Fatalf("%d blocks after 251 drops, want 1", bl.n())
	}
	flood(time.Minute) // the same flood goes on
	if bl.n() != 1 {
		t.Fatalf("%d blocks during one flood, want 1", bl.n())
	}
	c.add(11 * time.Second) // quiet for a window: the episode is over
	flood(time.Second)
	if bl.n() != 2 {
		t.Fatalf("%d blocks after a second flood, want 2", bl.n())
	}
	// A source that only slightly exceeds its budget never floods.
	slow := meta("192.0.2.67:5060", "internet", 200)
	for range 60 * 60 { // 60 packets a second for a minute: 10 drops a second
		s.DecidePacket(slow)
		c.add(time.Second / 60)
	}
	if bl.n() != 2 {
		t.Fatalf("slow source blocked: %v", bl.calls)
	}
	if bl.calls[0] != "192.0.2.66 ratelimit/flood" {
		t.Errorf("block = %q", bl.calls[0])
	}
	alerts.Close()
	if len(events) != 2 {
		t.Fatalf("%d security events, want 2", len(events))
	}
	e := <-events
	if e.Rule != RuleFlood || e.Action != "flood" || e.Src != "192.0.2.66" || e.Zone != "internet" ||
		e.Detail != "more than 250 packets dropped within 10s" {
		t.Errorf("event = %+v", e)
	}
	if got := metric(t, reg, "ucgate_ratelimit_floods_total", ""); got != 2 {
		t.Errorf("floods = %v", got)
	}
}

func TestTrustedFloodIsNotBlocked(t *testing.T) {
	bl := &blocker{}
	alerts := core.NewAlerts(8)
	events := make(chan *core.SecurityEvent, 8)
	alerts.Subscribe(core.AlertFunc(func(e *core.SecurityEvent) { events <- e }))
	s := fixture(t, "flood_drops: 10", core.Deps{Blocker: bl, Alerts: alerts}, newClock())
	m := meta("198.51.100.1:5060", "trunk", 0)
	for range 2000 {
		s.DecidePacket(m)
	}
	alerts.Close()
	if bl.n() != 0 || len(events) != 1 {
		t.Fatalf("%d blocks and %d events, want 0 and 1", bl.n(), len(events))
	}
	if e := <-events; e.Detail != "more than 10 packets dropped within 10s; trusted source, not blocked" {
		t.Errorf("event = %+v", e)
	}
}

func TestFloodWithoutBlocker(t *testing.T) {
	s := fixture(t, "flood_drops: 1", core.Deps{}, newClock())
	m := meta("192.0.2.7:5060", "", 0)
	for range 200 {
		s.DecidePacket(m) // must not panic on a nil Blocker or Alerts
	}
}

func TestMemoryBound(t *testing.T) {
	const n = 100000
	for _, tt := range []struct {
		yaml string
		max  int
	}{
		{"max_sources: 1000\nglobal_packets: 0", 1000},
		{"global_packets: 0", 65536},
		{"max_sources: 10\nglobal_packets: 0", 10},
	} {
		s := fixture(t, tt.yaml, core.Deps{}, nil)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range n {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 5060)
			if v := s.DecidePacket(&core.PacketMeta{Src: src}); v.Action != core.Allow {
				t.Fatalf("%s: new source %d refused: %q", tt.yaml, i, v.Rule)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := s.Len(); got > tt.max || got < tt.max*3/4 {
			t.Errorf("%q: %d sources tracked after %d, want at most %d (and close to it)", tt.yaml, got, n, tt.max)
		}
		grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		if limit := int64(tt.max)*400 + 1<<20; grown > limit {
			t.Errorf("%q: heap grew by %d bytes for %d sources, want under %d", tt.yaml, grown, tt.max, limit)
		}
		runtime.KeepAlive(s)
	}
}

func TestEvictionSparesActiveSources(t *testing.T) {
	c := newClock()
	s := fixture(t, "max_sources: 64", core.Deps{}, c)
	attacker := meta("192.0.2.66:5060", "", 0)
	for range 100 {
		s.DecidePacket(attacker)
	}
	if v := s.DecidePacket(attacker); v.Rule != RulePackets {
		t.Fatalf("attacker not limited: %q", v.Rule)
	}
	// Spoofed sources churn through the table while the attacker goes on.
	for i := range 10000 {
		c.add(time.Microsecond)
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5060)
		s.DecidePacket(&core.PacketMeta{Src: src})
		if i%4 == 0 { // at most 4 sources are newer: a sample of 8 always holds an older one
			if v := s.DecidePacket(attacker); v.Action == core.Allow && c.now().Sub(time.Unix(1_800_000_000, 0)) < 20*time.Millisecond {
				t.Fatalf("attacker evicted and refilled at %d", i)
			}
		}
	}
}

func TestSweep(t *testing.T) {
	c := newClock()
	reg := prometheus.NewRegistry()
	s := fixture(t, "", core.Deps{Metrics: reg}, c)
	s.DecidePacket(meta("192.0.2.1:5060", "", 100))
	for range 200 {
		s.DecidePacket(meta("192.0.2.2:5060", "", 100)) // drops
	}
	c.add(3 * time.Second) // 192.0.2.1 has refilled; 192.0.2.2 dropped within the flood window
	s.DecidePacket(meta("192.0.2.3:5060", "", 100))
	s.sweep()
	if n := s.Len(); n != 2 {
		t.Fatalf("%d sources after the first sweep, want 2", n)
	}
	c.add(11 * time.Second)
	s.sweep()
	if n := s.Len(); n != 0 {
		t.Fatalf("%d sources after the second sweep, want 0", n)
	}
	if got := metric(t, reg, "ucgate_ratelimit_sources", ""); got != 0 {
		t.Fatalf("sources gauge = %v", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	bl := &blocker{}
	s := fixture(t, "max_sources: 256\nflood_drops: 50", core.Deps{Blocker: bl}, nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20000 {
				a := netip.AddrFrom4([4]byte{10, byte(g), 0, byte(i % 300)})
				s.DecidePacket(&core.PacketMeta{Src: netip.AddrPortFrom(a, 5060), Data: make([]byte, i%1500)})
				if i%5000 == 0 {
					s.sweep()
				}
			}
		})
	}
	wg.Wait()
	if s.Len() > 256 {
		t.Fatalf("%d sources", s.Len())
	}
}

func TestInherit(t *testing.T) {
	c := newClock()
	bl := &blocker{}
	old := fixture(t, "flood_drops: 10\nglobal_packets: 10\nglobal_burst: 300", core.Deps{Blocker: bl}, c)
	m := meta("192.0.2.7:5060", "internet", 0)
	for range 100 + 11 { // the burst, then a flood
		old.DecidePacket(m)
	}
	trunk := meta("198.51.100.1:5060", "trunk", 0)
	for range 100 {
		old.DecidePacket(trunk)
	}
	if bl.n() != 1 {
		t.Fatalf("%d blocks before the reload", bl.n())
	}
	c.add(time.Second) // 50 packets of refill, at the old rate
	// The reload halves the budget and stops trusting the trunk zone.
	s := fixture(t, "budget: {packets: 25, packet_burst: 100}\nzones: {trunk: {trusted: false}}\nflood_drops: 10\nglobal_packets: 10\nglobal_burst: 300", core.Deps{Blocker: bl}, c)
	s.Inherit(old)
	s.Inherit(nil)
	n := 0
	for s.DecidePacket(m).Action == core.Allow {
		n++
	}
	if n != 50 {
		t.Fatalf("%d packets after the reload, want the 50 refilled before it", n)
	}
	if bl.n() != 1 {
		t.Fatalf("the flood in progress was blocked again after the reload: %d", bl.n())
	}
	if s.Len() != 2 {
		t.Fatalf("%d sources inherited, want 2", s.Len())
	}
	// The global budget carried over: the old stage took 100 packets of
	// 192.0.2.7 and charged the trusted trunk's 100, a second refilled 10
	// and the new stage took 50: 60 of the burst of 300 are left.
	fresh := 0
	for i := range 200 {
		if s.DecidePacket(meta(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1).String(), "", 0)).Action == core.Allow {
			fresh++
		}
	}
	if fresh != 60 {
		t.Fatalf("%d new sources passed the inherited global budget, want 60", fresh)
	}
	// The trunk's source is no longer trusted: the global budget, now
	// spent, refuses it.
	if v := s.DecidePacket(trunk); v.Rule != RuleGlobal {
		t.Fatalf("trunk after the reload: %q", v.Rule)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := fixture(t, "max_sources: 1\nglobal_packets: 1\nglobal_burst: 3", core.Deps{Metrics: reg}, newClock())
	s.DecidePacket(meta("192.0.2.1:1", "", 65535))
	s.DecidePacket(meta("192.0.2.1:1", "", 65535))
	s.DecidePacket(meta("192.0.2.1:1", "", 65535)) // bytes
	s.DecidePacket(meta("192.0.2.2:1", "", 0))     // evicts 192.0.2.1; global spent
	for range 100 {
		s.DecidePacket(meta("192.0.2.2:1", "", 0))
	}
	// 192.0.2.2: 101 packets, of which the first takes the last global
	// token, 99 find the global budget spent, the last its own.
	for rule, want := range map[string]float64{"bytes": 1, "global": 99, "packets": 1} {
		if got := metric(t, reg, "ucgate_ratelimit_dropped_total", rule); got != want {
			t.Errorf("dropped{rule=%q} = %v, want %v", rule, got, want)
		}
	}
	if got := metric(t, reg, "ucgate_ratelimit_evictions_total", ""); got != 1 {
		t.Errorf("evictions = %v", got)
	}
}

// metric reads a counter or gauge, by its rule label when rule is set.
func metric(t *testing.T, g prometheus.Gatherer, name, rule string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := rule == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "rule" && l.GetValue() == rule {
					match = true
				}
			}
			if !match {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestKnownSourceDoesNotAllocate(t *testing.T) {
	s := fixture(t, "budget: {packets: 1e6, packet_burst: 1000000, bytes: 1e10, byte_burst: 10000000000}", core.Deps{Metrics: prometheus.NewRegistry()}, nil)
	for _, src := range []string{"192.0.2.1:5060", "[2001:db8::1]:5060", "[::ffff:192.0.2.2]:5060"} {
		m := meta(src, "internet", 500)
		s.DecidePacket(m)
		if n := testing.AllocsPerRun(1000, func() { s.DecidePacket(m) }); n != 0 {
			t.Errorf("DecidePacket(%s) allocates %v times", src, n)
		}
	}
	over := fixture(t, "", core.Deps{Metrics: prometheus.NewRegistry()}, nil)
	m := meta("192.0.2.9:5060", "", 0)
	for range 1000 {
		over.DecidePacket(m)
	}
	if n := testing.AllocsPerRun(1000, func() { over.DecidePacket(m) }); n != 0 {
		t.Errorf("over budget: DecidePacket allocates %v times", n)
	}
}

func BenchmarkDecidePacket(b *testing.B) {
	b.Run("allowed", func(b *testing.B) {
		s := fixture(b, "budget: {packets: 1e7, packet_burst: 100000000, bytes: 1e11, byte_burst: 100000000000}\nglobal_packets: 0", core.Deps{Metrics: prometheus.NewRegistry()}, nil)
		m := meta("192.0.2.1:5060", "internet", 500)
		b.ReportAllocs()
		for b.Loop() {
			s.DecidePacket(m)
		}
	})
	b.Run("allowed_v6_with_global", func(b *testing.B) {
		s := fixture(b, "budget: {packets: 1e7, packet_burst: 100000000, bytes: 1e11, byte_burst: 100000000000}\nglobal_packets: 1e7\nglobal_burst: 1000000000", core.Deps{Metrics: prometheus.NewRegistry()}, nil)
		m := meta("[2001:db8::1]:5060", "internet", 500)
		b.ReportAllocs()
		for b.Loop() {
			s.DecidePacket(m)
		}
	})
	b.Run("over_budget", func(b *testing.B) {
		s := fixture(b, "", core.Deps{Metrics: prometheus.NewRegistry()}, nil)
		m := meta("192.0.2.1:5060", "internet", 500)
		for range 1000 {
			s.DecidePacket(m)
		}
		b.ReportAllocs()
		for b.Loop() {
			s.DecidePacket(m)
		}
	})
	b.Run("new_source_table_full", func(b *testing.B) {
		s := fixture(b, "max_sources: 4096", core.Deps{Metrics: prometheus.NewRegistry()}, nil)
		metas := make([]core.PacketMeta, 1<<16)
		for i := range metas {
			metas[i] = core.PacketMeta{Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5060)}
		}
		for i := range metas {
			s.DecidePacket(&metas[i])
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s.DecidePacket(&metas[i&(1<<16-1)])
			i++
		}
	})
	b.Run("new_source_table_growing", func(b *testing.B) {
		s := fixture(b, "max_sources: 100000000\nglobal_packets: 0", core.Deps{Metrics: prometheus.NewRegistry()}, nil)
		b.ReportAllocs()
		i := uint32(0)
		for b.Loop() {
			m := core.PacketMeta{Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 5060)}
			s.DecidePacket(&m)
			i++
		}
	})
	b.Run("parallel_known_sources", func(b *testing.B) {
		s := fixture(b, "budget: {packets: 1e7, packet_burst: 100000000, bytes: 1e11, byte_burst: 100000000000}\nglobal_packets: 0", core.Deps{Metrics: prometheus.NewRegistry()}, nil)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				m := core.PacketMeta{Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 5060)}
				s.DecidePacket(&m)
				i++
			}
		})
	})
}
