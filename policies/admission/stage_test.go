package admission

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ucgate/ucgate/core"
)

var (
	alice = call{src: "192.0.2.10", user: "alice@example.com", route: "pbx"}
	bob   = call{src: "192.0.2.11", user: "bob@example.com", route: "pbx"}
)

func with(c call, f func(*call)) call { f(&c); return c }

func TestDecide(t *testing.T) {
	tests := []struct {
		name   string
		conf   string
		before []call // admitted and bound first, all at the same instant
		offer  call
		action core.Action
		rule   string
	}{
		{"defaults admit a call", "", nil, alice, core.Allow, ""},
		{"only offers are judged", "source: {concurrent: 1}", []call{alice},
			with(alice, func(c *call) { c.kind = core.KindRegister }), core.Allow, ""},
		{"in-dialog requests are not judged", "source: {concurrent: 1}", []call{alice},
			with(alice, func(c *call) { c.kind = core.KindSessionUpdate }), core.Allow, ""},
		{"disabled", "enabled: false\nsource: {concurrent: 1}", []call{},
			alice, core.Allow, ""},

		{"source concurrent", "source: {concurrent: 2}",
			[]call{alice, with(alice, func(c *call) { c.user = "carol@example.com" })},
			with(alice, func(c *call) { c.user = "dave@example.com" }), core.Refuse, RuleSource},
		{"another source is not affected", "source: {concurrent: 2}",
			[]call{alice, with(alice, func(c *call) { c.user = "carol@example.com" })},
			bob, core.Allow, ""},
		{"source port does not matter", "source: {concurrent: 1}", []call{with(alice, func(c *call) { c.src = "192.0.2.10:5062" })},
			with(alice, func(c *call) { c.src = "192.0.2.10:5064"; c.user = "carol@example.com" }), core.Refuse, RuleSource},
		{"source rate", "source: {rate: 1, burst: 2}",
			[]call{alice, with(alice, func(c *call) { c.user = "carol@example.com" })},
			with(alice, func(c *call) { c.user = "dave@example.com" }), core.Refuse, RuleSourceRate},
		{"source checked before user", "source: {concurrent: 1}\nuser: {concurrent: 1}", []call{alice},
			alice, core.Refuse, RuleSource},

		{"user concurrent from anywhere", "user: {concurrent: 1}", []call{alice},
			with(bob, func(c *call) { c.user = "alice@example.com" }), core.Refuse, RuleUser},
		{"user domain is case-insensitive", "user: {concurrent: 1}", []call{alice},
			with(bob, func(c *call) { c.user = "alice@EXAMPLE.com" }), core.Refuse, RuleUser},
		{"user part is case-sensitive", "user: {concurrent: 1}", []call{alice},
			with(bob, func(c *call) { c.user = "Alice@example.com" }), core.Allow, ""},
		{"user rate", "user: {rate: 0.5, burst: 1}", []call{alice},
			with(bob, func(c *call) { c.user = "alice@example.com" }), core.Refuse, RuleUserRate},

		{"trunk concurrent", "trunks: {pbx: {concurrent: 1}}", []call{alice},
			bob, core.Refuse, RuleTrunk},
		{"unconfigured trunk is unlimited", "trunks: {pbx: {concurrent: 1}}", []call{alice},
			with(bob, func(c *call) { c.route = "carrier" }), core.Allow, ""},
		{"registered user has no trunk", "trunks: {pbx: {concurrent: 1}}", []call{alice},
			with(bob, func(c *call) { c.route = "" }), core.Allow, ""},
		{"trunk rate", "trunks: {pbx: {rate: 1}}", []call{alice},
			bob, core.Refuse, RuleTrunkRate},

		{"global concurrent", "global: {concurrent: 2}", []call{alice, bob},
			call{src: "198.51.100.7", user: "carol@example.com"}, core.Refuse, RuleGlobal},
		{"global rate", "global: {rate: 2, burst: 2}", []call{alice, bob},
			call{src: "198.51.100.7", user: "carol@example.com"}, core.Refuse, RuleGlobalRate},
		{"trunk checked before global", "global: {concurrent: 1}\ntrunks: {pbx: {concurrent: 1}}", []call{alice},
			bob, core.Refuse, RuleTrunk},

		{"zone trunk has no source or user limit by default", "source: {concurrent: 1}\nuser: {concurrent: 1}",
			[]call{with(alice, func(c *call) { c.zone = "trunk" })},
			with(alice, func(c *call) { c.zone = "trunk" }), core.Allow, ""},
		{"zone override keeps the keys it leaves out", "source: {concurrent: 1, rate: 5}\nzones: {internet: {source: {rate: 100}}}",
			[]call{alice}, with(alice, func(c *call) { c.user = "carol@example.com" }), core.Refuse, RuleSource},
		{"zone override of a rate", "source: {rate: 5, burst: 10}\nzones: {internet: {source: {rate: 0.5, burst: 1}}}",
			[]call{alice}, with(alice, func(c *call) { c.user = "carol@example.com" }), core.Refuse, RuleSourceRate},
		{"zone override does not reach other zones", "source: {concurrent: 1}\nzones: {internet: {source: {concurrent: 5}}}",
			[]call{with(alice, func(c *call) { c.zone = "branch" })},
			with(alice, func(c *call) { c.zone = "branch"; c.user = "carol@example.com" }), core.Refuse, RuleSource},

		{"an IPv6 /64 is one source", "source: {concurrent: 1}", []call{{src: "2001:db8::1", user: "a@example.com"}},
			call{src: "2001:db8::2", user: "b@example.com"}, core.Refuse, RuleSource},
		{"another /64 is another source", "source: {concurrent: 1}", []call{{src: "2001:db8::1", user: "a@example.com"}},
			call{src: "2001:db8:0:1::1", user: "b@example.com"}, core.Allow, ""},
		{"ipv6_prefix 128 counts addresses", "source: {concurrent: 1}\nipv6_prefix: 128", []call{{src: "2001:db8::1", user: "a@example.com"}},
			call{src: "2001:db8::2", user: "b@example.com"}, core.Allow, ""},
		{"IPv4-mapped IPv6 is the IPv4 source", "source: {concurrent: 1}", []call{alice},
			call{src: "[::ffff:192.0.2.10]:5060", user: "b@example.com"}, core.Refuse, RuleSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.conf)
			for i, c := range tt.before {
				if _, v := f.admit(t, c); v.Action != core.Allow {
					t.Fatalf("before[%d]: %v %s", i, v.Action, v.Rule)
				}
			}
			v := f.decide(t, tt.offer)
			if v.Action != tt.action || v.Rule != tt.rule {
				t.Errorf("got %v %q, want %v %q", v.Action, v.Rule, tt.action, tt.rule)
			}
		})
	}
}

