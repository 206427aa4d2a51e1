package rtpguard

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// audio returns n packets of a 20 ms G.711 stream of ssrc from packet
// first on, arriving on time (the relay's clock at ms 20 per packet).
func audio(ssrc uint32, first, n int) []pkt {
	out := make([]pkt, n)
	for i := range out {
		j := first + i
		out[i] = pkt{pt: 0, seq: uint16(1000 + j), ts: uint32(80000 + j*160), ssrc: ssrc, at: int64(j * 20)}
	}
	return out
}

// with changes a packet.
func with(p pkt, f func(*pkt)) pkt { f(&p); return p }

// sr is an RTCP sender report of SSRC 1 with no report blocks.
var sr = []byte{0x80, 200, 0, 6, 0, 0, 0, 1, 0xe9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x3e, 0x80, 0, 0, 0, 50, 0, 0, 0x1f, 0x40}

func TestCheck(t *testing.T) {
	next := audio(7, 10, 1)[0] // the packet after audio(7, 0, 10)
	tests := []struct {
		name   string
		config string
		info   *core.StreamInfo
		prep   []pkt // must all pass
		p      pkt
		edit   func(m *core.MediaPacket) // applied to p's MediaPacket
		action core.Action
		rule   string
	}{
		{"first packet locks", "", nil, nil, next, nil, core.Allow, ""},
		{"next packet", "", nil, audio(7, 0, 10), next, nil, core.Allow, ""},
		{"loss of 2999 packets", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.seq += 2999; p.ts += 2999 * 160; p.at += 2999 * 20 }), nil, core.Allow, ""},
		{"jump of 3001 packets", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.seq += 3000; p.ts += 3000 * 160; p.at += 3000 * 20 }), nil, core.Drop, RuleSequence},
		{"100 behind", "", nil, audio(7, 0, 150), with(audio(7, 49, 1)[0], func(p *pkt) { p.at = 3000 }), nil, core.Allow, ""},
		{"101 behind", "", nil, audio(7, 0, 150), with(audio(7, 48, 1)[0], func(p *pkt) { p.at = 3000 }), nil, core.Drop, RuleSequence},
		{"wider window", "sequence_behind: 200\nsequence_ahead: 5000", nil, audio(7, 0, 150), with(audio(7, 0, 1)[0], func(p *pkt) { p.at = 3000 }), nil, core.Allow, ""},
		{"sequence wraps", "", nil, []pkt{{pt: 0, seq: 65535, ts: 0, ssrc: 7}}, pkt{pt: 0, seq: 0, ts: 160, ssrc: 7, at: 20}, nil, core.Allow, ""},
		{"behind across the wrap", "", nil, []pkt{{pt: 0, seq: 65535, ts: 0, ssrc: 7}, {pt: 0, seq: 10, ts: 1760, ssrc: 7, at: 220}}, pkt{pt: 0, seq: 65530, ts: 0, ssrc: 7, at: 230}, nil, core.Allow, ""},
		{"foreign SSRC", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.ssrc = 8 }), nil, core.Drop, RuleSSRC},
		{"timestamp 10 s ahead", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.ts += 80000 }), nil, core.Allow, ""},
		{"timestamp 10 s and a tick ahead", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.ts += 80160 + 1 }), nil, core.Drop, RuleTimestamp},
		{"timestamp 11 s behind", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.ts -= 88000 }), nil, core.Drop, RuleTimestamp},
		{"shorter jump", "max_timestamp_jump: 1s", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.ts += 16000 }), nil, core.Drop, RuleTimestamp},
		{"timestamp at the other clock's rate", "", videoInfo("", vp8), nil, pkt{pt: 96, seq: 1, ts: 5, ssrc: 7}, nil, core.Allow, ""},
		{"clock kept running through 60 s of silence", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.ts += 60 * 8000; p.at += 60000 }), nil, core.Allow, ""},
		{"clock paused through 60 s of silence", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.at += 60000 }), nil, core.Allow, ""},
		{"clock running too fast after silence", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.ts += 80 * 8000; p.at += 60000 }), nil, core.Drop, RuleTimestamp},

		{"payload type not negotiated", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.pt = 8 }), nil, core.Drop, RulePayloadType},
		{"DTMF negotiated", "", audioInfo("", pcmu, dtmf), audio(7, 0, 10), with(next, func(p *pkt) { p.pt = 101 }), nil, core.Allow, ""},
		{"dynamic type, strict", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.pt = 111 }), nil, core.Drop, RulePayloadType},
		{"dynamic type, lenient", "payload_types: lenient", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.pt = 111 }), nil, core.Allow, ""},
		{"static type, lenient", "payload_types: lenient", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.pt = 18 }), nil, core.Drop, RulePayloadType},
		{"lenient zone", "zones: {trunk: {payload_types: lenient}}", audioInfo("trunk", pcmu), audio(7, 0, 10), with(next, func(p *pkt) { p.pt = 96 }), nil, core.Allow, ""},
		{"lenient zone, other zone strict", "zones: {trunk: {payload_types: lenient}}", audioInfo("internet", pcmu), audio(7, 0, 10), with(next, func(p *pkt) { p.pt = 96 }), nil, core.Drop, RulePayloadType},
		{"RTCP type range as RTP", "", nil, audio(7, 0, 10), with(next, func(p *pkt) { p.pt = 72 }), nil, core.Drop, RulePayloadType},

		{"RTX on its own SSRC", "", videoInfo("", vp8, rtx), []pkt{{pt: 96, seq: 1, ts: 3000, ssrc: 7}, {pt: 96, seq: 2, ts: 6000, ssrc: 7, at: 33}}, pkt{pt: 97, seq: 500, ts: 3000, ssrc: 9, at: 40}, nil, core.Allow, ""},
		{"RTX SSRC locked too", "", videoInfo("", vp8, rtx), []pkt{{pt: 96, seq: 1, ts: 3000, ssrc: 7}, {pt: 97, seq: 500, ts: 3000, ssrc: 9, at: 40}}, pkt{pt: 97, seq: 501, ts: 3000, ssrc: 10, at: 50}, nil, core.Drop, RuleSSRC},
		{"media PT on the RTX SSRC", "", videoInfo("", vp8, rtx), []pkt{{pt: 96, seq: 1, ts: 3000, ssrc: 7}, {pt: 97, seq: 500, ts: 3000, ssrc: 9, at: 40}}, pkt{pt: 96, seq: 501, ts: 3000, ssrc: 9, at: 50}, nil, core.Drop, RuleSSRC},

		{"RTCP sender report", "", nil, audio(7, 0, 10), pkt{}, func(m *core.MediaPacket) { *m = core.MediaPacket{Data: sr, RTCP: true, Now: m.Now} }, core.Allow, ""},
		{"RTCP before any RTP", "", nil, nil, pkt{}, func(m *core.MediaPacket) { *m = core.MediaPacket{Data: sr, RTCP: true} }, core.Allow, ""},
		{"RTCP of version 1", "", nil, nil, pkt{}, func(m *core.MediaPacket) { *m = core.MediaPacket{Data: append([]byte{0x40}, sr[1:]...), RTCP: true} }, core.Drop, RuleRTCP},
		{"RTCP type 224", "", nil, nil, pkt{}, func(m *core.MediaPacket) {
			*m = core.MediaPacket{Data: append([]byte{0x80, 224}, sr[2:]...), RTCP: true}
		}, core.Drop, RuleRTCP},
		{"RTCP type 191", "", nil, nil, pkt{}, func(m *core.MediaPacket) {
			*m = core.MediaPacket{Data: append([]byte{0x80, 191}, sr[2:]...), RTCP: true}
		}, core.Drop, RuleRTCP},
		{"RTCP of 4 bytes", "", nil, nil, pkt{}, func(m *core.MediaPacket) { *m = core.MediaPacket{Data: sr[:4], RTCP: true} }, core.Drop, RuleRTCP},
		{"RTP taken for RTCP", "", nil, nil, next, func(m *core.MediaPacket) { m.RTCP = true }, core.Drop, RuleRTCP},

		{"not parsed", "", nil, nil, next, func(m *core.MediaPacket) { m.Parsed = false }, core.Drop, RuleHeader},
		{"version 1", "", nil, nil, next, func(m *core.MediaPacket) { m.Data[0] = 0x40; m.Version = 1 }, core.Drop, RuleHeader},
		{"version field disagrees", "", nil, nil, next, func(m *core.MediaPacket) { m.Version = 0 }, core.Drop, RuleHeader},
		{"shorter than a header", "", nil, nil, next, func(m *core.MediaPacket) { m.Data = m.Data[:11] }, core.Drop, RuleHeader},
		{"two CSRCs", "", nil, nil, next, func(m *core.MediaPacket) { m.Data[0] |= 2; m.HeaderLen = 20 }, core.Allow, ""},
		{"fifteen CSRCs, too short", "", nil, nil, with(next, func(p *pkt) { p.size = 40 }), func(m *core.MediaPacket) { m.Data[0] |= 15; m.HeaderLen = 72 }, core.Drop, RuleHeader},
		{"CSRC count and header length disagree", "", nil, nil, next, func(m *core.MediaPacket) { m.Data[0] |= 2 }, core.Drop, RuleHeader},
		{"extension", "", nil, nil, next, func(m *core.MediaPacket) {
			m.Data[0] |= 0x10
			copy(m.Data[12:], []byte{0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0})
			m.HeaderLen = 20
		}, core.Allow, ""},
		{"extension longer than the packet", "", nil, nil, next, func(m *core.MediaPacket) {
			m.Data[0] |= 0x10
			copy(m.Data[12:], []byte{0xbe, 0xde, 0, 200})
			m.HeaderLen = 16 + 800
		}, core.Drop, RuleHeader},
		{"extension flag without room for it", "", nil, nil, with(next, func(p *pkt) { p.size = 2 }), func(m *core.MediaPacket) { m.Data[0] |= 0x10 }, core.Drop, RuleHeader},
		{"padding", "", nil, nil, next, func(m *core.MediaPacket) { m.Data[0] |= 0x20; m.Data[len(m.Data)-1] = 4 }, core.Allow, ""},
		{"padding of zero", "", nil, nil, next, func(m *core.MediaPacket) { m.Data[0] |= 0x20; m.Data[len(m.Data)-1] = 0 }, core.Drop, RuleHeader},
		{"padding beyond the payload", "", nil, nil, with(next, func(p *pkt) { p.size = 4 }), func(m *core.MediaPacket) { m.Data[0] |= 0x20; m.Data[len(m.Data)-1] = 5 }, core.Drop, RuleHeader},
		{"padding eating the whole payload", "", nil, nil, with(next, func(p *pkt) { p.size = 4 }), func(m *core.MediaPacket) { m.Data[0] |= 0x20; m.Data[len(m.Data)-1] = 4 }, core.Allow, ""},
		{"parsed fields disagree with the bytes", "", nil, nil, next, func(m *core.MediaPacket) { m.SSRC++ }, core.Drop, RuleHeader},
		{"marker disagrees", "", nil, nil, next, func(m *core.MediaPacket) { m.Marker = true }, core.Drop, RuleHeader},
		{"marker", "", nil, nil, next, func(m *core.MediaPacket) { m.Data[1] |= 0x80; m.Marker = true }, core.Allow, ""},

		{"audio burst of 500", "", nil, burst(7, 499, 0), burst(7, 1, 499)[0], nil, core.Allow, ""},
		{"audio burst of 501", "", nil, burst(7, 500, 0), burst(7, 1, 500)[0], nil, core.Drop, RuleRate},
		{"after a second, again", "", nil, burst(7, 500, 0), with(burst(7, 1, 500)[0], func(p *pkt) { p.at = 1000 }), nil, core.Allow, ""},
		{"RTCP counts", "", nil, burst(7, 500, 0), pkt{}, func(m *core.MediaPacket) { *m = core.MediaPacket{Data: sr, RTCP: true} }, core.Drop, RuleRate},
		{"video is allowed more", "", videoInfo("", vp8), videoBurst(7, 4999), videoBurst(7, 5000)[4999], nil, core.Allow, ""},
		{"video burst of 5001", "", videoInfo("", vp8), videoBurst(7, 5000), videoBurst(7, 5001)[5000], nil, core.Drop, RuleRate},
		{"bytes", "audio_rate: {bytes: 1000, byte_burst: 65535}", nil, burst(7, 381, 0), burst(7, 1, 381)[0], nil, core.Drop, RuleRate},
		{"zone rate", "zones: {trunk: {audio_rate: {packets: 10, packet_burst: 10}}}", audioInfo("trunk", pcmu), burst(7, 10, 0), burst(7, 1, 10)[0], nil, core.Drop, RuleRate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testStage(t, tt.config, core.Deps{})
			info := tt.info
			if info == nil {
				info = audioInfo("internet", pcmu)
			}
			g := s.Guard(info)
			for i, p := range tt.prep {
				if v := g.Check(p.packet()); v.Action != core.Allow {
					t.Fatalf("prep packet %d (%+v): %s", i, p, verdictString(v))
				}
			}
			m := tt.p.packet()
			if tt.edit != nil {
				tt.edit(m)
			}
			v := g.Check(m)
			if v.Action != tt.action || v.Rule != tt.rule {
				t.Fatalf("verdict = %s, want %v %s", verdictString(v), tt.action, tt.rule)
			}
			if v.Action == core.Drop && (v.Detail == "" || v.Reason == core.ReasonNone) {
				t.Errorf("drop without reason or detail: %+v", v)
			}
		})
	}
}

