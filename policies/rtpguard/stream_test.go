package rtpguard

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// TestRealisticStream plays 1000 packets of 20 ms G.711 (sequence and
// timestamp wrapping on the way) with what a network and an attacker do
// to them, then a phone restarting after silence and a re-INVITE.
func TestRealisticStream(t *testing.T) {
	const (
		ssrcA  = 0x5eed0001 // the caller's phone
		ssrcB  = 0x0badf00d // an attacker guessing ports
		ssrcC  = 0x5eed0002 // the phone after a restart
		ssrcD  = 0x5eed0003 // after the re-INVITE
		seq0   = 65000      // wraps at packet 536
		ts0    = 4294960000 // wraps at packet 46
		second = 8000       // ticks of the G.711 clock
	)
	normal := func(i int) pkt {
		return pkt{pt: 0, seq: seq0 + uint16(i), ts: ts0 + uint32(i*160), ssrc: ssrcA, at: int64(i * 20)}
	}
	type step struct {
		what string
		p    pkt
		want string
	}
	const allow = "allow"
	var steps []step
	for i := 0; i < 1000; i++ {
		p := normal(i)
		switch {
		case i == 100:
			n := normal(101)
			n.at = p.at
			p.at += 3
			steps = append(steps, step{"101 overtakes 100", n, allow}, step{"100 arrives late", p, allow})
			continue
		case i == 101:
			continue
		case i == 200:
			steps = append(steps, step{"packet", p, allow}, step{"duplicate", p, allow})
			continue
		case i == 300:
			f := normal(301)
			f.ssrc, f.at = ssrcB, p.at+5
			steps = append(steps, step{"packet", p, allow}, step{"forged SSRC", f, "drop " + RuleSSRC})
			continue
		case i == 400:
			f := normal(401)
			f.seq += 20000
			f.at = p.at + 5
			steps = append(steps, step{"packet", p, allow}, step{"forged far sequence", f, "drop " + RuleSequence})
			continue
		case i == 500:
			f := normal(501)
			f.ts += 20 * second
			f.at = p.at + 5
			steps = append(steps, step{"packet", p, allow}, step{"timestamp jump of 20 s", f, "drop " + RuleTimestamp})
			continue
		case i >= 600 && i < 610:
			continue // lost
		case i == 700:
			late := normal(550)
			late.at = p.at + 1
			steps = append(steps, step{"packet", p, allow}, step{"150 packets late", late, "drop " + RuleSequence})
			continue
		case i == 750:
			late := normal(700)
			late.at = p.at + 1
			steps = append(steps, step{"packet", p, allow}, step{"50 packets late", late, allow})
			continue
		case i == 800:
			f := p
			f.pt, f.at = 18, p.at+5
			f.seq++
			steps = append(steps, step{"packet", p, allow}, step{"G.729 never negotiated", f, "drop " + RulePayloadType})
			continue
		case i >= 850 && i < 853:
			p.pt, p.ts, p.size = 101, normal(850).ts, 4 // an RFC 4733 event: one timestamp, growing duration
		}
		steps = append(steps, step{"packet", p, allow})
	}
	// The phone restarts after 3 s of silence: 50 packets in a row of the
	// new SSRC are needed; the 50th moves the lock.
	last := normal(999).at
	restart := func(j int) pkt {
		return pkt{pt: 0, seq: 1234 + uint16(j), ts: 99999 + uint32(j*160), ssrc: ssrcC, at: last + 3000 + int64(j*20)}
	}
	for j := 0; j < 49; j++ {
		steps = append(steps, step{"new SSRC on probation", restart(j), "drop " + RuleSSRC})
	}
	steps = append(steps, step{"50th packet of the new SSRC", restart(49), allow})
	for j := 50; j < 60; j++ {
		steps = append(steps, step{"new SSRC", restart(j), allow})
	}
	stale := normal(1000)
	stale.at = restart(59).at + 5
	steps = append(steps, step{"old SSRC is foreign now", stale, "drop " + RuleSSRC})

	a, got := alerts()
	reg := prometheus.NewRegistry()
	s := testStage(t, "", core.Deps{Alerts: a, Metrics: reg})
	info := audioInfo("internet", pcmu, dtmf)
	g := s.Guard(info)
	if g == nil {
		t.Fatal("no guard")
	}
	m := new(core.MediaPacket)
	buf := make([]byte, 1500)
	counts := map[string]int{}
	run := func(steps []step) {
		t.Helper()
		for n, st := range steps {
			st.p.build(buf, m)
			v := g.Check(m)
			if got := verdictString(v); got != st.want {
				t.Fatalf("step %d (%s, seq %d ts %d ssrc %08x): %s, want %s", n, st.what, st.p.seq, st.p.ts, st.p.ssrc, got, st.want)
			}
			if v.Action == core.Drop && v.Detail == "" {
				t.Errorf("step %d: drop without detail", n)
			}
			counts[verdictString(v)]++
		}
	}
	run(steps)

	// A re-INVITE switches to PCMA; the phone starts a new SSRC.
	info2 := audioInfo("internet", pcma, dtmf)
	g.Renegotiate(info2)
	at := stale.at + 500
	run([]step{
		{"first packet after the re-INVITE, new SSRC and PT", pkt{pt: 8, seq: 7, ts: 5000, ssrc: ssrcD, at: at}, allow},
		{"PCMU no longer negotiated", pkt{pt: 0, seq: 8, ts: 5160, ssrc: ssrcD, at: at + 20}, "drop " + RulePayloadType},
		{"next PCMA", pkt{pt: 8, seq: 8, ts: 5160, ssrc: ssrcD, at: at + 20}, allow},
		{"the SSRC before the re-INVITE", pkt{pt: 8, seq: 1300, ts: 99999 + 66*160, ssrc: ssrcC, at: at + 30}, "drop " + RuleSSRC},
		{"next PCMA", pkt{pt: 8, seq: 9, ts: 5320, ssrc: ssrcD, at: at + 40}, allow},
	})
	g.Close()
	g.Close() // idempotent

	want := map[string]int{"allow": 0, "drop " + RuleSSRC: 52, "drop " + RuleSequence: 2,
		"drop " + RuleTimestamp: 1, "drop " + RulePayloadType: 2}
	for k, n := range counts {
		if k != "allow" && want[k] != n {
			t.Errorf("%s: %d packets, want %d", k, n, want[k])
		}
	}
	// 1000 packets less 10 lost, plus the duplicate and the tolerated
	// late one, plus 11 of the new SSRC and 3 after the re-INVITE.
	if n := counts["allow"]; n != 990+1+1+11+3 {
		t.Errorf("allowed %d packets, want %d", n, 990+1+1+11+3)
	}
	metrics := gather(t, reg)
	for r, n := range want {
		if r == "allow" {
			continue
		}
		key := `ucgate_rtpguard_dropped_total{rule="` + strings.TrimPrefix(r, "drop ") + `"}`
		if metrics[key] != float64(n) {
			t.Errorf("%s = %v, want %d", key, metrics[key], n)
		}
	}
	if c := metrics["ucgate_rtpguard_restarts_total"]; c != 1 {
		t.Errorf("restarts = %v, want 1", c)
	}
	if c := metrics["ucgate_rtpguard_streams"]; c != 0 {
		t.Errorf("streams after Close = %v, want 0", c)
	}

	a.Close()
	wantEvents := []struct{ rule, action, detail string }{
		{RuleSSRC, "drop", "audio stream 0 from the caller: SSRC 0badf00d seq 65301 ts 40864 while the stream is SSRC 5eed0001 seq 65300 ts 40704"},
		{RuleSequence, "drop", "audio stream 0 from the caller: SSRC 5eed0001 seq 19865 ts"},
		{RuleTimestamp, "drop", "while the stream is SSRC 5eed0001 seq 65500 ts"},
		{RulePayloadType, "drop", "payload type 18, not negotiated"},
		{RuleRestart, "relock", "lock moved from SSRC 5eed0001 to SSRC 5eed0002 seq 1283 after 50 consistent packets and 3.98s of silence"},
	}
	if len(got.all) != len(wantEvents) {
		t.Fatalf("security events: %+v\nwant %d", got.all, len(wantEvents))
	}
	for i, w := range wantEvents {
		e := got.all[i]
		if e.Rule != w.rule || e.Action != w.action || !strings.Contains(e.Detail, w.detail) {
			t.Errorf("event %d = %s %s %q, want %s %s containing %q", i, e.Rule, e.Action, e.Detail, w.rule, w.action, w.detail)
		}
		if e.Src != "192.0.2.10:40000" || e.Zone != "internet" || e.Session != info.Session || e.Protocol != "rtp" || !e.Time.Equal(wallClock) {
			t.Errorf("event %d = %+v", i, e)
		}
	}
}

