package bruteforce

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/ucgate/ucgate/core"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type block struct {
	addr         netip.Addr
	rule, reason string
}

type fakeBlocker struct {
	mu     sync.Mutex
	blocks []block
}

func (b *fakeBlocker) Block(a netip.Addr, rule, reason string) {
	b.mu.Lock()
	b.blocks = append(b.blocks, block{a, rule, reason})
	b.mu.Unlock()
}

type fixture struct {
	s       *Stage
	clock   time.Time
	blocker *fakeBlocker
	alerts  *core.Alerts
	reg     *prometheus.Registry
	mu      sync.Mutex
	events  []core.SecurityEvent
}

func newFixture(t testing.TB, yamlCfg string) *fixture {
	t.Helper()
	cfg := Defaults()
	if err := yaml.Unmarshal([]byte(yamlCfg), &cfg); err != nil {
		t.Fatal(err)
	}
	f := &fixture{clock: t0, blocker: &fakeBlocker{}, alerts: core.NewAlerts(1 << 16), reg: prometheus.NewRegistry()}
	f.alerts.Subscribe(core.AlertFunc(func(e *core.SecurityEvent) {
		f.mu.Lock()
		f.events = append(f.events, *e)
		f.mu.Unlock()
	}))
	t.Cleanup(func() { f.alerts.Close() })
	s, err := New(cfg, core.Deps{Blocker: f.blocker, Alerts: f.alerts, Metrics: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return f.clock }
	f.s = s
	return f
}

// fail delivers an auth failure event as the Alerts dispatcher would.
func (f *fixture) fail(src, user string) { f.failRule(src, user, "auth/failure") }

func (f *fixture) failRule(src, user, rule string) {
	f.s.Alert(&core.SecurityEvent{Time: f.clock, Rule: rule, Action: "refuse", Src: src, Zone: "internet", User: user, Protocol: "sip"})
}

func (f *fixture) flush() []core.SecurityEvent {
	f.alerts.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events
}

// request is an out-of-dialog REGISTER from src, with credentials for
// user when user is not empty.
func request(src, user string) *core.Event {
	ev := &core.Event{Kind: core.KindRegister, Protocol: "sip", Method: "REGISTER",
		Src: core.Source{Addr: netip.MustParseAddrPort(src), Transport: "udp", Zone: "internet"}}
	if user != "" {
		ev.Credentials = &core.Credentials{Scheme: "Digest", Username: user, Realm: "ucgate", Nonce: "n", NC: "00000001"}
	}
	return ev
}

func srcN(i int) string { return fmt.Sprintf("198.51.100.%d:5060", i%250+1) }

func TestDecide(t *testing.T) {
	const a = "192.0.2.7:5060"
	type step struct {
		src, user, rule string
		after           time.Duration // advance the clock first
	}
	repeat := func(n int, st step) []step {
		out := make([]step, n)
		for i := range out {
			out[i] = st
		}
		return out
	}
	users := func(names ...string) []step {
		var out []step
		for _, n := range names {
			out = append(out, step{src: a, user: n})
		}
		return out
	}
	fromMany := func(n int, user string) []step {
		out := make([]step, n)
		for i := range out {
			out[i] = step{src: srcN(i), user: user}
		}
		return out
	}
	tests := []struct {
		name  string
		cfg   string
		steps []step
		then  time.Duration
		probe *core.Event
		want  core.Action
		rule  string
	}{
		{"nothing happened", "", nil, 0, request(a, "alice"), core.Allow, ""},
		{"below the source limit", "user_failures: 0", repeat(9, step{src: a, user: "alice"}), 0,
			request(a, ""), core.Allow, ""},
		{"source limit", "user_failures: 0", repeat(10, step{src: a, user: "alice"}), 0,
			request(a, ""), core.Drop, RuleSource},
		{"source limit, port does not matter", "user_failures: 0", repeat(10, step{src: a, user: "alice"}), 0,
			request("[::ffff:192.0.2.7]:40000", ""), core.Drop, RuleSource},
		{"source limit, another source", "user_failures: 0", repeat(10, step{src: a, user: "alice"}), 0,
			request("192.0.2.8:5060", ""), core.Allow, ""},
		{"nonce and replay failures count", "user_failures: 0",
			append(repeat(5, step{src: a, user: "alice", rule: "auth/nonce"}), repeat(5, step{src: a, user: "alice", rule: "auth/replay"})...), 0,
			request(a, ""), core.Drop, RuleSource},
		{"other rules do not count", "", repeat(30, step{src: a, user: "alice", rule: "auth/user_mismatch"}), 0,
			request(a, "alice"), core.Allow, ""},
		{"failures spread beyond the window", "user_failures: 0", repeat(10, step{src: a, user: "alice", after: 34 * time.Second}), 0,
			request(a, ""), core.Allow, ""},
		{"failures just within the window", "user_failures: 0", repeat(10, step{src: a, user: "alice", after: 33 * time.Second}), 0,
			request(a, ""), core.Drop, RuleSource},
		{"source lockout ends", "user_failures: 0", repeat(10, step{src: a, user: "alice"}), 15 * time.Minute,
			request(a, ""), core.Allow, ""},
		{"source lockout almost over", "user_failures: 0", repeat(10, step{src: a, user: "alice"}), 15*time.Minute - time.Second,
			request(a, ""), core.Drop, RuleSource},
		{"an IPv6 /64 is one source", "user_failures: 0", func() []step {
			var out []step
			for i := range 10 {
				out = append(out, step{src: fmt.Sprintf("[2001:db8::%x]:5060", i+1), user: "alice"})
			}
			return out
		}(), 0, request("[2001:db8::ffff:1]:5060", ""), core.Drop, RuleSource},
		{"another /64 is another source", "user_failures: 0", func() []step {
			var out []step
			for i := range 10 {
				out = append(out, step{src: fmt.Sprintf("[2001:db8::%x]:5060", i+1), user: "alice"})
			}
			return out
		}(), 0, request("[2001:db8:0:1::1]:5060", ""), core.Allow, ""},
		{"ipv6_prefix 128", "user_failures: 0\nipv6_prefix: 128", func() []step {
			var out []step
			for i := range 10 {
				out = append(out, step{src: fmt.Sprintf("[2001:db8::%x]:5060", i+1), user: "alice"})
			}
			return out
		}(), 0, request("[2001:db8::1]:5060", ""), core.Allow, ""},
		{"exempt source", "user_failures: 0\nexempt: [192.0.2.0/24]", repeat(50, step{src: a, user: "alice"}), 0,
			request(a, ""), core.Allow, ""},
		{"source limit off", "user_failures: 0\nsource_failures: 0", repeat(50, step{src: a, user: "alice"}), 0,
			request(a, ""), core.Allow, ""},
		{"harvest", "", users("100", "101", "102", "103", "104"), 0,
			request(a, ""), core.Drop, RuleHarvest},
		{"harvest below the limit, names repeated", "", users("100", "101", "102", "103", "100", "101", "102", "103"), 0,
			request(a, ""), core.Allow, ""},
		{"harvest spread beyond the window", "", []step{{src: a, user: "1"}, {src: a, user: "2", after: 3 * time.Minute},
			{src: a, user: "3", after: 3 * time.Minute}, {src: a, user: "4", after: 3 * time.Minute}, {src: a, user: "5", after: 3 * time.Minute}}, 0,
			request(a, ""), core.Allow, ""},
		{"harvest off", "harvest_users: 0", users("100", "101", "102", "103", "104", "105"), 0,
			request(a, ""), core.Allow, ""},
		{"harvest from an exempt source", "exempt: [192.0.2.7]", users("100", "101", "102", "103", "104", "105"), 0,
			request(a, ""), core.Allow, ""},
		{"user limit from many sources", "", fromMany(10, "alice"), 0,
			request("203.0.113.5:5060", "alice"), core.Refuse, RuleUser},
		{"user below the limit", "", fromMany(9, "alice"), 0,
			request("203.0.113.5:5060", "alice"), core.Allow, ""},
		{"user limit, another user", "", fromMany(10, "alice"), 0,
			request("203.0.113.5:5060", "bob"), core.Allow, ""},
		{"user limit, request without credentials", "", fromMany(10, "alice"), 0,
			request("203.0.113.5:5060", ""), core.Allow, ""},
		{"user limit, in-dialog request", "", fromMany(10, "alice"), 0, func() *core.Event {
			ev := request("203.0.113.5:5060", "alice")
			ev.Kind, ev.Method, ev.InDialog, ev.DialogKnown = core.KindSessionUpdate, "INVITE", true, true
			return ev
		}(), core.Allow, ""},
		{"user limit, CANCEL", "", fromMany(10, "alice"), 0, func() *core.Event {
			ev := request("203.0.113.5:5060", "alice")
			ev.Kind, ev.Method = core.KindSessionEnd, "CANCEL"
			return ev
		}(), core.Allow, ""},
		{"user limit counts exempt sources", "exempt: [198.51.100.0/24]", fromMany(10, "alice"), 0,
			request("203.0.113.5:5060", "alice"), core.Refuse, RuleUser},
		{"user lockout ends", "", fromMany(10, "alice"), 15 * time.Minute,
			request("203.0.113.5:5060", "alice"), core.Allow, ""},
		{"user limit off", "user_failures: 0", fromMany(30, "alice"), 0,
			request("203.0.113.5:5060", "alice"), core.Allow, ""},
		{"user names are cleaned alike", "", fromMany(10, "al\xffice"), 0,
			request("203.0.113.5:5060", "al\xfeice"), core.Refuse, RuleUser},
		{"a response passes", "user_failures: 0", repeat(10, step{src: a, user: "alice"}), 0, func() *core.Event {
			ev := request(a, "")
			ev.Kind = core.KindResponse
			return ev
		}(), core.Allow, ""},
		{"disabled", "enabled: false", repeat(50, step{src: a, user: "alice"}), 0,
			request(a, "alice"), core.Allow, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			for _, st := range tt.steps {
				f.clock = f.clock.Add(st.after)
				rule := st.rule
				if rule == "" {
					rule = "auth/failure"
				}
				f.failRule(st.src, st.user, rule)
			}
			f.clock = f.clock.Add(tt.then)
			v, err := f.s.Decide(context.Background(), tt.probe)
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != tt.want || v.Rule != tt.rule {
				t.Fatalf("verdict %s %q, want %s %q (%+v)", v.Action, v.Rule, tt.want, tt.rule, v)
			}
			if v.Action == core.Refuse && (v.Reason != core.ReasonForbidden || v.Delay != time.Second || v.Detail != FailureDetail) {
				t.Fatalf("a locked-out user is not refused like an auth failure: %+v", v)
			}
		})
	}
}

