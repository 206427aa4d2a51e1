package blacklist

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
	"github.com/ucgate/ucgate/core/state"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

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

// fixture builds a stage from a config snippet over deps (nil State: a
// fresh in-memory one), with the clock c (nil: time.Now).
func fixture(t testing.TB, yaml string, deps core.Deps, c *clock) *Stage {
	t.Helper()
	cfg := Defaults()
	if _, err := config.Decode([]byte(yaml), "ucgate.yaml", &cfg); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if deps.State == nil {
		st, err := state.Open("", "")
		if err != nil {
			t.Fatal(err)
		}
		deps.State = st
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

// flush waits until every queued write reached core.State.
func (s *Stage) flush() {
	s.mu.Lock()
	done := s.enqueueWait(op{})
	s.mu.Unlock()
	_ = wait(done)
}

func packet(src string) *core.PacketMeta {
	return &core.PacketMeta{Src: netip.MustParseAddrPort(src), Transport: "udp", Zone: "internet"}
}

func TestDecidePacket(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		block  []string // through Block
		add    []string // through Add
		src    string
		action core.Action
		rule   string
	}{
		{"empty", "", nil, nil, "192.0.2.7:5060", core.Allow, ""},
		{"blocked", "", []string{"192.0.2.7"}, nil, "192.0.2.7:5060", core.Drop, RuleBlocked},
		{"blocked any port", "", []string{"192.0.2.7"}, nil, "192.0.2.7:1", core.Drop, RuleBlocked},
		{"neighbour", "", []string{"192.0.2.7"}, nil, "192.0.2.8:5060", core.Allow, ""},
		{"mapped source", "", []string{"192.0.2.7"}, nil, "[::ffff:192.0.2.7]:5060", core.Drop, RuleBlocked},
		{"mapped block", "", []string{"::ffff:192.0.2.7"}, nil, "192.0.2.7:5060", core.Drop, RuleBlocked},
		{"v6", "", []string{"2001:db8::7"}, nil, "[2001:db8::7]:5060", core.Drop, RuleBlocked},
		{"v6 neighbour", "", []string{"2001:db8::7"}, nil, "[2001:db8::8]:5060", core.Allow, ""},
		{"v6 zone ignored", "", []string{"fe80::7%eth0"}, nil, "[fe80::7%eth1]:5060", core.Drop, RuleBlocked},
		{"admin address", "", nil, []string{"192.0.2.7"}, "192.0.2.7:5060", core.Drop, RuleBlocked},
		{"admin prefix", "", nil, []string{"192.0.2.0/24"}, "192.0.2.200:5060", core.Drop, RuleBlocked},
		{"admin prefix outside", "", nil, []string{"192.0.2.0/24"}, "192.0.3.1:5060", core.Allow, ""},
		{"admin v6 prefix", "", nil, []string{"2001:db8::/32"}, "[2001:db8:1::1]:5060", core.Drop, RuleBlocked},
		{"admin v6 prefix v4 source", "", nil, []string{"::/0"}, "192.0.2.1:5060", core.Allow, ""},
		{"never block", "allow_never_block: [192.0.2.0/24]", []string{"192.0.2.7"}, nil, "192.0.2.7:5060", core.Allow, ""},
		{"never block does not stop admin", "allow_never_block: [192.0.2.0/24]", nil, []string{"192.0.2.7"}, "192.0.2.7:5060", core.Drop, RuleBlocked},
		{"disabled", "enabled: false", []string{"192.0.2.7"}, []string{"192.0.2.0/24"}, "192.0.2.7:5060", core.Allow, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fixture(t, tt.yaml, core.Deps{}, newClock())
			for _, b := range tt.block {
				s.Block(netip.MustParseAddr(b), "test/flood", "")
			}
			for _, k := range tt.add {
				if err := s.Add(k, time.Hour, ""); err != nil {
					t.Fatal(err)
				}
			}
			v := s.DecidePacket(packet(tt.src))
			if v.Action != tt.action || v.Rule != tt.rule {
				t.Errorf("DecidePacket = %v %q, want %v %q", v.Action, v.Rule, tt.action, tt.rule)
			}
			ev := &core.Event{Src: core.Source{Addr: netip.MustParseAddrPort(tt.src), Transport: "tls"}}
			v, err := s.Decide(context.Background(), ev)
			if err != nil || v.Action != tt.action || v.Rule != tt.rule {
				t.Errorf("Decide = %v %q %v, want %v %q", v.Action, v.Rule, err, tt.action, tt.rule)
			}
		})
	}
}