func TestRefusalVerdict(t *testing.T) {
	tests := []struct {
		conf   string
		reason core.Reason
		retry  time.Duration
	}{
		{"source: {concurrent: 1}", core.ReasonUnavailable, 5 * time.Second},
		{"source: {concurrent: 1}\nover: busy", core.ReasonBusy, 5 * time.Second},
		{"source: {concurrent: 1}\nretry_after: 30s", core.ReasonUnavailable, 30 * time.Second},
		{"source: {concurrent: 1}\nover: busy\nretry_after: 0s", core.ReasonBusy, 0},
	}
	for _, tt := range tests {
		t.Run(tt.conf, func(t *testing.T) {
			f := newFixture(t, tt.conf)
			f.admit(t, alice)
			v := f.decide(t, alice)
			want := core.Verdict{Action: core.Refuse, Reason: tt.reason, Rule: RuleSource,
				Detail: "too many concurrent calls from this source", RetryAfter: tt.retry, CDR: true}
			if v.Action != want.Action || v.Reason != want.Reason || v.Rule != want.Rule ||
				v.Detail != want.Detail || v.RetryAfter != want.RetryAfter || v.CDR != want.CDR || v.Delay != 0 {
				t.Errorf("got %+v\nwant %+v", v, want)
			}
		})
	}
}