func TestLockoutBlocksAndRaises(t *testing.T) {
	f := newFixture(t, "user_failures: 0")
	for range 25 { // failures still queued after the lockout add nothing
		f.fail("192.0.2.7:5060", "alice")
	}
	f.fail("[2001:db8:1:2::3]:5060", "u1")
	for i := range 5 {
		f.fail("[2001:db8:1:2::9]:5060", fmt.Sprintf("u%d", i+2))
	}
	if len(f.blocker.blocks) != 2 {
		t.Fatalf("blocks %+v", f.blocker.blocks)
	}
	b := f.blocker.blocks[0]
	if b.addr != netip.MustParseAddr("192.0.2.7") || b.rule != RuleSource || b.reason != "10 authentication failures in 5m0s" {
		t.Fatalf("block %+v", b)
	}
	b = f.blocker.blocks[1]
	if b.addr != netip.MustParseAddr("2001:db8:1:2::9") || b.rule != RuleHarvest || b.reason != "5 distinct usernames in 10m0s" {
		t.Fatalf("block %+v", b)
	}
	ls := f.s.Lockouts()
	want := []Lockout{
		{Rule: RuleSource, Key: "192.0.2.7", Since: t0, Until: t0.Add(15 * time.Minute), Count: 10},
		{Rule: RuleHarvest, Key: "2001:db8:1:2::/64", Since: t0, Until: t0.Add(15 * time.Minute), Count: 5},
	}
	if fmt.Sprint(ls) != fmt.Sprint(want) {
		t.Fatalf("Lockouts() = %+v\nwant %+v", ls, want)
	}
	evs := f.flush()
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	e := evs[0]
	if e.Rule != RuleLockout || e.Action != "block" || e.Src != "192.0.2.7:5060" || e.Zone != "internet" || e.Protocol != "sip" ||
		e.Detail != "bruteforce/source: 10 authentication failures in 5m0s; source 192.0.2.7 locked out until 2030-01-02T03:19:05Z" {
		t.Fatalf("event %+v", e)
	}
	if evs[1].Detail != "bruteforce/harvest: 5 distinct usernames in 10m0s; source 2001:db8:1:2::/64 locked out until 2030-01-02T03:19:05Z" {
		t.Fatalf("event %+v", evs[1])
	}
	f.clock = f.clock.Add(15 * time.Minute)
	if ls := f.s.Lockouts(); len(ls) != 0 || f.s.t.nLocks.Load() != 0 {
		t.Fatalf("expired lockouts listed: %+v", ls)
	}
}