// burst is n audio packets of ssrc from seq first on, all at ms 0.
func burst(ssrc uint32, n, first int) []pkt {
	out := audio(ssrc, first, n)
	for i := range out {
		out[i].at = 0
	}
	return out
}

// videoBurst is n packets of a 90 kHz video frame (one timestamp) of
// 1000 bytes each, at ms 0.
func videoBurst(ssrc uint32, n int) []pkt {
	out := make([]pkt, n)
	for i := range out {
		out[i] = pkt{pt: 96, seq: uint16(i), ts: 3000, ssrc: ssrc, size: 1000}
	}
	return out
}

func TestGuard(t *testing.T) {
	tests := []struct {
		name   string
		config string
		info   *core.StreamInfo
		want   bool
	}{
		{"audio", "", audioInfo("internet", pcmu), true},
		{"video", "", videoInfo("internet", vp8), true},
		{"no payload format (T.38 over UDPTL)", "", &core.StreamInfo{Type: "image", Zone: "internet"}, false},
		{"zone not guarded", "zones: {lan: {enabled: false}}", audioInfo("lan", pcmu), false},
		{"zone guarded", "zones: {lan: {enabled: true}}", audioInfo("lan", pcmu), true},
		{"other zone guarded", "zones: {lan: {enabled: false}}", audioInfo("internet", pcmu), true},
		{"stage off", "enabled: false", audioInfo("internet", pcmu), false},
		{"nil info", "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testStage(t, tt.config, core.Deps{})
			g := s.Guard(tt.info)
			if (g != nil) != tt.want {
				t.Fatalf("Guard = %v, want a guard: %v", g, tt.want)
			}
		})
	}
}

