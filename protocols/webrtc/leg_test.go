package webrtc

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	pion "github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/media"
)

// relayCall is one call of a real relay (core/media on loopback) whose
// caller is a pion/webrtc peer going through a Leg, and whose callee is a
// plain RTP socket playing the SIP trunk.
type relayCall struct {
	reg    *prometheus.Registry
	call   *media.Call
	leg    *Leg
	trunk  *net.UDPConn
	toRly  netip.AddrPort // where the trunk sends to the relay
	failed chan string
	alerts chan *core.SecurityEvent
}

func newRelayCall(t *testing.T, b *browser, offer string) *relayCall {
	t.Helper()
	mcfg := media.Defaults()
	mcfg.IPv4.Ports = "47000-47199"
	mcfg.IPv6.Address = ""
	e, err := media.New(mcfg, core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	alerts := core.NewAlerts(16)
	t.Cleanup(func() { alerts.Close() })
	rc := &relayCall{failed: make(chan string, 1), alerts: make(chan *core.SecurityEvent, 4)}
	alerts.Subscribe(core.AlertFunc(func(ev *core.SecurityEvent) {
		select {
		case rc.alerts <- ev:
		default:
		}
	}))
	cfg := Defaults()
	cfg.HandshakeTimeout = 5 * time.Second
	rc.reg = prometheus.NewRegistry()
	legs, err := New(cfg, core.Deps{Alerts: alerts, Metrics: rc.reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { legs.Close() })
	id := core.NewSessionID()
	rc.call = e.NewCall(id, nil, nil)
	t.Cleanup(rc.call.Close)
	src := netip.MustParseAddrPort("127.0.0.1:5062")
	rc.leg = legs.NewLeg(id, core.RoleCaller, rc.call, src, "internet", func(rule, _ string) {
		select {
		case rc.failed <- rule:
		default:
		}
	})
	// The browser's offer, translated for the SIP side, as the SIP
	// adapter would read it.
	sipSide, err := rc.leg.Remote([]byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	out, err := rc.call.Offer(core.RoleCaller, browserDesc(t, sipSide), media.PeerInfo{Addr: src, BehindNAT: true, SRTP: media.SRTPNone})
	if err != nil {
		t.Fatal(err)
	}
	if p := out.Streams[0].Protocol; p != "RTP/AVP" {
		t.Fatalf("the trunk is offered %s, want RTP/AVP", p)
	}
	rc.toRly = out.Streams[0].Addr
	rc.trunk, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.trunk.Close() })
	rc.answer(t, b)
	rc.call.Answered()
	return rc
}

var opus = []core.Codec{{PT: 111, Name: "opus", Rate: 48000, Channels: 2}}

// browserDesc is the neutral description the SIP adapter reads from a
// translated browser description.
func browserDesc(t *testing.T, sipSide []byte) *core.MediaDesc {
	t.Helper()
	cand, ok := hostCandidate(mustParse(t, sipSide).MediaDescriptions[0].Attributes, netip.MustParseAddr("127.0.0.1"))
	if !ok {
		t.Fatalf("no host candidate in %s", sipSide)
	}
	return &core.MediaDesc{Streams: []core.Stream{{Type: "audio", Addr: cand, Protocol: "UDP/TLS/RTP/SAVPF", Direction: "sendrecv",
		Codecs: opus, Fingerprint: "sha-256 x", ICE: true, RTCPMux: true}}}
}

// answer has the trunk answer the pending offer, starts the leg and gives
// the browser the gateway's answer; it returns that answer.
func (rc *relayCall) answer(t *testing.T, b *browser) string {
	t.Helper()
	trunkAddr := rc.trunk.LocalAddr().(*net.UDPAddr).AddrPort()
	ans := &core.MediaDesc{Streams: []core.Stream{{Type: "audio", Addr: trunkAddr, Protocol: "RTP/AVP", Direction: "sendrecv", Codecs: opus}}}
	back, err := rc.call.Answer(core.RoleCallee, ans, media.PeerInfo{Addr: trunkAddr})
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.leg.Start(); err != nil {
		t.Fatal(err)
	}
	a := back.Streams[0].Addr
	plain := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d %s 111\r\nc=IN IP4 %s\r\n"+
		"a=rtpmap:111 opus/48000/2\r\na=sendrecv\r\na=rtcp-mux\r\n", a.Addr(), a.Addr(), a.Port(), back.Streams[0].Protocol, a.Addr())
	answer, err := rc.leg.Local([]byte(plain), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatalf("pion refused the answer: %v\n%s", err, answer)
	}
	return string(answer)
}

