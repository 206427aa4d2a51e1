package media

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/ucgate/ucgate/core"
)

func TestRelayBothWays(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(caller.addr), audio(callee.addr), PeerInfo{Addr: caller.addr}, PeerInfo{Addr: callee.addr})

	if cp.offer.Streams[0].Addr == caller.addr || cp.answer.Streams[0].Addr == callee.addr {
		t.Fatal("descriptions still name the phones")
	}
	if cp.offer.Streams[0].Protocol != "RTP/AVP" || cp.answer.Streams[0].Protocol != "RTP/AVP" {
		t.Fatalf("profiles %q %q", cp.offer.Streams[0].Protocol, cp.answer.Streams[0].Protocol)
	}
	const n = 50
	for i := range n {
		payload := bytes.Repeat([]byte{byte(i)}, 160)
		caller.send(rtpPkt(t, 0, 0x1111, uint16(1000+i), uint32(160*i), payload), cp.toCallee)
		b, from := callee.mustRecv()
		if from != cp.toCaller {
			t.Fatalf("callee got media from %s, want the relay %s", from, cp.toCaller)
		}
		if !bytes.Equal(payloadOf(t, b), payload) {
			t.Fatalf("packet %d altered", i)
		}
		callee.send(rtpPkt(t, 0, 0x2222, uint16(i), uint32(160*i), payload), cp.toCaller)
		b, from = caller.mustRecv()
		if from != cp.toCallee || !bytes.Equal(payloadOf(t, b), payload) {
			t.Fatalf("caller got %d bytes from %s", len(b), from)
		}
	}
	for _, role := range []string{core.RoleCaller, core.RoleCallee} {
		s := relayed(t, cp.c, role, n)
		if s.Packets != n || s.Bytes != n*172 || s.Lost != 0 || len(s.Dropped) != 0 || s.Type != "audio" || s.Encrypted {
			t.Errorf("%s stats %+v", role, s)
		}
	}
}

func TestLostAndJitter(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(caller.addr), audio(callee.addr), PeerInfo{}, PeerInfo{})
	for _, seq := range []uint16{65530, 65531, 65533, 65534, 2, 3} { // 65532, 65535, 0, 1 lost across the wrap
		caller.send(rtpPkt(t, 0, 7, seq, uint32(seq)*160, make([]byte, 160)), cp.toCallee)
		callee.mustRecv()
	}
	if s := relayed(t, cp.c, core.RoleCaller, 6); s.Lost != 4 || s.Packets != 6 {
		t.Fatalf("lost %d packets %d, want 4 and 6", s.Lost, s.Packets)
	}
}

func TestLatchNAT(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	private := netip.MustParseAddrPort("192.0.2.10:4000") // what the phone behind NAT wrote
	cp := dial(t, e, nil, caller, callee, audio(private), audio(callee.addr), PeerInfo{Addr: caller.addr, BehindNAT: true}, PeerInfo{Addr: callee.addr})

	// Nothing goes to the private address before the caller is heard.
	callee.send(rtpPkt(t, 0, 2, 1, 0, []byte("early")), cp.toCaller)
	eventually(t, "drop before latch", func() bool { return stat(t, cp.c, core.RoleCallee).Dropped[RuleNoDestination] == 1 })

	caller.send(rtpPkt(t, 0, 1, 1, 0, []byte("hello")), cp.toCallee)
	if b, _ := callee.mustRecv(); string(payloadOf(t, b)) != "hello" {
		t.Fatal("caller's first packet not relayed")
	}
	callee.send(rtpPkt(t, 0, 2, 2, 160, []byte("back")), cp.toCaller)
	if b, _ := caller.mustRecv(); string(payloadOf(t, b)) != "back" {
		t.Fatal("callee's packet did not reach the latched caller")
	}
	// Another source on the same stream is refused.
	other := newPhone(t, "127.0.0.1")
	other.send(rtpPkt(t, 0, 1, 2, 160, []byte("intruder")), cp.toCallee)
	callee.silent()
	if d := stat(t, cp.c, core.RoleCaller).Dropped[RuleSource]; d != 1 {
		t.Fatalf("dropped %d as source, want 1", d)
	}
}

