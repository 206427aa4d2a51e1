package media

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"

	"github.com/ucgate/ucgate/core"
)

var testSuites = []string{"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"}

// TestSRTPToRTP: an SRTP caller (RTP/SAVP) and a plain callee. The
// caller's packets are decrypted for the callee; the callee's are
// encrypted with the gateway's key from the answer; replays are dropped.
func TestSRTPToRTP(t *testing.T) {
	for _, suite := range testSuites {
		t.Run(suite, func(t *testing.T) {
			e, alerts := newEngine(t, testConfig(100))
			caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
			callerRTCP := newPhone(t, "127.0.0.1")
			sp := newSRTPPhone(t, suite)
			off := audio(caller.addr)
			off.RTCP = callerRTCP.addr
			off.Protocol = "RTP/SAVP"
			off.Crypto = []core.Crypto{{Tag: 1, Suite: "F8_128_HMAC_SHA1_80", Key: "inline:x"}, {Tag: 2, Suite: suite, Key: sp.inline + "|2^31"}}
			cp := dial(t, e, nil, caller, callee, off, audio(callee.addr), PeerInfo{SRTP: SRTPNone}, PeerInfo{})

			o, a := cp.offer.Streams[0], cp.answer.Streams[0]
			if o.Protocol != "RTP/AVP" || len(o.Crypto) != 0 {
				t.Fatalf("offer to the plain callee: %s %v", o.Protocol, o.Crypto)
			}
			if a.Protocol != "RTP/SAVP" || len(a.Crypto) != 1 || a.Crypto[0].Tag != 2 || a.Crypto[0].Suite != suite {
				t.Fatalf("answer to the caller: %s %+v", a.Protocol, a.Crypto)
			}
			if a.Crypto[0].Key == sp.inline {
				t.Fatal("the gateway answered with the caller's own key")
			}
			sp.learn(t, a.Crypto[0])

			payload := bytes.Repeat([]byte{0xD5}, 160)
			sealed := sp.seal(t, rtpPkt(t, 0, 0x51, 1, 0, payload))
			caller.send(sealed, cp.toCallee)
			b, _ := callee.mustRecv()
			if !bytes.Equal(payloadOf(t, b), payload) {
				t.Fatal("callee did not get the caller's plaintext")
			}
			callee.send(rtpPkt(t, 0, 0x52, 7, 0, payload), cp.toCaller)
			b, _ = caller.mustRecv()
			if bytes.Contains(b, payload) {
				t.Fatal("the caller's leg carries plaintext")
			}
			if !bytes.Equal(payloadOf(t, sp.open(t, b)), payload) {
				t.Fatal("caller could not decrypt the callee's packet")
			}

			// A replayed packet is dropped and reported.
			caller.send(sealed, cp.toCallee)
			callee.silent()
			alerts.wait(t, RuleSRTP)
			// A forged one too (bit flipped in the payload).
			forged := bytes.Clone(sp.seal(t, rtpPkt(t, 0, 0x51, 2, 160, payload)))
			forged[20] ^= 1
			caller.send(forged, cp.toCallee)
			callee.silent()
			s := relayed(t, cp.c, core.RoleCaller, 1)
			if s.Dropped[RuleSRTP] != 2 || s.Packets != 1 || !s.Encrypted {
				t.Fatalf("stats %+v", s)
			}
			if stat(t, cp.c, core.RoleCallee).Encrypted {
				t.Fatal("the callee's media is not encrypted")
			}

			// SRTCP from the caller reaches the callee as RTCP.
			rr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0x51, Reports: []rtcp.ReceptionReport{{SSRC: 0x52, TotalLost: 3}}}})
			srtcp, err := sp.enc.EncryptRTCP(nil, rr, nil)
			if err != nil {
				t.Fatal(err)
			}
			callerRTCP.send(srtcp, netip.AddrPortFrom(cp.toCallee.Addr(), cp.toCallee.Port()+1))
			eventually(t, "srtcp relayed", func() bool { return stat(t, cp.c, core.RoleCallee).ReportedLost == 3 })
			callerRTCP.send(srtcp, netip.AddrPortFrom(cp.toCallee.Addr(), cp.toCallee.Port()+1))
			eventually(t, "srtcp replay dropped", func() bool { return stat(t, cp.c, core.RoleCaller).Dropped[RuleSRTP] == 3 })
		})
	}
}

