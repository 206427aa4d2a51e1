package media

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/ucgate/ucgate/core"
)

// Test port ranges sit below Linux's ephemeral range (32768-60999) so
// that the kernel never hands a test phone a relay port.
var nextRange atomic.Int32

func init() { nextRange.Store(int32(20000 + 200*rand.IntN(20))) }

// testConfig returns a configuration on loopback with a port range of
// its own.
func testConfig(ports int) Config {
	lo := int(nextRange.Add(int32(ports+2))) - ports - 2
	if lo+ports > 32000 {
		nextRange.Store(20000)
		lo = 20000
	}
	cfg := Defaults()
	r := fmt.Sprintf("%d-%d", lo, lo+ports-1)
	cfg.IPv4.Ports, cfg.IPv6.Ports = r, r
	return cfg
}

// alertLog collects security events.
type alertLog struct {
	mu     sync.Mutex
	events []*core.SecurityEvent
	ch     chan *core.SecurityEvent
}

func (a *alertLog) Alert(e *core.SecurityEvent) {
	a.mu.Lock()
	a.events = append(a.events, e)
	a.mu.Unlock()
	select {
	case a.ch <- e:
	default:
	}
}

func (a *alertLog) wait(t *testing.T, rule string) *core.SecurityEvent {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		select {
		case e := <-a.ch:
			if e.Rule == rule {
				return e
			}
		case <-deadline:
			t.Fatalf("no security event %s", rule)
			return nil
		}
	}
}

func (a *alertLog) count(rule string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, e := range a.events {
		if e.Rule == rule {
			n++
		}
	}
	return n
}

// newEngine builds an engine on cfg with an alert log; both close at the
// end of the test.
func newEngine(t testing.TB, cfg Config) (*Engine, *alertLog) {
	t.Helper()
	alerts := core.NewAlerts(256)
	log := &alertLog{ch: make(chan *core.SecurityEvent, 256)}
	alerts.Subscribe(log)
	e, err := New(cfg, core.Deps{Alerts: alerts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Close()
		alerts.Close()
	})
	return e, log
}

// phone is a UDP endpoint standing in for a SIP phone's media.
type phone struct {
	t    testing.TB
	conn *net.UDPConn
	addr netip.AddrPort
	buf  []byte
}

func newPhone(t testing.TB, ip string) *phone {
	t.Helper()
	network := "udp4"
	if netip.MustParseAddr(ip).Is6() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return &phone{t: t, conn: c, addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), buf: make([]byte, 2048)}
}

func (p *phone) send(b []byte, to netip.AddrPort) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

// recv waits for one datagram; ok is false after wait.
func (p *phone) recv(wait time.Duration) ([]byte, netip.AddrPort, bool) {
	p.conn.SetReadDeadline(time.Now().Add(wait))
	n, from, err := p.conn.ReadFromUDPAddrPort(p.buf)
	if err != nil {
		return nil, netip.AddrPort{}, false
	}
	return bytes.Clone(p.buf[:n]), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), true
}

// mustRecv waits for one datagram or fails the test.
func (p *phone) mustRecv() ([]byte, netip.AddrPort) {
	p.t.Helper()
	b, from, ok := p.recv(3 * time.Second)
	if !ok {
		p.t.Fatalf("phone %s received nothing", p.addr)
	}
	return b, from
}

// silent asserts nothing arrives for a short while.
func (p *phone) silent() {
	p.t.Helper()
	if b, from, ok := p.recv(150 * time.Millisecond); ok {
		p.t.Fatalf("phone %s received %d bytes from %s, want nothing", p.addr, len(b), from)
	}
}

func rtpPkt(t testing.TB, pt uint8, ssrc uint32, seq uint16, ts uint32, payload []byte) []byte {
	t.Helper()
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func payloadOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var p rtp.Packet
	if err := p.Unmarshal(b); err != nil {
		t.Fatalf("not rtp: %v", err)
	}
	return p.Payload
}

