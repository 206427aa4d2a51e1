package rtpguard

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/ucgate/ucgate/core"
)

// FuzzCheck feeds arbitrary packets to a guard that has followed ten
// packets of a G.711 stream (SSRC 7, sequence 1000-1009, timestamps from
// 80000 by 160, every 20 ms). It checks that Check never panics, that
// the verdict is either the zero Allow or one of the stage's drops, that
// what is not version 2 RTP (or RTCP) of a negotiated payload type is
// never allowed, and that a dropped packet never disturbs the stream: the
// stream's next packet still passes. With derive, the header fields are
// parsed from the bytes as the relay does, so that the fuzzer reaches the
// SSRC, sequence and timestamp checks.
func FuzzCheck(f *testing.F) {
	next := audio(7, 10, 1)[0].packet().Data
	forged := pkt{pt: 0, seq: 1010, ts: 81600, ssrc: 8, at: 200}.packet().Data
	far := pkt{pt: 0, seq: 31010, ts: 81600, ssrc: 7, at: 200}.packet().Data
	ext := append([]byte{0x90, 0x00, 0x03, 0xf2, 0, 1, 0x3d, 0x80, 0, 0, 0, 7, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0}, make([]byte, 160)...)
	csrc := append([]byte{0x82, 0x80, 0x03, 0xf2, 0, 1, 0x3d, 0x80, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2}, make([]byte, 20)...)
	padded := append(append([]byte{0xa0, 0x00, 0x03, 0xf2, 0, 1, 0x3d, 0x80, 0, 0, 0, 7}, make([]byte, 20)...), 0, 0, 0, 4)
	stun := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	dtls := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 1}
	for _, d := range [][]byte{next, forged, far, ext, csrc, padded} {
		f.Add(d, false, true, true, uint8(0), false, uint8(0), uint16(0), uint32(0), uint32(0), 0, int64(200e6), false)
	}
	f.Add(next, false, true, false, uint8(2), false, uint8(0), uint16(1010), uint32(81600), uint32(7), 12, int64(200e6), false)
	f.Add(next, false, true, false, uint8(2), false, uint8(0), uint16(1010), uint32(81600), uint32(7), 13, int64(-1), false)
	f.Add(sr, true, false, false, uint8(0), false, uint8(0), uint16(0), uint32(0), uint32(0), 0, int64(200e6), false)
	f.Add(stun, false, true, true, uint8(0), false, uint8(0), uint16(0), uint32(0), uint32(0), 0, int64(200e6), true)
	f.Add(dtls, true, false, false, uint8(0), false, uint8(0), uint16(0), uint32(0), uint32(0), 0, int64(1<<62), true)
	f.Add([]byte{}, false, true, false, uint8(2), true, uint8(127), uint16(65535), uint32(1<<32-1), uint32(1<<32-1), -1, int64(-1<<63), true)

	f.Fuzz(func(t *testing.T, data []byte, rtcp, parsed, derive bool, version uint8, marker bool, pt uint8,
		seq uint16, ts, ssrc uint32, headerLen int, now int64, lenient bool) {
		cfg := ""
		if lenient {
			cfg = "payload_types: lenient"
		}
		s := testStage(t, cfg, core.Deps{})
		g := s.Guard(audioInfo("internet", pcmu, dtmf))
		for _, p := range audio(7, 0, 10) {
			if v := g.Check(p.packet()); v.Action != core.Allow {
				t.Fatalf("warm-up: %s", verdictString(v))
			}
		}
		m := &core.MediaPacket{Data: slices.Clone(data), RTCP: rtcp, Now: now, Parsed: parsed, Version: version,
			Marker: marker, PT: pt, Seq: seq, Timestamp: ts, SSRC: ssrc, HeaderLen: headerLen}
		if derive {
			reparse(m)
			m.HeaderLen = relayHeaderLen(data)
		}
		v := g.Check(m)
		if v != (core.Verdict{}) && !slices.Contains(verdicts[:], v) {
			t.Fatalf("verdict %+v is neither allow nor one of the drops", v)
		}
		if v.Action == core.Allow {
			switch {
			case rtcp && (len(data) < 8 || data[0]>>6 != 2 || data[1] < 192 || data[1] > 223):
				t.Fatalf("non-RTCP %x allowed", data)
			case !rtcp && (len(data) < 12 || data[0]>>6 != 2 || !m.Parsed):
				t.Fatalf("non-RTP %x allowed", data)
			case !rtcp && data[1]&0x7f != 0 && data[1]&0x7f != 101 && !(lenient && data[1]&0x7f >= 96):
				t.Fatalf("payload type %d allowed", data[1]&0x7f)
			}
			return
		}
		if v := g.Check(audio(7, 10, 1)[0].packet()); v.Action != core.Allow {
			t.Fatalf("the stream's next packet after a dropped one: %s", verdictString(v))
		}
	})
}

// relayHeaderLen is the header length as the relay computes it, or -1.
func relayHeaderLen(b []byte) int {
	if len(b) < 12 {
		return -1
	}
	n := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 && len(b) >= n+4 {
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:]))
	}
	return n
}