func TestStageContract(t *testing.T) {
	s := testStage(t, "", core.Deps{})
	if s.Name() != "rtpguard" || s.Layer() != core.Content || s.Close() != nil {
		t.Errorf("Name, Layer = %q, %v", s.Name(), s.Layer())
	}
	if v, err := s.Decide(context.Background(), &core.Event{Kind: core.KindSessionOffer}); err != nil || v.Action != core.Allow {
		t.Errorf("Decide = %+v, %v", v, err)
	}
	cfg := Defaults()
	cfg.SequenceAhead = 0
	if _, err := New(cfg, core.Deps{}); !errors.Is(err, ErrConfig) {
		t.Errorf("New with a bad config: %v, want ErrConfig", err)
	}
	p, err := core.NewPipeline([]string{"rtpguard"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if gs := p.Guards(audioInfo("internet", pcmu)); len(gs) != 1 {
		t.Fatalf("Pipeline.Guards = %v", gs)
	}
}

// TestRenegotiateWhileChecking runs Renegotiate concurrently with Check
// (go test -race proves it safe) and then checks that the latest
// negotiation applies.
func TestRenegotiateWhileChecking(t *testing.T) {
	s := testStage(t, "", core.Deps{})
	g := s.Guard(audioInfo("internet", pcmu))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			if i%2 == 0 {
				g.Renegotiate(audioInfo("internet", pcmu, pcma))
			} else {
				g.Renegotiate(audioInfo("internet", pcmu))
			}
		}
	}()
	buf := make([]byte, 200)
	m := new(core.MediaPacket)
	for i := 0; i < 2000; i++ {
		audio(7, i, 1)[0].build(buf, m)
		if v := g.Check(m); v.Action != core.Allow {
			// Every renegotiation keeps PCMU, and each relock finds
			// the same source.
			t.Fatalf("packet %d: %s", i, verdictString(v))
		}
	}
	wg.Wait()
	g.Renegotiate(audioInfo("internet", pcma))
	if v := g.Check(audio(7, 2000, 1)[0].packet()); v.Rule != RulePayloadType {
		t.Fatalf("PCMU after the last renegotiation: %s", verdictString(v))
	}
	if v := g.Check(with(audio(9, 2001, 1)[0], func(p *pkt) { p.pt = 8 }).packet()); v.Action != core.Allow {
		t.Fatalf("PCMA of a new SSRC after the renegotiation: %s", verdictString(v))
	}
	g.Close()
}

