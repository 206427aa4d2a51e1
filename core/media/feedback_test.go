package media

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// dtlsCall is a call whose caller is a DTLS-SRTP leg keyed from outside
// (as the WebRTC adapter does) and whose callee is a plain RTP phone.
type dtlsCall struct {
	c                  *Call
	browser, phone     *phone
	toGateway, toPhone netip.AddrPort // where the browser sends; where the phone sends
	enc, dec           *srtp.Context  // the browser's: protects what it sends, opens what it gets
}

func newDTLSCall(t testing.TB, e *Engine, learn ...bool) *dtlsCall {
	t.Helper()
	browser, ph := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	c := e.NewCall(core.NewSessionID(), nil, nil)
	t.Cleanup(c.Close)
	off := audio(browser.addr)
	off.Protocol, off.Fingerprint, off.ICE, off.RTCPMux = "UDP/TLS/RTP/SAVPF", "sha-256 AB:CD", true, true
	// learn: the browser's source is learnt from its packets, as for a
	// WebRTC leg (the SIP adapter marks it behind NAT).
	out, err := c.Offer(core.RoleCaller, desc(off), PeerInfo{BehindNAT: len(learn) > 0 && learn[0]})
	if err != nil {
		t.Fatal(err)
	}
	ans := audio(ph.addr)
	ans.RTCPMux = true // the phone's RTCP on its one socket
	back, err := c.Answer(core.RoleCallee, desc(ans), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	recvKey, sendKey, salt := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16), bytes.Repeat([]byte{3}, 14)
	const suite = "AES_CM_128_HMAC_SHA1_80"
	if err := c.SetKeys(core.RoleCaller, 0, Keys{Suite: suite, Key: recvKey, Salt: salt}, Keys{Suite: suite, Key: sendKey, Salt: salt}); err != nil {
		t.Fatal(err)
	}
	enc, _ := srtp.CreateContext(recvKey, salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
	dec, _ := srtp.CreateContext(sendKey, salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
	return &dtlsCall{c: c, browser: browser, phone: ph, toGateway: back.Streams[0].Addr, toPhone: out.Streams[0].Addr, enc: enc, dec: dec}
}

// rtcpFromBrowser protects and sends a compound RTCP packet from the browser.
func (d *dtlsCall) rtcpFromBrowser(t *testing.T, pkts ...rtcp.Packet) {
	t.Helper()
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := d.enc.EncryptRTCP(nil, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.browser.send(out, d.toGateway)
}

// TestFeedbackNACK: the gateway answers the DTLS leg's generic NACKs
// with the very datagrams it sent, from its cache; the NACK itself does
// not reach the other leg, the rest of its compound packet does.
func TestFeedbackNACK(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := New(testConfig(100), core.Deps{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	d := newDTLSCall(t, e)
	if err := d.c.SetFeedback(core.RoleCaller, 0, Feedback{NACK: 3}); err == nil {
		t.Fatal("a cache of 3 packets accepted (not a power of two)")
	}
	if err := d.c.SetFeedback(core.RoleCallee, 0, Feedback{NACK: 64}); !errIs(err, ErrCrypto) {
		t.Fatalf("feedback on the plain leg: %v", err)
	}
	if err := d.c.SetFeedback(core.RoleCaller, 0, Feedback{NACK: 64}); err != nil {
		t.Fatal(err)
	}
	// The browser must have sent once for the relay to know its address.
	first, _ := d.enc.EncryptRTP(nil, rtpPkt(t, 0, 0xB0, 1, 0, []byte("hi")), nil)
	d.browser.send(first, d.toGateway)
	d.phone.mustRecv()
	sent := map[uint16][]byte{}
	for seq := uint16(100); seq < 110; seq++ {
		d.phone.send(rtpPkt(t, 0, 0x7001, seq, uint32(seq)*160, bytes.Repeat([]byte{byte(seq)}, 160)), d.toPhone)
		b, _ := d.browser.mustRecv()
		sent[seq] = b
	}
	rr := &rtcp.ReceiverReport{SSRC: 0xB0, Reports: []rtcp.ReceptionReport{{SSRC: 0x7001, LastSequenceNumber: 109}}}
	// 102, and 105 and 107 by the bitmap; 60 was never sent; 0x7002 is
	// not the stream.
	d.rtcpFromBrowser(t, rr, &rtcp.TransportLayerNack{SenderSSRC: 0xB0, MediaSSRC: 0x7001,
		Nacks: []rtcp.NackPair{{PacketID: 102, LostPackets: 1<<2 | 1<<4}, {PacketID: 60}}},
		&rtcp.TransportLayerNack{SenderSSRC: 0xB0, MediaSSRC: 0x7002, Nacks: []rtcp.NackPair{{PacketID: 103}}})
	for _, want := range []uint16{102, 105, 107} {
		b, _ := d.browser.mustRecv()
		if !bytes.Equal(b, sent[want]) {
			plain, err := d.dec.DecryptRTP(nil, b, nil)
			t.Fatalf("retransmission %d: got %d bytes (%v, %v)", want, len(b), plain, err)
		}
	}
	d.browser.silent()
	// The phone gets the receiver report, not the NACKs.
	b, _ := d.phone.mustRecv()
	pkts, err := rtcp.Unmarshal(b)
	if err != nil || len(pkts) != 1 {
		t.Fatalf("the phone got %v (%v), want the receiver report alone", pkts, err)
	}
	if _, ok := pkts[0].(*rtcp.ReceiverReport); !ok {
		t.Fatalf("the phone got %T", pkts[0])
	}
	// A NACK alone is answered and nothing goes on.
	d.rtcpFromBrowser(t, &rtcp.TransportLayerNack{SenderSSRC: 0xB0, MediaSSRC: 0x7001, Nacks: []rtcp.NackPair{{PacketID: 109}}})
	if b, _ := d.browser.mustRecv(); !bytes.Equal(b, sent[109]) {
		t.Fatal("109 not sent again")
	}
	d.phone.silent()
	// A picture loss indication passes to the phone.
	d.rtcpFromBrowser(t, &rtcp.PictureLossIndication{SenderSSRC: 0xB0, MediaSSRC: 0x7001})
	b, _ = d.phone.mustRecv()
	if pkts, err := rtcp.Unmarshal(b); err != nil || len(pkts) != 1 {
		t.Fatalf("pli: %v %v", pkts, err)
	} else if _, ok := pkts[0].(*rtcp.PictureLossIndication); !ok {
		t.Fatalf("the phone got %T, want the PLI", pkts[0])
	}
	fs := d.c.FeedbackStats(0)
	if fs.Retransmitted != 4 || fs.Missed != 2 {
		t.Fatalf("feedback stats %+v, want 4 retransmitted, 2 missed (60, and 103 of another source)", fs)
	}
	// A NACK naming 3400 packets is looked up no further than the
	// cache's size.
	var pairs []rtcp.NackPair
	for i := range 200 {
		pairs = append(pairs, rtcp.NackPair{PacketID: uint16(20000 + 17*i), LostPackets: 0xffff})
	}
	d.rtcpFromBrowser(t, &rtcp.TransportLayerNack{SenderSSRC: 0xB0, MediaSSRC: 0x7001, Nacks: pairs})
	eventually(t, "the long NACK read", func() bool { return d.c.FeedbackStats(0).Missed > fs.Missed })
	d.browser.silent()
	if got := d.c.FeedbackStats(0).Missed - fs.Missed; got != 64 {
		t.Fatalf("a NACK of 3400 packets looked up %d, want the cache's 64", got)
	}
	for name, want := range map[string]float64{"ucgate_media_nack_retransmissions_total": 4, "ucgate_media_nack_unanswered_total": 66} {
		if got := counter(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// counter reads a counter of reg by name.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

// TestFeedbackReports: with the other leg silent on RTCP, the DTLS leg
// gets sender reports about what it is sent (the phone's SSRC, its
// packet count) carrying a report block about what it sends; once the
// phone sends RTCP, the gateway stops and the phone's passes.
func TestFeedbackReports(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	d := newDTLSCall(t, e)
	if err := d.c.SetFeedback(core.RoleCaller, 0, Feedback{Reports: 40 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for seq := uint16(1); seq <= 20; seq++ {
		if seq != 7 { // one lost
			p, _ := d.enc.EncryptRTP(nil, rtpPkt(t, 0, 0xB0, seq, uint32(seq)*160, []byte("browser")), nil)
			d.browser.send(p, d.toGateway)
			d.phone.mustRecv()
		}
	}
	for seq := uint16(1); seq <= 5; seq++ {
		d.phone.send(rtpPkt(t, 0, 0x7001, seq, uint32(seq)*160, make([]byte, 160)), d.toPhone)
	}
	var sr *rtcp.SenderReport
	deadline := time.Now().Add(3 * time.Second)
	for sr == nil && time.Now().Before(deadline) {
		b, _, ok := d.browser.recv(time.Second)
		if !ok || !isRTCP(b) {
			continue
		}
		plain, err := d.dec.DecryptRTCP(nil, b, nil)
		if err != nil {
			t.Fatalf("report does not open: %v", err)
		}
		pkts, err := rtcp.Unmarshal(plain)
		if err != nil {
			t.Fatal(err)
		}
		if len(pkts) != 2 {
			t.Fatalf("report %v: want SR or RR then SDES", pkts)
		}
		if s, ok := pkts[0].(*rtcp.SenderReport); ok && s.PacketCount == 5 {
			sr = s
		}
	}
	if sr == nil {
		t.Fatal("no sender report for the 5 packets sent to the browser")
	}
	// The report is counted once its write returned: the browser may
	// read it a moment before.
	for end := time.Now().Add(time.Second); d.c.FeedbackStats(0).Reports == 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := d.c.FeedbackStats(0).Reports; n == 0 {
		t.Error("no report counted")
	}
	if sr.SSRC != 0x7001 || sr.OctetCount != 5*160 || len(sr.Reports) != 1 {
		t.Fatalf("sender report %+v", sr)
	}
	if rb := sr.Reports[0]; rb.SSRC != 0xB0 || rb.LastSequenceNumber != 20 || rb.TotalLost != 1 {
		t.Fatalf("report block %+v, want ssrc 0xb0, highest 20, 1 lost", rb)
	}
	// The phone reports itself: its report passes, the gateway's stop.
	raw, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0x7001, Reports: []rtcp.ReceptionReport{{SSRC: 0xB0}}}})
	d.phone.send(raw, d.toPhone)
	got := 0
	deadline = time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		b, _, ok := d.browser.recv(100 * time.Millisecond)
		if !ok || !isRTCP(b) {
			continue
		}
		plain, err := d.dec.DecryptRTCP(nil, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		pkts, _ := rtcp.Unmarshal(plain)
		if rr, ok := pkts[0].(*rtcp.ReceiverReport); ok && rr.SSRC == 0x7001 && len(pkts) == 1 {
			got++ // the phone's
			continue
		}
		if got > 0 {
			t.Fatalf("the gateway still reports after the phone's RTCP: %v", pkts)
		}
	}
	if got != 1 {
		t.Fatalf("the phone's report reached the browser %d times", got)
	}
}

// FuzzFeedbackFromLeg: whatever RTCP a DTLS leg sends, reading it for
// NACKs neither panics nor grows it, and what remains is still sane.
func FuzzFeedbackFromLeg(f *testing.F) {
	raw, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1},
		&rtcp.TransportLayerNack{MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 5, LostPackets: 0xffff}}},
		&rtcp.PictureLossIndication{MediaSSRC: 2}})
	f.Add(raw)
	sr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.SenderReport{SSRC: 1, NTPTime: 1 << 40}})
	f.Add(sr)
	// A feedback with a cache and no stream sockets: answers find no
	// destination.
	st := &stream{}
	st.dirs[0], st.dirs[1] = &dir{}, &dir{}
	fb := &feedback{st: st, slots: make([]sentSlot, 16), mask: 15, rtx: newBucket(rtxPerSecond, rtxBurst), rbuf: make([]byte, bufSize)}
	fb.sentPacket(rtpPkt(f, 0, 2, 5, 0, []byte("x")), 2, 5, 0, 1, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxPacket || !checkRTCP(b, false) {
			return
		}
		n := len(b)
		out := fb.fromLeg(b, 1)
		if len(out) > n {
			t.Fatalf("grew from %d to %d", n, len(out))
		}
		if len(out) > 0 && !checkRTCP(out, false) {
			t.Fatalf("left %x, not sane rtcp", out)
		}
	})
}