func TestUnbindReleases(t *testing.T) {
	f := newFixture(t, "source: {concurrent: 1}\nuser: {concurrent: 1}\nglobal: {concurrent: 1}\ntrunks: {pbx: {concurrent: 1}}")
	sess, v := f.admit(t, alice)
	if v.Action != core.Allow {
		t.Fatalf("first call: %v %s", v.Action, v.Rule)
	}
	f.s.Bind(sess) // a second Bind counts nothing more
	if src, user, trunk, global, reserved := f.s.counts(); src != 1 || user != 1 || trunk != 1 || global != 1 || reserved != 0 {
		t.Fatalf("counts after bind: %d %d %d %d %d", src, user, trunk, global, reserved)
	}
	if v := f.decide(t, alice); v.Rule != RuleSource {
		t.Fatalf("second call: %v %q", v.Action, v.Rule)
	}
	f.s.Unbind(sess)
	f.s.Unbind(sess) // a second Unbind releases nothing more
	if src, user, trunk, global, reserved := f.s.counts(); src != 0 || user != 0 || trunk != 0 || global != 0 || reserved != 0 {
		t.Fatalf("counts after unbind: %d %d %d %d %d", src, user, trunk, global, reserved)
	}
	if _, v := f.admit(t, alice); v.Action != core.Allow {
		t.Fatalf("call after unbind: %v %q", v.Action, v.Rule)
	}
}

func TestRateRefillsWithTime(t *testing.T) {
	f := newFixture(t, "source: {concurrent: 0, rate: 5, burst: 10}\nuser: {concurrent: 0, rate: 0}")
	n := 0
	next := func() core.Verdict {
		n++
		s, v := f.admit(t, with(alice, func(c *call) { c.user = fmt.Sprintf("u%d@example.com", n) }))
		if s != nil {
			f.s.Unbind(s)
		}
		return v
	}
	for i := range 10 {
		if v := next(); v.Action != core.Allow {
			t.Fatalf("burst call %d: %v %q", i, v.Action, v.Rule)
		}
	}
	for range 3 { // refused attempts take no token
		if v := next(); v.Rule != RuleSourceRate {
			t.Fatalf("call over the burst: %v %q", v.Action, v.Rule)
		}
	}
	f.clk.Advance(199 * time.Millisecond)
	if v := next(); v.Rule != RuleSourceRate {
		t.Fatalf("before a token: %v %q", v.Action, v.Rule)
	}
	f.clk.Advance(time.Millisecond)
	if v := next(); v.Action != core.Allow {
		t.Fatalf("after 200ms: %v %q", v.Action, v.Rule)
	}
	if v := next(); v.Rule != RuleSourceRate {
		t.Fatalf("one token only: %v %q", v.Action, v.Rule)
	}
	f.clk.Advance(10 * time.Second) // the bucket fills up to the burst, no more
	for i := range 10 {
		if v := next(); v.Action != core.Allow {
			t.Fatalf("refilled burst call %d: %v %q", i, v.Action, v.Rule)
		}
	}
	if v := next(); v.Rule != RuleSourceRate {
		t.Fatalf("over the refilled burst: %v %q", v.Action, v.Rule)
	}
}

