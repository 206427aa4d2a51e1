package transcode

import (
	"testing"

	"github.com/pion/rtp"
)

// pkt builds one RTP packet of SSRC 7, payload type 96.
func pkt(seq uint16, ts uint32, marker bool, payload ...byte) []byte {
	b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 7, Marker: marker},
		Payload: payload}).Marshal()
	return b
}

// vp8Key is the start of a VP8 keyframe of 32x32 after a descriptor with
// S=1, PID=0 (not decodable: the assembler does not decode).
var vp8Key = []byte{0x10, 0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, 32, 0, 32, 0, 1, 2, 3}

// TestAssemblerFailsClosed: what the assembler hands out and refuses, packet
// by packet, for each codec's packetization rules.
func TestAssemblerFailsClosed(t *testing.T) {
	idr := []byte{0x65, 0x88, 0x84}
	for _, tc := range []struct {
		name    string
		codec   Codec
		pkts    [][]byte
		frames  int
		key     bool
		garbage bool
	}{
		{"vp8 keyframe in one packet", VP8, [][]byte{pkt(1, 0, true, vp8Key...)}, 1, true, false},
		{"vp8 keyframe in two packets", VP8, [][]byte{pkt(1, 0, false, vp8Key...), pkt(2, 0, true, 0x00, 9, 9)}, 1, true, false},
		{"vp8 second frame start inside a frame", VP8, [][]byte{pkt(1, 0, false, vp8Key...), pkt(2, 0, true, vp8Key...)}, 0, false, true},
		{"vp8 delta frame first: held for a keyframe", VP8, [][]byte{pkt(1, 0, true, 0x10, 0x01, 0x02, 0x03)}, 0, false, false},
		{"vp8 empty payload after descriptor", VP8, [][]byte{pkt(1, 0, true, vp8Key...), pkt(2, 3000, true, 0x90, 0x80)}, 1, true, true},
		{"h264 single IDR", H264, [][]byte{pkt(1, 0, true, idr...)}, 1, true, false},
		{"h264 STAP-A SPS PPS then FU-A IDR", H264, [][]byte{
			pkt(1, 0, false, 0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce),
			pkt(2, 0, false, 0x7c, 0x85, 1, 2),
			pkt(3, 0, true, 0x7c, 0x45, 3, 4)}, 1, true, false},
		{"h264 FU-A without its start", H264, [][]byte{pkt(1, 0, false, idr...), pkt(2, 0, true, 0x7c, 0x45, 3, 4)}, 0, false, true},
		{"h264 FU-A start and end in one", H264, [][]byte{pkt(1, 0, true, 0x7c, 0xc5, 3, 4)}, 0, false, true},
		{"h264 FU-A start without end at the marker", H264, [][]byte{pkt(1, 0, true, 0x7c, 0x85, 3, 4)}, 0, false, true},
		{"h264 FU-A changing type", H264, [][]byte{pkt(1, 0, false, 0x7c, 0x85, 1), pkt(2, 0, true, 0x7c, 0x41, 2)}, 0, false, true},
		{"h264 STAP-A size beyond the packet", H264, [][]byte{pkt(1, 0, true, 0x78, 0, 9, 0x65, 1)}, 0, false, true},
		{"h264 FU-B (mode 2)", H264, [][]byte{pkt(1, 0, true, idr...), pkt(2, 3000, true, 0x7d, 0x85, 0, 1, 2)}, 1, true, true},
		{"h264 forbidden bit", H264, [][]byte{pkt(1, 0, true, 0xe5, 1, 2)}, 0, false, true},
		{"wrong payload type and SSRC ignored", H264, [][]byte{
			pkt(1, 0, true, idr...),
			func() []byte { b := pkt(2, 3000, true, idr...); b[1] = 0x80 | 97; return b }(),
			func() []byte { b := pkt(3, 3000, true, idr...); b[11] = 8; return b }()}, 1, true, false},
		{"not RTP", VP8, [][]byte{{0x00, 1, 2}, {0x80}}, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAssembler(AssemblerConfig{Codec: tc.codec, PayloadType: 96})
			if err != nil {
				t.Fatal(err)
			}
			var got []Frame
			var ev Event
			for _, p := range tc.pkts {
				ev |= a.Push(p, func(f Frame) { got = append(got, Frame{Data: append([]byte(nil), f.Data...), Key: f.Key}) })
			}
			if len(got) != tc.frames {
				t.Fatalf("%d frames, want %d (stats %+v)", len(got), tc.frames, a.Stats)
			}
			if tc.frames > 0 && got[0].Key != tc.key {
				t.Errorf("key %v, want %v", got[0].Key, tc.key)
			}
			if (ev&EventGarbage != 0) != tc.garbage || (a.Stats.Garbage != 0) != tc.garbage {
				t.Errorf("garbage event %v, count %d, want %v", ev&EventGarbage != 0, a.Stats.Garbage, tc.garbage)
			}
		})
	}
}