// BenchmarkRelayPathFeedback is BenchmarkRelayPath for plain RTP from a
// SIP leg to a DTLS-SRTP (browser) leg: "off" without the gateway's own
// RTCP, "nack256" with a NACK cache of 256 packets (each packet sent is
// copied into it under the cache's lock), "nack256-reports" with the
// report goroutine running too.
func BenchmarkRelayPathFeedback(b *testing.B) {
	for _, tc := range []struct {
		name string
		fb   *Feedback
	}{
		{"off", nil},
		{"nack256", &Feedback{NACK: 256}},
		{"nack256-reports", &Feedback{NACK: 256, Reports: time.Second}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := testConfig(20)
			cfg.MaxPacketsPerSecond, cfg.MaxBitrate = 1e9, 1e12
			e, _ := newEngine(b, cfg)
			d := newDTLSCall(b, e)
			// The relay sends a DTLS leg nothing before it has learnt
			// where the browser is: from its first packet.
			first, _ := d.enc.EncryptRTP(nil, rtpPkt(b, 0, 0xB0, 1, 0, []byte("hello")), nil)
			d.browser.send(first, d.toGateway)
			d.phone.mustRecv()
			if tc.fb != nil {
				if err := d.c.SetFeedback(core.RoleCaller, 0, *tc.fb); err != nil {
					b.Fatal(err)
				}
			}
			st := d.c.streams[0]
			r := &reader{c: d.c, st: st, d: st.dirs[1], peer: st.dirs[0], out: st.sides[0], buf: make([]byte, bufSize)}
			r.reload(st.dirs[1].cfg.Load())
			const chunk = 4096
			pkts := make([][]byte, chunk)
			fill := func(from int) {
				for i := range pkts {
					seq := from + i
					pkts[i] = rtpPkt(b, 0, 0xBE7C, uint16(seq), uint32(seq*160), make([]byte, benchPayload))
				}
			}
			fill(0)
			src := d.phone.addr
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%chunk == 0 && i > 0 {
					b.StopTimer()
					fill(i)
					b.StartTimer()
				}
				n := copy(r.buf, pkts[i%chunk])
				r.relayRTP(r.buf[:n], src, e.now())
			}
			b.StopTimer()
			if s := st.dirs[1].stats(st, "callee"); s.Packets != uint64(b.N) {
				b.Fatalf("relayed %d of %d: %v", s.Packets, b.N, s.Dropped)
			}
		})
	}
}