func TestUserLockoutEvent(t *testing.T) {
	f := newFixture(t, "")
	for i := range 12 {
		f.fail(srcN(i), "alice")
	}
	evs := f.flush()
	if len(evs) != 1 {
		t.Fatalf("events %+v", evs)
	}
	if e := evs[0]; e.Rule != RuleLockout || e.Action != "lockout" || e.User != "alice" || e.Src != srcN(9) ||
		e.Detail != "bruteforce/user: 10 authentication failures in 5m0s; user locked out until 2030-01-02T03:19:05Z" {
		t.Fatalf("event %+v", e)
	}
	if len(f.blocker.blocks) != 0 {
		t.Fatalf("a user lockout blocked a source: %+v", f.blocker.blocks)
	}
	if ls := f.s.Lockouts(); len(ls) != 1 || ls[0].Key != "alice" || ls[0].Rule != RuleUser {
		t.Fatalf("Lockouts() = %+v", ls)
	}
}

// Without a Blocker the stage still drops the source itself.
func TestNoBlocker(t *testing.T) {
	s, err := New(Defaults(), core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		s.Alert(&core.SecurityEvent{Rule: "auth/failure", Src: "192.0.2.7:5060"})
	}
	if v, _ := s.Decide(context.Background(), request("192.0.2.7:5060", "")); v.Action != core.Drop {
		t.Fatalf("verdict %+v", v)
	}
}