func TestSecurityEventsOncePerRule(t *testing.T) {
	a, got := alerts()
	s := testStage(t, "", core.Deps{Alerts: a})
	g := s.Guard(audioInfo("internet", pcmu))
	for _, p := range audio(7, 0, 10) {
		g.Check(p.packet())
	}
	for i := 0; i < 5; i++ {
		g.Check(pkt{pt: 0, seq: uint16(i), ts: 1, ssrc: 8, at: 300}.packet())
		m := audio(7, 11, 1)[0].packet()
		m.Data[0] = 0x40
		g.Check(m)
	}
	g2 := s.Guard(videoInfo("trunk", vp8))
	g2.Check(pkt{pt: 0, seq: 1, ts: 1, ssrc: 1}.packet())
	a.Close()
	var rules []string
	for _, e := range got.all {
		rules = append(rules, e.Rule+" "+e.Zone)
		if strings.Contains(e.Detail, "\xff") || len(e.Detail) > 200 {
			t.Errorf("detail %q", e.Detail)
		}
	}
	want := "rtpguard/ssrc internet,rtpguard/header internet,rtpguard/payload_type trunk"
	if s := strings.Join(rules, ","); s != want {
		t.Fatalf("events %s\nwant   %s", s, want)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := testStage(t, "", core.Deps{Metrics: reg})
	s2 := testStage(t, "", core.Deps{Metrics: reg}) // a reload shares the collectors
	g := s.Guard(audioInfo("internet", pcmu))
	g2 := s2.Guard(audioInfo("internet", pcmu))
	g.Check(audio(7, 0, 1)[0].packet())
	g.Check(audio(8, 1, 1)[0].packet())
	g2.Check(with(audio(8, 1, 1)[0], func(p *pkt) { p.pt = 9 }).packet())
	got := gather(t, reg)
	for k, v := range map[string]float64{
		`ucgate_rtpguard_dropped_total{rule="rtpguard/ssrc"}`:         1,
		`ucgate_rtpguard_dropped_total{rule="rtpguard/payload_type"}`: 1,
		`ucgate_rtpguard_dropped_total{rule="rtpguard/rate"}`:         0,
		`ucgate_rtpguard_streams`:                                     2,
		`ucgate_rtpguard_restarts_total`:                              0,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	g.Close()
	g2.Close()
	if got := gather(t, reg)["ucgate_rtpguard_streams"]; got != 0 {
		t.Errorf("streams after Close = %v", got)
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	a, _ := alerts()
	defer a.Close()
	s := testStage(t, "", core.Deps{Alerts: a, Metrics: prometheus.NewRegistry()})
	g := s.Guard(audioInfo("internet", pcmu))
	buf := make([]byte, 200)
	m := new(core.MediaPacket)
	i := 0
	allowed := func() {
		audio(7, i, 1)[0].build(buf, m)
		i++
		if v := g.Check(m); v.Action != core.Allow {
			t.Fatalf("packet %d: %s", i, verdictString(v))
		}
	}
	forged := func() {
		i++
		pkt{pt: 0, seq: 5, ts: 5, ssrc: 99, at: int64(i * 20)}.build(buf, m)
		if v := g.Check(m); v.Rule != RuleSSRC {
			t.Fatalf("forged: %s", verdictString(v))
		}
	}
	rp := &core.MediaPacket{Data: sr, RTCP: true}
	rtcp := func() {
		i++
		rp.Now = int64(i) * 20e6
		if v := g.Check(rp); v.Action != core.Allow {
			t.Fatalf("RTCP: %s", verdictString(v))
		}
	}
	allowed()
	forged() // the first drop raises its security event
	for name, f := range map[string]func(){"allowed": allowed, "dropped": forged, "rtcp": rtcp} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per Check", name, n)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	s := testStage(b, "", core.Deps{Metrics: prometheus.NewRegistry()})
	b.Run("allowed", func(b *testing.B) {
		g := s.Guard(audioInfo("internet", pcmu, dtmf))
		buf := make([]byte, 200)
		m := new(core.MediaPacket)
		pkt{pt: 0, ssrc: 7}.build(buf, m)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			// Advance the header in place, as a relay's buffer would hold
			// the next packet.
			binary.BigEndian.PutUint16(buf[2:], uint16(i))
			binary.BigEndian.PutUint32(buf[4:], uint32(i*160))
			m.Seq, m.Timestamp, m.Now = uint16(i), uint32(i*160), int64(i)*20e6
			if g.Check(m).Action != core.Allow {
				b.Fatal("dropped")
			}
			i++
		}
	})
	b.Run("dropped_ssrc", func(b *testing.B) {
		g := s.Guard(audioInfo("internet", pcmu))
		g.Check(pkt{pt: 0, ssrc: 7}.packet())
		m := pkt{pt: 0, seq: 3, ts: 480, ssrc: 8, at: 60}.packet()
		b.ReportAllocs()
		for b.Loop() {
			if g.Check(m).Action != core.Drop {
				b.Fatal("allowed")
			}
		}
	})
	b.Run("dropped_header", func(b *testing.B) {
		g := s.Guard(audioInfo("internet", pcmu))
		m := pkt{pt: 0, ssrc: 8}.packet()
		m.Data[0] = 0x40
		b.ReportAllocs()
		for b.Loop() {
			if g.Check(m).Action != core.Drop {
				b.Fatal("allowed")
			}
		}
	})
}