func TestLatchNATNotBehindNATIsStrict(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	described := newPhone(t, "127.0.0.1") // the SDP names this one; the caller's socket sends
	cp := dial(t, e, nil, caller, callee, audio(described.addr), audio(callee.addr), PeerInfo{}, PeerInfo{})
	caller.send(rtpPkt(t, 0, 1, 1, 0, []byte("x")), cp.toCallee)
	callee.silent()
	if d := stat(t, cp.c, core.RoleCaller).Dropped[RuleSource]; d != 1 {
		t.Fatalf("dropped %d as source, want 1", d)
	}
	described.send(rtpPkt(t, 0, 1, 2, 160, []byte("y")), cp.toCallee)
	callee.mustRecv()
	callee.send(rtpPkt(t, 0, 2, 1, 0, []byte("z")), cp.toCaller)
	described.mustRecv()
}

func TestLatchStrictIgnoresNAT(t *testing.T) {
	cfg := testConfig(100)
	cfg.Latch = LatchStrict
	e, _ := newEngine(t, cfg)
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	samehost := newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(caller.addr), audio(callee.addr), PeerInfo{BehindNAT: true}, PeerInfo{})
	samehost.send(rtpPkt(t, 0, 1, 1, 0, []byte("x")), cp.toCallee)
	callee.silent()
	caller.send(rtpPkt(t, 0, 1, 2, 160, []byte("y")), cp.toCallee)
	callee.mustRecv()
	if d := stat(t, cp.c, core.RoleCaller).Dropped[RuleSource]; d != 1 {
		t.Fatalf("dropped %d as source, want 1", d)
	}
}

func TestLatchAlways(t *testing.T) {
	cfg := testConfig(100)
	cfg.Latch = LatchAlways
	e, _ := newEngine(t, cfg)
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(netip.MustParseAddrPort("192.0.2.1:5000")), audio(callee.addr), PeerInfo{}, PeerInfo{})
	// Garbage does not latch; the first valid RTP does.
	caller.send([]byte{0x00, 0x01, 0x02}, cp.toCallee)
	caller.send(rtpPkt(t, 0, 1, 1, 0, []byte("a")), cp.toCallee)
	callee.mustRecv()
	callee.send(rtpPkt(t, 0, 2, 1, 0, []byte("b")), cp.toCaller)
	caller.mustRecv()
	s := relayed(t, cp.c, core.RoleCaller, 1)
	if s.Dropped[RuleMalformed] != 1 || s.Packets != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestInjectionDropped(t *testing.T) {
	e, alerts := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(caller.addr), audio(callee.addr), PeerInfo{BehindNAT: true}, PeerInfo{})
	caller.send(rtpPkt(t, 0, 0xAAAA, 1, 0, []byte("legit")), cp.toCallee)
	callee.mustRecv()

	attacker := newPhone(t, "127.0.0.9")
	for i := range 5 {
		attacker.send(rtpPkt(t, 0, 0xAAAA, uint16(2+i), 160, []byte("forged")), cp.toCallee) // forged: the caller's SSRC
	}
	callee.silent()
	ev := alerts.wait(t, RuleSource)
	if ev.Session != cp.c.id || ev.Src != attacker.addr.String() || ev.Action != "drop" {
		t.Fatalf("event %+v", ev)
	}
	caller.send(rtpPkt(t, 0, 0xAAAA, 2, 160, []byte("legit")), cp.toCallee)
	if b, _ := callee.mustRecv(); string(payloadOf(t, b)) != "legit" {
		t.Fatal("legit packet lost after injection")
	}
	s := relayed(t, cp.c, core.RoleCaller, 2)
	if s.Dropped[RuleSource] != 5 || s.Packets != 2 {
		t.Fatalf("stats %+v", s)
	}
	if n := alerts.count(RuleSource); n != 1 {
		t.Fatalf("%d events for one burst, want 1 (rate-limited)", n)
	}
}

