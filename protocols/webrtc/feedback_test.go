package webrtc

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pion "github.com/pion/webrtc/v4"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/media"
)

// The feedback tests run a pion/webrtc peer with pion's default
// interceptors (pion/interceptor: NACK generator and responder, receiver
// and sender reports) as the browser, sending and receiving VP8 video
// through a Leg and the real relay, and a pair of plain UDP sockets as
// the SIP trunk (RTP, and RTCP on a port of its own, as many trunks do).

const vp8PT = 96 // pion's default payload type for VP8

// lossyConn is the browser's network: it drops the first copy of the RTP
// packets drop chooses (by the sequence number, which SRTP leaves in the
// clear), before the peer's SRTP and interceptors see them.
type lossyConn struct {
	net.PacketConn
	drop    func(seq uint16) bool
	mu      sync.Mutex
	seen    map[uint16]bool
	dropped atomic.Int64
}

func (c *lossyConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.PacketConn.ReadFrom(p)
		if err != nil || c.drop == nil || n < 12 || p[0]>>6 != 2 || (p[1] >= 192 && p[1] <= 223) {
			return n, a, err
		}
		seq := binary.BigEndian.Uint16(p[2:])
		c.mu.Lock()
		first := !c.seen[seq]
		c.seen[seq] = true
		c.mu.Unlock()
		if first && c.drop(seq) {
			c.dropped.Add(1)
			continue
		}
		return n, a, err
	}
}

// videoPeer is the pion peer: one sendrecv VP8 stream.
type videoPeer struct {
	pc     *pion.PeerConnection
	track  *pion.TrackLocalStaticRTP
	sender *pion.RTPSender
	net    *lossyConn
	offer  string
}

func newVideoPeer(t *testing.T, drop func(uint16) bool) *videoPeer {
	t.Helper()
	sock, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lc := &lossyConn{PacketConn: sock, drop: drop, seen: map[uint16]bool{}}
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: lc})
	t.Cleanup(func() { mux.Close() })
	var se pion.SettingEngine
	se.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEUDPMux(mux)
	se.SetHandleUndeclaredSSRCWithoutAnswer(true)
	pc, err := pion.NewAPI(pion.WithSettingEngine(se)).NewPeerConnection(pion.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	track, err := pion.NewTrackLocalStaticRTP(pion.RTPCodecCapability{MimeType: pion.MimeTypeVP8, ClockRate: 90000}, "video", "b")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pion.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return &videoPeer{pc: pc, track: track, sender: sender, net: lc, offer: pc.LocalDescription().SDP}
}

// videoCall is a call from the video peer through a Leg and the relay to
// the trunk.
type videoCall struct {
	call            *media.Call
	leg             *Leg
	trunk, trunkCtl *net.UDPConn   // the trunk's RTP and RTCP sockets
	toRly, toRlyCtl netip.AddrPort // where the trunk sends RTP and RTCP
	answer          string         // the gateway's answer to the peer
}