// TestForgedStreamNeverTakesOver: an attacker's consistent stream in
// parallel with the phone's is dropped for as long as the phone talks,
// however long it lasts.
func TestForgedStreamNeverTakesOver(t *testing.T) {
	s := testStage(t, "", core.Deps{})
	g := s.Guard(audioInfo("internet", pcmu))
	for i := 0; i < 3000; i++ {
		at := int64(i * 20)
		if v := g.Check(pkt{pt: 0, seq: uint16(i), ts: uint32(i * 160), ssrc: 1, at: at}.packet()); v.Action != core.Allow {
			t.Fatalf("packet %d of the phone: %s", i, verdictString(v))
		}
		if i == 0 {
			continue
		}
		if v := g.Check(pkt{pt: 0, seq: uint16(5000 + i), ts: uint32(777 + i*160), ssrc: 2, at: at + 10}.packet()); v.Rule != RuleSSRC {
			t.Fatalf("forged packet %d: %s", i, verdictString(v))
		}
	}
}

// TestRestartResistsSpray: a spray of forged packets of random SSRCs
// during a genuine restart does not keep the new source out for long.
func TestRestartResistsSpray(t *testing.T) {
	for _, tt := range []struct {
		name       string
		sprayFirst bool // the spray started before the genuine source
		min, max   int  // the genuine source's packet that moves the lock
	}{
		{"genuine source first", false, 19, 19},
		{"spray first", true, 19, 19 + 15},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := testStage(t, "restart_packets: 20\nrestart_after: 500ms", core.Deps{})
			g := s.Guard(audioInfo("internet", pcmu))
			g.Check(pkt{pt: 0, seq: 1, ts: 160, ssrc: 1, at: 0}.packet())
			spray := func(at int64, j int) {
				for k := 0; k < 5; k++ { // five forged sources between two genuine packets
					g.Check(pkt{pt: 0, seq: uint16(j*7 + k*1000), ts: uint32(j * 13), ssrc: uint32(0xa000 + j*5 + k), at: at + int64(k) + 1}.packet())
				}
			}
			if tt.sprayFirst {
				spray(980, -1)
			}
			accepted := -1
			for j := 0; j < 100 && accepted < 0; j++ {
				at := int64(1000 + j*20)
				if v := g.Check(pkt{pt: 0, seq: uint16(100 + j), ts: uint32(50000 + j*160), ssrc: 2, at: at}.packet()); v.Action == core.Allow {
					accepted = j
				}
				spray(at, j)
			}
			if accepted < tt.min || accepted > tt.max {
				t.Fatalf("the restarting source was accepted at its packet %d, want %d to %d", accepted, tt.min, tt.max)
			}
		})
	}
}

func TestRestartOfSequenceWithinSSRC(t *testing.T) {
	// A B2BUA keeps its SSRC but switches to another call's sequence and
	// timestamps without a re-INVITE.
	s := testStage(t, "restart_packets: 10\nrestart_after: 200ms", core.Deps{})
	g := s.Guard(audioInfo("internet", pcmu))
	for i := 0; i < 10; i++ {
		g.Check(pkt{pt: 0, seq: uint16(i), ts: uint32(i * 160), ssrc: 1, at: int64(i * 20)}.packet())
	}
	var got []string
	for j := 0; j < 12; j++ {
		v := g.Check(pkt{pt: 0, seq: uint16(30000 + j), ts: uint32(1e9 + j*160), ssrc: 1, at: int64(180 + 20*(j+1))}.packet())
		got = append(got, verdictString(v))
	}
	want := strings.Repeat("drop rtpguard/sequence,", 9) + "allow,allow,allow,"
	if s := strings.Join(got, ",") + ","; s != want {
		t.Fatalf("verdicts %s\nwant     %s", s, want)
	}
}
