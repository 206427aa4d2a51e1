package rtpguard

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ucgate/ucgate/core"
)

// guard judges the packets of one direction of one stream. Check runs on
// the direction's reader goroutine and owns every field but neg (swapped
// by Renegotiate from another goroutine) and closed.
type guard struct {
	st  *Stage
	neg atomic.Pointer[negotiated]
	cur *negotiated // the negotiation Check last saw

	// tracks[0] follows the media SSRC, tracks[1] the SSRC of the
	// retransmission or FEC formats, when they were negotiated.
	tracks [2]track
	// GCRA theoretical arrival times of the rate buckets, relay clock.
	pktTAT, byteTAT int64
	alerted         uint8 // a bit per rule that raised its security event
	closed          atomic.Bool
}

// track is the progression of one source the guard is locked on, and
// the candidates for a restart.
type track struct {
	locked bool
	relock bool // the next valid packet locks afresh (after Renegotiate)
	ssrc   uint32
	seq    uint16 // highest sequence number accepted
	ts     uint32 // timestamp of that packet
	tsAt   int64  // when it arrived
	last   int64  // when the last packet was accepted
	cand   [2]candidate
}

// candidateHold is how long a candidate seen once keeps its slot against
// newcomers: longer than the packet interval of any real stream (120 ms
// at most for audio), so that a genuine source's second packet finds it.
const candidateHold = int64(250 * time.Millisecond)

// candidate is a source that does not fit the lock, followed in case it
// is a genuine restart. n == 0: the slot is free.
type candidate struct {
	n    int32 // packets of a consistent progression
	ssrc uint32
	seq  uint16
	ts   uint32
	tsAt int64
	last int64
}

// header is the RTP header fields Check judges.
type header struct {
	pt   uint8
	seq  uint16
	ts   uint32
	ssrc uint32
}

// Check implements core.StreamGuard. It does not allocate, except to
// raise the first security event of each rule in the stream direction.
func (g *guard) Check(p *core.MediaPacket) core.Verdict {
	n := g.neg.Load()
	if n != g.cur {
		g.cur = n
		g.tracks[0].relock, g.tracks[1].relock = true, true
	}
	if p.RTCP {
		if !plausibleRTCP(p.Data) {
			return g.drop(p, rRTCP, nil)
		}
		return g.charge(p, n)
	}
	h, ok := parseHeader(p)
	if !ok {
		return g.drop(p, rHeader, nil)
	}
	pt := &n.pt[h.pt]
	if !pt.ok {
		if !n.lim.lenient || h.pt < 96 {
			return g.drop(p, rPayloadType, nil)
		}
		pt = &n.other
	}
	tr := &g.tracks[0]
	if pt.repair {
		tr = &g.tracks[1]
	}
	now := p.Now
	if !tr.locked || tr.relock {
		v := g.charge(p, n)
		tr.lock(h, now)
		return v
	}
	r := rSSRC
	if h.ssrc == tr.ssrc {
		fwd, ok := seqWithin(tr.seq, h.seq, n.lim)
		switch {
		case !ok:
			r = rSequence
		case !tsWithin(tr.ts, tr.tsAt, h.ts, now, pt):
			r = rTimestamp
		default:
			if v := g.charge(p, n); v.Action != core.Allow {
				return v
			}
			if fwd {
				tr.seq, tr.ts, tr.tsAt = h.seq, h.ts, now
			}
			tr.last = now
			return core.Verdict{}
		}
	}
	// Not the locked progression: a forgery, or a source restarting.
	c, restart := tr.candidate(h, now, pt, n.lim)
	if !restart {
		return g.drop(p, r, tr)
	}
	old, silent := tr.ssrc, now-tr.last
	tr.lock(h, now)
	g.st.restarts.Inc()
	g.restarted(p, n, old, h, c, time.Duration(silent))
	return g.charge(p, n)
}

// lock makes h the source and progression of the track.
func (tr *track) lock(h header, now int64) {
	*tr = track{locked: true, ssrc: h.ssrc, seq: h.seq, ts: h.ts, tsAt: now, last: now}
}

