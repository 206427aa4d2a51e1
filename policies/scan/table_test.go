package scan

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

func addr(i int) string {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String() + ":5060"
}

// TestTableBounded floods the stage from many more sources than it may
// track.
func TestTableBounded(t *testing.T) {
	e := newEnv(t, "max_sources: 100")
	for i := range 10000 {
		if v, _ := e.s.Decide(context.Background(), registerReq(addr(i), "1001", "Yealink")); v.Action != core.Allow {
			t.Fatalf("source %d refused: %+v", i, v)
		}
		if i%997 == 0 && e.s.table.size() > 100 {
			t.Fatalf("after %d sources the table holds %d, want at most 100", i+1, e.s.table.size())
		}
	}
	n := e.s.table.size()
	if n > 100 || n < 50 {
		t.Errorf("table holds %d sources, want at most 100 and most of them used", n)
	}
	if g := e.metric(t, "ucgate_scan_sources", ""); int(g) != n {
		t.Errorf("sources gauge = %v, table holds %d", g, n)
	}
	if ev := e.metric(t, "ucgate_scan_evicted_total", ""); ev < 9900-100 {
		t.Errorf("evicted = %v, want about 9900", ev)
	}
}

// TestTableBoundExact checks the bound for sizes below the shard count.
func TestTableBoundExact(t *testing.T) {
	for _, max := range []int{1, 2, 3, 63, 64, 65, 1000} {
		tb := newTable(max, time.Minute, prometheus.NewCounter(prometheus.CounterOpts{Name: "e"}), prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"}))
		if got := len(tb.shards) * tb.perShard; got > max || tb.perShard < 1 {
			t.Errorf("max %d: %d shards of %d", max, len(tb.shards), tb.perShard)
		}
		if len(tb.shards)&(len(tb.shards)-1) != 0 {
			t.Errorf("max %d: %d shards, not a power of two", max, len(tb.shards))
		}
	}
}

// TestIdleEviction checks that an idle source is swept rather than
// evicted, and that a detected source is kept while it is refused.
func TestIdleEviction(t *testing.T) {
	e := newEnv(t, "max_sources: 1") // one shard of one source
	ctx := context.Background()
	e.s.Decide(ctx, registerReq("198.51.100.1:5060", "1001", "Yealink"))
	e.clk.advance(time.Minute)
	e.s.Decide(ctx, registerReq("198.51.100.2:5060", "1001", "Yealink"))
	if n := e.metric(t, "ucgate_scan_evicted_total", ""); n != 0 {
		t.Errorf("an idle source was evicted (%v), not swept", n)
	}
	if e.s.table.size() != 1 {
		t.Errorf("table holds %d, want 1", e.s.table.size())
	}
	// A busy source is evicted when the table is full.
	e.clk.advance(time.Second)
	e.s.Decide(ctx, registerReq("198.51.100.3:5060", "1001", "Yealink"))
	if n := e.metric(t, "ucgate_scan_evicted_total", ""); n != 1 {
		t.Errorf("evicted = %v, want 1", n)
	}
}

func TestSweepKeepsFlagged(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	e.s.Decide(ctx, registerReq("203.0.113.9:5060", "1000", "friendly-scanner"))
	for i := range 300 {
		e.s.Decide(ctx, registerReq(addr(i), "1001", "Yealink"))
	}
	sweepAll := func() {
		now := e.clk.now()
		for i := range e.s.table.shards {
			sh := &e.s.table.shards[i]
			sh.mu.Lock()
			e.s.table.sweep(sh, now)
			sh.mu.Unlock()
		}
	}
	e.clk.advance(2 * time.Minute)
	sweepAll()
	if n := e.s.table.size(); n != 1 {
		t.Errorf("after the window %d sources remain, want only the flagged one", n)
	}
	if v, _ := e.s.Decide(ctx, inDialog("203.0.113.9:5060", "BYE", "")); v.Action != core.Drop {
		t.Errorf("flagged source forgotten: %+v", v)
	}
	e.clk.advance(15 * time.Minute)
	sweepAll()
	if n := e.s.table.size(); n != 0 {
		t.Errorf("after refuse_for %d sources remain, want none", n)
	}
	if g := e.metric(t, "ucgate_scan_sources", ""); g != 0 {
		t.Errorf("sources gauge = %v, want 0", g)
	}
}

// TestMapRebuilt checks that a shard's map is replaced once a flood has
// left it mostly empty.
func TestMapRebuilt(t *testing.T) {
	tb := newTable(1<<20, time.Minute, prometheus.NewCounter(prometheus.CounterOpts{Name: "e"}), prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"}))
	sh := &tb.shards[0]
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	sh.lastSweep = now
	for i := range 4000 {
		tb.insert(sh, netip.PrefixFrom(netip.MustParseAddrPort(addr(i)).Addr(), 32), now)
	}
	keep := netip.MustParsePrefix("192.0.2.1/32")
	tb.insert(sh, keep, now.Add(30*time.Second))
	old := fmt.Sprintf("%p", sh.m)
	tb.sweep(sh, now.Add(time.Minute))
	if len(sh.m) != 1 || sh.m[keep] == nil {
		t.Fatalf("after the sweep the shard holds %d sources", len(sh.m))
	}
	if fmt.Sprintf("%p", sh.m) == old || sh.peak != 1 {
		t.Errorf("map not rebuilt (peak %d)", sh.peak)
	}
}

// TestConcurrent runs Decide from many goroutines (go test -race).
func TestConcurrent(t *testing.T) {
	e := newEnv(t, "max_sources: 256")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				ip := addr(g*1000 + i%300)
				switch i % 4 {
				case 0:
					e.s.Decide(context.Background(), registerReq(ip, fmt.Sprint(i), ""))
				case 1:
					e.s.Decide(context.Background(), options(ip, fmt.Sprintf("sip:%d@192.0.2.1", i), ""))
				case 2:
					e.s.Decide(context.Background(), inDialog(ip, "BYE", ""))
				default:
					e.s.Decide(context.Background(), invite(ip, "1", "sip:2@192.0.2.1", "friendly-scanner"))
				}
				if i%100 == 0 {
					e.clk.advance(time.Second)
				}
			}
		}()
	}
	wg.Wait()
	if n := e.s.table.size(); n > 256 {
		t.Errorf("table holds %d sources, want at most 256", n)
	}
}