func newVideoCall(t *testing.T, p *videoPeer, cfg Config) *videoCall {
	t.Helper()
	mcfg := media.Defaults()
	mcfg.IPv4.Ports = "47200-47399"
	mcfg.IPv6.Address = ""
	e, err := media.New(mcfg, core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	legs, err := New(cfg, core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { legs.Close() })
	id := core.NewSessionID()
	vc := &videoCall{call: e.NewCall(id, nil, nil)}
	t.Cleanup(vc.call.Close)
	src := netip.MustParseAddrPort("127.0.0.1:5062")
	vc.leg = legs.NewLeg(id, core.RoleCaller, vc.call, src, "internet", func(rule, detail string) { t.Errorf("leg failed: %s %s", rule, detail) })
	sipSide, err := vc.leg.Remote([]byte(p.offer))
	if err != nil {
		t.Fatal(err)
	}
	cand, ok := hostCandidate(mustParse(t, sipSide).MediaDescriptions[0].Attributes, netip.MustParseAddr("127.0.0.1"))
	if !ok {
		t.Fatalf("no host candidate in %s", sipSide)
	}
	vp8 := []core.Codec{{PT: vp8PT, Name: "VP8", Rate: 90000}}
	out, err := vc.call.Offer(core.RoleCaller, &core.MediaDesc{Streams: []core.Stream{{Type: "video", Addr: cand, Protocol: "UDP/TLS/RTP/SAVPF",
		Direction: "sendrecv", Codecs: vp8, Fingerprint: "sha-256 x", ICE: true, RTCPMux: true}}}, media.PeerInfo{Addr: src, BehindNAT: true, SRTP: media.SRTPNone})
	if err != nil {
		t.Fatal(err)
	}
	vc.toRly, vc.toRlyCtl = out.Streams[0].Addr, out.Streams[0].RTCP
	for _, c := range []**net.UDPConn{&vc.trunk, &vc.trunkCtl} {
		if *c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { (*c).Close() })
	}
	// The trunk answers without rtcp-mux, its RTCP on a socket of its own.
	rtpAddr, ctlAddr := vc.trunk.LocalAddr().(*net.UDPAddr).AddrPort(), vc.trunkCtl.LocalAddr().(*net.UDPAddr).AddrPort()
	back, err := vc.call.Answer(core.RoleCallee, &core.MediaDesc{Streams: []core.Stream{{Type: "video", Addr: rtpAddr, RTCP: ctlAddr,
		Protocol: "RTP/AVP", Direction: "sendrecv", Codecs: vp8}}}, media.PeerInfo{Addr: rtpAddr})
	if err != nil {
		t.Fatal(err)
	}
	if err := vc.leg.Start(); err != nil {
		t.Fatal(err)
	}
	a := back.Streams[0].Addr
	plain := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=video %d %s %d\r\nc=IN IP4 %s\r\n"+
		"a=rtpmap:%d VP8/90000\r\na=sendrecv\r\na=rtcp-mux\r\n", a.Addr(), a.Addr(), a.Port(), back.Streams[0].Protocol, vp8PT, a.Addr(), vp8PT)
	answer, err := vc.leg.Local([]byte(plain), false)
	if err != nil {
		t.Fatal(err)
	}
	vc.answer = string(answer)
	if err := p.pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeAnswer, SDP: vc.answer}); err != nil {
		t.Fatalf("pion refused the answer: %v\n%s", err, answer)
	}
	vc.call.Answered()
	return vc
}

// connected waits until the gateway has the leg's keys.
func (vc *videoCall) connected(t *testing.T, p *videoPeer) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.pc.ConnectionState() != pion.PeerConnectionStateConnected && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := p.pc.ConnectionState(); s != pion.PeerConnectionStateConnected {
		t.Fatalf("peer connection %s", s)
	}
}

// vp8Packet is one RTP packet of a VP8 keyframe-looking payload.
func vp8Packet(ssrc uint32, seq uint16, ts uint32) []byte {
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: vp8PT, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc},
		Payload: append([]byte{0x10, 0x00, 0x9d, 0x01, 0x2a}, make([]byte, 900)...)}
	b, _ := p.Marshal()
	return b
}

// trunkRTCP collects the RTCP the trunk receives.
func (vc *videoCall) trunkRTCP(t *testing.T) func() []rtcp.Packet {
	t.Helper()
	var mu sync.Mutex
	var got []rtcp.Packet
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, err := vc.trunkCtl.Read(buf)
			if err != nil {
				return
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				t.Errorf("the trunk got %d bytes of RTCP that do not parse: %v", n, err)
				continue
			}
			mu.Lock()
			got = append(got, pkts...)
			mu.Unlock()
		}
	}()
	return func() []rtcp.Packet {
		mu.Lock()
		defer mu.Unlock()
		return append([]rtcp.Packet(nil), got...)
	}
}

