package scan

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

// sweep sends n requests built by mk(i), one every gap, and returns the
// index of the first one not allowed (-1 if all were) and its verdict.
func sweep(e *env, n int, gap time.Duration, mk func(i int) *core.Event) (int, core.Verdict) {
	first, firstV := -1, core.Verdict{}
	for i := range n {
		v, _ := e.s.Decide(context.Background(), mk(i))
		if v.Action != core.Allow && first < 0 {
			first, firstV = i, v
		}
		e.clk.advance(gap)
	}
	return first, firstV
}

func TestBehaviour(t *testing.T) {
	const ip = "203.0.113.60:5060"
	tests := []struct {
		name   string
		config string
		n      int
		gap    time.Duration
		mk     func(i int) *core.Event
		first  int // index of the first request refused; -1: none
		action core.Action
		detail string
		reason string // of the block
	}{
		{"svwar -c: REGISTER enumeration", "", 200, 20 * time.Millisecond,
			func(i int) *core.Event { return registerReq(ip, fmt.Sprint(1000+i), "") },
			60, core.Drop, "REGISTER Enumeration", "61 distinct users registered within 1m0s (limit 60)"},
		{"svwar -c -m OPTIONS: OPTIONS sweep", "", 200, 20 * time.Millisecond,
			func(i int) *core.Event { return options(ip, fmt.Sprintf("sip:%d@192.0.2.10", 1000+i), "") },
			20, core.Drop, "OPTIONS Sweep", "21 distinct OPTIONS targets within 1m0s (limit 20)"},
		{"svwar -c -m INVITE: extension enumeration", "", 200, 20 * time.Millisecond,
			func(i int) *core.Event { return invite(ip, "100", fmt.Sprintf("sip:%d@192.0.2.10", 1000+i), "") },
			60, core.Drop, "Target Enumeration", "61 distinct targets within 1m0s (limit 60)"},
		{"dial-plan probing with tel: URIs", "", 100, 200 * time.Millisecond,
			func(i int) *core.Event {
				return invite(ip, "100", fmt.Sprintf("tel:%s972599%06d", []string{"", "00", "011", "9011"}[i%4], i), "")
			},
			60, core.Drop, "Target Enumeration", "61 distinct targets within 1m0s (limit 60)"},
		{"targets from the To user when the URI has none", "", 100, 100 * time.Millisecond,
			func(i int) *core.Event {
				ev := invite(ip, "100", "sip:192.0.2.10", "")
				ev.To.User = fmt.Sprint(2000 + i)
				return ev
			},
			60, core.Drop, "Target Enumeration", "61 distinct targets within 1m0s (limit 60)"},
		{"MESSAGE spam to many users", "", 100, 100 * time.Millisecond,
			func(i int) *core.Event {
				ev := invite(ip, "100", fmt.Sprintf("sip:%d@192.0.2.10", 3000+i), "")
				ev.Kind, ev.Method = core.KindMessage, "MESSAGE"
				return ev
			},
			60, core.Drop, "Target Enumeration", "61 distinct targets within 1m0s (limit 60)"},
		{"answered with 403 outside the internet zone", "", 100, 20 * time.Millisecond,
			func(i int) *core.Event {
				ev := registerReq(ip, fmt.Sprint(1000+i), "")
				ev.Src.Zone = "office"
				return ev
			},
			60, core.Refuse, "REGISTER Enumeration", "61 distinct users registered within 1m0s (limit 60)"},
		{"a zone with a higher threshold", "zones: {internet: {max_register_users: 150}}", 200, 20 * time.Millisecond,
			func(i int) *core.Event { return registerReq(ip, fmt.Sprint(1000+i), "") },
			150, core.Drop, "REGISTER Enumeration", "151 distinct users registered within 1m0s (limit 150)"},
		{"threshold off", "max_register_users: 0", 300, 20 * time.Millisecond,
			func(i int) *core.Event { return registerReq(ip, fmt.Sprint(1000+i), "") },
			-1, core.Allow, "", ""},
		{"slow enough to stay under the threshold in every window", "", 300, 2 * time.Second,
			func(i int) *core.Event { return registerReq(ip, fmt.Sprint(1000+i), "") },
			-1, core.Allow, "", ""},
		{"the same user over and over is not enumeration", "", 5000, 10 * time.Millisecond,
			func(i int) *core.Event { return registerReq(ip, "1001", "") },
			-1, core.Allow, "", ""},
		{"in-dialog requests count nowhere", "", 500, 10 * time.Millisecond,
			func(i int) *core.Event {
				ev := inDialog(ip, "INFO", "")
				ev.Target = fmt.Sprintf("sip:%d@192.0.2.10", i)
				return ev
			},
			-1, core.Allow, "", ""},
		{"trunk carrier calling many DIDs", "", 1000, 50 * time.Millisecond,
			func(i int) *core.Event {
				ev := invite("198.51.100.200:5060", "+15551230000", fmt.Sprintf("sip:+1555987%04d@192.0.2.10", i), "Carrier SBC")
				ev.Src.Zone = "trunk"
				return ev
			},
			-1, core.Allow, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.config)
			first, v := sweep(e, tt.n, tt.gap, tt.mk)
			if first != tt.first || v.Action != tt.action || tt.first >= 0 && (v.Rule != RuleBehaviour || v.Detail != tt.detail) {
				t.Fatalf("first refused = %d with %v %q %q, want %d with %v %q %q",
					first, v.Action, v.Rule, v.Detail, tt.first, tt.action, RuleBehaviour, tt.detail)
			}
			blocks := e.blocker.list()
			if tt.first < 0 {
				if len(blocks) != 0 {
					t.Errorf("blocks %q, want none", blocks)
				}
				return
			}
			addr := tt.mk(0).Src.Addr.Addr().String()
			if want := addr + " scan/behaviour " + tt.reason; len(blocks) != 1 || blocks[0] != want {
				t.Errorf("blocks %q, want one: %q", blocks, want)
			}
			if evs := e.events(); len(evs) != 1 || evs[0].Rule != RuleBehaviour || evs[0].Detail != tt.reason {
				t.Errorf("events %+v, want one %q", evs, tt.reason)
			}
		})
	}
}