// TestInherit checks that a reload keeps what the old stage knew: counts
// in progress and detected sources.
func TestInherit(t *testing.T) {
	old := newEnv(t, "")
	ctx := context.Background()
	const counting, detected = "203.0.113.70:5060", "203.0.113.71:5060"
	for i := range 50 {
		old.s.Decide(ctx, registerReq(counting, fmt.Sprint(1000+i), ""))
	}
	old.s.Decide(ctx, registerReq(detected, "1", "friendly-scanner"))

	e := newEnv(t, "max_sources: 1000")
	e.clk.t = old.clk.now()
	e.s.Inherit(old.s)
	e.s.Inherit(nil)
	e.s.Inherit(e.s)
	if err := old.s.Close(); err != nil {
		t.Fatal(err)
	}
	if v, _ := e.s.Decide(ctx, inDialog(detected, "BYE", "")); v.Action != core.Drop || v.Rule != RuleAgent {
		t.Errorf("detected source after the reload: %+v", v)
	}
	first, _ := sweep(e, 20, time.Millisecond, func(i int) *core.Event { return registerReq(counting, fmt.Sprint(2000+i), "") })
	if first != 10 {
		t.Errorf("after the reload the 61st distinct user was request %d of the new stage, want 10", first)
	}
	if n := e.s.table.size(); n != 2 {
		t.Errorf("new table holds %d sources, want 2", n)
	}
}