// TestAssemblerWindow: a missing packet is waited for within the window
// (reordering), declared lost beyond it in packets or in time, and after
// the loss nothing comes out until a keyframe.
func TestAssemblerWindow(t *testing.T) {
	idr, p := []byte{0x65, 1, 2}, []byte{0x41, 1, 2}
	fu := func(start, end bool) []byte {
		h := byte(0x01)
		if start {
			h |= 0x80
		}
		if end {
			h |= 0x40
		}
		return []byte{0x7c, h, 9}
	}
	a, _ := NewAssembler(AssemblerConfig{Codec: H264, PayloadType: 96, WindowPackets: 4, WindowTicks: 9000})
	n := 0
	push := func(b []byte) Event { return a.Push(b, func(Frame) { n++ }) }
	push(pkt(10, 0, true, idr...))
	// Frame 2 in three packets, the middle one late but within the window.
	push(pkt(11, 3000, false, fu(true, false)...))
	push(pkt(13, 3000, true, fu(false, true)...))
	push(pkt(14, 6000, true, p...))
	if n != 1 {
		t.Fatalf("%d frames before the late packet", n)
	}
	push(pkt(12, 3000, false, fu(false, false)...))
	if n != 3 {
		t.Fatalf("%d frames after the late packet, want 3", n)
	}
	// Packet 15 never comes: 16..19 arrive, the fourth one beyond it declares it lost.
	ev := push(pkt(16, 9000, true, p...))
	ev |= push(pkt(17, 9100, true, p...))
	ev |= push(pkt(18, 9200, true, p...))
	if ev&EventLoss != 0 || n != 3 {
		t.Fatalf("loss declared inside the window (event %v, %d frames)", ev, n)
	}
	ev = push(pkt(19, 9300, true, p...))
	if ev&EventLoss == 0 || a.Stats.Lost != 1 {
		t.Fatalf("no loss beyond the window: event %v, stats %+v", ev, a.Stats)
	}
	if n != 3 || ev&EventNeedKey == 0 {
		t.Fatalf("delta frames after a loss handed out (%d) or no keyframe asked (event %v)", n, ev)
	}
	push(pkt(20, 9400, true, idr...))
	if n != 4 {
		t.Fatalf("keyframe after the loss not handed out: %d frames", n)
	}
	// In time: packet 21 missing, 22 arrives 200 ms of timestamps later.
	push(pkt(22, 9400+18000, true, idr...))
	if a.Stats.Lost != 2 {
		t.Fatalf("a packet missing for 200 ms not declared lost: %+v", a.Stats)
	}
	// Late (already given up) and far-ahead packets.
	push(pkt(21, 9450, true, p...))
	if a.Stats.Late != 1 {
		t.Errorf("late packet not counted: %+v", a.Stats)
	}
	if ev := push(pkt(5000, 90000, true, idr...)); ev&EventLoss == 0 {
		t.Errorf("a jump of 5000 sequence numbers is no loss")
	}
}
