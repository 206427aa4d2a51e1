package webrtc

import (
	"context"
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"

	"github.com/ucgate/ucgate/core/media"
)

// Errors of a stream's transport; each ends the call.
var (
	// ErrFingerprint reports a DTLS peer whose certificate does not match
	// the fingerprint its description announced.
	ErrFingerprint = errors.New("webrtc: dtls certificate does not match the fingerprint")
	// ErrHandshake reports a DTLS handshake that failed or timed out.
	ErrHandshake = errors.New("webrtc: dtls handshake failed")
	// ErrProfile reports a DTLS handshake that agreed on no SRTP profile
	// the relay speaks.
	ErrProfile = errors.New("webrtc: no usable srtp protection profile")
)

// maxPeers bounds the addresses one stream accepts checks from.
const maxPeers = 8

// transport is one stream's ICE-lite responder and DTLS endpoint on the
// relay port's seam.
type transport struct {
	pc      net.PacketConn // the seam: STUN and DTLS only
	loc     local
	rem     streamParams
	client  bool // the gateway is the DTLS client (the browser said passive)
	cert    *certificate
	timeout time.Duration

	mu       sync.Mutex
	peers    []netip.AddrPort // addresses that passed a connectivity check
	selected netip.AddrPort   // the nominated one: DTLS goes there
	dtlsIn   chan []byte
	done     chan struct{}
	once     sync.Once
	ready    chan netip.AddrPort // the first checked address, once
}

func newTransport(pc net.PacketConn, loc local, rem streamParams, cert *certificate, timeout time.Duration) *transport {
	return &transport{pc: pc, loc: loc, rem: rem, client: rem.setup == "passive", cert: cert, timeout: timeout,
		dtlsIn: make(chan []byte, 64), done: make(chan struct{}), ready: make(chan netip.AddrPort, 1)}
}

// close stops the transport; the seam is closed with it.
func (t *transport) close() {
	t.once.Do(func() {
		close(t.done)
		t.pc.Close()
	})
}

// readLoop answers connectivity checks and hands DTLS records from
// checked addresses to the handshake. It returns when the seam closes.
func (t *transport) readLoop() {
	buf := make([]byte, 1500)
	req := new(stun.Message)
	for {
		n, addr, err := t.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			t.close()
			return
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok || n == 0 {
			continue
		}
		src := ua.AddrPort()
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		b := buf[:n]
		switch {
		case stun.IsMessage(b):
			t.onSTUN(req, b, src)
		case b[0] >= 20 && b[0] <= 63:
			if !t.checked(src) {
				continue // DTLS from an address that passed no check
			}
			select {
			case t.dtlsIn <- append([]byte(nil), b...):
			default:
			}
		}
	}
}

// onSTUN answers a Binding request that carries the gateway's user name
// and authenticates with its password (RFC 8445 lite, RFC 5389); anything
// else is dropped without an answer.
func (t *transport) onSTUN(m *stun.Message, b []byte, src netip.AddrPort) {
	m.Raw = append(m.Raw[:0], b...)
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		return
	}
	var user stun.Username
	if err := user.GetFrom(m); err != nil {
		return
	}
	t.mu.Lock()
	loc, remUfrag := t.loc, t.rem.ufrag
	t.mu.Unlock()
	want := loc.ufrag + ":" + remUfrag
	if subtle.ConstantTimeCompare([]byte(user.String()), []byte(want)) != 1 {
		return
	}
	if err := stun.NewShortTermIntegrity(loc.pwd).Check(m); err != nil {
		return
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		return
	}
	res, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: src.Addr().AsSlice(), Port: int(src.Port())},
		stun.NewShortTermIntegrity(loc.pwd), stun.Fingerprint)
	if err != nil {
		return
	}
	t.mu.Lock()
	known := false
	for _, p := range t.peers {
		if p == src {
			known = true
		}
	}
	if !known && len(t.peers) >= maxPeers {
		// No room to remember it: not answered, never selected (DTLS and
		// media would not be taken from it).
		t.mu.Unlock()
		return
	}
	if !known {
		t.peers = append(t.peers, src)
	}
	if m.Contains(stun.AttrUseCandidate) || !t.selected.IsValid() {
		t.selected = src
	}
	t.mu.Unlock()
	if !known {
		select {
		case t.ready <- src:
		default:
		}
	}
	_, _ = t.pc.WriteTo(res.Raw, net.UDPAddrFromAddrPort(src))
}

// restart takes new ICE credentials (an ICE restart, RFC 8445 9): checks
// must use them from now on; the DTLS association and its keys stay, and
// the addresses checked so far may still carry DTLS records until the
// browser has moved.
func (t *transport) restart(loc local, rem streamParams) {
	t.mu.Lock()
	t.loc.ufrag, t.loc.pwd = loc.ufrag, loc.pwd
	t.rem.ufrag, t.rem.pwd = rem.ufrag, rem.pwd
	t.mu.Unlock()
}

func (t *transport) remoteUfrag() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rem.ufrag
}

func (t *transport) checked(src netip.AddrPort) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.peers {
		if p == src {
			return true
		}
	}
	return false
}

func (t *transport) peer() netip.AddrPort {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.selected
}