// TestRTPToSRTP: a plain caller and a callee that must get SDES-SRTP.
func TestRTPToSRTP(t *testing.T) {
	for _, suite := range testSuites {
		t.Run(suite, func(t *testing.T) {
			e, _ := newEngine(t, testConfig(100))
			caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
			c := e.NewCall(core.NewSessionID(), nil, nil)
			defer c.Close()
			out, err := c.Offer(core.RoleCaller, desc(audio(caller.addr)), PeerInfo{SRTP: SRTPWant})
			if err != nil {
				t.Fatal(err)
			}
			o := out.Streams[0]
			if o.Protocol != "RTP/SAVP" || len(o.Crypto) != 3 {
				t.Fatalf("offer to the callee: %s %+v", o.Protocol, o.Crypto)
			}
			var chosen core.Crypto
			for _, cr := range o.Crypto {
				if cr.Suite == suite {
					chosen = cr
				}
			}
			sp := newSRTPPhone(t, suite)
			sp.learn(t, chosen)
			ans := audio(callee.addr)
			ans.Protocol = "RTP/SAVP"
			ans.Crypto = []core.Crypto{{Tag: chosen.Tag, Suite: suite, Key: sp.inline}}
			back, err := c.Answer(core.RoleCallee, desc(ans), PeerInfo{})
			if err != nil {
				t.Fatal(err)
			}
			a := back.Streams[0]
			if a.Protocol != "RTP/AVP" || len(a.Crypto) != 0 {
				t.Fatalf("answer to the plain caller: %s %+v", a.Protocol, a.Crypto)
			}
			payload := bytes.Repeat([]byte{0x55}, 160)
			caller.send(rtpPkt(t, 0, 0x61, 1, 0, payload), a.Addr)
			b, _ := callee.mustRecv()
			if !bytes.Equal(payloadOf(t, sp.open(t, b)), payload) {
				t.Fatal("callee could not decrypt")
			}
			callee.send(sp.seal(t, rtpPkt(t, 0, 0x62, 1, 0, payload)), o.Addr)
			b, _ = caller.mustRecv()
			if !bytes.Equal(payloadOf(t, b), payload) {
				t.Fatal("caller did not get plaintext")
			}
		})
	}
}

