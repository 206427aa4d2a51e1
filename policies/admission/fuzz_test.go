package admission

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ucgate/ucgate/core"
)

// FuzzOperations drives the stage with an arbitrary sequence of offers,
// binds, unbinds, session ends, clock steps and sweeps, and checks that its
// counts always equal what a plain model of the calls says, that no limit
// is ever exceeded, and that everything is released in the end.
func FuzzOperations(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0x10, 0x11, 0x20, 0x40, 0x50})
	f.Add([]byte{0, 0, 0, 0, 0x10, 0x10, 0x10, 0x10, 0x20, 0x20, 0x60, 0x70})
	f.Add([]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x30, 0x60, 0x70, 0x10})
	f.Add([]byte{0, 0x10, 0x60, 0x60, 0x60, 0x60, 0x60, 0x70, 0x10, 0x30})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 400 {
			ops = ops[:400]
		}
		clk := newClock()
		cfg := decode(t, "source: {concurrent: 3, rate: 4, burst: 4}\nuser: {concurrent: 2, rate: 3, burst: 2}\n"+
			"global: {concurrent: 5, rate: 8, burst: 6}\ntrunks: {pbx: {concurrent: 4, rate: 5}}\nreserve_timeout: 2s")
		reg := prometheus.NewRegistry()
		s, err := newStage(cfg, core.Deps{Metrics: reg}, clk.Now, false)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()

		type pending struct {
			c        call
			deadline time.Time
		}
		var (
			reserved []pending       // admitted offers not bound yet, oldest first
			bound    []*core.Session // bound and not ended
			ended    []*core.Session // ended without an unbind, not swept yet
		)
		for _, op := range ops {
			arg := int(op & 0x0f)
			switch op >> 4 {
			case 0, 1: // an offer
				c := call{src: fmt.Sprintf("192.0.2.%d", arg&3), user: fmt.Sprintf("u%d@example.com", arg>>2&1)}
				if arg&8 != 0 {
					c.route = "pbx"
				}
				v, _ := s.Decide(context.Background(), c.event())
				if v.Action == core.Allow {
					reserved = append(reserved, pending{c, clk.Now().Add(2 * time.Second)})
				}
			case 2, 3: // bind the oldest reservation
				if len(reserved) == 0 {
					continue
				}
				p := reserved[0]
				reserved = reserved[1:]
				sess := p.c.session()
				s.Bind(sess)
				bound = append(bound, sess)
			case 4: // unbind
				if len(bound) == 0 {
					continue
				}
				i := arg % len(bound)
				s.Unbind(bound[i])
				bound = append(bound[:i], bound[i+1:]...)
			case 5: // the call ends without an unbind
				if len(bound) == 0 {
					continue
				}
				i := arg % len(bound)
				bound[i].End(clk.Now(), 200, "normal", core.RoleCaller)
				ended = append(ended, bound[i])
				bound = append(bound[:i], bound[i+1:]...)
			case 6:
				clk.Advance(time.Duration(arg+1) * 100 * time.Millisecond)
			case 7:
				s.sweep(s.mono(s.st.Load()))
				now := clk.Now()
				kept := reserved[:0]
				for _, p := range reserved {
					if now.Before(p.deadline) {
						kept = append(kept, p)
					}
				}
				reserved = kept
				ended = nil
			}
			// Expired reservations count until a sweep, like the model's.
			src, user, trunk, global, res := s.counts()
			if want := len(bound) + len(ended) + len(reserved); global != want || src != want || user != want || res != len(reserved) {
				t.Fatalf("counts %d %d %d reserved %d; model: %d bound, %d ended, %d reserved",
					src, user, global, res, len(bound), len(ended), len(reserved))
			}
			if global > 5 || trunk > 4 {
				t.Fatalf("over a limit: global %d trunk %d", global, trunk)
			}
			checkEntries(t, &s.st.Load().sources, 3)
			checkEntries(t, &s.st.Load().users, 2)
		}
		for _, sess := range bound {
			s.Unbind(sess)
		}
		clk.Advance(time.Minute)
		s.sweep(s.mono(s.st.Load()))
		if src, user, trunk, global, res := s.counts(); src|user|trunk|global|res != 0 {
			t.Fatalf("left counted: %d %d %d %d %d", src, user, trunk, global, res)
		}
		if s.st.Load().sources.keys.Load() != 0 || s.st.Load().users.keys.Load() != 0 {
			t.Fatalf("left entries: %d sources, %d users", s.st.Load().sources.keys.Load(), s.st.Load().users.keys.Load())
		}
		if n := metricValues(t, reg)["ucgate_admission_unreserved_binds_total"]; n != 0 {
			t.Fatalf("%v unreserved binds", n)
		}
	})
}

// checkEntries fails when an entry of tb is negative, over limit, or
// disagrees with its own reservations.
func checkEntries[K comparable](t *testing.T, tb *table[K], limit int32) {
	t.Helper()
	var keys int64
	for i := range tb.shards {
		sh := &tb.shards[i]
		sh.mu.Lock()
		keys += int64(len(sh.m))
		for k, e := range sh.m {
			if e.active < 0 || e.reserved < 0 || e.reserved > e.active || e.active > limit ||
				(len(e.pending) > 0 && e.reserved != int32(len(e.pending))) {
				sh.mu.Unlock()
				t.Fatalf("entry %v: active %d reserved %d pending %d", k, e.active, e.reserved, len(e.pending))
			}
		}
		sh.mu.Unlock()
	}
	if keys != tb.keys.Load() {
		t.Fatalf("%d entries, keys gauge %d", keys, tb.keys.Load())
	}
}