func TestUnlock(t *testing.T) {
	f := newFixture(t, "")
	for i := range 10 {
		f.fail("192.0.2.7:5060", "alice")
		f.fail(fmt.Sprintf("[2001:db8::%d]:5060", i+1), "bob")
	}
	if n := len(f.s.Lockouts()); n != 4 { // the v4 source, the v6 /64, alice, bob
		t.Fatalf("%d lockouts: %+v", n, f.s.Lockouts())
	}
	for _, k := range []string{"192.0.2.7", "2001:db8::/64", "alice"} {
		if err := f.s.Unlock(k); err != nil {
			t.Fatalf("Unlock(%q): %v", k, err)
		}
	}
	if err := f.s.Unlock("alice"); !errors.Is(err, ErrNoLockout) {
		t.Fatalf("second Unlock: %v", err)
	}
	if ls := f.s.Lockouts(); len(ls) != 1 || ls[0].Key != "bob" {
		t.Fatalf("Lockouts() = %+v", ls)
	}
	// The counts were forgotten too: one more failure does not lock again.
	f.fail("192.0.2.7:5060", "carol")
	if v, _ := f.s.Decide(context.Background(), request("192.0.2.7:5060", "alice")); v.Action != core.Allow {
		t.Fatalf("after Unlock: %+v", v)
	}
}