func TestGrowthAndForgetting(t *testing.T) {
	c := newClock()
	s := fixture(t, "block_time: 10m\ngrowth: 2\nmax_block_time: 24h\nforget_after: 24h", core.Deps{}, c)
	src := netip.MustParseAddr("192.0.2.7")
	want := []time.Duration{10 * time.Minute, 20 * time.Minute, 40 * time.Minute, 80 * time.Minute, 160 * time.Minute,
		320 * time.Minute, 640 * time.Minute, 1280 * time.Minute, 24 * time.Hour, 24 * time.Hour}
	for i, d := range want {
		s.Block(src, "test/flood", "again")
		l := s.List()
		if len(l) != 1 || l[0].Offences != i+1 || l[0].Until.Sub(l[0].Created) != d || !l[0].Created.Equal(c.now()) {
			t.Fatalf("offence %d: %+v, want a block of %v", i+1, l, d)
		}
		// Blocking a blocked source changes nothing.
		c.add(d / 2)
		s.Block(src, "test/flood", "again")
		if l2 := s.List(); len(l2) != 1 || l2[0] != l[0] {
			t.Fatalf("offence %d: re-blocking changed %+v to %+v", i+1, l, l2)
		}
		c.add(d - d/2 - time.Second)
		if v := s.DecidePacket(packet("192.0.2.7:5060")); v.Action != core.Drop {
			t.Fatalf("offence %d: allowed a second before the end", i+1)
		}
		c.add(time.Second)
		if v := s.DecidePacket(packet("192.0.2.7:5060")); v.Action != core.Allow {
			t.Fatalf("offence %d: still dropped at the end of the block", i+1)
		}
		c.add(time.Hour) // clean for an hour: still remembered
		s.cleanup()
	}
	// Clean for forget_after since the last block ended: a fresh start.
	c.add(24 * time.Hour)
	s.cleanup()
	s.Block(src, "test/flood", "after a long time")
	if l := s.List(); len(l) != 1 || l[0].Offences != 1 || l[0].Until.Sub(l[0].Created) != 10*time.Minute {
		t.Fatalf("after forget_after: %+v, want a first offence", l)
	}
}

func TestNoGrowthWhenForgetAfterIsZero(t *testing.T) {
	c := newClock()
	s := fixture(t, "forget_after: 0s", core.Deps{}, c)
	src := netip.MustParseAddr("2001:db8::7")
	for range 3 {
		s.Block(src, "test/flood", "")
		if l := s.List(); len(l) != 1 || l[0].Offences != 1 || l[0].Until.Sub(l[0].Created) != 10*time.Minute {
			t.Fatalf("%+v, want a first offence every time", l)
		}
		c.add(10 * time.Minute)
	}
}