func TestRelatch(t *testing.T) {
	cfg := testConfig(100)
	cfg.RelatchAfter = 2 * time.Second
	e, _ := newEngine(t, cfg)
	var clock atomic.Int64
	clock.Store(int64(time.Hour))
	e.clock = clock.Load
	wifi, lte, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, wifi, callee, audio(wifi.addr), audio(callee.addr), PeerInfo{BehindNAT: true}, PeerInfo{})

	wifi.send(rtpPkt(t, 0, 0x5EED, 100, 0, []byte("wifi")), cp.toCallee)
	callee.mustRecv()
	// Too soon: the old source spoke a moment ago.
	clock.Add(int64(time.Second))
	lte.send(rtpPkt(t, 0, 0x5EED, 101, 160, []byte("lte")), cp.toCallee)
	callee.silent()
	// After the silence, another SSRC may not take the stream over...
	clock.Add(int64(2 * time.Second))
	lte.send(rtpPkt(t, 0, 0x0BAD, 102, 320, []byte("lte")), cp.toCallee)
	callee.silent()
	// ...nor a sequence number far from the stream's...
	lte.send(rtpPkt(t, 0, 0x5EED, 30000, 320, []byte("lte")), cp.toCallee)
	callee.silent()
	// ...but the stream's own continuation may.
	lte.send(rtpPkt(t, 0, 0x5EED, 103, 480, []byte("lte")), cp.toCallee)
	if b, _ := callee.mustRecv(); string(payloadOf(t, b)) != "lte" {
		t.Fatal("moved stream not relayed")
	}
	callee.send(rtpPkt(t, 0, 9, 1, 0, []byte("to lte")), cp.toCaller)
	if b, _ := lte.mustRecv(); string(payloadOf(t, b)) != "to lte" {
		t.Fatal("callee's media does not follow the move")
	}
	wifi.send(rtpPkt(t, 0, 0x5EED, 104, 640, []byte("wifi")), cp.toCallee)
	callee.silent()
	if d := stat(t, cp.c, core.RoleCaller).Dropped[RuleSource]; d != 4 {
		t.Fatalf("dropped %d as source, want 4", d)
	}
}

// guardStage is a content stage whose guards refuse one payload type.
type guardStage struct {
	refuse       uint8
	mu           sync.Mutex
	infos        []core.StreamInfo
	renegotiated []core.StreamInfo
	closed       int
	checks       atomic.Int64
}

func (s *guardStage) Name() string      { return "pt" }
func (s *guardStage) Layer() core.Layer { return core.Content }
func (s *guardStage) Decide(context.Context, *core.Event) (core.Verdict, error) {
	return core.Verdict{}, nil
}

func (s *guardStage) Guard(info *core.StreamInfo) core.StreamGuard {
	s.mu.Lock()
	s.infos = append(s.infos, *info)
	s.mu.Unlock()
	return &ptGuard{s: s}
}

type ptGuard struct{ s *guardStage }

func (g *ptGuard) Check(p *core.MediaPacket) core.Verdict {
	g.s.checks.Add(1)
	if !p.RTCP && p.PT == g.s.refuse {
		return core.Verdict{Action: core.Drop, Rule: "pt/unnegotiated", Detail: "payload type not negotiated"}
	}
	return core.Verdict{}
}

func (g *ptGuard) Renegotiate(info *core.StreamInfo) {
	g.s.mu.Lock()
	g.s.renegotiated = append(g.s.renegotiated, *info)
	g.s.mu.Unlock()
}

func (g *ptGuard) Close() {
	g.s.mu.Lock()
	g.s.closed++
	g.s.mu.Unlock()
}