// candidate follows h as a possible restart and reports whether it is
// one: a progression of restart_packets consistent packets while the
// track has accepted nothing for restart_after. It returns the packets
// counted.
func (tr *track) candidate(h header, now int64, pt *ptInfo, lim *limits) (int32, bool) {
	quiet := now-tr.last >= lim.restartAfter
	var slot *candidate
	for i := range tr.cand {
		c := &tr.cand[i]
		if c.n > 0 && now-c.last > lim.restartAfter {
			c.n = 0 // gone quiet itself: forget it
		}
		if c.n > 0 && c.ssrc == h.ssrc {
			slot = c
		}
	}
	if slot == nil {
		// A newcomer takes a free slot, or one whose only packet is
		// candidateHold old; otherwise it is not followed. A spray of
		// forged sources, each sending once, can thus hold a slot for
		// candidateHold at most, and never evicts a candidate that
		// progresses.
		for i := range tr.cand {
			c := &tr.cand[i]
			if c.n == 0 {
				slot = c
				break
			}
			if c.n == 1 && now-c.last >= candidateHold && (slot == nil || c.last < slot.last) {
				slot = c
			}
		}
		if slot == nil {
			return 0, false
		}
		*slot = candidate{n: 1, ssrc: h.ssrc, seq: h.seq, ts: h.ts, tsAt: now, last: now}
		return 1, quiet && lim.restartN <= 1
	}
	fwd, ok := seqWithin(slot.seq, h.seq, lim)
	switch {
	case ok && !fwd:
		// Late or duplicate: neither counts nor breaks the progression.
	case ok && tsWithin(slot.ts, slot.tsAt, h.ts, now, pt):
		slot.n++
		slot.seq, slot.ts, slot.tsAt, slot.last = h.seq, h.ts, now, now
	default:
		*slot = candidate{n: 1, ssrc: h.ssrc, seq: h.seq, ts: h.ts, tsAt: now, last: now}
	}
	return slot.n, quiet && slot.n >= lim.restartN
}

// seqWithin reports whether seq is within the window around top (the
// highest sequence number seen), modulo 2^16, and whether it moves
// forward.
func seqWithin(top, seq uint16, lim *limits) (forward, ok bool) {
	if d := seq - top; d <= lim.ahead {
		return d != 0, true
	}
	return false, top-seq <= lim.behind
}

// tsWithin reports whether ts is within max_timestamp_jump (pt.win
// ticks) of ref, the timestamp of a packet that arrived at refAt, or of
// ref advanced by the time elapsed since at the clock rate.
func tsWithin(ref uint32, refAt int64, ts uint32, now int64, pt *ptInfo) bool {
	if d := int64(int32(ts - ref)); d >= -pt.win && d <= pt.win {
		return true
	}
	el := now - refAt
	if el <= 0 {
		return false
	}
	// el < 2^63 ns and rate <= 1e7: neither product overflows.
	adv := el/int64(time.Second)*pt.rate + el%int64(time.Second)*pt.rate/int64(time.Second)
	d := int64(int32(ts - (ref + uint32(adv))))
	return d >= -pt.win && d <= pt.win
}

// charge takes the packet from the stream direction's rate buckets.
func (g *guard) charge(p *core.MediaPacket, n *negotiated) core.Verdict {
	b, now := n.rate, p.Now
	pkt := max(g.pktTAT, now) + b.pktInterval
	byt := max(g.byteTAT, now) + int64(float64(len(p.Data))*b.nsPerByte)
	if pkt-now > b.pktLimit || byt-now > b.byteLimit {
		return g.drop(p, rRate, nil)
	}
	g.pktTAT, g.byteTAT = pkt, byt
	return core.Verdict{}
}

// parseHeader checks that p.Data is an RTP version 2 packet whose CSRC
// count, extension and padding fit its length, and that the relay's
// parsed fields agree with it.
func parseHeader(p *core.MediaPacket) (header, bool) {
	d := p.Data
	if !p.Parsed || p.Version != 2 || len(d) < 12 || d[0]>>6 != 2 {
		return header{}, false
	}
	n := 12 + 4*int(d[0]&0x0f)
	if d[0]&0x10 != 0 {
		if len(d) < n+4 {
			return header{}, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(d[n+2:]))
	}
	if n > len(d) || n != p.HeaderLen {
		return header{}, false
	}
	if d[0]&0x20 != 0 {
		// The last octet counts the padding, itself included.
		if pad := int(d[len(d)-1]); pad == 0 || n+pad > len(d) {
			return header{}, false
		}
	}
	h := header{pt: d[1] & 0x7f, seq: binary.BigEndian.Uint16(d[2:]), ts: binary.BigEndian.Uint32(d[4:]), ssrc: binary.BigEndian.Uint32(d[8:])}
	if h.pt != p.PT || h.seq != p.Seq || h.ts != p.Timestamp || h.ssrc != p.SSRC || (d[1]&0x80 != 0) != p.Marker {
		return header{}, false
	}
	return h, true
}