func TestGlobalRateIsNotSpentByRefusedOffers(t *testing.T) {
	// A source over its own limit must not use up the gateway's rate.
	f := newFixture(t, "source: {rate: 1, burst: 1}\nglobal: {rate: 2, burst: 2}")
	if _, v := f.admit(t, alice); v.Action != core.Allow {
		t.Fatal(v.Rule)
	}
	for range 50 {
		if v := f.decide(t, alice); v.Rule != RuleSourceRate {
			t.Fatalf("flooding source: %v %q", v.Action, v.Rule)
		}
	}
	if _, v := f.admit(t, bob); v.Action != core.Allow {
		t.Fatalf("other source after a flood: %v %q", v.Action, v.Rule)
	}
}

func TestReservationExpires(t *testing.T) {
	f := newFixture(t, "source: {concurrent: 1}\nreserve_timeout: 5s")
	if v := f.decide(t, alice); v.Action != core.Allow {
		t.Fatal(v.Rule)
	}
	// No Bind: a later stage refused the offer.
	if v := f.decide(t, alice); v.Rule != RuleSource {
		t.Fatalf("reserved slot: %v %q", v.Action, v.Rule)
	}
	f.clk.Advance(4900 * time.Millisecond)
	f.s.sweep(f.s.mono(f.s.st.Load()))
	if _, _, _, global, reserved := f.s.counts(); global != 1 || reserved != 1 {
		t.Fatalf("before the timeout: global %d reserved %d", global, reserved)
	}
	f.clk.Advance(100 * time.Millisecond)
	f.s.sweep(f.s.mono(f.s.st.Load()))
	if src, user, trunk, global, reserved := f.s.counts(); src+user+trunk+global+reserved != 0 {
		t.Fatalf("after the timeout: %d %d %d %d %d", src, user, trunk, global, reserved)
	}
	if got := metricValues(t, f.reg)["ucgate_admission_expired_reservations_total"]; got != 1 {
		t.Errorf("expired reservations metric: %v", got)
	}
	if _, v := f.admit(t, alice); v.Action != core.Allow {
		t.Fatalf("after expiry: %v %q", v.Action, v.Rule)
	}
}

func TestBindClaimsTheMatchingReservation(t *testing.T) {
	f := newFixture(t, "trunks: {pbx: {concurrent: 5}, carrier: {concurrent: 5}}")
	toCarrier := with(alice, func(c *call) { c.route = "carrier" })
	for _, c := range []call{alice, toCarrier} {
		if v := f.decide(t, c); v.Action != core.Allow {
			t.Fatal(v.Rule)
		}
	}
	f.s.Bind(toCarrier.session())
	snap := f.s.Snapshot()
	want := []Usage{{Key: "carrier", Calls: 1, Reserved: 0, Limit: 5}, {Key: "pbx", Calls: 1, Reserved: 1, Limit: 5}}
	if !slices.Equal(snap.Trunks, want) {
		t.Errorf("trunks: %+v, want %+v", snap.Trunks, want)
	}
	if got := metricValues(t, f.reg)["ucgate_admission_unreserved_binds_total"]; got != 0 {
		t.Errorf("unreserved binds: %v", got)
	}
}

func TestUnreservedBindIsCounted(t *testing.T) {
	f := newFixture(t, "source: {concurrent: 1}")
	sess := alice.session()
	f.s.Bind(sess) // no Decide: admitted by a pipeline a reload replaced
	if got := metricValues(t, f.reg)["ucgate_admission_unreserved_binds_total"]; got != 1 {
		t.Errorf("unreserved binds: %v", got)
	}
	if v := f.decide(t, alice); v.Rule != RuleSource {
		t.Fatalf("over an unreserved call: %v %q", v.Action, v.Rule)
	}
	f.s.Unbind(sess)
	if src, user, trunk, global, _ := f.s.counts(); src+user+trunk+global != 0 {
		t.Fatalf("after unbind: %d %d %d %d", src, user, trunk, global)
	}
}

