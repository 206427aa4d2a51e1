package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/state"
)

// fixture is a stage with a fake clock, a state store and a record of the
// security events it raised.
type fixture struct {
	s      *Stage
	clock  time.Time
	alerts *core.Alerts
	mu     sync.Mutex
	events []core.SecurityEvent
	store  *state.Store
	reg    *prometheus.Registry
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newFixture builds a stage from the default configuration changed by
// yamlCfg (a policies.auth fragment), with user alice/secret in the
// configuration and bob/hunter2 in the state store.
func newFixture(t testing.TB, yamlCfg string) *fixture {
	t.Helper()
	cfg := Defaults()
	cfg.Users = []User{{Name: "alice", HA1: map[string]string{
		"MD5":     HA1("MD5", "alice", "ucgate", "secret"),
		"SHA-256": HA1("SHA-256", "alice", "ucgate", "secret"),
	}}}
	if yamlCfg != "" {
		if err := yaml.Unmarshal([]byte(yamlCfg), &cfg); err != nil {
			t.Fatal(err)
		}
	}
	store, err := state.Open("", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, realm, pass string }{{"bob", "ucgate", "hunter2"}, {"carol", "example.com", "carol"}} {
		if err := store.PutUser(context.Background(), core.User{Name: u.name, Realm: u.realm, HA1: map[string]string{
			"MD5": HA1("MD5", u.name, u.realm, u.pass), "SHA-256": HA1("SHA-256", u.name, u.realm, u.pass)}}); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{clock: t0, alerts: core.NewAlerts(1024), store: store, reg: prometheus.NewRegistry()}
	f.alerts.Subscribe(core.AlertFunc(func(e *core.SecurityEvent) {
		f.mu.Lock()
		f.events = append(f.events, *e)
		f.mu.Unlock()
	}))
	t.Cleanup(func() { f.alerts.Close() })
	s, err := New(cfg, core.Deps{State: store, Alerts: f.alerts, Metrics: f.reg, DataDir: ""})
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return f.clock }
	if s.replay != nil {
		s.replay.floor.Store(f.clock.UnixMilli())
	}
	f.s = s
	return f
}

// flush waits for every raised event and returns them.
func (f *fixture) flush() []core.SecurityEvent {
	f.alerts.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events
}

func (f *fixture) decide(t testing.TB, ev *core.Event) core.Verdict {
	t.Helper()
	v, err := f.s.Decide(context.Background(), ev)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	return v
}

// challenge returns the challenge the stage gives ev without credentials.
func (f *fixture) challenge(t testing.TB, ev *core.Event) *core.AuthChallenge {
	t.Helper()
	bare := *ev
	bare.Credentials = nil
	v := f.decide(t, &bare)
	if v.Action != core.Challenge || v.Challenge == nil {
		t.Fatalf("no challenge for %s: %+v", ev.Method, v)
	}
	return v.Challenge
}

// answer is what a client sends to ch as user with password.
func answer(ch *core.AuthChallenge, alg, user, password, method, uri string, nc uint32) *core.Credentials {
	ncs := fmt.Sprintf("%08x", nc)
	c := &core.Credentials{Scheme: "Digest", Proxy: ch.Proxy, Username: user, Realm: ch.Realm, Nonce: ch.Nonce,
		URI: uri, Algorithm: alg, QOP: "auth", NC: ncs, CNonce: "0a4f113b", Opaque: ch.Opaque, Method: method}
	c.Response = Response(alg, HA1(alg, user, ch.Realm, password), ch.Nonce, ncs, c.CNonce, "auth", method, uri)
	return c
}

var src = netip.MustParseAddrPort("192.0.2.7:5060")

func register(user string) *core.Event {
	return &core.Event{Kind: core.KindRegister, Protocol: "sip", Method: "REGISTER", Target: "sip:example.com",
		Src:  core.Source{Addr: src, Transport: "udp", Zone: "internet"},
		From: core.Identity{User: user, Domain: "example.com"}, To: core.Identity{User: user, Domain: "example.com"}}
}

func invite(user string) *core.Event {
	return &core.Event{Kind: core.KindSessionOffer, Protocol: "sip", Method: "INVITE", Target: "sip:100@example.com",
		Src:  core.Source{Addr: src, Transport: "udp", Zone: "internet"},
		From: core.Identity{User: user, Domain: "example.com"}, To: core.Identity{User: "100", Domain: "example.com"}}
}

// authed returns ev answering a fresh challenge as user/password.
func (f *fixture) authed(t testing.TB, ev *core.Event, alg, user, password string) *core.Event {
	ch := f.challenge(t, ev)
	ev.Credentials = answer(ch, alg, user, password, ev.Method, ev.Target, 1)
	return ev
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name  string
		cfg   string
		event func(t *testing.T, f *fixture) *core.Event
		want  core.Action
		rule  string
	}{
		{"no credentials", "", func(t *testing.T, f *fixture) *core.Event { return register("alice") },
			core.Challenge, RuleChallenge},
		{"good SHA-256", "", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, register("alice"), "SHA-256", "alice", "secret")
		}, core.Allow, ""},
		{"good MD5", "", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, register("alice"), "MD5", "alice", "secret")
		}, core.Allow, ""},
		{"good, algorithm omitted means MD5", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "MD5", "alice", "secret")
			ev.Credentials.Algorithm = ""
			return ev
		}, core.Allow, ""},
		{"good SHA-256-sess when offered", "algorithms: [SHA-256-sess, SHA-256, MD5]", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, register("alice"), "SHA-256-sess", "alice", "secret")
		}, core.Allow, ""},
		{"user from the state store", "", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, invite("bob"), "SHA-256", "bob", "hunter2")
		}, core.Allow, ""},
		{"wrong password", "", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, register("alice"), "SHA-256", "alice", "guess")
		}, core.Refuse, RuleFailure},
		{"unknown user", "", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, register("mallory"), "SHA-256", "mallory", "guess")
		}, core.Refuse, RuleFailure},
		{"user of another realm", "", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, register("carol"), "SHA-256", "carol", "carol")
		}, core.Refuse, RuleFailure},
		{"disabled user", "users: [{name: alice, disabled: true, ha1: {MD5: " + HA1("MD5", "alice", "ucgate", "secret") +
			", SHA-256: " + HA1("SHA-256", "alice", "ucgate", "secret") + "}}]", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, register("alice"), "SHA-256", "alice", "secret")
		}, core.Refuse, RuleFailure},
		{"wrong realm is challenged, not failed", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")
			ev.Credentials.Realm = "example.com"
			return ev
		}, core.Challenge, RuleChallenge},
		{"another scheme is challenged", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")
			ev.Credentials.Scheme = "Bearer"
			return ev
		}, core.Challenge, RuleChallenge},
		{"algorithm not offered", "algorithms: [SHA-256]\nusers: []", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, invite("bob"), "MD5", "bob", "hunter2")
		}, core.Refuse, RuleFailure},
		{"unknown algorithm", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")
			ev.Credentials.Algorithm = "SHA-512-256"
			return ev
		}, core.Refuse, RuleFailure},
		{"no qop (RFC 2069)", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")
			ev.Credentials.QOP, ev.Credentials.NC, ev.Credentials.CNonce = "", "", ""
			return ev
		}, core.Refuse, RuleFailure},
		{"qop auth-int", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")
			ev.Credentials.QOP = "auth-int"
			return ev
		}, core.Refuse, RuleFailure},
		{"nc zero", "", func(t *testing.T, f *fixture) *core.Event {
			ch := f.challenge(t, register("alice"))
			ev := register("alice")
			ev.Credentials = answer(ch, "SHA-256", "alice", "secret", "REGISTER", ev.Target, 0)
			return ev
		}, core.Refuse, RuleFailure},
		{"stale nonce", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")
			f.clock = f.clock.Add(5 * time.Minute)
			return ev
		}, core.Challenge, RuleStale},
		{"stale nonce, wrong password", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "guess")
			f.clock = f.clock.Add(time.Hour)
			return ev
		}, core.Refuse, RuleFailure},
		{"nonce from the future", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")
			f.clock = f.clock.Add(-2 * time.Minute)
			return ev
		}, core.Challenge, RuleStale},
		{"nonce issued before the stage started", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")
			f.s.replay.floor.Store(f.clock.Add(time.Second).UnixMilli())
			return ev
		}, core.Challenge, RuleStale},
		{"nonce from another source", "", func(t *testing.T, f *fixture) *core.Event {
			other := register("alice")
			other.Src.Addr = netip.MustParseAddrPort("198.51.100.9:5060")
			ch := f.challenge(t, other)
			ev := register("alice")
			ev.Credentials = answer(ch, "SHA-256", "alice", "secret", "REGISTER", ev.Target, 1)
			return ev
		}, core.Refuse, RuleNonce},
		{"nonce for another realm", "zones: {office: {realm: office.example.com}}", func(t *testing.T, f *fixture) *core.Event {
			office := register("alice")
			office.Src.Zone = "office"
			ch := f.challenge(t, office)
			ch.Realm = "ucgate"
			ev := register("alice")
			ev.Credentials = answer(ch, "SHA-256", "alice", "secret", "REGISTER", ev.Target, 1)
			return ev
		}, core.Refuse, RuleNonce},
		{"forged nonce", "", func(t *testing.T, f *fixture) *core.Event {
			ch := f.challenge(t, register("alice"))
			ch.Nonce = "7ypf_xlj9XXwfDPEoM4URrv_xwf94BcCAzFZH4GiTo0v"
			ev := register("alice")
			ev.Credentials = answer(ch, "SHA-256", "alice", "secret", "REGISTER", ev.Target, 1)
			return ev
		}, core.Refuse, RuleNonce},
		{"opaque not ours", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")
			ev.Credentials.Opaque = "0123"
			return ev
		}, core.Refuse, RuleNonce},
		{"opaque omitted", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")
			ev.Credentials.Opaque = ""
			return ev
		}, core.Allow, ""},
		{"replayed nc", "", func(t *testing.T, f *fixture) *core.Event {
			ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")
			if v := f.decide(t, ev); v.Action != core.Allow {
				t.Fatalf("first use: %+v", v)
			}
			return ev
		}, core.Refuse, RuleReplay},
		{"next nc on the same nonce", "", func(t *testing.T, f *fixture) *core.Event {
			ch := f.challenge(t, register("alice"))
			ev := register("alice")
			ev.Credentials = answer(ch, "SHA-256", "alice", "secret", "REGISTER", ev.Target, 1)
			f.decide(t, ev)
			ev2 := invite("alice")
			ev2.Credentials = answer(ch, "SHA-256", "alice", "secret", "INVITE", ev2.Target, 2)
			return ev2
		}, core.Allow, ""},
		{"register as another user", "", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, register("alice"), "SHA-256", "bob", "hunter2")
		}, core.Refuse, RuleUserMismatch},
		{"register another's AOR (To)", "", func(t *testing.T, f *fixture) *core.Event {
			ev := register("bob")
			ev.To.User = "alice"
			return f.authed(t, ev, "SHA-256", "bob", "hunter2")
		}, core.Refuse, RuleUserMismatch},
		{"register as another user, match off", "match_identity: []", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, register("alice"), "SHA-256", "bob", "hunter2")
		}, core.Allow, ""},
		{"invite From another user is not checked by default", "", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, invite("alice"), "SHA-256", "bob", "hunter2")
		}, core.Allow, ""},
		{"invite From another user, checked", "match_identity: [register, invite]", func(t *testing.T, f *fixture) *core.Event {
			return f.authed(t, invite("alice"), "SHA-256", "bob", "hunter2")
		}, core.Refuse, RuleUserMismatch},
		{"trusted zone", "", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Src.Zone = "trunk"
			return ev
		}, core.Allow, ""},
		{"trusted source", "trusted: [198.51.100.0/24]", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Src.Addr = netip.MustParseAddrPort("[::ffff:198.51.100.20]:5060")
			return ev
		}, core.Allow, ""},
		{"trusted source of another zone", "zones: {office: {trusted: [198.51.100.20]}}", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Src.Addr = netip.MustParseAddrPort("198.51.100.20:5060")
			return ev
		}, core.Challenge, RuleChallenge},
		{"zone that requires less", "zones: {internet: {require: [register]}}", func(t *testing.T, f *fixture) *core.Event {
			return invite("anyone")
		}, core.Allow, ""},
		{"in-dialog request of a known dialog", "", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Kind, ev.InDialog, ev.DialogKnown = core.KindSessionUpdate, true, true
			return ev
		}, core.Allow, ""},
		{"re-INVITE of an unknown dialog", "", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Kind, ev.InDialog = core.KindSessionUpdate, true
			return ev
		}, core.Challenge, RuleChallenge},
		{"ACK", "", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Kind, ev.Method = core.KindInDialog, "ACK"
			return ev
		}, core.Allow, ""},
		{"CANCEL", "", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Kind, ev.Method = core.KindSessionEnd, "CANCEL"
			return ev
		}, core.Allow, ""},
		{"out-of-dialog BYE", "", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Kind, ev.Method = core.KindSessionEnd, "BYE"
			return ev
		}, core.Allow, ""},
		{"MESSAGE", "", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Kind, ev.Method = core.KindMessage, "MESSAGE"
			return ev
		}, core.Challenge, RuleChallenge},
		{"SUBSCRIBE", "", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Kind, ev.Method = core.KindPresence, "SUBSCRIBE"
			return ev
		}, core.Challenge, RuleChallenge},
		{"PUBLISH not required by default", "", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Kind, ev.Method = core.KindPresence, "PUBLISH"
			return ev
		}, core.Allow, ""},
		{"OPTIONS not required by default", "", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Kind, ev.Method = core.KindProbe, "OPTIONS"
			return ev
		}, core.Allow, ""},
		{"OPTIONS required", "require: [options]", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Kind, ev.Method = core.KindProbe, "OPTIONS"
			return ev
		}, core.Challenge, RuleChallenge},
		{"a response", "", func(t *testing.T, f *fixture) *core.Event {
			ev := invite("anyone")
			ev.Kind, ev.Method = core.KindResponse, "INVITE"
			return ev
		}, core.Allow, ""},
		{"another protocol", "", func(t *testing.T, f *fixture) *core.Event {
			ev := register("anyone")
			ev.Protocol = "xmpp"
			return ev
		}, core.Allow, ""},
		{"disabled", "enabled: false", func(t *testing.T, f *fixture) *core.Event {
			return register("anyone")
		}, core.Allow, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			ev := tt.event(t, f)
			v := f.decide(t, ev)
			if v.Action != tt.want || v.Rule != tt.rule {
				t.Fatalf("verdict %s %q, want %s %q (%+v)", v.Action, v.Rule, tt.want, tt.rule, v)
			}
			switch v.Action {
			case core.Refuse:
				if tt.rule != RuleUserMismatch && (v.Reason != core.ReasonForbidden || v.Delay != time.Second || v.Detail != FailureDetail) {
					t.Fatalf("failure verdict %+v, want forbidden after 1s", v)
				}
			case core.Challenge:
				ch := v.Challenge
				if ch == nil || ch.Nonce == "" || ch.QOP != "auth" || ch.Opaque == "" || len(ch.Algorithms) == 0 ||
					ch.Stale != (tt.rule == RuleStale) || v.Delay != 0 || v.Reason != core.ReasonUnauthorized {
					t.Fatalf("challenge %+v in %+v", ch, v)
				}
			}
		})
	}
}