// handshake waits for the first checked address, runs DTLS with the
// browser, verifies its certificate against the announced fingerprint
// and returns the SRTP keys: recv decrypts what the browser sends, send
// encrypts what it is sent.
func (t *transport) handshake(ctx context.Context) (recv, send media.Keys, err error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	var first netip.AddrPort
	select {
	case first = <-t.ready:
	case <-ctx.Done():
		return recv, send, fmt.Errorf("%w: no connectivity check within %v", ErrHandshake, t.timeout)
	case <-t.done:
		return recv, send, net.ErrClosed
	}
	var fpErr error
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		fpErr = t.verify(raw)
		return fpErr
	}
	shared := []dtls.Option{
		dtls.WithCertificates(t.cert.tls),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithInsecureSkipVerify(true), // self-signed: the fingerprint is the check
		dtls.WithVerifyPeerCertificate(verify),
	}
	conn := &dtlsConn{t: t}
	raddr := net.UDPAddrFromAddrPort(first)
	var dc *dtls.Conn
	if t.client {
		opts := make([]dtls.ClientOption, 0, len(shared))
		for _, o := range shared {
			opts = append(opts, o)
		}
		dc, err = dtls.ClientWithOptions(conn, raddr, opts...)
	} else {
		opts := make([]dtls.ServerOption, 0, len(shared)+1)
		for _, o := range shared {
			opts = append(opts, o)
		}
		opts = append(opts, dtls.WithClientAuth(dtls.RequireAnyClientCert))
		dc, err = dtls.ServerWithOptions(conn, raddr, opts...)
	}
	if err != nil {
		return recv, send, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if err := dc.HandshakeContext(ctx); err != nil {
		dc.Close()
		select {
		case <-t.done:
			return recv, send, net.ErrClosed
		default:
		}
		if fpErr != nil {
			return recv, send, fpErr
		}
		return recv, send, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	// Keep reading so that alerts and retransmitted flights are handled.
	go func() {
		b := make([]byte, 1500)
		for {
			if _, err := dc.Read(b); err != nil {
				return
			}
		}
	}()
	go func() { <-t.done; dc.Close() }()
	prof, ok := dc.SelectedSRTPProtectionProfile()
	if !ok {
		return recv, send, ErrProfile
	}
	var sp srtp.ProtectionProfile
	var suite string
	switch prof {
	case dtls.SRTP_AEAD_AES_128_GCM:
		sp, suite = srtp.ProtectionProfileAeadAes128Gcm, "AEAD_AES_128_GCM"
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		sp, suite = srtp.ProtectionProfileAes128CmHmacSha1_80, "AES_CM_128_HMAC_SHA1_80"
	default:
		return recv, send, ErrProfile
	}
	state, ok := dc.ConnectionState()
	if !ok {
		return recv, send, ErrHandshake
	}
	kc := srtp.Config{Profile: sp}
	if err := kc.ExtractSessionKeysFromDTLS(&state, t.client); err != nil {
		return recv, send, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	recv = media.Keys{Suite: suite, Key: kc.Keys.RemoteMasterKey, Salt: kc.Keys.RemoteMasterSalt}
	send = media.Keys{Suite: suite, Key: kc.Keys.LocalMasterKey, Salt: kc.Keys.LocalMasterSalt}
	return recv, send, nil
}

// verify checks the peer's certificate against the fingerprints of its
// description: one must match (RFC 8122), computed with the hash the
// description names; none, an unknown hash, or MD5 or SHA-1 (broken, and
// never what a browser sends: RFC 8827 requires SHA-256) fails.
func (t *transport) verify(raw [][]byte) error {
	if len(raw) == 0 {
		return fmt.Errorf("%w: no certificate", ErrFingerprint)
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrFingerprint, err)
	}
	for _, fp := range t.rem.fingerprints {
		h, err := fingerprint.HashFromString(fp.alg)
		if err != nil || h == crypto.MD5 || h == crypto.SHA1 {
			continue
		}
		got, err := fingerprint.Fingerprint(cert, h)
		if err != nil {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(strings.ToUpper(got)), []byte(strings.ToUpper(fp.value))) == 1 {
			return nil
		}
	}
	return ErrFingerprint
}

// dtlsConn is the net.PacketConn pion/dtls runs on: records from checked
// addresses in, records out to the nominated address.
type dtlsConn struct {
	t *transport

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{} // closed and replaced when the deadline changes
}

func (c *dtlsConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		if c.wake == nil {
			c.wake = make(chan struct{})
		}
		dl, wake := c.deadline, c.wake
		c.mu.Unlock()
		var timeout <-chan time.Time
		var tm *time.Timer
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			tm = time.NewTimer(d)
			timeout = tm.C
		}
		select {
		case b := <-c.t.dtlsIn:
			stop(tm)
			return copy(p, b), net.UDPAddrFromAddrPort(c.t.peer()), nil
		case <-c.t.done:
			stop(tm)
			return 0, nil, net.ErrClosed
		case <-wake:
			stop(tm)
		case <-timeout:
			return 0, nil, os.ErrDeadlineExceeded
		}
	}
}

func stop(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

func (c *dtlsConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	dst := c.t.peer()
	if !dst.IsValid() {
		return 0, net.ErrClosed
	}
	return c.t.pc.WriteTo(p, net.UDPAddrFromAddrPort(dst))
}

func (c *dtlsConn) Close() error                     { return nil }
func (c *dtlsConn) LocalAddr() net.Addr              { return c.t.pc.LocalAddr() }
func (c *dtlsConn) SetDeadline(t time.Time) error    { return c.SetReadDeadline(t) }
func (c *dtlsConn) SetWriteDeadline(time.Time) error { return nil }
func (c *dtlsConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	if c.wake != nil {
		close(c.wake)
	}
	c.wake = make(chan struct{})
	c.mu.Unlock()
	return nil
}

var _ net.PacketConn = (*dtlsConn)(nil)