func TestEndedSessionIsReleasedWithoutUnbind(t *testing.T) {
	f := newFixture(t, "source: {concurrent: 1}")
	sess, _ := f.admit(t, alice)
	f.s.sweep(f.s.mono(f.s.st.Load()))
	if v := f.decide(t, alice); v.Rule != RuleSource {
		t.Fatalf("call in progress: %v %q", v.Action, v.Rule)
	}
	sess.End(time.Now(), 200, "normal", core.RoleCaller)
	f.s.sweep(f.s.mono(f.s.st.Load()))
	if _, v := f.admit(t, alice); v.Action != core.Allow {
		t.Fatalf("after the call ended: %v %q", v.Action, v.Rule)
	}
	f.s.Unbind(sess) // the late Unbind of the ended call releases nothing
	if _, _, _, global, _ := f.s.counts(); global != 1 {
		t.Fatalf("global after a late unbind: %d", global)
	}
}

// TestInherit is a configuration reload: the new stage takes over the
// old one's counts, under its own limits; calls bound to the old pipeline
// end there and are released for both.
func TestInherit(t *testing.T) {
	old := newFixture(t, "source: {concurrent: 5}\ntrunks: {pbx: {concurrent: 5}}")
	running, _ := old.admit(t, alice)
	old.decide(t, bob) // a reservation in flight during the swap
	next, err := newStage(decode(t, "source: {concurrent: 1}\ntrunks: {pbx: {concurrent: 2}, carrier: {concurrent: 1}}"),
		core.Deps{}, old.clk.Now, false)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	next.Inherit(old.s)
	next.Inherit(next) // harmless
	next.Inherit(nil)
	if v, _ := next.Decide(context.Background(), alice.event()); v.Rule != RuleSource {
		t.Fatalf("under the new limit, with the old call: %v %q", v.Action, v.Rule)
	}
	if v, _ := next.Decide(context.Background(), call{src: "198.51.100.7", user: "carol@example.com", route: "pbx"}.event()); v.Rule != RuleTrunk {
		t.Fatalf("trunk under the new limit: %v %q", v.Action, v.Rule)
	}
	next.Bind(bob.session()) // the reservation made by the old stage is claimed by the new one
	if got := metricValues(t, old.reg)["ucgate_admission_unreserved_binds_total"]; got != 0 {
		t.Errorf("unreserved binds: %v", got)
	}
	snap := next.Snapshot()
	wantTrunks := []Usage{{Key: "carrier", Limit: 1}, {Key: "pbx", Calls: 2, Limit: 2}}
	if !slices.Equal(snap.Trunks, wantTrunks) || snap.Global.Calls != 2 {
		t.Errorf("snapshot after inherit: %+v", snap)
	}
	old.s.Close()
	old.s.Unbind(running) // the adapter unbinds on the pipeline the call was bound to
	if v, _ := next.Decide(context.Background(), alice.event()); v.Action != core.Allow {
		t.Fatalf("after the old call ended: %v %q", v.Action, v.Rule)
	}
	old.clk.Advance(5 * time.Second)
	next.sweep(next.mono(next.st.Load())) // the new stage's janitor expires what either reserved
	if _, _, _, global, reserved := next.counts(); global != 1 || reserved != 0 {
		t.Errorf("after the sweep: global %d reserved %d", global, reserved)
	}
}

