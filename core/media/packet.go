package media

import (
	"encoding/binary"
	"math"

	"github.com/ucgate/ucgate/core"
)

// RTP and RTCP header handling on the relay's own buffers: nothing here
// allocates.

const (
	rtpHeaderLen  = 12
	rtcpHeaderLen = 8
	// maxPacket is the largest datagram the relay reads; a longer one is
	// malformed. It leaves room in the buffer for the SRTP trailer the
	// relay may add (auth tag, MKI, ROC: at most 32 bytes).
	maxPacket = 2048 - 64
	bufSize   = 2048
)

// isRTCP reports whether b, a version 2 packet, is RTCP rather than RTP
// when both share one port (RFC 5761: RTCP packet types 192-223 occupy
// what would be RTP payload types 64-95 with the marker bit set).
func isRTCP(b []byte) bool {
	return len(b) >= 2 && b[1] >= 192 && b[1] <= 223
}

// isForeign reports a packet that is neither RTP nor RTCP on a port that
// may also carry STUN (first byte 0-3) or DTLS (20-63), as RFC 7983
// demultiplexes them.
func isForeign(b []byte) bool {
	return len(b) > 0 && (b[0] <= 3 || (b[0] >= 20 && b[0] <= 63))
}

// parseRTP checks b's RTP header and fills p's header fields. With
// padding it also checks the padding count (only possible on plaintext:
// SRTP encrypts it). It reports false for a packet that is not sane RTP.
func parseRTP(b []byte, p *core.MediaPacket, padding bool) bool {
	p.Parsed = false
	if len(b) < rtpHeaderLen || b[0]>>6 != 2 {
		return false
	}
	n := rtpHeaderLen + 4*int(b[0]&0x0f)
	if len(b) < n {
		return false
	}
	if b[0]&0x10 != 0 {
		if len(b) < n+4 {
			return false
		}
		profile := binary.BigEndian.Uint16(b[n:])
		start := n + 4
		n = start + 4*int(binary.BigEndian.Uint16(b[n+2:]))
		if len(b) < n || !checkExtensions(b[start:n], profile) {
			return false
		}
	}
	if padding && b[0]&0x20 != 0 {
		pad := int(b[len(b)-1])
		if pad == 0 || n+pad > len(b) {
			return false
		}
	}
	p.Version = 2
	p.Marker = b[1]&0x80 != 0
	p.PT = b[1] & 0x7f
	p.Seq = binary.BigEndian.Uint16(b[2:])
	p.Timestamp = binary.BigEndian.Uint32(b[4:])
	p.SSRC = binary.BigEndian.Uint32(b[8:])
	p.HeaderLen = n
	p.Parsed = true
	return true
}

// checkExtensions checks the elements of RFC 8285 header extensions
// (one-byte profile 0xBEDE, two-byte 0x1000) fit their block.
func checkExtensions(x []byte, profile uint16) bool {
	switch profile {
	case 0xBEDE:
		for i := 0; i < len(x); {
			if x[i] == 0 { // padding
				i++
				continue
			}
			id, n := x[i]>>4, int(x[i]&0x0f)+1
			if id == 15 || id == 0 {
				return true // reserved, or padding with a length: pion stops there
			}
			i++
			if i+n > len(x) {
				return false
			}
			i += n
		}
	case 0x1000:
		for i := 0; i < len(x); {
			if x[i] == 0 {
				i++
				continue
			}
			if i+1 >= len(x) {
				return false
			}
			n := int(x[i+1])
			i += 2
			if i+n > len(x) {
				return false
			}
			i += n
		}
	}
	return true
}

// maxRTCPParts bounds the packets of one compound RTCP packet walked.
const maxRTCPParts = 64

// checkRTCP reports whether b is a sane (compound) RTCP packet: every
// part version 2, a packet type in 192-223 and a length that fits, the
// parts covering b exactly. Only the first header can be checked on
// SRTCP ciphertext: first says to stop there.
func checkRTCP(b []byte, first bool) bool {
	if len(b) < rtcpHeaderLen {
		return false
	}
	for i := 0; len(b) > 0; i++ {
		if i == maxRTCPParts || len(b) < 4 || b[0]>>6 != 2 || b[1] < 192 || b[1] > 223 {
			return false
		}
		n := 4 * (int(binary.BigEndian.Uint16(b[2:])) + 1)
		if n > len(b) {
			return false
		}
		if first {
			return true
		}
		b = b[n:]
	}
	return true
}

// report is what one receiver report block says about a stream.
type report struct {
	ssrc   uint32
	lost   int32  // cumulative, may be negative (duplicates)
	jitter uint32 // timestamp units
}