// TestBehaviourAfterDetection checks that every request after a detection
// is refused without counting, and that the source starts afresh once
// refuse_for has passed.
func TestBehaviourAfterDetection(t *testing.T) {
	e := newEnv(t, "refuse_for: 2m")
	const ip = "203.0.113.61:5060"
	first, _ := sweep(e, 100, 10*time.Millisecond, func(i int) *core.Event { return registerReq(ip, fmt.Sprint(1000+i), "") })
	if first != 60 {
		t.Fatalf("first refused %d, want 60", first)
	}
	e.clk.advance(2 * time.Minute)
	if first, _ := sweep(e, 60, 10*time.Millisecond, func(i int) *core.Event { return registerReq(ip, fmt.Sprint(5000+i), "") }); first != -1 {
		t.Errorf("after refuse_for, request %d refused: the count did not start afresh", first)
	}
	if first, _ := sweep(e, 1, 0, func(i int) *core.Event { return registerReq(ip, "9999", "") }); first != 0 {
		t.Errorf("the 61st distinct user after refuse_for was allowed")
	}
	if n := len(e.blocker.list()); n != 2 {
		t.Errorf("%d blocks, want 2", n)
	}
	if n := e.metric(t, "ucgate_scan_detections_total", "register"); n != 2 {
		t.Errorf("detections{register} = %v, want 2", n)
	}
	if n := e.metric(t, "ucgate_scan_refused_total", RuleBehaviour); n != 41 {
		t.Errorf("refused{behaviour} = %v, want 41", n)
	}
}

// TestPhoneNeverTriggers is one phone for a day: it registers its one user
// (challenged each time), keeps its NAT binding open with OPTIONS to the
// gateway every 25 s, subscribes to its voicemail and makes a call now and
// then. Nothing it does may look like a scan.
func TestPhoneNeverTriggers(t *testing.T) {
	e := newEnv(t, "")
	const ip = "198.51.100.7:5062"
	const agent = "Yealink SIP-T46S 66.86.0.15"
	ctx := context.Background()
	check := func(what string, ev *core.Event) {
		t.Helper()
		if v, _ := e.s.Decide(ctx, ev); v.Action != core.Allow {
			t.Fatalf("%s at %v: %+v", what, e.clk.now(), v)
		}
	}
	for tick := range 24 * 3600 / 25 {
		if tick%24 == 0 { // every 10 minutes: REGISTER, 401, REGISTER with credentials
			check("register", registerReq(ip, "1001", agent))
			check("register again", registerReq(ip, "1001", agent))
			mwi := invite(ip, "1001", "sip:1001@example.com", agent)
			mwi.Kind, mwi.Method = core.KindPresence, "SUBSCRIBE"
			check("mwi", mwi)
		}
		check("keep-alive", options(ip, "sip:example.com", agent))
		if tick%97 == 0 { // a call every 40 minutes or so, to a few numbers
			check("call", invite(ip, "1001", fmt.Sprintf("sip:%d@example.com", 2000+tick%7), agent))
			check("bye", inDialog(ip, "BYE", agent))
		}
		e.clk.advance(25 * time.Second)
	}
	if b := e.blocker.list(); len(b) != 0 {
		t.Errorf("blocks: %q", b)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("events: %+v", evs)
	}
}

