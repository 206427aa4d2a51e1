package admission

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ucgate/ucgate/core"
)

// BenchmarkDecideRefused is what a flood of offers from one source costs
// once the source is over its limit.
func BenchmarkDecideRefused(b *testing.B) {
	f := newFixture(b, "source: {concurrent: 1}")
	f.admit(b, alice)
	ev := alice.event()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := f.s.Decide(ctx, ev); v.Action != core.Refuse {
			b.Fatal(v.Rule)
		}
	}
}

// BenchmarkDecideNotAnOffer is every other request: one comparison.
func BenchmarkDecideNotAnOffer(b *testing.B) {
	f := newFixture(b, "")
	ev := with(alice, func(c *call) { c.kind = core.KindInDialog }).event()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		f.s.Decide(ctx, ev)
	}
}

// BenchmarkAdmitCall is a whole admitted call's cost to the stage:
// Decide, Bind and Unbind, every limit on and a trunk configured.
func BenchmarkAdmitCall(b *testing.B) {
	f := newFixture(b, "source: {rate: 0}\nuser: {rate: 0}\nglobal: {rate: 0}\ntrunks: {pbx: {concurrent: 100}}")
	ev := alice.event()
	sess := alice.session()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := f.s.Decide(ctx, ev); v.Action != core.Allow {
			b.Fatal(v.Rule)
		}
		f.s.Bind(sess)
		f.s.Unbind(sess)
	}
}

// BenchmarkDecideParallel is offers from many sources on every core, half
// of them admitted (and bound and unbound), half refused.
func BenchmarkDecideParallel(b *testing.B) {
	f := newFixture(b, "source: {concurrent: 1, rate: 0}\nuser: {concurrent: 0, rate: 0}\nglobal: {concurrent: 0, rate: 0}")
	var next atomic.Int32
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		g := next.Add(1)
		c := call{src: fmt.Sprintf("198.51.100.%d", g), user: fmt.Sprintf("u%d@example.com", g)}
		ev, sess := c.event(), c.session()
		for pb.Next() {
			if v, _ := f.s.Decide(ctx, ev); v.Action != core.Allow {
				b.Fatal(v.Rule)
			}
			f.s.Bind(sess)
			if v, _ := f.s.Decide(ctx, ev); v.Action != core.Refuse {
				b.Fatal("second call admitted")
			}
			f.s.Unbind(sess)
		}
	})
}