func TestMaxKeys(t *testing.T) {
	f := newFixture(t, "max_keys: 1024\nsource: {rate: 1, burst: 1}\nuser: {rate: 0}")
	// 1024 keys are 32 shards of 32: fill alice's shard with busy sources.
	target := f.s.st.Load().sources.shard(f.s.sourceKey(alice.addr().Addr()))
	var inShard []call
	for i := 0; len(inShard) < 33; i++ {
		c := call{src: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), user: fmt.Sprintf("u%d@example.com", i)}
		if i == 0 {
			c = alice
		}
		if f.s.st.Load().sources.shard(f.s.sourceKey(c.addr().Addr())) == target {
			inShard = append(inShard, c)
		}
	}
	var first *core.Session
	for i, c := range inShard[:32] {
		s, v := f.admit(t, c)
		if v.Action != core.Allow {
			t.Fatalf("source %d: %v %q", i, v.Action, v.Rule)
		}
		if i == 0 {
			first = s
		}
	}
	last := inShard[32]
	v := f.decide(t, last)
	if v.Rule != RuleSource || v.Detail != "too many sources tracked" {
		t.Fatalf("source over a full shard: %v %q %q", v.Action, v.Rule, v.Detail)
	}
	if _, _, _, global, reserved := f.s.counts(); global != 32 || reserved != 0 {
		t.Fatalf("a refusal for a full shard counts nothing: global %d reserved %d", global, reserved)
	}
	if v := f.decide(t, bob); v.Action != core.Allow && f.s.st.Load().sources.shard(f.s.sourceKey(bob.addr().Addr())) != target {
		t.Fatalf("a source of another shard: %v %q", v.Action, v.Rule)
	}
	f.s.Unbind(first)
	if v := f.decide(t, last); v.Rule != RuleSource {
		t.Fatalf("the first source's bucket is not full yet: %v %q", v.Action, v.Rule)
	}
	f.clk.Advance(time.Second) // its entry is idle now: evicted for the newcomer
	if _, v := f.admit(t, last); v.Action != core.Allow {
		t.Fatalf("after an entry went idle: %v %q", v.Action, v.Rule)
	}
}

func TestIdleEntriesAreEvicted(t *testing.T) {
	f := newFixture(t, "")
	sess, _ := f.admit(t, alice)
	f.s.Unbind(sess)
	f.s.sweep(f.s.mono(f.s.st.Load()))
	if f.s.st.Load().sources.keys.Load() != 1 || f.s.st.Load().users.keys.Load() != 1 {
		t.Fatalf("entries left before their buckets refill: %d %d", f.s.st.Load().sources.keys.Load(), f.s.st.Load().users.keys.Load())
	}
	f.clk.Advance(time.Second)
	f.s.sweep(f.s.mono(f.s.st.Load()))
	if f.s.st.Load().sources.keys.Load() != 0 || f.s.st.Load().users.keys.Load() != 0 {
		t.Fatalf("idle entries kept: %d %d", f.s.st.Load().sources.keys.Load(), f.s.st.Load().users.keys.Load())
	}
}