func TestGuards(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	stage := &guardStage{refuse: 99}
	pipe, err := core.NewPipeline([]string{"pt"}, stage)
	if err != nil {
		t.Fatal(err)
	}
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, pipe, caller, callee, audio(caller.addr), audio(callee.addr), PeerInfo{Zone: "internet"}, PeerInfo{Zone: "trunk"})

	stage.mu.Lock()
	if len(stage.infos) != 2 { // one per direction
		t.Fatalf("%d guards, want 2", len(stage.infos))
	}
	for _, in := range stage.infos {
		if in.Session != cp.c.id || in.Type != "audio" || len(in.Codecs) != 2 || (in.From == core.RoleCaller) != (in.Zone == "internet") {
			t.Fatalf("stream info %+v", in)
		}
	}
	stage.mu.Unlock()

	caller.send(rtpPkt(t, 99, 1, 1, 0, []byte("bad")), cp.toCallee)
	caller.send(rtpPkt(t, 0, 1, 2, 160, []byte("good")), cp.toCallee)
	if b, _ := callee.mustRecv(); string(payloadOf(t, b)) != "good" {
		t.Fatal("guard let the wrong packet through")
	}
	if d := stat(t, cp.c, core.RoleCaller).Dropped["pt/unnegotiated"]; d != 1 {
		t.Fatalf("dropped %d, want 1", d)
	}

	// A re-INVITE from the callee adds a video codec number: the guards
	// hear of it before the next packet.
	re := audio(callee.addr)
	re.Codecs = append(re.Codecs, core.Codec{PT: 8, Name: "PCMA", Rate: 8000})
	if _, err := cp.c.Update(core.RoleCallee, desc(re), PeerInfo{Zone: "trunk"}); err != nil {
		t.Fatal(err)
	}
	ans := audio(caller.addr)
	ans.Codecs = re.Codecs
	if _, err := cp.c.Answer(core.RoleCaller, desc(ans), PeerInfo{Zone: "internet"}); err != nil {
		t.Fatal(err)
	}
	caller.send(rtpPkt(t, 8, 1, 3, 320, []byte("pcma")), cp.toCallee)
	callee.mustRecv()
	stage.mu.Lock()
	if len(stage.renegotiated) == 0 || len(stage.renegotiated[0].Codecs) != 3 {
		t.Fatalf("renegotiated %+v", stage.renegotiated)
	}
	stage.mu.Unlock()
	cp.c.Close()
	stage.mu.Lock()
	defer stage.mu.Unlock()
	if stage.closed != 2 {
		t.Fatalf("%d guards closed, want 2", stage.closed)
	}
}

func TestRTCPRelayAndReports(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	callerRTCP, calleeRTCP := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	off, ans := audio(caller.addr), audio(callee.addr)
	off.RTCP, ans.RTCP = callerRTCP.addr, calleeRTCP.addr
	cp := dial(t, e, nil, caller, callee, off, ans, PeerInfo{}, PeerInfo{})
	caller.send(rtpPkt(t, 0, 0xCA11, 1, 0, make([]byte, 160)), cp.toCallee)
	callee.mustRecv()

	rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0xCA1EE, Reports: []rtcp.ReceptionReport{{SSRC: 0xCA11, TotalLost: 5, Jitter: 80}}}})
	if err != nil {
		t.Fatal(err)
	}
	relayRTCP := netip.AddrPortFrom(cp.toCaller.Addr(), cp.toCaller.Port()+1)
	calleeRTCP.send(rr, relayRTCP)
	b, from := callerRTCP.mustRecv()
	if !bytes.Equal(b, rr) || from.Port() != cp.toCallee.Port()+1 {
		t.Fatalf("rtcp %x from %s", b, from)
	}
	s := stat(t, cp.c, core.RoleCaller)
	if s.ReportedLost != 5 || s.ReportedJitterMs != 10 {
		t.Fatalf("reported lost %d jitter %v, want 5 and 10 ms", s.ReportedLost, s.ReportedJitterMs)
	}
}

func TestRTCPMux(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	off, ans := audio(caller.addr), audio(callee.addr)
	off.RTCPMux, ans.RTCPMux = true, true
	cp := dial(t, e, nil, caller, callee, off, ans, PeerInfo{}, PeerInfo{})
	if !cp.offer.Streams[0].RTCPMux || !cp.answer.Streams[0].RTCPMux {
		t.Fatal("rtcp-mux not kept")
	}
	rr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1}})
	caller.send(rr, cp.toCallee)
	if b, _ := callee.mustRecv(); !bytes.Equal(b, rr) {
		t.Fatal("muxed rtcp not relayed on the rtp port")
	}
}