// plausibleRTCP reports whether d starts like an RTCP packet: version 2,
// a packet type in 192-223 (RFC 5761), at least a header and an SSRC.
func plausibleRTCP(d []byte) bool {
	return len(d) >= 8 && d[0]>>6 == 2 && d[1] >= 192 && d[1] <= 223
}

// drop counts a drop and returns its verdict; the first drop of each rule
// in the stream direction raises a security event. tr, when set, is the
// track the packet did not fit.
func (g *guard) drop(p *core.MediaPacket, r rule, tr *track) core.Verdict {
	g.st.dropped[r].Inc()
	if g.alerted&(1<<r) == 0 {
		g.alerted |= 1 << r
		if g.st.alerts != nil {
			g.alertDrop(p, r, tr)
		}
	}
	return verdicts[r]
}

// alertDrop raises the security event of a stream's first drop by r.
func (g *guard) alertDrop(p *core.MediaPacket, r rule, tr *track) {
	var what string
	switch {
	case r == rRate:
		what = "the stream direction's packet or byte rate was exceeded"
	case r == rHeader || r == rRTCP:
		what = fmt.Sprintf("a malformed %d-byte packet", len(p.Data))
	case r == rPayloadType:
		what = fmt.Sprintf("payload type %d, not negotiated", p.PT)
	case tr != nil:
		what = fmt.Sprintf("SSRC %08x seq %d ts %d while the stream is SSRC %08x seq %d ts %d",
			p.SSRC, p.Seq, p.Timestamp, tr.ssrc, tr.seq, tr.ts)
	}
	g.alert(p, g.cur, ruleNames[r], verdicts[r].Action.String(),
		what+"; later drops by this rule in this stream are counted, not reported")
}

// restarted raises the security event of a validated restart.
func (g *guard) restarted(p *core.MediaPacket, n *negotiated, old uint32, h header, pkts int32, silent time.Duration) {
	g.st.log.Debug("restart", "session", n.session, "rule", RuleRestart, "ssrc", h.ssrc, "old_ssrc", old)
	if g.st.alerts == nil {
		return
	}
	g.alert(p, n, RuleRestart, "relock", fmt.Sprintf("lock moved from SSRC %08x to SSRC %08x seq %d after %d consistent packets and %v of silence",
		old, h.ssrc, h.seq, pkts, silent.Round(time.Millisecond)))
}

func (g *guard) alert(p *core.MediaPacket, n *negotiated, rule, action, what string) {
	e := &core.SecurityEvent{
		Time: g.st.now(), Rule: rule, Action: action, Zone: n.zone, Session: n.session, Protocol: "rtp",
		Detail: fmt.Sprintf("%s stream %d from the %s: %s", n.typ, n.index, n.from, what),
	}
	if p.RTCP {
		e.Protocol = "rtcp"
	}
	if p.Src.IsValid() {
		e.Src = p.Src.String()
	}
	g.st.alerts.Alert(e)
}

// Renegotiate implements core.StreamGuard: the stream's new payload types
// apply from the next packet, and the next valid packet locks the stream
// afresh (a re-INVITE may bring a new SSRC and sequence). It is safe to
// call while Check runs.
func (g *guard) Renegotiate(info *core.StreamInfo) {
	if info == nil {
		return
	}
	lim, ok := g.st.zones[info.Zone]
	if !ok || lim == nil {
		lim = g.st.def
	}
	g.neg.Store(g.st.negotiate(info, lim))
}

// Close implements core.StreamGuard. It is idempotent.
func (g *guard) Close() {
	if g.closed.CompareAndSwap(false, true) {
		g.st.streams.Dec()
	}
}