// TestBurst fires offers from many goroutines at once, each binding its
// session as soon as it is admitted, as the adapter does: the limits must
// hold exactly, with no overshoot and no slot lost.
func TestBurst(t *testing.T) {
	tests := []struct {
		name    string
		conf    string
		sources int
		admit   int
		rule    string
	}{
		{"one source", "source: {concurrent: 20, rate: 0}\nuser: {concurrent: 0, rate: 0}", 1, 20, RuleSource},
		{"global over many sources", "source: {concurrent: 20, rate: 0}\nuser: {concurrent: 0, rate: 0}\nglobal: {concurrent: 50, rate: 0}", 40, 50, RuleGlobal},
		{"trunk over many sources", "source: {rate: 0}\nuser: {concurrent: 0, rate: 0}\ntrunks: {pbx: {concurrent: 30}}", 40, 30, RuleTrunk},
		{"global rate", "source: {rate: 0}\nuser: {concurrent: 0, rate: 0}\nglobal: {rate: 10, burst: 25}", 40, 25, RuleGlobalRate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.conf)
			const offers = 800
			var (
				wg       sync.WaitGroup
				admitted atomic.Int32
				mu       sync.Mutex
				sessions []*core.Session
				rules    = map[string]int{}
			)
			start := make(chan struct{})
			for i := range offers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := call{src: fmt.Sprintf("198.51.100.%d", i%tt.sources), user: fmt.Sprintf("u%d@example.com", i), route: "pbx"}
					<-start
					v, _ := f.s.Decide(context.Background(), c.event())
					mu.Lock()
					defer mu.Unlock()
					rules[v.Rule]++
					if v.Action == core.Allow {
						admitted.Add(1)
						s := c.session()
						f.s.Bind(s)
						sessions = append(sessions, s)
					}
				}()
			}
			close(start)
			wg.Wait()
			if got := int(admitted.Load()); got != tt.admit {
				t.Errorf("admitted %d, want %d (rules %v)", got, tt.admit, rules)
			}
			if rules[tt.rule] != offers-tt.admit {
				t.Errorf("refused by %s: %d, want %d (rules %v)", tt.rule, rules[tt.rule], offers-tt.admit, rules)
			}
			if _, _, _, global, reserved := f.s.counts(); global != tt.admit || reserved != 0 {
				t.Errorf("global %d reserved %d after the burst", global, reserved)
			}
			if got := metricValues(t, f.reg)["ucgate_admission_unreserved_binds_total"]; got != 0 {
				t.Errorf("unreserved binds: %v", got)
			}
			var wg2 sync.WaitGroup
			for _, s := range sessions {
				wg2.Add(1)
				go func() { defer wg2.Done(); f.s.Unbind(s) }()
			}
			wg2.Wait()
			if src, user, trunk, global, reserved := f.s.counts(); src+user+trunk+global+reserved != 0 {
				t.Errorf("after unbinding all: %d %d %d %d %d", src, user, trunk, global, reserved)
			}
			snap := f.s.Snapshot()
			if len(snap.Sources) != 0 || len(snap.Users) != 0 || snap.Global.Calls != 0 {
				t.Errorf("snapshot after unbinding all: %+v", snap)
			}
		})
	}
}

// TestBurstChurn has calls start and end concurrently while offers keep
// coming: at no moment may more calls run than the limit allows.
func TestBurstChurn(t *testing.T) {
	f := newFixture(t, "source: {rate: 0, concurrent: 0}\nuser: {concurrent: 0, rate: 0}\nglobal: {concurrent: 16, rate: 0}")
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				c := call{src: fmt.Sprintf("198.51.100.%d", g), user: fmt.Sprintf("u%d-%d@example.com", g, i)}
				v, _ := f.s.Decide(context.Background(), c.event())
				if v.Action != core.Allow {
					continue
				}
				n := running.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				s := c.session()
				f.s.Bind(s)
				running.Add(-1) // the call ends before its count is given back
				f.s.Unbind(s)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 16 || p == 0 {
		t.Errorf("peak concurrent calls %d, limit 16", p)
	}
	if src, user, trunk, global, reserved := f.s.counts(); src+user+trunk+global+reserved != 0 {
		t.Errorf("after the churn: %d %d %d %d %d", src, user, trunk, global, reserved)
	}
}