func TestChallengeShape(t *testing.T) {
	f := newFixture(t, "")
	ch := f.challenge(t, register("alice"))
	if ch.Proxy || ch.Realm != "ucgate" || !reflect.DeepEqual(ch.Algorithms, []string{"SHA-256", "MD5"}) || ch.QOP != "auth" {
		t.Fatalf("REGISTER challenge %+v", ch)
	}
	if ch := f.challenge(t, invite("alice")); !ch.Proxy {
		t.Fatal("INVITE is not challenged as a proxy")
	}
	f = newFixture(t, "proxy: false\nzones: {office: {proxy: true, realm: office.example.com}}")
	if ch := f.challenge(t, invite("alice")); ch.Proxy {
		t.Fatal("proxy: false still gives 407")
	}
	ev := invite("alice")
	ev.Src.Zone = "office"
	if ch := f.challenge(t, ev); !ch.Proxy || ch.Realm != "office.example.com" {
		t.Fatalf("zone override: %+v", ch)
	}
	if a, b := f.challenge(t, ev).Nonce, f.challenge(t, ev).Nonce; a == b {
		t.Fatal("two challenges share a nonce")
	}
}

// A scanner learns nothing: an unknown user and a wrong password get the
// same verdict, the same delay and the same security event but for the
// username.
func TestUnknownUserLooksLikeWrongPassword(t *testing.T) {
	f := newFixture(t, "")
	wrong := f.decide(t, f.authed(t, register("alice"), "SHA-256", "alice", "guess"))
	unknown := f.decide(t, f.authed(t, register("mallory"), "SHA-256", "mallory", "guess"))
	if !reflect.DeepEqual(wrong, unknown) {
		t.Fatalf("verdicts differ:\n wrong password %+v\n unknown user   %+v", wrong, unknown)
	}
	evs := f.flush()
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	a, b := evs[0], evs[1]
	if a.User != "alice" || b.User != "mallory" || a.Rule != RuleFailure {
		t.Fatalf("events %+v", evs)
	}
	a.User, b.User = "", ""
	if a != b {
		t.Fatalf("events differ beyond the user:\n %+v\n %+v", a, b)
	}
	if a.Src != "192.0.2.7:5060" || a.Zone != "internet" || a.Protocol != "sip" || a.Action != "refuse" || !a.Time.Equal(t0) {
		t.Fatalf("event %+v", a)
	}
}

