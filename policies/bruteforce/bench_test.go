package bruteforce

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

// BenchmarkDecide: the common case (no lockout in force), a request while
// other sources and users are locked out, and a locked-out source.
func BenchmarkDecide(b *testing.B) {
	ctx := context.Background()
	b.Run("no lockouts", func(b *testing.B) {
		f := newFixture(b, "")
		ev := request("192.0.2.7:5060", "alice")
		b.ReportAllocs()
		for b.Loop() {
			if v, _ := f.s.Decide(ctx, ev); v.Action != core.Allow {
				b.Fatal(v)
			}
		}
	})
	locked := func(b *testing.B) *fixture {
		f := newFixture(b, "")
		f.s.alerts = nil
		for i := range 1000 {
			for range 10 {
				f.fail(fmt.Sprintf("[2001:db8:%x::1]:5060", i), fmt.Sprintf("u%d", i))
			}
		}
		return f
	}
	b.Run("others locked", func(b *testing.B) {
		f := locked(b)
		ev := request("192.0.2.7:5060", "alice")
		b.ReportAllocs()
		for b.Loop() {
			if v, _ := f.s.Decide(ctx, ev); v.Action != core.Allow {
				b.Fatal(v)
			}
		}
	})
	b.Run("locked source", func(b *testing.B) {
		f := locked(b)
		ev := request("[2001:db8:7::9]:5060", "alice")
		b.ReportAllocs()
		for b.Loop() {
			if v, _ := f.s.Decide(ctx, ev); v.Action != core.Drop {
				b.Fatal(v)
			}
		}
	})
}

// BenchmarkAlert is counting one failure from one of many sources.
func BenchmarkAlert(b *testing.B) {
	f := newFixture(b, "")
	f.s.alerts, f.s.blocker = nil, nil
	evs := make([]core.SecurityEvent, 4096)
	for i := range evs {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		evs[i] = core.SecurityEvent{Rule: "auth/failure", Src: netip.AddrPortFrom(a, 5060).String(), User: fmt.Sprintf("u%d", i)}
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		f.s.Alert(&evs[i])
		if i++; i == len(evs) { // each source and user fails once a minute: below every limit
			i = 0
			f.clock = f.clock.Add(time.Minute)
		}
	}
	if n := len(f.s.Lockouts()); n != 0 {
		b.Fatalf("%d lockouts", n)
	}
}
