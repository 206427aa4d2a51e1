package media

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/ucgate/ucgate/core"
)

// swapper is a transform that sends every packet on with its payload
// reversed and its payload type changed, as a transcoder changes codecs,
// and asks the sender for a keyframe on every PLI it gets.
type swapper struct {
	out      *TransformOut
	feedback chan []byte
}

func (s *swapper) RTP(pkt []byte) {
	b := bytes.Clone(pkt)
	b[1] = b[1]&0x80 | 97
	p := b[12:]
	for i, j := 0, len(p)-1; i < j; i, j = i+1, j-1 {
		p[i], p[j] = p[j], p[i]
	}
	s.out.RTP(b)
}

func (s *swapper) Feedback(pkt []byte) {
	s.feedback <- bytes.Clone(pkt)
	s.out.Upstream(pkt)
}

func TestTransformTakesOneDirection(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	off, ans := audio(caller.addr), audio(callee.addr)
	off.RTCPMux, ans.RTCPMux = true, true
	cp := dial(t, e, nil, caller, callee, off, ans, PeerInfo{Addr: caller.addr}, PeerInfo{Addr: callee.addr})
	sw := &swapper{feedback: make(chan []byte, 4)}
	if err := cp.c.SetTransform(core.RoleCaller, 0, func(o *TransformOut) Transform { sw.out = o; return sw }); err != nil {
		t.Fatal(err)
	}
	if err := cp.c.SetTransform(core.RoleCaller, 3, func(*TransformOut) Transform { return sw }); err == nil {
		t.Fatal("a transform on a stream that does not exist was set")
	}
	// The caller's direction goes through the transform...
	caller.send(rtpPkt(t, 0, 0x1111, 1, 160, []byte{1, 2, 3, 4}), cp.toCallee)
	b, from := callee.mustRecv()
	if from != cp.toCaller || b[1]&0x7f != 97 || !bytes.Equal(b[12:], []byte{4, 3, 2, 1}) {
		t.Fatalf("callee got %x from %s, want the transformed packet from the relay", b, from)
	}
	// ...the callee's does not.
	callee.send(rtpPkt(t, 0, 0x2222, 1, 160, []byte{1, 2, 3, 4}), cp.toCaller)
	if b, _ := caller.mustRecv(); b[1]&0x7f != 0 || !bytes.Equal(b[12:], []byte{1, 2, 3, 4}) {
		t.Fatalf("caller got %x, want the callee's packet unchanged", b)
	}
	// The callee's PLI reaches the transform as feedback, and the relay
	// forwards it too; the transform's own PLI goes to the caller.
	pli, err := (&rtcp.PictureLossIndication{SenderSSRC: 0x2222, MediaSSRC: 0x1111}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	callee.send(pli, cp.toCaller)
	select {
	case fb := <-sw.feedback:
		if !bytes.Equal(fb, pli) {
			t.Fatalf("feedback %x, want %x", fb, pli)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no feedback reached the transform")
	}
	for range 2 {
		b, from := caller.mustRecv()
		if from != cp.toCallee || !bytes.Equal(b, pli) {
			t.Fatalf("caller got %x from %s, want the PLI from the relay", b, from)
		}
	}
	// Cleared, the direction is relayed again.
	cp.c.ClearTransform(core.RoleCaller, 0)
	caller.send(rtpPkt(t, 0, 0x1111, 2, 320, []byte{1, 2, 3, 4}), cp.toCallee)
	if b, _ := callee.mustRecv(); b[1]&0x7f != 0 || !bytes.Equal(b[12:], []byte{1, 2, 3, 4}) {
		t.Fatalf("callee got %x after the transform was cleared", b)
	}
}

// What a transform sends that is not RTP is dropped and counted.
func TestTransformOutputMalformed(t *testing.T) {
	e, _ := newEngine(t, testConfig(100))
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(caller.addr), audio(callee.addr), PeerInfo{Addr: caller.addr}, PeerInfo{Addr: callee.addr})
	var out *TransformOut
	if err := cp.c.SetTransform(core.RoleCallee, 0, func(o *TransformOut) Transform {
		out = o
		return &swapper{out: o, feedback: make(chan []byte, 1)}
	}); err != nil {
		t.Fatal(err)
	}
	out.RTP([]byte{1, 2}) // too short to be RTP: dropped, counted
	deadline := time.Now().Add(time.Second)
	for {
		var got uint64
		for _, s := range cp.c.Stats() {
			if s.From == core.RoleCallee {
				got = s.Dropped[RuleMalformed+"/transform"]
			}
		}
		if got == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("malformed transform output not counted: %+v", cp.c.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A transform (a plugin) that floods is bounded like a leg: packets over
// max_packets_per_second are dropped, and so is RTCP to the sender over
// maxUpstreamRTCP a second.
func TestTransformFloodBounded(t *testing.T) {
	cfg := testConfig(100)
	cfg.MaxPacketsPerSecond = 100
	e, _ := newEngine(t, cfg)
	caller, callee := newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	cp := dial(t, e, nil, caller, callee, audio(caller.addr), audio(callee.addr), PeerInfo{Addr: caller.addr}, PeerInfo{Addr: callee.addr})
	var out *TransformOut
	if err := cp.c.SetTransform(core.RoleCaller, 0, func(o *TransformOut) Transform {
		out = o
		return &swapper{out: o, feedback: make(chan []byte, 1)}
	}); err != nil {
		t.Fatal(err)
	}
	pli, _ := (&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 2}).Marshal()
	for i := range 1000 {
		out.RTP(rtpPkt(t, 0, 7, uint16(i), uint32(i*160), make([]byte, 160)))
		out.Upstream(pli)
	}
	var dropped uint64
	for _, s := range cp.c.Stats() {
		if s.From == core.RoleCaller {
			dropped = s.Dropped[RuleRate+"/transform"]
		}
	}
	// 100/s with a 200 ms burst lets some 21 RTP packets and some 11 PLIs
	// through at once.
	if dropped < 1900 || dropped > 1990 {
		t.Fatalf("%d of 2000 flooded packets dropped", dropped)
	}
}

// benchTransform is a transform as cheap as a handoff can be: it copies
// the packet into a ring (a transcoder's queue), or, with out set, sends
// it on at once through its TransformOut.
type benchTransform struct {
	ring [64][1500]byte
	n    int
	out  *TransformOut
}

func (t *benchTransform) RTP(pkt []byte) {
	if t.out != nil {
		t.out.RTP(pkt)
		return
	}
	copy(t.ring[t.n%len(t.ring)][:], pkt)
	t.n++
}

func (t *benchTransform) Feedback([]byte) {}

// BenchmarkRelayPathTransform: one plain RTP packet through the relay's
// path of a transformed direction ("handoff": to the transform only;
// "out": to the transform, which sends it on through TransformOut.RTP),
// beside the plain relay ("off").
func BenchmarkRelayPathTransform(b *testing.B) {
	for _, mode := range []string{"off", "handoff", "out"} {
		b.Run(mode, func(b *testing.B) {
			cfg := testConfig(20)
			cfg.MaxPacketsPerSecond, cfg.MaxBitrate = 1e9, 1e12
			e, _ := newEngine(b, cfg)
			sink := newPhone(b, "127.0.0.1")
			c := e.NewCall(core.NewSessionID(), nil, nil)
			defer c.Close()
			src := netip.MustParseAddrPort("127.0.0.1:4000")
			if _, err := c.Offer(core.RoleCaller, desc(audio(src)), PeerInfo{}); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Answer(core.RoleCallee, desc(audio(sink.addr)), PeerInfo{}); err != nil {
				b.Fatal(err)
			}
			bt := &benchTransform{}
			if mode != "off" {
				if err := c.SetTransform(core.RoleCaller, 0, func(o *TransformOut) Transform {
					if mode == "out" {
						bt.out = o
					}
					return bt
				}); err != nil {
					b.Fatal(err)
				}
			}
			st := c.streams[0]
			r := &reader{c: c, st: st, d: st.dirs[0], peer: st.dirs[1], out: st.sides[1], buf: make([]byte, bufSize)}
			r.reload(st.dirs[0].cfg.Load())
			const chunk = 4096
			pkts := make([][]byte, chunk)
			fill := func(from int) {
				for i := range pkts {
					seq := from + i
					pkts[i] = rtpPkt(b, 0, 0xBE7C, uint16(seq), uint32(seq*160), make([]byte, 160))
				}
			}
			fill(0)
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
			if s := st.dirs[0].stats(st, "caller"); s.Packets != uint64(b.N) || len(s.Dropped) != 0 {
				b.Fatalf("relayed %d of %d: %v", s.Packets, b.N, s.Dropped)
			}
			if mode == "handoff" && bt.n != b.N {
				b.Fatalf("transform got %d of %d", bt.n, b.N)
			}
		})
	}
}