func TestSecurityEvents(t *testing.T) {
	f := newFixture(t, "")
	f.decide(t, register("alice"))                                                          // challenge: no event
	f.decide(t, f.authed(t, register("alice"), "SHA-256", "alice", "secret"))               // ok: no event
	ev := f.authed(t, register("alice"), "SHA-256", "alice", "secret")                      // replay
	f.decide(t, ev)                                                                         //
	f.decide(t, ev)                                                                         //
	f.decide(t, f.authed(t, register("alice"), "SHA-256", "bob", "hunter2"))                // mismatch
	bad := f.authed(t, register("eve\xff"+strings.Repeat("x", 300)), "SHA-256", "eve", "x") // nonce
	bad.Credentials.Username = "eve\xff" + strings.Repeat("é", 300)
	bad.Credentials.Nonce = "forged"
	f.decide(t, bad)
	evs := f.flush()
	var rules []string
	for _, e := range evs {
		rules = append(rules, e.Rule)
	}
	if want := []string{RuleReplay, RuleUserMismatch, RuleNonce}; !reflect.DeepEqual(rules, want) {
		t.Fatalf("rules %v, want %v", rules, want)
	}
	if u := evs[2].User; len(u) > MaxUserLen || !strings.HasPrefix(u, "eve?é") || u != CleanUser(u) {
		t.Fatalf("event user %q (%d bytes) is not cleaned", u, len(u))
	}
	if evs[1].User != "bob" {
		t.Fatalf("mismatch event user %q", evs[1].User)
	}
	for result, want := range map[string]float64{"ok": 2, "challenge": 5, "replay": 1, "user_mismatch": 1, "nonce": 1, "failure": 0} {
		if got := counter(t, f.reg, result); got != want {
			t.Errorf("ucgate_auth_results_total{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func counter(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ucgate_auth_results_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

type brokenState struct{ core.State }

func (brokenState) GetUser(context.Context, string) (core.User, error) {
	return core.User{}, errors.New("disk on fire")
}

// A user store that fails is our failure: the stage errs, and the
// pipeline fails closed.
func TestStateErrorIsAnError(t *testing.T) {
	f := newFixture(t, "")
	f.s.state = brokenState{}
	ev := f.authed(t, register("bob"), "SHA-256", "bob", "hunter2")
	if _, err := f.s.Decide(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v", err)
	}
	// A configured user does not need the store.
	if v := f.decide(t, f.authed(t, register("alice"), "SHA-256", "alice", "secret")); v.Action != core.Allow {
		t.Fatalf("configured user with a broken store: %+v", v)
	}
}

// With the key kept in the data directory, a restarted stage verifies the
// old stage's nonces, but answers them stale: it does not know which
// nonce-counts were used. With another key they are not ours.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Defaults()
	cfg.Users = []User{{Name: "alice", HA1: map[string]string{
		"MD5": HA1("MD5", "alice", "ucgate", "secret"), "SHA-256": HA1("SHA-256", "alice", "ucgate", "secret")}}}
	first, err := New(cfg, core.Deps{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Now().Add(-time.Minute) // a minute before the restart
	first.now = func() time.Time { return issued }
	first.replay.floor.Store(issued.UnixMilli())
	ev := register("alice")
	v, _ := first.Decide(context.Background(), ev)
	ev.Credentials = answer(v.Challenge, "SHA-256", "alice", "secret", "REGISTER", ev.Target, 1)
	if v, _ := first.Decide(context.Background(), ev); v.Action != core.Allow {
		t.Fatalf("first stage: %+v", v)
	}
	if _, err := os.Stat(filepath.Join(dir, "auth_nonce.key")); err != nil {
		t.Fatal(err)
	}
	second, err := New(cfg, core.Deps{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ev.Credentials = answer(v.Challenge, "SHA-256", "alice", "secret", "REGISTER", ev.Target, 1)
	if v, _ := second.Decide(context.Background(), ev); v.Action != core.Challenge || v.Rule != RuleStale {
		t.Fatalf("replay after a restart: %s %s", v.Action, v.Rule)
	}
	third, err := New(cfg, core.Deps{}) // no data dir: a random key
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := third.Decide(context.Background(), ev); v.Action != core.Refuse || v.Rule != RuleNonce {
		t.Fatalf("nonce of another key: %s %s", v.Action, v.Rule)
	}
}

// A reload registers the metrics again on the same registry.
func TestNewTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := New(Defaults(), core.Deps{Metrics: reg}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCleanUser(t *testing.T) {
	for _, in := range []string{"", "alice", "\xff\xfe", strings.Repeat("é", 100), strings.Repeat("a", 127) + "é", "a\x00b"} {
		out := CleanUser(in)
		if len(out) > MaxUserLen || !utf8Valid(out) || CleanUser(out) != out {
			t.Errorf("CleanUser(%q) = %q", in, out)
		}
	}
	if CleanUser("alice") != "alice" {
		t.Fatal("changed a clean name")
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "?") == s }

// FuzzCredentials: whatever credentials a request carries, without the
// password it is never allowed, never errs, and is answered with one of
// the stage's rules.
func FuzzCredentials(f *testing.F) {
	fx := newFixture(f, "algorithms: [SHA-256, MD5, SHA-256-sess, MD5-sess]")
	fx.s.alerts = nil // millions of runs: keep no events
	ch := fx.challenge(f, register("alice"))
	good := answer(ch, "SHA-256", "alice", "secret", "REGISTER", "sip:example.com", 1)
	f.Add(good.Username, good.Realm, good.Nonce, good.URI, good.Response[:60]+"00", good.Algorithm, good.QOP, good.NC, good.CNonce, good.Opaque, good.Method)
	f.Add("alice", "ucgate", ch.Nonce, "sip:example.com", "", "MD5-sess", "auth", "00000002", "x", "", "")
	f.Add("", "", "", "", "", "", "", "", "", "", "")
	f.Add("alice\x00", "ucgate", ch.Nonce+"A", "sip:example.com", strings.Repeat("0", 64), "sha-256", "AUTH", "ffffffff", "c", ch.Opaque, "INVITE")
	rules := map[string]bool{RuleChallenge: true, RuleFailure: true, RuleNonce: true, RuleReplay: true, RuleStale: true, RuleUserMismatch: true}
	f.Fuzz(func(t *testing.T, user, realm, nonce, uri, response, alg, qop, nc, cnonce, opaque, method string) {
		ev := register("alice")
		ev.Credentials = &core.Credentials{Scheme: "Digest", Username: user, Realm: realm, Nonce: nonce, URI: uri,
			Response: response, Algorithm: alg, QOP: qop, NC: nc, CNonce: cnonce, Opaque: opaque, Method: method}
		v, err := fx.s.Decide(context.Background(), ev)
		if err != nil || v.Action == core.Allow || !rules[v.Rule] {
			t.Fatalf("credentials %+v: %+v, %v", ev.Credentials, v, err)
		}
	})
}