// TestFeedbackNACKRetransmits: the peer's network loses every tenth
// packet of the trunk's video the first time; pion's NACK generator asks
// for them, and the gateway sends them again from its cache: the peer
// ends up with every packet. The NACKs never reach the trunk, which did
// not negotiate them. With nack_buffer 0 the gateway offers no nack and
// the lost packets stay lost.
func TestFeedbackNACKRetransmits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cache int
	}{{"responder", 256}, {"none", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newVideoPeer(t, func(seq uint16) bool { return seq%10 == 5 })
			got := map[uint16]bool{}
			var mu sync.Mutex
			p.pc.OnTrack(func(tr *pion.TrackRemote, _ *pion.RTPReceiver) {
				for {
					pkt, _, err := tr.ReadRTP()
					if err != nil {
						return
					}
					mu.Lock()
					got[pkt.SequenceNumber] = true
					mu.Unlock()
				}
			})
			cfg := Defaults()
			cfg.NACKBuffer, cfg.RTCPInterval = tc.cache, 0
			vc := newVideoCall(t, p, cfg)
			if has := strings.Contains(vc.answer, fmt.Sprintf("a=rtcp-fb:%d nack\r\n", vp8PT)); has != (tc.cache > 0) {
				t.Fatalf("generic nack in the answer: %v, want %v\n%s", has, tc.cache > 0, vc.answer)
			}
			ctl := vc.trunkRTCP(t)
			vc.connected(t, p)
			// The peer must have sent for the relay to learn where it is
			// (NAT: latched from its first packet).
			for i := range 5 {
				if err := p.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3000},
					Payload: []byte{0x10, 0, 0, 0}}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			const first, count = 1000, 200
			for i := range count {
				seq := uint16(first + i)
				if _, err := vc.trunk.WriteToUDPAddrPort(vp8Packet(0x5151, seq, uint32(i/5)*3000), vc.toRly); err != nil {
					t.Fatal(err)
				}
				time.Sleep(3 * time.Millisecond)
			}
			missing := func() (n int) {
				mu.Lock()
				defer mu.Unlock()
				for i := range count {
					if !got[uint16(first+i)] {
						n++
					}
				}
				return n
			}
			deadline := time.Now().Add(3 * time.Second)
			for missing() > 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			dropped := p.net.dropped.Load()
			fs := vc.call.FeedbackStats(0)
			t.Logf("dropped %d, missing %d, feedback %+v", dropped, missing(), fs)
			if dropped < count/10-1 {
				t.Fatalf("the network dropped only %d packets", dropped)
			}
			if tc.cache == 0 {
				if m := missing(); int64(m) != dropped {
					t.Fatalf("without a responder %d packets missing, want the %d dropped", m, dropped)
				}
				return
			}
			if m := missing(); m != 0 {
				t.Fatalf("%d of the %d dropped packets never came back", m, dropped)
			}
			if fs.Retransmitted < uint64(dropped) {
				t.Fatalf("the gateway sent %d packets again, %d were dropped", fs.Retransmitted, dropped)
			}
			time.Sleep(200 * time.Millisecond)
			for _, pk := range ctl() {
				if _, ok := pk.(*rtcp.TransportLayerNack); ok {
					t.Fatalf("the trunk received a NACK: %v", pk)
				}
			}
		})
	}
}