func TestRateLimit(t *testing.T) {
	cfg := testConfig(100)
	cfg.MaxPacketsPerSecond = 10 // a burst of 200 ms: 2 packets, +1
	e, _ := newEngine(t, cfg)
	var clock atomic.Int64
	e.clock = clock.Load
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(caller.addr), audio(callee.addr), PeerInfo{}, PeerInfo{})
	for i := range 10 {
		caller.send(rtpPkt(t, 0, 1, uint16(i), 0, nil), cp.toCallee)
	}
	eventually(t, "ten packets judged", func() bool {
		s := stat(t, cp.c, core.RoleCaller)
		return s.Packets+s.Dropped[RuleRate] == 10
	})
	if s := stat(t, cp.c, core.RoleCaller); s.Packets != 3 {
		t.Fatalf("%d packets passed the limit, want 3", s.Packets)
	}
	clock.Add(int64(time.Second))
	caller.send(rtpPkt(t, 0, 1, 10, 0, nil), cp.toCallee)
	eventually(t, "limit refilled", func() bool { return stat(t, cp.c, core.RoleCaller).Packets == 4 })
}

func TestIPv6CallerIPv4Callee(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	if v4, v6 := e.Families(); !v4 || !v6 {
		t.Skip("this host has no IPv6 loopback")
	}
	caller, callee := newPhone(t, "::1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(caller.addr), audio(callee.addr),
		PeerInfo{Addr: caller.addr, Family: FamilyIPv4}, PeerInfo{Addr: callee.addr})
	if !cp.toCaller.Addr().Is4() || !cp.toCallee.Addr().Is6() {
		t.Fatalf("callee sends to %s, caller to %s", cp.toCaller, cp.toCallee)
	}
	caller.send(rtpPkt(t, 0, 6, 1, 0, []byte("from v6")), cp.toCallee)
	if b, from := callee.mustRecv(); string(payloadOf(t, b)) != "from v6" || !from.Addr().Is4() {
		t.Fatal("v6 to v4 failed")
	}
	callee.send(rtpPkt(t, 0, 4, 1, 0, []byte("from v4")), cp.toCaller)
	if b, from := caller.mustRecv(); string(payloadOf(t, b)) != "from v4" || !from.Addr().Is6() {
		t.Fatal("v4 to v6 failed")
	}
}

