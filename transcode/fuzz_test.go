package transcode

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// fuzzPackets turns fuzz input into RTP datagrams, so that the fuzzer
// reaches the assembler's window and frame logic rather than stopping at
// the RTP header. Each record is
//
//	ctrl(1) seqDelta(1, signed) len(1) payload(len)
//
// ctrl bit 0: marker; bit 1: next timestamp (+3000); bit 2: wrong payload
// type; bit 3: the record is a raw datagram, not an RTP payload; bit 4: a
// foreign SSRC.
func fuzzPackets(data []byte) [][]byte {
	var out [][]byte
	seq, ts := uint16(65000), uint32(1)
	for len(data) >= 3 && len(out) < 2048 {
		ctrl, d, n := data[0], int8(data[1]), int(data[2])
		data = data[3:]
		n = min(n, len(data))
		body := data[:n]
		data = data[n:]
		if ctrl&8 != 0 {
			out = append(out, append([]byte(nil), body...))
			continue
		}
		seq += uint16(d)
		if ctrl&2 != 0 {
			ts += 3000
		}
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 7, Marker: ctrl&1 != 0}
		if ctrl&4 != 0 {
			h.PayloadType = 97
		}
		if ctrl&16 != 0 {
			h.SSRC = 8
		}
		b, _ := h.Marshal()
		out = append(out, append(b, body...))
	}
	return out
}

// record encodes packets' payloads as fuzzPackets reads them (in order,
// one frame per marker).
func record(payloads [][]byte, markers []bool, newTS []bool) []byte {
	var b []byte
	for i, p := range payloads {
		var ctrl byte
		if markers[i] {
			ctrl |= 1
		}
		if newTS[i] {
			ctrl |= 2
		}
		for len(p) > 255 {
			p = p[:255] // the record format bounds a payload
		}
		b = append(b, ctrl, 1, byte(len(p)))
		b = append(b, p...)
	}
	return b
}

// seedFrames encodes a few small frames with the real encoders, so that the
// seeds are what a browser or phone would send.
func seedFrames(tb testing.TB, c Codec) [][]byte {
	w, h := 32, 32
	img := Image{Y: make([]byte, w*h), U: make([]byte, w*h/4), V: make([]byte, w*h/4),
		StrideY: w, StrideU: w / 2, StrideV: w / 2, Width: w, Height: h}
	var enc encoder
	var err error
	if c == VP8 {
		enc, err = newVP8Encoder(w, h, 200_000, 0)
	} else {
		enc, err = newH264Encoder(w, h, 200_000, 30, 0)
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer enc.Close()
	var frames [][]byte
	for i := range 3 {
		for k := range img.Y {
			img.Y[k] = byte(k*3 + i*17)
		}
		f, _, err := enc.Encode(&img, int64(i)*3000, 3000, false)
		if err != nil || f == nil {
			tb.Fatalf("seed frame %d: %v", i, err)
		}
		frames = append(frames, append([]byte(nil), f...))
	}
	return frames
}

// seedStream packetizes the seed frames (200-byte MTU) as records.
func seedStream(tb testing.TB, c Codec) (pls [][]byte, markers, newTS []bool) {
	vp8 := codecs.VP8Payloader{EnablePictureID: true}
	var h264 codecs.H264Payloader
	for i, fr := range seedFrames(tb, c) {
		var p [][]byte
		if c == VP8 {
			p = vp8.Payload(200, fr)
		} else {
			p = h264.Payload(200, fr)
		}
		for k, pl := range p {
			pls = append(pls, pl)
			markers = append(markers, k == len(p)-1)
			newTS = append(newTS, k == 0 && i > 0)
		}
	}
	return pls, markers, newTS
}

func fuzzSeeds(f *testing.F, c Codec) {
	pls, markers, newTS := seedStream(f, c)
	clean := record(pls, markers, newTS)
	f.Add(clean)
	// Reordered: the records of the first two packets swapped.
	if len(pls) > 2 {
		sw := append([][]byte{pls[1], pls[0]}, pls[2:]...)
		f.Add(record(sw, append([]bool{markers[1], markers[0]}, markers[2:]...), append([]bool{false, false}, newTS[2:]...)))
	}
	f.Add(clean[:len(clean)/2])
	f.Add([]byte{8, 0, 4, 0x80, 96, 0, 1})
	f.Add([]byte{1, 1, 3, 0x1c, 0x85, 0xaa, 1, 1, 3, 0x1c, 0x45, 0xbb}) // FU-A start+end in two frames
	f.Add([]byte{1, 1, 5, 0x78, 0x00, 0x09, 0x67, 0x42})                // STAP-A with a size beyond the packet
}

func fuzzAssembler(f *testing.F, c Codec) {
	fuzzSeeds(f, c)
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := NewAssembler(AssemblerConfig{Codec: c, PayloadType: 96, WindowPackets: 16, MaxFramePackets: 64})
		if err != nil {
			t.Fatal(err)
		}
		pkts := fuzzPackets(data)
		frames := 0
		for _, p := range pkts {
			a.Push(p, func(fr Frame) {
				frames++
				if len(fr.Data) == 0 || len(fr.Data) > 64*(maxPayload+4) {
					t.Fatalf("frame of %d bytes", len(fr.Data))
				}
				if c == VP8 && fr.Key != (fr.Data[0]&1 == 0) {
					t.Fatal("VP8 key flag disagrees with the frame tag")
				}
				if c == H264 && !bytes.HasPrefix(fr.Data, []byte{0, 0, 0, 1}) {
					t.Fatal("H.264 frame not in Annex B")
				}
			})
		}
		s := a.Stats
		if uint64(frames) != s.Frames || s.Frames > s.Packets || s.Packets != uint64(len(pkts)) {
			t.Fatalf("stats %+v, %d frames, %d packets", s, frames, len(pkts))
		}
	})
}