// TestSRTPToSRTPRekeyed: both legs SDES; each leg sees only the
// gateway's keys.
func TestSRTPToSRTPRekeyed(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	spA, spB := newSRTPPhone(t, "AES_CM_128_HMAC_SHA1_80"), newSRTPPhone(t, "AES_CM_128_HMAC_SHA1_80")
	c := e.NewCall(core.NewSessionID(), nil, nil)
	defer c.Close()
	off := audio(caller.addr)
	off.Protocol, off.Crypto = "RTP/SAVP", []core.Crypto{{Tag: 1, Suite: "AES_CM_128_HMAC_SHA1_80", Key: spA.inline}}
	out, err := c.Offer(core.RoleCaller, desc(off), PeerInfo{}) // SRTPAuto: as the caller
	if err != nil {
		t.Fatal(err)
	}
	o := out.Streams[0]
	if o.Protocol != "RTP/SAVP" || len(o.Crypto) != 1 || o.Crypto[0].Key == spA.inline {
		t.Fatalf("offer %s %+v", o.Protocol, o.Crypto)
	}
	spB.learn(t, o.Crypto[0])
	ans := audio(callee.addr)
	ans.Protocol, ans.Crypto = "RTP/SAVP", []core.Crypto{{Tag: 1, Suite: "AES_CM_128_HMAC_SHA1_80", Key: spB.inline}}
	back, err := c.Answer(core.RoleCallee, desc(ans), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	a := back.Streams[0]
	spA.learn(t, a.Crypto[0])
	payload := []byte("a codec frame that must arrive unchanged")
	caller.send(spA.seal(t, rtpPkt(t, 96, 1, 1, 0, payload)), a.Addr)
	b, _ := callee.mustRecv()
	if !bytes.Equal(payloadOf(t, spB.open(t, b)), payload) {
		t.Fatal("callee could not decrypt")
	}
	callee.send(spB.seal(t, rtpPkt(t, 96, 2, 1, 0, payload)), o.Addr)
	b, _ = caller.mustRecv()
	if !bytes.Equal(payloadOf(t, spA.open(t, b)), payload) {
		t.Fatal("caller could not decrypt")
	}
	// A re-INVITE that repeats the keys keeps the contexts: the replay
	// window survives and the next packets still flow.
	if _, err := c.Update(core.RoleCaller, desc(off), PeerInfo{}); err != nil {
		t.Fatal(err)
	}
	back2, err := c.Answer(core.RoleCallee, desc(ans), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if back2.Streams[0].Crypto[0].Key != a.Crypto[0].Key {
		t.Fatal("the gateway changed its key on a re-INVITE that kept the suite")
	}
	sealed := spA.seal(t, rtpPkt(t, 96, 1, 2, 160, payload))
	caller.send(sealed, a.Addr)
	callee.mustRecv()
	caller.send(sealed, a.Addr)
	callee.silent()
}

func TestBestEffortSRTP(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	c := e.NewCall(core.NewSessionID(), nil, nil)
	defer c.Close()
	out, err := c.Offer(core.RoleCaller, desc(audio(caller.addr)), PeerInfo{SRTP: SRTPOffer})
	if err != nil {
		t.Fatal(err)
	}
	if o := out.Streams[0]; o.Protocol != "RTP/AVP" || len(o.Crypto) != 3 {
		t.Fatalf("offer %s %+v", o.Protocol, o.Crypto)
	}
	// The callee ignores the keys: plain RTP it is.
	back, err := c.Answer(core.RoleCallee, desc(audio(callee.addr)), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	callee.send(rtpPkt(t, 0, 1, 1, 0, []byte("plain")), out.Streams[0].Addr)
	if b, _ := caller.mustRecv(); string(payloadOf(t, b)) != "plain" {
		t.Fatal("plain fallback failed")
	}
	caller.send(rtpPkt(t, 0, 2, 1, 0, []byte("plain")), back.Streams[0].Addr)
	callee.mustRecv()
}

func TestDTLSKeysFromOutside(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	browser, phone := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	c := e.NewCall(core.NewSessionID(), nil, nil)
	defer c.Close()
	off := audio(browser.addr)
	off.Protocol, off.Fingerprint, off.ICE, off.RTCPMux = "UDP/TLS/RTP/SAVPF", "sha-256 AB:CD", true, true
	out, err := c.Offer(core.RoleCaller, desc(off), PeerInfo{BehindNAT: true})
	if err != nil {
		t.Fatal(err)
	}
	if o := out.Streams[0]; o.Protocol != "RTP/AVP" || o.Fingerprint != "" || o.ICE || len(o.Crypto) != 0 {
		t.Fatalf("offer to the phone %+v", o)
	}
	back, err := c.Answer(core.RoleCallee, desc(audio(phone.addr)), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if a := back.Streams[0]; a.Protocol != "UDP/TLS/RTP/SAVPF" || len(a.Crypto) != 0 || !a.RTCPMux {
		t.Fatalf("answer to the browser %+v", a)
	}
	// Before the handshake nothing passes.
	recvKey, sendKey := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16)
	salt := bytes.Repeat([]byte{3}, 14)
	bEnc, _ := srtp.CreateContext(recvKey, salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
	bDec, _ := srtp.CreateContext(sendKey, salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
	pkt, _ := bEnc.EncryptRTP(nil, rtpPkt(t, 0, 1, 1, 0, []byte("dtls")), nil)
	browser.send(pkt, back.Streams[0].Addr)
	phone.silent()
	// The WebRTC adapter hands over what DTLS exported.
	if err := c.SetKeys(core.RoleCaller, 0, Keys{Suite: "AES_CM_128_HMAC_SHA1_80", Key: recvKey, Salt: salt}, Keys{Suite: "AES_CM_128_HMAC_SHA1_80", Key: sendKey, Salt: salt}); err != nil {
		t.Fatal(err)
	}
	pkt, _ = bEnc.EncryptRTP(nil, rtpPkt(t, 0, 1, 2, 160, []byte("dtls")), nil)
	browser.send(pkt, back.Streams[0].Addr)
	if b, _ := phone.mustRecv(); string(payloadOf(t, b)) != "dtls" {
		t.Fatal("not decrypted")
	}
	phone.send(rtpPkt(t, 0, 9, 1, 0, []byte("back")), out.Streams[0].Addr)
	b, _ := browser.mustRecv()
	plain, err := bDec.DecryptRTP(nil, b, nil)
	if err != nil || string(payloadOf(t, plain)) != "back" {
		t.Fatalf("browser could not decrypt: %v", err)
	}
	if err := c.SetKeys(core.RoleCallee, 0, Keys{}, Keys{}); !errIs(err, ErrCrypto) {
		t.Fatalf("keys for a plain leg: %v", err)
	}
}

// TestDTLSSeam: STUN and DTLS packets on a DTLS leg's relay port reach
// the adapter's PacketConn, and its writes leave through that port.
func TestDTLSSeam(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	browser, phone := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	c := e.NewCall(core.NewSessionID(), nil, nil)
	defer c.Close()
	off := audio(browser.addr)
	off.Protocol, off.RTCPMux = "UDP/TLS/RTP/SAVPF", true
	if _, err := c.Offer(core.RoleCaller, desc(off), PeerInfo{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PacketConn(core.RoleCaller, 0); !errIs(err, ErrStreams) {
		t.Fatalf("seam before the answer: %v", err)
	}
	back, err := c.Answer(core.RoleCallee, desc(audio(phone.addr)), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PacketConn(core.RoleCallee, 0); !errIs(err, ErrCrypto) {
		t.Fatalf("seam on a plain leg: %v", err)
	}
	pc, err := c.PacketConn(core.RoleCaller, 0)
	if err != nil {
		t.Fatal(err)
	}
	relay := back.Streams[0].Addr
	if pc.LocalAddr().(*net.UDPAddr).AddrPort().Port() != relay.Port() {
		t.Fatalf("seam on %s, relay port %s", pc.LocalAddr(), relay)
	}
	hello := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1} // a DTLS record
	browser.send(hello, relay)
	buf := make([]byte, 1500)
	pc.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := pc.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], hello) || from.(*net.UDPAddr).AddrPort() != browser.addr {
		t.Fatalf("read %x from %v: %v", buf[:n], from, err)
	}
	if _, err := pc.WriteTo([]byte{22, 1}, net.UDPAddrFromAddrPort(browser.addr)); err != nil {
		t.Fatal(err)
	}
	if b, src := browser.mustRecv(); !bytes.Equal(b, []byte{22, 1}) || src != relay {
		t.Fatalf("got %x from %s", b, src)
	}
	pc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := pc.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	pc.Close()
	if _, _, err := pc.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}