func TestMediaTimeout(t *testing.T) {
	cfg := testConfig(100)
	cfg.Timeout = 100 * time.Millisecond
	e, _ := newEngine(t, cfg)
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	ended := make(chan string, 4)
	c := e.NewCall(core.NewSessionID(), nil, func(reason string) { ended <- reason })
	defer c.Close()
	out, err := c.Offer(core.RoleCaller, desc(audio(caller.addr)), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	back, err := c.Answer(core.RoleCallee, desc(audio(callee.addr)), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	_ = out
	// Media flowing keeps the call up.
	c.Answered()
	stop := time.Now().Add(300 * time.Millisecond)
	for i := 0; time.Now().Before(stop); i++ {
		caller.send(rtpPkt(t, 0, 1, uint16(i), 0, nil), back.Streams[0].Addr)
		callee.mustRecv()
		select {
		case r := <-ended:
			t.Fatalf("ended (%s) while media flowed", r)
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case r := <-ended:
		if r != "media_timeout" {
			t.Fatalf("reason %q", r)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no media timeout")
	}
	select {
	case <-ended:
		t.Fatal("onEnd called twice")
	case <-time.After(300 * time.Millisecond):
	}
}

func TestPortPoolExhaustionAndRelease(t *testing.T) {
	e, _ := newEngine(t, testConfig(4)) // two pairs: one two-leg stream
	if got := e.FreePorts(FamilyIPv4); got != 2 {
		t.Fatalf("%d free pairs, want 2", got)
	}
	a := e.NewCall(core.NewSessionID(), nil, nil)
	if _, err := a.Offer(core.RoleCaller, desc(audio(netip.MustParseAddrPort("127.0.0.1:4000"))), PeerInfo{}); err != nil {
		t.Fatal(err)
	}
	b := e.NewCall(core.NewSessionID(), nil, nil)
	defer b.Close()
	_, err := b.Offer(core.RoleCaller, desc(audio(netip.MustParseAddrPort("127.0.0.1:4002"))), PeerInfo{})
	if !errIs(err, ErrNoPorts) {
		t.Fatalf("err %v, want ErrNoPorts", err)
	}
	a.Close()
	if got := e.FreePorts(FamilyIPv4); got != 2 {
		t.Fatalf("%d free pairs after close, want 2", got)
	}
	if _, err := b.Offer(core.RoleCaller, desc(audio(netip.MustParseAddrPort("127.0.0.1:4002"))), PeerInfo{}); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	e, _ := newEngine(t, testConfig(400))
	free := e.FreePorts(FamilyIPv4)
	base := runtime.NumGoroutine()
	var calls []*Call
	for i := range 20 {
		c := e.NewCall(core.NewSessionID(), nil, func(string) {})
		off := audio(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(5000+2*i)))
		if _, err := c.Offer(core.RoleCaller, desc(off, off), PeerInfo{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Answer(core.RoleCallee, desc(off, off), PeerInfo{}); err != nil {
			t.Fatal(err)
		}
		c.Answered()
		calls = append(calls, c)
	}
	// Counted by their stacks, not by runtime.NumGoroutine: goroutines of
	// earlier tests ending meanwhile made the difference one short.
	if got := mediaGoroutines(); got < 20*2*4 {
		t.Fatalf("%d relay goroutines for 20 calls of 2 streams, want at least 160", got)
	}
	if got := e.FreePorts(FamilyIPv4); got != free-80 {
		t.Fatalf("%d free pairs, want %d", got, free-80)
	}
	for i, c := range calls {
		if i%2 == 0 {
			c.Close()
		}
	}
	e.Close() // closes the rest
	if got := e.FreePorts(FamilyIPv4); got != free {
		t.Fatalf("%d free pairs after close, want %d", got, free)
	}
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base || mediaGoroutines() == 0 })
	if _, err := e.NewCall(core.NewSessionID(), nil, nil).Offer(core.RoleCaller, desc(audio(netip.MustParseAddrPort("127.0.0.1:4000"))), PeerInfo{}); !errIs(err, ErrClosed) {
		t.Fatalf("offer after engine close: %v", err)
	}
}

func TestOfferAnswerErrors(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	a := netip.MustParseAddrPort("127.0.0.1:4000")
	savp := audio(a)
	savp.Protocol = "RTP/SAVP"
	badKey := savp
	badKey.Crypto = []core.Crypto{{Tag: 1, Suite: "AES_CM_128_HMAC_SHA1_80", Key: "inline:c2hvcnQ="}}
	unknown := savp
	unknown.Crypto = []core.Crypto{{Tag: 1, Suite: "F8_128_HMAC_SHA1_80", Key: "inline:" + string(bytes.Repeat([]byte("A"), 40))}}
	tests := []struct {
		name string
		run  func(c *Call) error
		want error
	}{
		{"savp without key", func(c *Call) error { _, err := c.Offer(core.RoleCaller, desc(savp), PeerInfo{}); return err }, ErrCrypto},
		{"savp with bad key", func(c *Call) error { _, err := c.Offer(core.RoleCaller, desc(badKey), PeerInfo{}); return err }, ErrCrypto},
		{"savp with unknown suite", func(c *Call) error { _, err := c.Offer(core.RoleCaller, desc(unknown), PeerInfo{}); return err }, ErrCrypto},
		{"unknown role", func(c *Call) error { _, err := c.Offer("gateway", desc(audio(a)), PeerInfo{}); return err }, ErrRole},
		{"answer without offer", func(c *Call) error { _, err := c.Answer(core.RoleCallee, desc(audio(a)), PeerInfo{}); return err }, ErrNoOffer},
		{"answer from the offerer", func(c *Call) error {
			c.Offer(core.RoleCaller, desc(audio(a)), PeerInfo{})
			_, err := c.Answer(core.RoleCaller, desc(audio(a)), PeerInfo{})
			return err
		}, ErrNoOffer},
		{"answer with more streams", func(c *Call) error {
			c.Offer(core.RoleCaller, desc(audio(a)), PeerInfo{})
			_, err := c.Answer(core.RoleCallee, desc(audio(a), audio(a)), PeerInfo{})
			return err
		}, ErrStreams},
		{"srtp wanted, answer plain", func(c *Call) error {
			c.Offer(core.RoleCaller, desc(audio(a)), PeerInfo{SRTP: SRTPWant})
			_, err := c.Answer(core.RoleCallee, desc(audio(a)), PeerInfo{})
			return err
		}, ErrCrypto},
		{"answer in another family", func(c *Call) error {
			c.Offer(core.RoleCaller, desc(audio(a)), PeerInfo{})
			_, err := c.Answer(core.RoleCallee, desc(audio(netip.MustParseAddrPort("[2001:db8::1]:4000"))), PeerInfo{})
			return err
		}, ErrFamily},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			free := e.FreePorts(FamilyIPv4)
			c := e.NewCall(core.NewSessionID(), nil, nil)
			err := tt.run(c)
			if !errIs(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			c.Close()
			if got := e.FreePorts(FamilyIPv4); got != free {
				t.Fatalf("%d free pairs, want %d", got, free)
			}
		})
	}
}

func TestDisabledAndNonRTPStreams(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	c := e.NewCall(core.NewSessionID(), nil, nil)
	defer c.Close()
	t38 := core.Stream{Type: "image", Addr: caller.addr, Protocol: "udptl"}
	video := core.Stream{Type: "video", Addr: caller.addr, Protocol: "RTP/AVP", Codecs: []core.Codec{{PT: 96, Name: "H264", Rate: 90000}}}
	out, err := c.Offer(core.RoleCaller, desc(audio(caller.addr), t38, video), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Streams[0].Disabled || !out.Streams[1].Disabled || out.Streams[2].Disabled {
		t.Fatalf("offer %+v", out.Streams)
	}
	video.Disabled = true // the callee refuses video
	back, err := c.Answer(core.RoleCallee, desc(audio(callee.addr), core.Stream{Type: "image", Disabled: true}, video), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if back.Streams[0].Disabled || !back.Streams[1].Disabled || !back.Streams[2].Disabled {
		t.Fatalf("answer %+v", back.Streams)
	}
	if free := e.FreePorts(FamilyIPv4); free != 50-2 {
		t.Fatalf("%d free pairs, want 48: the refused stream's ports are back", free)
	}
	caller.send(rtpPkt(t, 0, 1, 1, 0, []byte("a")), back.Streams[0].Addr)
	callee.mustRecv()
}

func TestUpdateMovesLeg(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee, moved := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(caller.addr), audio(callee.addr), PeerInfo{}, PeerInfo{})
	callee.send(rtpPkt(t, 0, 2, 1, 0, []byte("1")), cp.toCaller)
	caller.mustRecv()
	// The callee moves (re-INVITE with a new address and a new SSRC).
	re, err := cp.c.Update(core.RoleCallee, desc(audio(moved.addr)), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if re.Streams[0].Addr != cp.toCallee {
		t.Fatalf("re-offer to the caller names %s, want the same relay endpoint %s", re.Streams[0].Addr, cp.toCallee)
	}
	back, err := cp.c.Answer(core.RoleCaller, desc(audio(caller.addr)), PeerInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if back.Streams[0].Addr != cp.toCaller {
		t.Fatalf("answer names %s, want %s", back.Streams[0].Addr, cp.toCaller)
	}
	caller.send(rtpPkt(t, 0, 1, 1, 0, []byte("2")), cp.toCallee)
	if b, _ := moved.mustRecv(); string(payloadOf(t, b)) != "2" {
		t.Fatal("media not sent to the moved callee")
	}
	moved.send(rtpPkt(t, 0, 3, 500, 0, []byte("3")), cp.toCaller)
	if b, _ := caller.mustRecv(); string(payloadOf(t, b)) != "3" {
		t.Fatal("moved callee not accepted")
	}
	callee.send(rtpPkt(t, 0, 2, 2, 160, []byte("old")), cp.toCaller)
	caller.silent()
}

func TestHoldDoesNotTimeOut(t *testing.T) {
	cfg := testConfig(100)
	cfg.Timeout = 50 * time.Millisecond
	e, _ := newEngine(t, cfg)
	ended := make(chan string, 1)
	c := e.NewCall(core.NewSessionID(), nil, func(r string) { ended <- r })
	defer c.Close()
	held := audio(netip.MustParseAddrPort("127.0.0.1:4000"))
	held.Direction = "inactive"
	if _, err := c.Offer(core.RoleCaller, desc(held), PeerInfo{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Answer(core.RoleCallee, desc(held), PeerInfo{}); err != nil {
		t.Fatal(err)
	}
	c.Answered()
	select {
	case r := <-ended:
		t.Fatalf("held call ended: %s", r)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestStatsAfterClose(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(caller.addr), audio(callee.addr), PeerInfo{}, PeerInfo{})
	caller.send(rtpPkt(t, 0, 1, 1, 0, nil), cp.toCallee)
	callee.mustRecv()
	cp.c.Close()
	if got := fmt.Sprint(len(cp.c.Stats()), stat(t, cp.c, core.RoleCaller).Packets); got != "2 1" {
		t.Fatalf("stats after close: %s", got)
	}
}

func TestRefreshKeepsLatch(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	sig := netip.MustParseAddrPort("192.0.2.7:5060")
	private := netip.MustParseAddrPort("192.0.2.10:4000")
	cp := dial(t, e, nil, caller, callee, audio(private), audio(callee.addr), PeerInfo{Addr: sig, BehindNAT: true}, PeerInfo{})
	caller.send(rtpPkt(t, 0, 1, 1, 0, []byte("a")), cp.toCallee)
	callee.mustRecv()
	// A session refresh: same description, same signalling source.
	if _, err := cp.c.Update(core.RoleCaller, desc(audio(private)), PeerInfo{Addr: sig, BehindNAT: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.c.Answer(core.RoleCallee, desc(audio(callee.addr)), PeerInfo{}); err != nil {
		t.Fatal(err)
	}
	attacker := newPhone(t, "127.0.0.9")
	attacker.send(rtpPkt(t, 0, 1, 2, 160, []byte("x")), cp.toCallee)
	callee.silent()
	caller.send(rtpPkt(t, 0, 1, 3, 320, []byte("b")), cp.toCallee)
	callee.mustRecv()
	// The phone moved: its signalling comes from elsewhere. The relay
	// learns it again, from whatever it sends first.
	moved := newPhone(t, "127.0.0.1")
	if _, err := cp.c.Update(core.RoleCaller, desc(audio(private)), PeerInfo{Addr: netip.MustParseAddrPort("192.0.2.8:5060"), BehindNAT: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.c.Answer(core.RoleCallee, desc(audio(callee.addr)), PeerInfo{}); err != nil {
		t.Fatal(err)
	}
	moved.send(rtpPkt(t, 0, 77, 1, 0, []byte("c")), cp.toCallee)
	if b, _ := callee.mustRecv(); string(payloadOf(t, b)) != "c" {
		t.Fatal("moved phone not learnt")
	}
	callee.send(rtpPkt(t, 0, 2, 1, 0, []byte("d")), cp.toCaller)
	moved.mustRecv()
}

func TestHoldKeepsSource(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(caller.addr), audio(callee.addr), PeerInfo{}, PeerInfo{})
	// The caller holds old-style (c=0.0.0.0, sendonly) and plays music.
	held := audio(netip.MustParseAddrPort("0.0.0.0:0"))
	held.Direction = "sendonly"
	if _, err := cp.c.Update(core.RoleCaller, desc(held), PeerInfo{}); err != nil {
		t.Fatal(err)
	}
	ans := audio(callee.addr)
	ans.Direction = "recvonly"
	if _, err := cp.c.Answer(core.RoleCallee, desc(ans), PeerInfo{}); err != nil {
		t.Fatal(err)
	}
	caller.send(rtpPkt(t, 0, 1, 1, 0, []byte("music")), cp.toCallee)
	if b, _ := callee.mustRecv(); string(payloadOf(t, b)) != "music" {
		t.Fatal("music on hold not relayed")
	}
	callee.send(rtpPkt(t, 0, 2, 1, 0, []byte("x")), cp.toCaller)
	caller.silent()
	eventually(t, "no destination while on hold", func() bool { return stat(t, cp.c, core.RoleCallee).Dropped[RuleNoDestination] == 1 })
}

// mediaGoroutines counts the goroutines running code of this package, other
// than tests.
func mediaGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\ngoroutine ") {
		if strings.Contains(g, "ucgate/core/media.") && !strings.Contains(g, "_test.go") {
			count++
		}
	}
	return count
}