func audio(addr netip.AddrPort) core.Stream {
	return core.Stream{
		Type: "audio", Addr: addr, Protocol: "RTP/AVP", Direction: "sendrecv",
		Codecs: []core.Codec{{PT: 0, Name: "PCMU", Rate: 8000}, {PT: 101, Name: "telephone-event", Rate: 8000}},
	}
}

func desc(streams ...core.Stream) *core.MediaDesc { return &core.MediaDesc{Streams: streams} }

// callPair is one call between two phones: the caller sends to toCallee,
// the callee to toCaller.
type callPair struct {
	c                  *Call
	caller, callee     *phone
	toCallee, toCaller netip.AddrPort
	offer, answer      *core.MediaDesc
}

// dial runs offer and answer for one audio stream between two phones.
func dial(t testing.TB, e *Engine, pipe *core.Pipeline, caller, callee *phone, offer, answer core.Stream, po, pa PeerInfo) *callPair {
	t.Helper()
	c := e.NewCall(core.NewSessionID(), pipe, nil)
	t.Cleanup(c.Close)
	out, err := c.Offer(core.RoleCaller, desc(offer), po)
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	back, err := c.Answer(core.RoleCallee, desc(answer), pa)
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	return &callPair{c: c, caller: caller, callee: callee, toCallee: back.Streams[0].Addr, toCaller: out.Streams[0].Addr, offer: out, answer: back}
}

// stat returns the figures of the direction from role.
func stat(t testing.TB, c *Call, role string) core.MediaStats {
	t.Helper()
	for _, s := range c.Stats() {
		if s.From == role && s.Index == 0 {
			return s
		}
	}
	t.Fatalf("no stats from %s", role)
	return core.MediaStats{}
}

// relayed waits until the direction from role has relayed n packets (the
// count follows the send, so a phone may hear a packet before it counts).
func relayed(t testing.TB, c *Call, role string, n uint64) core.MediaStats {
	t.Helper()
	eventually(t, fmt.Sprintf("%d packets from the %s", n, role), func() bool { return stat(t, c, role).Packets >= n })
	return stat(t, c, role)
}

// eventually polls cond until it holds or fails the test.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// srtpPhone wraps pion contexts for a test phone's SRTP.
type srtpPhone struct {
	enc, dec *srtp.Context
	inline   string // the phone's own key, as it offers it
}

func newSRTPPhone(t testing.TB, suiteName string) *srtpPhone {
	t.Helper()
	s := suiteByName(suiteName)
	raw := make([]byte, s.keyLen+s.saltLen)
	for i := range raw {
		raw[i] = byte(rand.IntN(256))
	}
	enc, err := srtp.CreateContext(raw[:s.keyLen], raw[s.keyLen:], s.profile)
	if err != nil {
		t.Fatal(err)
	}
	return &srtpPhone{enc: enc, inline: "inline:" + base64.StdEncoding.EncodeToString(raw)}
}

// learn makes the phone decrypt with the gateway's key from cr.
func (p *srtpPhone) learn(t testing.TB, cr core.Crypto) {
	t.Helper()
	k, err := parseInline(cr.Suite, cr.Key)
	if err != nil {
		t.Fatal(err)
	}
	p.dec, err = srtp.CreateContext(k.master[:k.suite.keyLen], k.master[k.suite.keyLen:], k.suite.profile, srtp.SRTPReplayProtection(64))
	if err != nil {
		t.Fatal(err)
	}
}

func (p *srtpPhone) seal(t testing.TB, b []byte) []byte {
	t.Helper()
	out, err := p.enc.EncryptRTP(nil, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (p *srtpPhone) open(t testing.TB, b []byte) []byte {
	t.Helper()
	out, err := p.dec.DecryptRTP(nil, b, nil)
	if err != nil {
		t.Fatalf("phone cannot decrypt: %v", err)
	}
	return out
}

func errIs(err, target error) bool { return errors.Is(err, target) }