func TestSnapshot(t *testing.T) {
	f := newFixture(t, "trunks: {pbx: {concurrent: 10}}")
	f.admit(t, alice)
	f.admit(t, with(alice, func(c *call) { c.user = "carol@Example.COM" }))
	f.admit(t, call{src: "2001:db8::7", user: "bob@example.com", route: "carrier"})
	f.decide(t, bob) // reserved, not bound
	snap := f.s.Snapshot()
	want := Snapshot{
		Global: Usage{Key: "global", Calls: 4, Reserved: 1, Limit: 2000},
		Trunks: []Usage{{Key: "carrier", Calls: 1}, {Key: "pbx", Calls: 3, Reserved: 1, Limit: 10}},
		Sources: []Usage{{Key: "192.0.2.10", Calls: 2}, {Key: "192.0.2.11", Calls: 1, Reserved: 1},
			{Key: "2001:db8::/64", Calls: 1}},
		Users: []Usage{{Key: "bob@example.com", Calls: 2, Reserved: 1}, {Key: "alice@example.com", Calls: 1},
			{Key: "carol@example.com", Calls: 1}},
	}
	if fmt.Sprintf("%+v", snap) != fmt.Sprintf("%+v", want) {
		t.Errorf("snapshot\n got %+v\nwant %+v", snap, want)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, "source: {concurrent: 1}")
	a, _ := f.admit(t, alice)
	f.decide(t, bob)
	f.decide(t, alice)
	f.decide(t, alice)
	want := map[string]float64{
		"ucgate_admission_calls{kind=global}":                   2,
		"ucgate_admission_calls{kind=source}":                   2,
		"ucgate_admission_calls{kind=trunk}":                    2,
		"ucgate_admission_calls{kind=user}":                     2,
		"ucgate_admission_reserved_calls":                       1,
		"ucgate_admission_keys{kind=source}":                    2,
		"ucgate_admission_keys{kind=user}":                      2,
		"ucgate_admission_keys{kind=trunk}":                     1,
		"ucgate_admission_unreserved_binds_total":               0,
		"ucgate_admission_expired_reservations_total":           0,
		"ucgate_admission_refused_total{rule=admission/source}": 2,
	}
	for _, r := range ruleNames {
		if r != RuleSource {
			want["ucgate_admission_refused_total{rule="+r+"}"] = 0
		}
	}
	if got := metricValues(t, f.reg); !maps.Equal(got, want) {
		t.Errorf("metrics\n got %v\nwant %v", got, want)
	}

	// A reload builds a new stage on the same registry: the counters go
	// on, the gauges follow the new stage, and closing the old one does
	// not take them away.
	s2, err := newStage(decode(t, "source: {concurrent: 1}"), core.Deps{Metrics: f.reg}, f.clk.Now, false)
	if err != nil {
		t.Fatalf("second stage on the same registry: %v", err)
	}
	defer s2.Close()
	s2.Decide(context.Background(), alice.event())
	s2.Decide(context.Background(), alice.event())
	f.s.Unbind(a)
	f.s.Close()
	got := metricValues(t, f.reg)
	for k, v := range map[string]float64{
		"ucgate_admission_calls{kind=global}":                   1,
		"ucgate_admission_calls{kind=source}":                   1,
		"ucgate_admission_reserved_calls":                       1,
		"ucgate_admission_refused_total{rule=admission/source}": 3,
	} {
		if got[k] != v {
			t.Errorf("after reload %s = %v, want %v", k, got[k], v)
		}
	}
	s2.Close()
	if got := metricValues(t, f.reg); got["ucgate_admission_calls{kind=global}"] != 0 {
		t.Errorf("gauges of a closed stage still reported: %v", got)
	}
}

func TestMetricsConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "ucgate_admission_refused_total", Help: "squatter"}))
	_, err := New(Defaults(), core.Deps{Metrics: reg})
	if err == nil || !strings.Contains(err.Error(), "admission: register metrics") {
		t.Fatalf("got %v", err)
	}
}

func TestNewRejectsAnInvalidConfig(t *testing.T) {
	cfg := Defaults()
	cfg.Over = "drop"
	if _, err := New(cfg, core.Deps{}); err == nil {
		t.Fatal("no error")
	}
}

func TestCloseStopsTheJanitorAndKeepsCounting(t *testing.T) {
	cfg := decode(t, "source: {concurrent: 1}")
	s, err := New(cfg, core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "admission" || s.Layer() != core.Application {
		t.Errorf("name %q layer %v", s.Name(), s.Layer())
	}
	v, _ := s.Decide(context.Background(), alice.event())
	sess := alice.session()
	s.Bind(sess)
	if err := s.Close(); err != nil || s.Close() != nil {
		t.Fatal("close:", err)
	}
	if v.Action != core.Allow {
		t.Fatal(v.Rule)
	}
	s.Unbind(sess)
	if _, _, _, global, _ := s.counts(); global != 0 {
		t.Fatalf("unbind after close: global %d", global)
	}
}