// A reload keeps the lockouts and the counts, and the replaced stage
// counts no more.
func TestInherit(t *testing.T) {
	f := newFixture(t, "user_failures: 0")
	for range 10 {
		f.fail("192.0.2.7:5060", "alice")
	}
	for range 9 {
		f.fail("192.0.2.8:5060", "alice")
	}
	next, err := New(Defaults(), core.Deps{Metrics: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	next.now = f.s.now
	next.Inherit(f.s)
	if v, _ := next.Decide(context.Background(), request("192.0.2.7:5060", "")); v.Action != core.Drop {
		t.Fatalf("lockout lost on reload: %+v", v)
	}
	f.fail("192.0.2.8:5060", "alice") // to the old stage: ignored
	if v, _ := next.Decide(context.Background(), request("192.0.2.8:5060", "")); v.Action != core.Allow {
		t.Fatalf("the replaced stage still counts: %+v", v)
	}
	next.Alert(&core.SecurityEvent{Rule: "auth/failure", Src: "192.0.2.8:5060", User: "alice"})
	if v, _ := next.Decide(context.Background(), request("192.0.2.8:5060", "")); v.Action != core.Drop {
		t.Fatalf("counts lost on reload: %+v", v)
	}
}

// A spray from many sources and usernames keeps every table within its
// bound.
func TestMemoryBound(t *testing.T) {
	f := newFixture(t, "max_sources: 1024\nmax_users: 512")
	for i := range 200_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		f.s.Alert(&core.SecurityEvent{Rule: "auth/failure", Src: netip.AddrPortFrom(a, 5060).String(), User: fmt.Sprintf("u%d", i)})
		if i%997 == 0 {
			f.clock = f.clock.Add(time.Millisecond)
		}
	}
	if n := f.s.t.sources.len(); n > 1024 {
		t.Fatalf("%d sources remembered, bound 1024", n)
	}
	if n := f.s.t.users.len(); n > 512 {
		t.Fatalf("%d users remembered, bound 512", n)
	}
	// Lockouts are bounded too: every source of a second spray locks out.
	for i := range 3000 {
		a := netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
		for range 10 {
			f.s.Alert(&core.SecurityEvent{Rule: "auth/failure", Src: a.String()})
		}
	}
	f.s.t.mu.RLock()
	n, nl := len(f.s.t.srcLocks), int(f.s.t.nLocks.Load())
	f.s.t.mu.RUnlock()
	if n > 1024 || nl != n {
		t.Fatalf("%d source lockouts (counted %d), bound 1024", n, nl)
	}
	if got := len(f.s.Lockouts()); got != n {
		t.Fatalf("Lockouts() lists %d of %d", got, n)
	}
}

// Eviction drops a record past the horizon if it finds one, else the
// quietest of its sample.
func TestEvict(t *testing.T) {
	sh := tableShard[string, userRec]{m: map[string]*entry[userRec]{"a": {last: 5}, "b": {last: 1}, "c": {last: 10}}}
	sh.evict(0)
	if _, ok := sh.m["b"]; ok || len(sh.m) != 2 {
		t.Fatalf("evict(0) left %v", sh.m)
	}
	sh.m["d"] = &entry[userRec]{last: 3}
	sh.evict(4) // d is past the horizon, a is older than c
	if _, ok := sh.m["d"]; ok || len(sh.m) != 2 {
		t.Fatalf("evict(4) left %v", sh.m)
	}
	tb := newTable[string, userRec]()
	evictions := 0
	for i := range 1000 {
		if tb.update(fmt.Sprint(i), int64(i), 0, 64, func(*userRec) {}) {
			evictions++
		}
		if n := tb.len(); n > 64 {
			t.Fatalf("table holds %d > 64", n)
		}
	}
	if n := tb.len(); evictions != 1000-n {
		t.Fatalf("%d evictions reported, %d records left of 1000", evictions, n)
	}
}

func TestRing(t *testing.T) {
	var r ring
	for i := range 4 {
		if r.add(int64(i), 5, 10) {
			t.Fatalf("hit after %d", i+1)
		}
	}
	if !r.add(4, 5, 10) {
		t.Fatal("no hit at the fifth failure within the window")
	}
	if r.add(5, 5, 10) {
		t.Fatal("hit again right after: the ring was not emptied")
	}
	var w ring
	for i := range 10 {
		if w.add(int64(i*3), 5, 12) { // 5 failures span 12: not within 12
			t.Fatalf("hit at %d", i)
		}
	}
	// The limit changed on a reload: the ring starts afresh.
	if w.add(30, 3, 100) || w.add(31, 3, 100) || !w.add(32, 3, 100) {
		t.Fatal("a resized ring does not count from zero")
	}
}

func TestCleanUserAndParseSrc(t *testing.T) {
	for in, want := range map[string]string{"alice": "alice", "a\xffb": "a?b", strings.Repeat("é", 70): strings.Repeat("é", 64)} {
		if got := CleanUser(in); got != want {
			t.Errorf("CleanUser(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"192.0.2.7:5060": "192.0.2.7", "[2001:db8::7]:5060": "2001:db8::7",
		"192.0.2.7": "192.0.2.7", "[::ffff:192.0.2.7]:1": "192.0.2.7", "2001:db8::8": "2001:db8::8"} {
		if a, ok := parseSrc(in); !ok || a.String() != want {
			t.Errorf("parseSrc(%q) = %v, %v", in, a, ok)
		}
	}
	for _, in := range []string{"", "example.com:5060", "192.0.2.7:", "[2001:db8::7]"} {
		if _, ok := parseSrc(in); ok {
			t.Errorf("parseSrc(%q) accepted", in)
		}
	}
}

// FuzzAlert: any security event, however malformed its source and user,
// is counted or ignored without panicking, keeps the user key clean, and
// never locks out an exempt source.
func FuzzAlert(f *testing.F) {
	fx := newFixture(f, "source_failures: 2\nharvest_users: 2\nuser_failures: 2\nexempt: [192.0.2.0/24]\nmax_sources: 64\nmax_users: 64")
	fx.s.alerts = nil
	fx.s.blocker = nil
	f.Add("198.51.100.7:5060", "alice")
	f.Add("[2001:db8::1%eth0]:5060", "\xff\xfe")
	f.Add("192.0.2.9", "bob")
	f.Add("", strings.Repeat("ü", 100))
	f.Add("[::ffff:192.0.2.1]:0", "")
	f.Fuzz(func(t *testing.T, src, user string) {
		for range 3 {
			fx.s.Alert(&core.SecurityEvent{Rule: "auth/failure", Src: src, User: user})
		}
		for _, l := range fx.s.Lockouts() {
			if l.Rule == RuleUser {
				if l.Key != CleanUser(l.Key) || len(l.Key) > MaxUserLen {
					t.Fatalf("user key %q not clean", l.Key)
				}
				continue
			}
			p, err := parsePrefix(l.Key)
			if err != nil {
				t.Fatalf("source key %q: %v", l.Key, err)
			}
			if fx.s.isExempt(p.Addr()) {
				t.Fatalf("exempt source %s locked out", l.Key)
			}
		}
		if a, ok := parseSrc(src); ok {
			if k, ok := fx.s.sourceKey(a); !ok || !k.Contains(a.WithZone("")) {
				t.Fatalf("source key %v does not contain %v", k, a)
			}
		}
	})
}