// FuzzAssemblerVP8 feeds hostile RTP to the VP8 assembler (and pion's
// VP8Packet in it): no panic, bounded frames, key flag from the frame tag.
func FuzzAssemblerVP8(f *testing.F) { fuzzAssembler(f, VP8) }

// FuzzAssemblerH264 feeds hostile RTP to the H.264 assembler (and pion's
// H264Packet in it): no panic, bounded frames in Annex B.
func FuzzAssemblerH264(f *testing.F) { fuzzAssembler(f, H264) }

func fuzzTranscoder(f *testing.F, from, to Codec) {
	fuzzSeeds(f, from)
	f.Fuzz(func(t *testing.T, data []byte) {
		var out int
		tr, err := New(Config{MaxInputWidth: 256, MaxInputHeight: 256, JitterPackets: 16, MaxFramePackets: 64, MTU: 300},
			Stream{From: from, To: to, InPayloadType: 96, OutPayloadType: 100, OutSSRC: 1},
			func(p []byte) {
				out++
				if len(p) > 300 || len(p) < 13 || binary.BigEndian.Uint32(p[8:]) != 1 {
					t.Fatalf("output packet of %d bytes", len(p))
				}
			}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		for _, p := range fuzzPackets(data) {
			if err := tr.WriteRTP(p); err != nil {
				t.Fatal(err)
			}
		}
		if s := tr.Stats(); s.PacketsSent != uint64(out) {
			t.Fatalf("stats say %d packets sent, %d seen", s.PacketsSent, out)
		}
	})
}

// FuzzTranscodeVP8 runs hostile RTP through the whole VP8 to H.264 path
// (assembler, libvpx, openh264): no crash, output within the MTU.
func FuzzTranscodeVP8(f *testing.F) { fuzzTranscoder(f, VP8, H264) }

// FuzzTranscodeH264 runs hostile RTP through the whole H.264 to VP8 path.
func FuzzTranscodeH264(f *testing.F) { fuzzTranscoder(f, H264, VP8) }

// TestFuzzSeedsAssemble: the clean seed is a real stream, so the fuzzer
// starts from inputs that reach the frame and decoder logic.
func TestFuzzSeedsAssemble(t *testing.T) {
	for _, c := range []Codec{VP8, H264} {
		pls, markers, newTS := seedStream(t, c)
		a, _ := NewAssembler(AssemblerConfig{Codec: c, PayloadType: 96})
		n := 0
		for _, p := range fuzzPackets(record(pls, markers, newTS)) {
			a.Push(p, func(Frame) { n++ })
		}
		if n != 3 {
			t.Errorf("%v: clean seed gives %d frames, want 3 (stats %+v)", c, n, a.Stats)
		}
	}
}
