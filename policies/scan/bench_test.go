package scan

import (
	"context"
	"fmt"
	"testing"

	"github.com/ucgate/ucgate/core"
)

func BenchmarkDecide(b *testing.B) {
	ctx := context.Background()
	const agent = "Yealink SIP-T46S 66.86.0.15"
	cases := []struct {
		name string
		mk   func(i int) *core.Event
	}{
		{"phone REGISTER", func(int) *core.Event { return registerReq("198.51.100.7:5060", "1001", agent) }},
		{"OPTIONS keep-alive", func(int) *core.Event { return options("198.51.100.7:5060", "sip:example.com", agent) }},
		{"in-dialog BYE", func(int) *core.Event { return inDialog("198.51.100.7:5060", "BYE", agent) }},
		{"INVITEs from 4096 sources", func(i int) *core.Event {
			return invite(addr(i%4096), "1001", fmt.Sprintf("sip:%d@example.com", i%7), agent)
		}},
		{"detected scanner's next requests", func(int) *core.Event {
			return registerReq("203.0.113.50:5060", "1000", "friendly-scanner")
		}},
		{"long User-Agent", func(int) *core.Event {
			return registerReq("198.51.100.7:5060", "1001", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 JsSIP 3.10.1")
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b, "")
			evs := make([]*core.Event, 8192)
			for i := range evs {
				evs[i] = c.mk(i)
			}
			for _, ev := range evs { // warm the table
				e.s.Decide(ctx, ev)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e.s.Decide(ctx, evs[i&8191])
				i++
			}
		})
	}
}

func BenchmarkMatch(b *testing.B) {
	sigs := newSignatures(DefaultAgents)
	for _, ua := range []string{"Yealink SIP-T46S 66.86.0.15", "friendly-scanner", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 JsSIP 3.10.1"} {
		b.Run(ua[:8], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sigs.match(ua)
			}
		})
	}
}