// TestSmallOfficeNeverTriggers is an office of 20 phones behind one NAT
// address, over a working day: every phone (3 lines each) registers at
// once after a power cut, the receptionist's phone subscribes to every
// extension's line state, every phone sends keep-alives, and the office
// makes calls, a burst of them at 10 o'clock.
func TestSmallOfficeNeverTriggers(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	const nat = "198.51.100.20"
	phone := func(n int) string { return fmt.Sprintf("%s:%d", nat, 5060+n) }
	agent := func(n int) string {
		return []string{"Yealink SIP-T46S 66.86.0.15", "Grandstream GXP2170 1.0.11.3", "snom D785/10.1.54.13"}[n%3]
	}
	check := func(what string, ev *core.Event) {
		t.Helper()
		if v, _ := e.s.Decide(ctx, ev); v.Action != core.Allow {
			t.Fatalf("%s at %v: %+v", what, e.clk.now(), v)
		}
	}
	// The power comes back: each phone registers its three lines, twice
	// each (the first is challenged), within 30 s: 60 distinct users.
	for p := range 20 {
		for line := range 3 {
			user := fmt.Sprint(100 + p*3 + line)
			check("boot register", registerReq(phone(p), user, agent(p)))
			check("boot register", registerReq(phone(p), user, agent(p)))
		}
		e.clk.advance(1500 * time.Millisecond)
	}
	// The receptionist subscribes to every extension, everyone to their
	// voicemail.
	for p := range 20 {
		blf := invite(phone(0), "100", fmt.Sprintf("sip:%d@example.com", 100+p*3), agent(0))
		blf.Kind, blf.Method = core.KindPresence, "SUBSCRIBE"
		check("blf", blf)
		mwi := invite(phone(p), fmt.Sprint(100+p*3), fmt.Sprintf("sip:%d@example.com", 100+p*3), agent(p))
		mwi.Kind, mwi.Method = core.KindPresence, "SUBSCRIBE"
		check("mwi", mwi)
	}
	// Eight hours: keep-alives every 30 s from every phone, registrations
	// refreshed every 10 minutes, a call per phone per hour, and a burst of
	// 30 calls to distinct numbers between 10:00 and 10:10.
	call := 0
	for tick := range 8 * 120 {
		for p := range 20 {
			check("keep-alive", options(phone(p), "sip:example.com", agent(p)))
			if tick%20 == p {
				for line := range 3 {
					check("refresh", registerReq(phone(p), fmt.Sprint(100+p*3+line), agent(p)))
				}
			}
			if tick%120 == p*6 {
				call++
				check("call", invite(phone(p), fmt.Sprint(100+p*3), fmt.Sprintf("sip:+4930%07d@example.com", call), agent(p)))
			}
		}
		if tick >= 240 && tick < 260 {
			for range 2 {
				call++
				check("burst call", invite(phone(call%20), "100", fmt.Sprintf("sip:+4930%07d@example.com", call), agent(call%20)))
				check("internal call", invite(phone(call%20), "100", fmt.Sprintf("sip:%d@example.com", 100+call%60), agent(call%20)))
			}
		}
		e.clk.advance(30 * time.Second)
	}
	if b := e.blocker.list(); len(b) != 0 {
		t.Errorf("blocks: %q", b)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("events: %+v", evs)
	}
	if !strings.HasPrefix(phone(0), nat) || call < 150 {
		t.Errorf("the office made %d calls; the test meant at least 150", call)
	}
}
