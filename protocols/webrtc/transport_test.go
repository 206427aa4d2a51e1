package webrtc

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
	pion "github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// browser is a pion/webrtc peer connection on loopback playing the
// browser: it offers one audio stream and sends Opus packets once
// connected.
type browser struct {
	pc    *pion.PeerConnection
	track *pion.TrackLocalStaticSample
	offer string
}

func newBrowser(t testing.TB) *browser {
	t.Helper()
	var se pion.SettingEngine
	se.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	// The gateway's answer carries no a=ssrc and no mid header extension
	// (the SIP side has neither): pion then needs this to take the
	// trunk's stream by its payload type, as Chromium does by itself.
	se.SetHandleUndeclaredSSRCWithoutAnswer(true)
	api := pion.NewAPI(pion.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(pion.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	track, err := pion.NewTrackLocalStaticSample(pion.RTPCodecCapability{MimeType: pion.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
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
	return &browser{pc: pc, track: track, offer: pc.LocalDescription().SDP}
}

// answerFor makes the gateway's answer to the browser's offer: what the
// SIP adapter would write (the relay's address), completed by toBrowser.
func answerFor(t testing.TB, rd *remoteDesc, loc local, port int) string {
	t.Helper()
	plain := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + itoa(port) + " UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\na=rtcp-mux\r\n"
	out, err := toBrowser([]byte(plain), loc, rd, false)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func itoa(n int) string {
	b := []byte{}
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// TestTransportKeysWithPion runs the gateway's ICE-lite and DTLS server
// against pion/webrtc: the handshake completes and the exported keys
// decrypt the SRTP the peer sends.
func TestTransportKeysWithPion(t *testing.T) {
	recv, sock, _ := runHandshake(t, false)
	prof := srtp.ProtectionProfileAes128CmHmacSha1_80
	if recv.Suite == "AEAD_AES_128_GCM" {
		prof = srtp.ProtectionProfileAeadAes128Gcm
	}
	ctx, err := srtp.CreateContext(recv.Key, recv.Salt, prof)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = sock.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, _, err := sock.ReadFrom(buf)
		if err != nil {
			t.Fatal("no SRTP from the peer:", err)
		}
		if n < 12 || buf[0] < 128 || buf[0] > 191 || (buf[1]&0x7f >= 72 && buf[1]&0x7f <= 79) {
			continue // STUN, DTLS or RTCP
		}
		var h rtp.Header
		out, err := ctx.DecryptRTP(nil, buf[:n], &h)
		if err != nil {
			t.Fatalf("SRTP from the peer does not decrypt with the exported key: %v", err)
		}
		if h.PayloadType != 111 || len(out) <= h.MarshalSize() {
			t.Fatalf("decrypted packet: pt %d, %d bytes", h.PayloadType, len(out))
		}
		return
	}
}

// TestTransportFingerprintMismatch: a peer whose certificate is not the
// one its description announced is refused, and no keys come out.
func TestTransportFingerprintMismatch(t *testing.T) {
	_, _, err := runHandshake(t, true)
	if !errors.Is(err, ErrFingerprint) {
		t.Fatalf("handshake error %v, want ErrFingerprint", err)
	}
}

// TestVerifyFingerprintHash: the certificate must match a fingerprint
// computed with the hash the description names; MD5 and SHA-1 are not
// taken even when they match, an unknown hash never.
func TestVerifyFingerprintHash(t *testing.T) {
	c, err := newCertificate()
	if err != nil {
		t.Fatal(err)
	}
	x, err := x509.ParseCertificate(c.tls.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	fp := func(h crypto.Hash) string {
		v, err := fingerprint.Fingerprint(x, h)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	sha256 := fp(crypto.SHA256)
	for _, tc := range []struct {
		name string
		fps  []certFP
		ok   bool
	}{
		{"sha-256", []certFP{{"sha-256", sha256}}, true},
		{"sha-256 lower case", []certFP{{"sha-256", strings.ToLower(sha256)}}, true},
		{"sha-512", []certFP{{"sha-512", fp(crypto.SHA512)}}, true},
		{"a wrong one, then the right one", []certFP{{"sha-256", fp(crypto.SHA384)[:95]}, {"sha-384", fp(crypto.SHA384)}}, true},
		{"sha-256 value under sha-384", []certFP{{"sha-384", sha256}}, false},
		{"md5", []certFP{{"md5", fp(crypto.MD5)}}, false},
		{"sha-1", []certFP{{"sha-1", fp(crypto.SHA1)}}, false},
		{"unknown hash", []certFP{{"sha3-256", sha256}}, false},
		{"none", nil, false},
		{"other certificate", []certFP{{"sha-256", strings.Replace(sha256, sha256[:2], "00", 1)}}, sha256[:2] == "00"},
	} {
		tr := &transport{rem: streamParams{fingerprints: tc.fps}}
		err := tr.verify(c.tls.Certificate)
		if (err == nil) != tc.ok {
			t.Errorf("%s: verify = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrFingerprint) {
			t.Errorf("%s: %v is not ErrFingerprint", tc.name, err)
		}
	}
	if err := (&transport{rem: streamParams{fingerprints: []certFP{{"sha-256", sha256}}}}).verify([][]byte{{1, 2, 3}}); !errors.Is(err, ErrFingerprint) {
		t.Errorf("garbage certificate: %v", err)
	}
}

func runHandshake(t *testing.T, tamper bool) (recvKeys mediaKeys, sock net.PacketConn, err error) {
	t.Helper()
	b := newBrowser(t)
	offer := b.offer
	if tamper {
		// Another certificate's fingerprint: the description lies.
		other, err := newCertificate()
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(offer, "\r\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "a=fingerprint:") {
				lines[i] = "a=fingerprint:" + other.fingerprint
			}
		}
		offer = strings.Join(lines, "\r\n")
	}
	_, rd, err := fromBrowser([]byte(offer), netipLoopback)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := newCertificate()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	// The transport reads from a tee: STUN and DTLS to it, the rest to the test.
	tee := newTee(pc)
	loc := local{ufrag: randomICE(8), pwd: randomICE(24), fingerprint: cert.fingerprint}
	tr := newTransport(tee.foreign, loc, rd.streams[0], cert, 5*time.Second)
	t.Cleanup(tr.close)
	go tr.readLoop()
	ans := answerFor(t, rd, loc, pc.LocalAddr().(*net.UDPAddr).Port)
	if err := b.pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeAnswer, SDP: ans}); err != nil {
		t.Fatalf("pion refused the answer: %v\n%s", err, ans)
	}
	t.Cleanup(sendSamples(t, b))
	recv, _, err := tr.handshake(context.Background())
	return recv, tee.rest, err
}

// sendSamples has the browser send an Opus frame every 20 ms until the
// returned function is called.
func sendSamples(t testing.TB, b *browser) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				_ = b.track.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// TestTransportPeersBounded: connectivity checks are answered only with
// the gateway's credentials, and from at most maxPeers addresses per
// stream; a check from one more address is not answered and does not
// become the selected pair (DTLS and media would not be taken from it).
func TestTransportPeersBounded(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	loc := local{ufrag: randomICE(8), pwd: randomICE(24)}
	rem := streamParams{ufrag: "brws", pwd: randomICE(24)}
	tr := newTransport(pc, loc, rem, nil, time.Second)
	t.Cleanup(tr.close)
	go tr.readLoop()
	check := func(pwd string, useCandidate bool) []byte {
		setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, stun.NewUsername(loc.ufrag + ":" + rem.ufrag)}
		if useCandidate {
			setters = append(setters, stun.RawAttribute{Type: stun.AttrUseCandidate})
		}
		setters = append(setters, stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
		m, err := stun.Build(setters...)
		if err != nil {
			t.Fatal(err)
		}
		return m.Raw
	}
	answered := func(c net.PacketConn, req []byte) bool {
		if _, err := c.WriteTo(req, pc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 1500)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return false
		}
		res := &stun.Message{Raw: buf[:n]}
		return res.Decode() == nil && res.Type == stun.BindingSuccess && stun.NewShortTermIntegrity(loc.pwd).Check(res) == nil
	}
	var socks []net.PacketConn
	for range maxPeers + 1 {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		socks = append(socks, c)
	}
	if answered(socks[0], check("wrong password", true)) {
		t.Fatal("a check with the wrong password was answered")
	}
	for i, c := range socks[:maxPeers] {
		if !answered(c, check(loc.pwd, false)) {
			t.Fatalf("check %d not answered", i)
		}
	}
	last := socks[maxPeers]
	if answered(last, check(loc.pwd, true)) {
		t.Fatalf("a check from peer %d was answered", maxPeers+1)
	}
	lastAddr := last.LocalAddr().(*net.UDPAddr).AddrPort()
	if tr.peer() == lastAddr || tr.checked(lastAddr) {
		t.Fatalf("peer %d selected or checked", maxPeers+1)
	}
	if !tr.checked(socks[0].LocalAddr().(*net.UDPAddr).AddrPort()) {
		t.Fatal("the first checked peer is not known")
	}
}