// TestFeedbackReportsAndPLI: with a trunk that sends no RTCP, the peer
// gets the gateway's sender reports about the trunk's stream and a
// report block about its own; a PLI from the peer reaches the trunk as
// plain RTCP, and a PLI and a FIR from the trunk reach the peer through
// SRTCP.
func TestFeedbackReportsAndPLI(t *testing.T) {
	p := newVideoPeer(t, nil)
	var browserSSRC atomic.Uint32
	browserSSRC.Store(uint32(p.sender.GetParameters().Encodings[0].SSRC))
	recvRTCP := make(chan rtcp.Packet, 64)
	sendRTCP := make(chan rtcp.Packet, 64)
	p.pc.OnTrack(func(tr *pion.TrackRemote, rx *pion.RTPReceiver) {
		go func() {
			for {
				pkts, _, err := rx.ReadRTCP()
				if err != nil {
					return
				}
				for _, pk := range pkts {
					select {
					case recvRTCP <- pk:
					default:
					}
				}
			}
		}()
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
		}
	})
	go func() {
		for {
			pkts, _, err := p.sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, pk := range pkts {
				select {
				case sendRTCP <- pk:
				default:
				}
			}
		}
	}()
	cfg := Defaults()
	cfg.RTCPInterval = 200 * time.Millisecond
	vc := newVideoCall(t, p, cfg)
	ctl := vc.trunkRTCP(t)
	vc.connected(t, p)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // both sides send video, the trunk no RTCP
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_ = p.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3000}, Payload: []byte{0x10, 0, 0, 0}})
			_, _ = vc.trunk.WriteToUDPAddrPort(vp8Packet(0x5151, uint16(i), uint32(i)*3000), vc.toRly)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	// The trunk learns the browser's SSRC from its RTP.
	buf := make([]byte, 1500)
	_ = vc.trunk.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := vc.trunk.Read(buf)
	if err != nil || n < 12 {
		t.Fatalf("the trunk got no RTP: %v", err)
	}
	if ssrc := binary.BigEndian.Uint32(buf[8:]); ssrc != browserSSRC.Load() {
		t.Fatalf("the trunk got ssrc %x, the peer sends %x", ssrc, browserSSRC.Load())
	}
	// Reports from the gateway: an SR about the trunk's stream (to the
	// receiver) with a block about the peer's (to the sender too).
	var sr *rtcp.SenderReport
	var block bool
	deadline := time.After(5 * time.Second)
	for sr == nil || !block {
		select {
		case pk := <-recvRTCP:
			if s, ok := pk.(*rtcp.SenderReport); ok && s.SSRC == 0x5151 && s.PacketCount > 0 {
				sr = s
			}
		case pk := <-sendRTCP:
			var blocks []rtcp.ReceptionReport
			switch r := pk.(type) {
			case *rtcp.SenderReport:
				blocks = r.Reports
			case *rtcp.ReceiverReport:
				blocks = r.Reports
			}
			for _, b := range blocks {
				if b.SSRC == browserSSRC.Load() && b.LastSequenceNumber > 0 {
					block = true
				}
			}
		case <-deadline:
			t.Fatalf("no report from the gateway: sender report %v, block about the peer's stream %v", sr, block)
		}
	}
	// PLI from the peer to the trunk.
	if err := p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 0x5151}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the PLI at the trunk", func() bool {
		for _, pk := range ctl() {
			if pli, ok := pk.(*rtcp.PictureLossIndication); ok && pli.MediaSSRC == 0x5151 {
				return true
			}
		}
		return false
	})
	for _, pk := range ctl() {
		if r, ok := pk.(*rtcp.SenderReport); ok && r.SSRC == 0x5151 {
			t.Fatal("the gateway's own sender report reached the trunk")
		}
	}
	// PLI and FIR from the trunk to the peer.
	raw, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.PictureLossIndication{SenderSSRC: 0x5151, MediaSSRC: browserSSRC.Load()},
		&rtcp.FullIntraRequest{SenderSSRC: 0x5151, MediaSSRC: browserSSRC.Load(), FIR: []rtcp.FIREntry{{SSRC: browserSSRC.Load(), SequenceNumber: 1}}}})
	if _, err := vc.trunkCtl.WriteToUDPAddrPort(raw, vc.toRlyCtl); err != nil {
		t.Fatal(err)
	}
	var pli, fir bool
	deadline = time.After(5 * time.Second)
	for !pli || !fir {
		select {
		case pk := <-sendRTCP:
			switch pk.(type) {
			case *rtcp.PictureLossIndication:
				pli = true
			case *rtcp.FullIntraRequest:
				fir = true
			}
		case <-deadline:
			t.Fatalf("the peer got PLI %v, FIR %v from the trunk", pli, fir)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