// findReport returns the report block about ssrc in the compound RTCP
// packet b (a sane one: see checkRTCP), or the first block when none is
// about ssrc. ok is false when b has no report block.
func findReport(b []byte, ssrc uint32) (r report, ok bool) {
	for i := 0; len(b) >= 4 && i < maxRTCPParts; i++ {
		n := 4 * (int(binary.BigEndian.Uint16(b[2:])) + 1)
		if n > len(b) {
			return r, ok
		}
		part := b[:n]
		b = b[n:]
		off := 0
		switch part[1] {
		case 200: // SR: header, sender SSRC, 20 bytes of sender info
			off = 28
		case 201: // RR: header, sender SSRC
			off = 8
		default:
			continue
		}
		count := int(part[0] & 0x1f)
		for j := 0; j < count && off+24 <= len(part); j++ {
			blk := part[off : off+24]
			off += 24
			cand := report{
				ssrc:   binary.BigEndian.Uint32(blk),
				lost:   int32(binary.BigEndian.Uint32(blk[4:])<<8) >> 8,
				jitter: binary.BigEndian.Uint32(blk[12:]),
			}
			if !ok || cand.ssrc == ssrc {
				r = cand
				ok = true
			}
			if cand.ssrc == ssrc {
				return r, true
			}
		}
	}
	return r, ok
}

// rxStats follows one RTP source's sequence numbers and arrival times:
// packets lost (RFC 3550 A.3) and interarrival jitter (A.8). The reader
// goroutine owns it.
type rxStats struct {
	init     bool
	ssrc     uint32
	base     uint32 // extended first sequence number
	max      uint16
	cycles   uint32
	received uint64
	lostPrev uint64 // lost by earlier sources of the direction

	lastArrival int64 // ns
	lastTS      uint32
	jitter      float64 // timestamp units
	rate        uint32  // clock rate the jitter is in
}

const (
	maxDropout   = 3000
	maxMisorder  = 100
	maxJitterGap = int64(10e9) // arrival gaps longer than this are a pause, not jitter
)

// update takes the packet's header and arrival time (ns).
func (s *rxStats) update(ssrc uint32, seq uint16, ts uint32, rate uint32, now int64) {
	if !s.init || ssrc != s.ssrc {
		s.lostPrev = s.lost()
		*s = rxStats{init: true, ssrc: ssrc, base: uint32(seq), max: seq, received: 1, lostPrev: s.lostPrev,
			lastArrival: now, lastTS: ts, jitter: s.jitter, rate: rate}
		return
	}
	delta := seq - s.max
	switch {
	case delta == 0: // duplicate
	case delta < maxDropout:
		if seq < s.max {
			s.cycles += 1 << 16
		}
		s.max = seq
	case delta <= 1<<16-maxMisorder:
		// A jump: the source restarted its sequence. Count what was lost
		// so far and follow the new numbering.
		lost := s.lost()
		s.base, s.max, s.cycles, s.received, s.lostPrev = uint32(seq), seq, 0, 0, lost
	default: // reordered
	}
	s.received++
	if rate != 0 {
		if rate != s.rate {
			s.jitter, s.rate = 0, rate
		} else if dt := now - s.lastArrival; dt >= 0 && dt < maxJitterGap {
			d := float64(dt)*float64(rate)/1e9 - float64(int32(ts-s.lastTS))
			s.jitter += (math.Abs(d) - s.jitter) / 16
		}
	}
	s.lastArrival, s.lastTS = now, ts
}

// lost is the number of packets expected and not received, over every
// source the direction has had.
func (s *rxStats) lost() uint64 {
	if !s.init {
		return s.lostPrev
	}
	expected := uint64(s.cycles) + uint64(s.max) - uint64(s.base) + 1
	if expected > s.received {
		return s.lostPrev + expected - s.received
	}
	return s.lostPrev
}

// jitterMs is the jitter in milliseconds.
func (s *rxStats) jitterMs() float64 {
	if s.rate == 0 {
		return 0
	}
	return s.jitter * 1000 / float64(s.rate)
}

// bucket is a rate limit as a GCRA (virtual scheduling): tat is the
// theoretical arrival time of the next unit. The reader goroutine owns it.
type bucket struct {
	interval float64 // ns per unit; 0: no limit
	tau      float64 // burst tolerance in ns
	tat      float64
}

// burstTolerance is how far ahead of its rate a stream may run.
const burstTolerance = 200e6 // 200 ms

// newBucket limits to perSecond units; a burst always holds at least
// minBurst units (one largest packet of a byte limit).
func newBucket(perSecond, minBurst int) bucket {
	if perSecond <= 0 {
		return bucket{}
	}
	interval := 1e9 / float64(perSecond)
	return bucket{interval: interval, tau: max(burstTolerance, interval*float64(minBurst))}
}

// allow reports whether n units may pass at now (ns) and takes them.
func (b *bucket) allow(now int64, n int) bool {
	if b.interval == 0 {
		return true
	}
	t := float64(now)
	if b.tat < t {
		b.tat = t
	}
	cost := b.interval * float64(n)
	if b.tat+cost-t > b.tau+b.interval {
		return false
	}
	b.tat += cost
	return true
}
