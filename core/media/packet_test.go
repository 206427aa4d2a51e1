package media

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/ucgate/ucgate/core"
)

func FuzzRTPHeader(f *testing.F) {
	seed := func(p *rtp.Packet) {
		b, err := p.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, Timestamp: 160, SSRC: 1}, Payload: make([]byte, 160)})
	seed(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, PayloadType: 96, CSRC: []uint32{1, 2}, SSRC: 9}, Payload: []byte{1}})
	ext := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 3}, Payload: []byte{1, 2, 3}}
	ext.SetExtension(1, []byte{0xAA})
	seed(ext)
	f.Add([]byte{0xA0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 2}) // padding
	f.Add([]byte{0x80, 0xC8, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p core.MediaPacket
		ok := parseRTP(b, &p, true)
		var h rtp.Header
		n, err := h.Unmarshal(b)
		if !ok {
			return
		}
		// What the relay accepts, pion reads the same way.
		if err != nil {
			t.Fatalf("relay accepted what pion refuses: %v", err)
		}
		if n != p.HeaderLen || h.PayloadType != p.PT || h.SequenceNumber != p.Seq || h.Timestamp != p.Timestamp ||
			h.SSRC != p.SSRC || h.Marker != p.Marker || h.Version != 2 {
			t.Fatalf("header %+v, relay read %+v", h, p)
		}
		if p.HeaderLen > len(b) {
			t.Fatal("header longer than the packet")
		}
		// parse(serialize(x)) == x on the fixed header.
		var q rtp.Packet
		if err := q.Unmarshal(b); err == nil {
			out, err := q.Marshal()
			if err == nil {
				var p2 core.MediaPacket
				if parseRTP(out, &p2, true) && (p2.PT != p.PT || p2.Seq != p.Seq || p2.SSRC != p.SSRC || p2.Timestamp != p.Timestamp) {
					t.Fatalf("round trip changed the header: %+v %+v", p, p2)
				}
			}
		}
	})
}

func FuzzRTCP(f *testing.F) {
	for _, ps := range [][]rtcp.Packet{
		{&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2, TotalLost: 3, Jitter: 4}}}},
		{&rtcp.SenderReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2, TotalLost: 0xFFFFFF}}}, &rtcp.Goodbye{Sources: []uint32{1}}},
		{&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 2}},
	} {
		b, err := rtcp.Marshal(ps)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint32(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, ssrc uint32) {
		if !checkRTCP(b, false) {
			return
		}
		if !checkRTCP(b, true) {
			t.Fatal("whole packet sane, first header not")
		}
		r, ok := findReport(b, ssrc)
		// Cross-check with pion where it reads the packet too.
		ps, err := rtcp.Unmarshal(b)
		if err != nil {
			return
		}
		var want []rtcp.ReceptionReport
		for _, p := range ps {
			switch p := p.(type) {
			case *rtcp.ReceiverReport:
				want = append(want, p.Reports...)
			case *rtcp.SenderReport:
				want = append(want, p.Reports...)
			}
		}
		if ok != (len(want) > 0) {
			t.Fatalf("found %v, pion has %d reports", ok, len(want))
		}
		if !ok {
			return
		}
		match := want[0]
		for _, w := range want {
			if w.SSRC == ssrc {
				match = w
				break
			}
		}
		if r.ssrc != match.SSRC || r.jitter != match.Jitter || uint32(r.lost)&0xFFFFFF != match.TotalLost {
			t.Fatalf("report %+v, pion %+v", r, match)
		}
	})
}

func TestRxStatsJitter(t *testing.T) {
	var s rxStats
	// 20 ms packets arriving every 20 ms with +-5 ms alternating delay:
	// jitter converges towards 10 ms of transit difference.
	now := int64(0)
	for i := range 500 {
		d := int64(0)
		if i%2 == 1 {
			d = 10e6
		}
		s.update(1, uint16(i), uint32(160*i), 8000, now+d)
		now += 20e6
	}
	if j := s.jitterMs(); j < 9 || j > 11 {
		t.Fatalf("jitter %.2f ms, want about 10", j)
	}
	if s.lost() != 0 {
		t.Fatalf("lost %d", s.lost())
	}
}

func TestCheckRTCPBounded(t *testing.T) {
	// 100 empty RR parts: more than a compound packet may hold.
	var b []byte
	for range 100 {
		part := make([]byte, 8)
		part[0], part[1] = 0x80, 201
		binary.BigEndian.PutUint16(part[2:], 1)
		b = append(b, part...)
	}
	if checkRTCP(b, false) {
		t.Fatal("unbounded compound packet accepted")
	}
	if !checkRTCP(b[:64], false) || !bytes.Equal(b[:8], []byte{0x80, 201, 0, 1, 0, 0, 0, 0}) {
		t.Fatal("small compound packet refused")
	}
}