func TestExpiry(t *testing.T) {
	c := newClock()
	st, _ := state.Open("", "")
	s := fixture(t, "", core.Deps{State: st}, c)
	s.Block(netip.MustParseAddr("192.0.2.7"), "test/flood", "")
	if err := s.Add("198.51.100.0/24", 5*time.Minute, "test"); err != nil {
		t.Fatal(err)
	}
	s.flush()
	if bs, _ := st.Blocks(context.Background()); len(bs) != 2 {
		t.Fatalf("state holds %+v, want 2 blocks", bs)
	}
	c.add(5 * time.Minute)
	if v := s.DecidePacket(packet("198.51.100.1:5060")); v.Action != core.Allow {
		t.Fatal("expired prefix block still drops")
	}
	if v := s.DecidePacket(packet("192.0.2.7:5060")); v.Action != core.Drop {
		t.Fatal("address block lifted early")
	}
	c.add(5 * time.Minute)
	if v := s.DecidePacket(packet("192.0.2.7:5060")); v.Action != core.Allow {
		t.Fatal("expired address block still drops before cleanup")
	}
	if l := s.List(); len(l) != 0 {
		t.Fatalf("List = %+v after expiry", l)
	}
	s.cleanup()
	s.flush()
	if sn := s.snap.Load(); !sn.empty() {
		t.Fatalf("snapshot after cleanup: %+v", sn)
	}
	// The offences are remembered; the store no longer holds the rows.
	if len(s.recs) != 2 {
		t.Fatalf("%d records after cleanup, want 2 remembered", len(s.recs))
	}
	c.add(24 * time.Hour)
	s.cleanup()
	if len(s.recs) != 0 {
		t.Fatalf("%d records after forget_after, want none", len(s.recs))
	}
	st2 := st // same store: look at the rows, expired ones included
	if bs, _ := st2.Blocks(context.Background()); len(bs) != 0 {
		t.Fatalf("state still lists %+v", bs)
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	st, err := state.Open("state.db", dir)
	if err != nil {
		t.Fatal(err)
	}
	s := fixture(t, "", core.Deps{State: st}, c)
	s.Block(netip.MustParseAddr("192.0.2.7"), "ratelimit/flood", "1000 drops in 10s")
	c.add(11 * time.Minute)
	s.Block(netip.MustParseAddr("192.0.2.7"), "ratelimit/flood", "again") // second offence: 20m
	s.Block(netip.MustParseAddr("2001:db8::7"), "scan/agent", "sipvicious")
	if err := s.Add("198.51.100.0/24", 48*time.Hour, "abuse report"); err != nil {
		t.Fatal(err)
	}
	before := s.List()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = state.Open("state.db", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s2 := fixture(t, "", core.Deps{State: st}, c)
	after := s2.List()
	if len(after) != 3 || len(before) != 3 {
		t.Fatalf("before %+v\nafter %+v", before, after)
	}
	for i := range after {
		b, a := before[i], after[i]
		if a.Key != b.Key || !a.Until.Equal(b.Until) || !a.Created.Equal(b.Created) || a.Rule != b.Rule || a.Reason != b.Reason || a.Offences != b.Offences {
			t.Errorf("block %d: before %+v, after %+v", i, b, a)
		}
	}
	for _, src := range []string{"192.0.2.7:5060", "[2001:db8::7]:5060", "198.51.100.99:5060"} {
		if v := s2.DecidePacket(packet(src)); v.Action != core.Drop || v.Rule != RuleBlocked {
			t.Errorf("%s after restart: %v %q", src, v.Action, v.Rule)
		}
	}
	// The offences survived: the next block of 192.0.2.7 is the third.
	c.add(21 * time.Minute)
	s2.Block(netip.MustParseAddr("192.0.2.7"), "ratelimit/flood", "third")
	for _, b := range s2.List() {
		if b.Key == "192.0.2.7" && (b.Offences != 3 || b.Until.Sub(b.Created) != 40*time.Minute) {
			t.Errorf("third offence after restart: %+v", b)
		}
	}
	// A removal is persisted too.
	if err := s2.Remove("198.51.100.0/24"); err != nil {
		t.Fatal(err)
	}
	if bs, _ := st.Blocks(context.Background()); len(bs) != 2 {
		t.Fatalf("state after Remove: %+v", bs)
	}
}

func TestLoadSkipsBadKeys(t *testing.T) {
	st, _ := state.Open("", "")
	ctx := context.Background()
	_ = st.PutBlock(ctx, core.Block{Key: "not an address", Until: time.Now().Add(time.Hour)})
	_ = st.PutBlock(ctx, core.Block{Key: "::ffff:192.0.2.9", Until: time.Now().Add(time.Hour), Offences: 2})
	s := fixture(t, "", core.Deps{State: st}, newClock())
	if l := s.List(); len(l) != 1 || l[0].Key != "192.0.2.9" || l[0].Offences != 2 {
		t.Fatalf("List = %+v", l)
	}
	if v := s.DecidePacket(packet("192.0.2.9:5060")); v.Action != core.Drop {
		t.Fatal("loaded block not enforced")
	}
}

func TestAddAndRemove(t *testing.T) {
	c := newClock()
	s := fixture(t, "", core.Deps{}, c)
	for _, tt := range []struct {
		key  string
		d    time.Duration
		want error
	}{
		{"192.0.2.0/24", 0, nil},
		{"192.0.2.7/24", time.Hour, ErrBadKey},
		{"example.com", time.Hour, ErrBadKey},
		{"192.0.2.8", -time.Second, ErrBadDuration},
		{"192.0.2.8", 101 * 365 * 24 * time.Hour, ErrBadDuration},
	} {
		if err := s.Add(tt.key, tt.d, ""); !errorsIs(err, tt.want) {
			t.Errorf("Add(%q, %v) = %v, want %v", tt.key, tt.d, err, tt.want)
		}
	}
	if err := s.Add("192.0.2.8", time.Hour, string(make([]byte, 257))); !errorsIs(err, ErrBadReason) {
		t.Errorf("long reason: %v", err)
	}
	l := s.List()
	if len(l) != 1 || l[0].Key != "192.0.2.0/24" || l[0].Rule != RuleAdmin || l[0].Until.Sub(l[0].Created) != 10*time.Minute {
		t.Fatalf("List = %+v", l)
	}
	if err := s.Remove("192.0.2.7"); !errorsIs(err, ErrNotBlocked) {
		t.Errorf("Remove of an address inside a blocked prefix = %v, want ErrNotBlocked", err)
	}
	if err := s.Remove("192.0.2.0/24"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("192.0.2.0/24"); !errorsIs(err, ErrNotBlocked) {
		t.Errorf("second Remove = %v", err)
	}
	if v := s.DecidePacket(packet("192.0.2.7:5060")); v.Action != core.Allow {
		t.Fatal("removed prefix still drops")
	}
	// Remove forgets the offences.
	s.Block(netip.MustParseAddr("192.0.2.7"), "test/flood", "")
	s.Block(netip.MustParseAddr("192.0.2.7"), "test/flood", "")
	if err := s.Remove("192.0.2.7"); err != nil {
		t.Fatal(err)
	}
	s.Block(netip.MustParseAddr("192.0.2.7"), "test/flood", "")
	if l := s.List(); len(l) != 1 || l[0].Offences != 1 {
		t.Fatalf("after Remove: %+v", l)
	}
	_ = s.Close()
	if err := s.Add("192.0.2.9", 0, ""); !errorsIs(err, ErrClosed) {
		t.Errorf("Add after Close = %v", err)
	}
	s.Block(netip.MustParseAddr("192.0.2.9"), "test/flood", "") // must not panic
}

func TestMaxEntries(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := fixture(t, "max_entries: 2", core.Deps{Metrics: reg}, newClock())
	for _, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		s.Block(netip.MustParseAddr(a), "test/flood", "")
	}
	if err := s.Add("192.0.2.0/24", time.Hour, ""); !errorsIs(err, ErrFull) {
		t.Errorf("Add when full = %v", err)
	}
	if v := s.DecidePacket(packet("192.0.2.3:5060")); v.Action != core.Allow {
		t.Error("third source blocked beyond max_entries")
	}
	if got := metric(t, reg, "ucgate_blacklist_overflow_total"); got != 2 {
		t.Errorf("overflow = %v, want 2", got)
	}
	// Replacing a block of a known key works when full.
	if err := s.Add("192.0.2.1", time.Hour, "longer"); err != nil {
		t.Error(err)
	}
}

func TestSecurityEvents(t *testing.T) {
	alerts := core.NewAlerts(16)
	got := make(chan *core.SecurityEvent, 16)
	alerts.Subscribe(core.AlertFunc(func(e *core.SecurityEvent) { got <- e }))
	defer alerts.Close()
	c := newClock()
	s := fixture(t, "allow_never_block: ['2001:db8::/32']", core.Deps{Alerts: alerts}, c)
	s.Block(netip.MustParseAddr("192.0.2.7"), "ratelimit/flood", "300 drops in 10s")
	s.Block(netip.MustParseAddr("192.0.2.7"), "ratelimit/flood", "still") // already blocked: no event
	s.Block(netip.MustParseAddr("2001:db8::1"), "scan/agent", "")         // never blocked: no event
	if err := s.Add("198.51.100.0/24", time.Hour, "abuse"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("198.51.100.0/24"); err != nil {
		t.Fatal(err)
	}
	want := []core.SecurityEvent{
		{Time: c.now(), Rule: "ratelimit/flood", Action: "block", Src: "192.0.2.7", Detail: "blocked for 10m0s: 300 drops in 10s"},
		{Time: c.now(), Rule: "admin", Action: "block", Src: "198.51.100.0/24", Detail: "blocked for 1h0m0s: abuse"},
		{Time: c.now(), Rule: "admin", Action: "unblock", Src: "198.51.100.0/24"},
	}
	for i, w := range want {
		select {
		case e := <-got:
			if *e != w {
				t.Errorf("event %d = %+v, want %+v", i, *e, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d never came", i)
		}
	}
	alerts.Close() // delivers what is queued
	if len(got) != 0 {
		t.Errorf("unexpected event %+v", <-got)
	}
}

func TestManyBlocksThroughTheOverlay(t *testing.T) {
	c := newClock()
	s := fixture(t, "", core.Deps{}, c)
	const n = 3 * maxDelta
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	for i := range n {
		s.Block(addr(i), "test/flood", "")
		if !s.blockedIn(s.snap.Load(), addr(i)) {
			t.Fatalf("block %d not visible", i)
		}
	}
	for i := 0; i < n; i += 2 {
		if err := s.Remove(addr(i).String()); err != nil {
			t.Fatal(err)
		}
	}
	sn := s.snap.Load()
	if len(sn.delta) > maxDelta {
		t.Fatalf("overlay grew to %d", len(sn.delta))
	}
	for i := range n {
		if got, want := s.blockedIn(sn, addr(i)), i%2 == 1; got != want {
			t.Fatalf("%v blocked = %v, want %v", addr(i), got, want)
		}
	}
	if l := s.List(); len(l) != n/2 {
		t.Fatalf("List has %d, want %d", len(l), n/2)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := fixture(t, "", core.Deps{}, newClock())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				a := netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)})
				s.Block(a, "test/flood", "")
				if v := s.DecidePacket(&core.PacketMeta{Src: netip.AddrPortFrom(a, 5060)}); v.Action != core.Drop {
					t.Errorf("%v not dropped right after its block", a)
					return
				}
				if i%3 == 0 {
					_ = s.Remove(a.String())
				}
				if i%100 == 0 {
					s.cleanup()
					_ = s.List()
				}
			}
		})
	}
	wg.Wait()
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, _ := state.Open("", "")
	s := fixture(t, "", core.Deps{Metrics: reg, State: st}, newClock())
	s.Block(netip.MustParseAddr("192.0.2.7"), "test/flood", "")
	s.flush()
	s.DecidePacket(packet("192.0.2.7:1"))
	s.DecidePacket(packet("192.0.2.7:2"))
	s.DecidePacket(packet("192.0.2.8:2"))
	// A reload's stage keeps counting on the same collectors.
	s2 := fixture(t, "", core.Deps{Metrics: reg, State: st}, newClock())
	s2.Block(netip.MustParseAddr("192.0.2.9"), "test/flood", "")
	for name, want := range map[string]float64{
		"ucgate_blacklist_dropped_total": 2,
		"ucgate_blacklist_blocks_total":  2,
		"ucgate_blacklist_entries":       2,
	} {
		if got := metric(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func metric(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestDecidePacketDoesNotAllocate(t *testing.T) {
	s := fixture(t, "", core.Deps{Metrics: prometheus.NewRegistry()}, newClock())
	for i := range 1000 {
		s.Block(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), "test/flood", "")
	}
	_ = s.Add("198.51.100.0/24", time.Hour, "")
	for _, src := range []string{"10.0.0.7:5060", "192.0.2.1:5060", "198.51.100.1:5060", "[2001:db8::1]:5060", "[::ffff:10.0.0.8]:5060"} {
		m := packet(src)
		if n := testing.AllocsPerRun(100, func() { s.DecidePacket(m) }); n != 0 {
			t.Errorf("DecidePacket(%s) allocates %v times", src, n)
		}
	}
}

func BenchmarkDecidePacket(b *testing.B) {
	for _, bc := range []struct {
		name   string
		blocks int
		nets   bool
		src    string
	}{
		{"empty", 0, false, "192.0.2.1:5060"},
		{"10k/not_blocked", 10000, false, "192.0.2.1:5060"},
		{"10k/blocked", 10000, false, "10.0.0.7:5060"},
		{"10k+prefixes/not_blocked", 10000, true, "192.0.2.1:5060"},
		{"10k+prefixes/blocked_by_prefix", 10000, true, "198.51.100.1:5060"},
		{"10k/not_blocked_v6", 10000, false, "[2001:db8::1]:5060"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := fixture(b, "max_entries: 20000", core.Deps{Metrics: prometheus.NewRegistry()}, nil)
			for i := range bc.blocks {
				s.Block(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "test/flood", "")
			}
			if bc.nets {
				for i := range 8 {
					_ = s.Add(fmt.Sprintf("203.0.%d.0/24", i), time.Hour, "")
				}
				_ = s.Add("198.51.100.0/24", time.Hour, "")
			}
			m := packet(bc.src)
			b.ReportAllocs()
			for b.Loop() {
				s.DecidePacket(m)
			}
		})
	}
}

func BenchmarkBlock(b *testing.B) {
	s := fixture(b, "max_entries: 10000000", core.Deps{}, nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Block(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "test/flood", "")
		i++
	}
}

func TestBlockFor(t *testing.T) {
	c := newClock()
	s := fixture(t, "", core.Deps{}, c)
	src := netip.MustParseAddr("192.0.2.7")
	get := func() core.Block {
		t.Helper()
		l := s.List()
		if len(l) != 1 {
			t.Fatalf("List = %+v", l)
		}
		return l[0]
	}
	s.BlockFor(src, time.Hour, "triggers/scan", "security event scan/agent")
	if b := get(); b.Until.Sub(b.Created) != time.Hour || b.Offences != 1 || b.Rule != "triggers/scan" {
		t.Fatalf("BlockFor 1h: %+v", b)
	}
	s.BlockFor(src, time.Minute, "triggers/scan", "") // shorter: no change
	if b := get(); !b.Until.Equal(c.now().Add(time.Hour)) {
		t.Fatalf("shorter BlockFor changed the block: %+v", b)
	}
	s.Block(src, "ratelimit/flood", "") // already blocked: no change
	if b := get(); b.Rule != "triggers/scan" {
		t.Fatalf("Block changed a longer block: %+v", b)
	}
	c.add(30 * time.Minute)
	s.BlockFor(src, 2*time.Hour, "triggers/scan", "") // longer: extended, same offence
	if b := get(); !b.Until.Equal(c.now().Add(2*time.Hour)) || b.Offences != 1 {
		t.Fatalf("longer BlockFor: %+v", b)
	}
	c.add(3 * time.Hour)
	s.Block(src, "ratelimit/flood", "") // a repeat offence grows from the trigger's
	if b := get(); b.Offences != 2 || b.Until.Sub(b.Created) != 20*time.Minute {
		t.Fatalf("Block after BlockFor: %+v", b)
	}
	c.add(time.Hour)
	s.BlockFor(src, 0, "triggers/scan", "") // 0: the growing block time
	if b := get(); b.Offences != 3 || b.Until.Sub(b.Created) != 40*time.Minute {
		t.Fatalf("BlockFor 0: %+v", b)
	}
	// A prefix block covers the source: BlockFor for longer adds its own.
	if err := s.Add("198.51.100.0/24", time.Minute, ""); err != nil {
		t.Fatal(err)
	}
	s.BlockFor(netip.MustParseAddr("198.51.100.9"), time.Hour, "triggers/scan", "")
	c.add(2 * time.Minute)
	if v := s.DecidePacket(packet("198.51.100.9:5060")); v.Action != core.Drop {
		t.Fatal("BlockFor inside an expiring prefix block was ignored")
	}
	s2 := fixture(t, "allow_never_block: [192.0.2.0/24]", core.Deps{}, c)
	s2.BlockFor(src, time.Hour, "triggers/scan", "")
	if l := s2.List(); len(l) != 0 {
		t.Fatalf("BlockFor ignored allow_never_block: %+v", l)
	}
}

func TestInherit(t *testing.T) {
	c := newClock()
	st, _ := state.Open("", "")
	reg := prometheus.NewRegistry()
	old := fixture(t, "", core.Deps{State: st, Metrics: reg}, c)
	src := netip.MustParseAddr("192.0.2.7")
	old.Block(src, "ratelimit/flood", "")
	c.add(11 * time.Minute)
	old.cleanup() // the block ended; its offence is remembered
	old.Block(netip.MustParseAddr("192.0.2.8"), "scan/agent", "")
	old.flush()

	// The reload: a new stage loads from the store, then inherits.
	s := fixture(t, "block_time: 1m", core.Deps{State: st, Metrics: reg}, c)
	if l := s.List(); len(l) != 1 || l[0].Key != "192.0.2.8" {
		t.Fatalf("loaded %+v", l)
	}
	s.Inherit(old)
	s.Inherit(s)
	old.Inherit(s) // no cycle: old already has a successor
	// The remembered offence carried over: a second offence, 2 x 1m.
	s.Block(src, "ratelimit/flood", "")
	for _, b := range s.List() {
		if b.Key == "192.0.2.7" && (b.Offences != 2 || b.Until.Sub(b.Created) != 2*time.Minute) {
			t.Fatalf("after the reload: %+v", b)
		}
	}
	// The old stage hands over: a block through it lands in the new one,
	// and its packet checks see the new one's blocks.
	old.Block(netip.MustParseAddr("2001:db8::9"), "ratelimit/flood", "")
	if v := s.DecidePacket(packet("[2001:db8::9]:5060")); v.Action != core.Drop {
		t.Fatal("a block through the old stage did not reach the new one")
	}
	if v := old.DecidePacket(packet("192.0.2.7:5060")); v.Action != core.Drop {
		t.Fatal("the old stage does not see the new one's blocks")
	}
	if err := old.Remove("192.0.2.7"); err != nil {
		t.Fatal(err)
	}
	if v := s.DecidePacket(packet("192.0.2.7:5060")); v.Action != core.Allow {
		t.Fatal("a removal through the old stage did not reach the new one")
	}
	if code, body := do(t, old.Handler(), "GET", "/blacklist", ""); code != 200 || !strings.Contains(body, "2001:db8::9") {
		t.Fatalf("old handler: %d %s", code, body)
	}
	_ = old.Close()
	s.Block(netip.MustParseAddr("192.0.2.10"), "ratelimit/flood", "")
	if v := s.DecidePacket(packet("192.0.2.10:5060")); v.Action != core.Drop {
		t.Fatal("new stage broken by the old one's Close")
	}
}