// TestLegThroughRelay: a pion/webrtc browser's call through a Leg and the
// real relay: its Opus packets reach the trunk as plain RTP, the trunk's
// plain RTP reaches it through DTLS-SRTP.
func TestLegThroughRelay(t *testing.T) {
	b := newBrowser(t)
	var got atomic.Int64
	b.pc.OnTrack(func(tr *pion.TrackRemote, _ *pion.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			got.Add(1)
		}
	})
	rc := newRelayCall(t, b, b.offer)
	stop := sendSamples(t, b)
	defer stop()
	// The trunk receives plain RTP from the browser and sends its own.
	buf := make([]byte, 1500)
	_ = rc.trunk.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := rc.trunk.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("the trunk got nothing: %v", err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(buf[:n]); err != nil || p.PayloadType != 111 {
		t.Fatalf("the trunk got %d bytes from %v, not plain Opus RTP: %v", n, from, err)
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 0xfeed}, Payload: []byte{0xf8, 0xff, 0xfe}}
	deadline := time.Now().Add(5 * time.Second)
	for got.Load() < 10 && time.Now().Before(deadline) {
		pkt.SequenceNumber++
		pkt.Timestamp += 960
		raw, _ := pkt.Marshal()
		if _, err := rc.trunk.WriteToUDPAddrPort(raw, rc.toRly); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got.Load() < 10 {
		t.Fatalf("the browser received %d packets from the trunk", got.Load())
	}
	select {
	case r := <-rc.failed:
		t.Fatalf("leg failed: %s", r)
	default:
	}
	st := rc.call.Stats()
	t.Logf("relay stats: %+v", st)
	if n := rc.handshakes(t, "ok"); n != 1 {
		t.Errorf("%v handshakes counted ok, want 1", n)
	}
}

// TestLegFingerprintMismatch: a browser whose description lies about its
// certificate is refused at the handshake: the call is told (onFail with
// RuleFingerprint), a security event is raised, and nothing reaches the
// trunk.
func TestLegFingerprintMismatch(t *testing.T) {
	b := newBrowser(t)
	other, err := newCertificate()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(b.offer, "\r\n") {
		if strings.HasPrefix(l, "a=fingerprint:") {
			l = "a=fingerprint:" + other.fingerprint
		}
		lines = append(lines, l)
	}
	rc := newRelayCall(t, b, strings.Join(lines, "\r\n"))
	stop := sendSamples(t, b)
	defer stop()
	select {
	case r := <-rc.failed:
		if r != RuleFingerprint {
			t.Fatalf("failed with %s, want %s", r, RuleFingerprint)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the leg did not fail")
	}
	select {
	case ev := <-rc.alerts:
		if ev.Rule != RuleFingerprint || ev.Protocol != "webrtc" || ev.Src == "" {
			t.Errorf("security event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no security event")
	}
	if n := rc.handshakes(t, RuleFingerprint); n != 1 {
		t.Errorf("%v handshakes counted %s, want 1", n, RuleFingerprint)
	}
	_ = rc.trunk.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 1500)
	if n, _, err := rc.trunk.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("the trunk received %d bytes from a refused browser", n)
	}
}

// handshakes reads ucgate_webrtc_handshakes_total{result}.
func (rc *relayCall) handshakes(t *testing.T, result string) float64 {
	t.Helper()
	fams, err := rc.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "ucgate_webrtc_handshakes_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestLegICERestart: the browser restarts ICE in a re-offer (new
// credentials): the gateway answers with new credentials of its own,
// checks with them are answered, and the media goes on over the same
// DTLS-SRTP association.
func TestLegICERestart(t *testing.T) {
	b := newBrowser(t)
	rc := newRelayCall(t, b, b.offer)
	stop := sendSamples(t, b)
	defer stop()
	rc.waitTrunk(t, 5, 5*time.Second)
	first := iceUfrag(rc.legFirstAnswer(t))
	o, err := b.pc.CreateOffer(&pion.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	gathered := pion.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-gathered
	sipSide, err := rc.leg.Remote([]byte(b.pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.call.Update(core.RoleCaller, browserDesc(t, sipSide), media.PeerInfo{Addr: netip.MustParseAddrPort("127.0.0.1:5062"), BehindNAT: true}); err != nil {
		t.Fatal(err)
	}
	answer := rc.answer(t, b)
	if u := iceUfrag(answer); u == "" || u == first {
		t.Fatalf("the gateway answered an ICE restart with ufrag %q (before: %q)", u, first)
	}
	// The browser checks with the new credentials and keeps sending.
	deadline := time.Now().Add(5 * time.Second)
	for b.pc.ICEConnectionState() != pion.ICEConnectionStateConnected && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := b.pc.ICEConnectionState(); s != pion.ICEConnectionStateConnected {
		t.Fatalf("ICE %s after the restart", s)
	}
	time.Sleep(300 * time.Millisecond)
	rc.waitTrunk(t, 20, 5*time.Second)
	select {
	case r := <-rc.failed:
		t.Fatalf("leg failed: %s", r)
	default:
	}
}

func (rc *relayCall) legFirstAnswer(t *testing.T) string {
	t.Helper()
	rc.leg.mu.Lock()
	defer rc.leg.mu.Unlock()
	return "a=ice-ufrag:" + rc.leg.loc.ufrag + "\r\n"
}

func iceUfrag(sdp string) string {
	for _, l := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

// waitTrunk waits until the trunk received n more RTP packets.
func (rc *relayCall) waitTrunk(t *testing.T, n int, d time.Duration) {
	t.Helper()
	buf := make([]byte, 1500)
	_ = rc.trunk.SetReadDeadline(time.Now().Add(d))
	for i := range n {
		if _, _, err := rc.trunk.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("the trunk received %d of %d packets: %v", i, n, err)
		}
	}
}
