package media

import (
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// Feedback is the RTCP the gateway itself speaks on a DTLS-SRTP
// (browser) leg of a stream, where the other leg (a SIP trunk) often
// speaks none: it answers the leg's generic NACKs (RFC 4585) from a
// cache of what it sent the leg, and it sends the leg receiver and
// sender reports (RFC 3550) while the other leg sends no RTCP.
//
// The leg's generic NACKs never reach the other leg: that leg did not
// negotiate them (its description never carries the browser's rtcp-fb),
// so it would not answer. Picture loss and full intra requests (PLI,
// FIR) and reports keep passing both ways.
type Feedback struct {
	// NACK is how many packets sent to the leg are kept, by sequence
	// number, to answer its NACKs: 0 (no responder) or a power of two up
	// to MaxNACK. The cache holds the packets as sent (SRTP-protected), so
	// a retransmission is the very same datagram.
	NACK int
	// Reports is the mean interval of the reports the gateway sends the
	// leg (each interval drawn between half and one and a half of it,
	// RFC 3550 6.3.1): a receiver report about what the leg sends, a
	// sender report about what it is sent. The gateway is silent while
	// the other leg sends RTCP of its own for the stream (its reports
	// pass through instead) and for reportsSilence after. 0: none.
	Reports time.Duration
}

// MaxNACK bounds Feedback.NACK.
const MaxNACK = 1 << 14

// reportsSilence is how long after the other leg's last RTCP the gateway
// starts reporting again: three times RFC 3550's minimum interval.
const reportsSilence = 15 * time.Second

// Retransmissions of one stream are limited to rtxPerSecond packets per
// second, with bursts of rtxBurst: a NACK storm costs the gateway a
// bounded rate, and a retransmission only ever goes to the leg's
// checked address.
const (
	rtxPerSecond = 250
	rtxBurst     = 64
)

// feedbackMetrics are the engine's counters of Feedback, over every call.
type feedbackMetrics struct {
	resent, missed, reports prometheus.Counter
}

func newFeedbackMetrics(reg prometheus.Registerer) (*feedbackMetrics, error) {
	m := &feedbackMetrics{}
	for _, c := range []struct {
		to         *prometheus.Counter
		name, help string
	}{
		{&m.resent, "ucgate_media_nack_retransmissions_total", "Packets the gateway sent a browser leg again, answering its NACKs."},
		{&m.missed, "ucgate_media_nack_unanswered_total", "Packets a browser leg NACKed that the gateway could not send again (not or no longer cached, another SSRC, over the retransmission rate)."},
		{&m.reports, "ucgate_media_rtcp_reports_sent_total", "Sender and receiver reports the gateway sent browser legs whose other leg sent no RTCP."},
	} {
		ctr, err := core.RegisterMetric(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: c.name, Help: c.help}))
		if err != nil {
			return nil, err
		}
		*c.to = ctr
	}
	return m, nil
}

// sentSlot is one packet of the cache.
type sentSlot struct {
	b    []byte // as sent; grows to the largest packet the slot has held
	ssrc uint32
	seq  uint16
	ok   bool
}

// feedback is the state of Feedback on one stream. The other leg's RTP
// reader writes the cache; the leg's readers answer NACKs from it; a
// goroutine of its own sends the reports.
type feedback struct {
	c        *Call
	st       *stream
	leg      int // the browser leg
	interval time.Duration
	own      uint32 // the gateway's SSRC for receiver reports when the other leg's is unknown
	cname    string
	m        *feedbackMetrics // nil: none

	mu    sync.Mutex // slots and sent
	slots []sentSlot
	mask  uint16
	sent  sentState

	rtxMu sync.Mutex // rtx and rbuf
	rtx   bucket
	rbuf  []byte

	rxExt    atomic.Uint64 // extended highest sequence number the leg sent, +1<<32 once set
	lsr      atomic.Uint32 // middle of the NTP time of the leg's last sender report
	lsrAt    atomic.Int64  // when it came (relay clock)
	otherAt  atomic.Int64  // when the other leg last sent RTCP for the stream (relay clock; 0: never)
	resent   atomic.Uint64 // retransmissions sent
	missed   atomic.Uint64 // NACKed packets not (or no longer) in the cache
	reported atomic.Uint64 // report packets sent

	// Owned by the report goroutine.
	prevExt  uint32
	prevLost uint64
	prevSent uint32

	done chan struct{}
	once sync.Once
}

// sentState is what the gateway sent the leg, for its sender reports.
type sentState struct {
	ssrc, ts        uint32
	at              int64 // relay clock of the last packet
	packets, octets uint32
	any             bool
}

// SetFeedback starts the gateway's own RTCP (Feedback) on stream index
// of leg role, which must be keyed by DTLS; it replaces earlier
// settings. The stream must be running (after Answer).
func (c *Call) SetFeedback(role string, index int, f Feedback) error {
	l, err := legIndex(role)
	if err != nil {
		return err
	}
	if f.NACK < 0 || f.NACK > MaxNACK || f.NACK&(f.NACK-1) != 0 {
		return fmt.Errorf("media: feedback nack cache must be 0 or a power of two up to %d, got %d", MaxNACK, f.NACK)
	}
	if f.Reports < 0 {
		return fmt.Errorf("media: feedback report interval must not be negative, got %v", f.Reports)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.dtlsStreamLocked(role, l, index, true)
	if err != nil {
		return err
	}
	if c.cname == "" {
		var b [8]byte
		_, _ = crand.Read(b[:])
		c.cname = "ucgate-" + hex.EncodeToString(b[:])
	}
	fb := &feedback{c: c, st: st, leg: l, interval: f.Reports, own: rand.Uint32(), cname: c.cname, m: c.e.fbm,
		rtx: newBucket(rtxPerSecond, rtxBurst), rbuf: make([]byte, bufSize), done: make(chan struct{})}
	if f.NACK > 0 {
		fb.slots = make([]sentSlot, f.NACK)
		fb.mask = uint16(f.NACK - 1)
	}
	if old := st.fb.Swap(fb); old != nil {
		old.stop()
		fb.otherAt.Store(old.otherAt.Load())
	}
	if f.Reports > 0 {
		c.wg.Add(1)
		go fb.run()
	}
	return nil
}

func (fb *feedback) stop() { fb.once.Do(func() { close(fb.done) }) }

// sentPacket takes a packet the relay just sent the leg (b as sent, p its
// parsed header, octets its payload size). It runs on the relay's path:
// one uncontended lock and a copy into a slot that, once it has held a
// packet as large, does not allocate.
func (fb *feedback) sentPacket(b []byte, ssrc uint32, seq uint16, ts uint32, octets int, now int64) {
	fb.mu.Lock()
	if fb.slots != nil {
		s := &fb.slots[seq&fb.mask]
		s.b = append(s.b[:0], b...)
		s.ssrc, s.seq, s.ok = ssrc, seq, true
	}
	st := &fb.sent
	if st.ssrc != ssrc {
		*st = sentState{ssrc: ssrc}
	}
	st.ts, st.at, st.any = ts, now, true
	st.packets++
	st.octets += uint32(max(octets, 0))
	fb.mu.Unlock()
}

// received notes how far the leg's own stream has come (for the
// receiver reports).
func (fb *feedback) received(rx *rxStats) {
	fb.rxExt.Store(1<<32 | uint64(rx.cycles+uint32(rx.max)))
}

// fromLeg reads a (compound) RTCP packet the leg sent, in the clear: it
// notes its sender reports, answers its generic NACKs and returns the
// packet without them (empty when nothing else remains). Only the parts
// of a sane packet are walked (checkRTCP).
func (fb *feedback) fromLeg(b []byte, now int64) []byte {
	for off, i := 0, 0; off+4 <= len(b) && i < maxRTCPParts; i++ {
		n := 4 * (int(binary.BigEndian.Uint16(b[off+2:])) + 1)
		if off+n > len(b) {
			break
		}
		part := b[off : off+n]
		switch {
		case part[1] == 200 && len(part) >= 28: // SR: the NTP time's middle 32 bits
			fb.lsr.Store(binary.BigEndian.Uint32(part[10:]))
			fb.lsrAt.Store(now)
		case part[1] == 205 && part[0]&0x1f == 1: // RTPFB generic NACK
			if len(part) >= 12 {
				fb.answer(part, now)
			}
			b = b[:off+copy(b[off:], b[off+n:])]
			continue
		}
		off += n
	}
	return b
}

// answer sends again the packets one generic NACK asks for that the
// cache holds.
func (fb *feedback) answer(part []byte, now int64) {
	media := binary.BigEndian.Uint32(part[8:])
	dst := fb.st.dirs[fb.leg].rtpDst.Load() // where the leg receives
	fb.rtxMu.Lock()
	defer fb.rtxMu.Unlock()
	// A NACK may name thousands of packets; more than the cache holds
	// cannot all be there: the rest is not looked up.
	budget := max(len(fb.slots), 17)
	for fci := part[12:]; len(fci) >= 4 && budget > 0; fci = fci[4:] {
		pair := rtcp.NackPair{PacketID: binary.BigEndian.Uint16(fci), LostPackets: rtcp.PacketBitmap(binary.BigEndian.Uint16(fci[2:]))}
		pair.Range(func(seq uint16) bool {
			if budget--; budget < 0 {
				return false
			}
			n := 0
			fb.mu.Lock()
			if fb.slots != nil {
				if s := &fb.slots[seq&fb.mask]; s.ok && s.seq == seq && s.ssrc == media {
					n = copy(fb.rbuf, s.b)
				}
			}
			fb.mu.Unlock()
			if n == 0 || dst == nil {
				fb.miss()
				return true
			}
			if !fb.rtx.allow(now, 1) {
				fb.miss()
				return true
			}
			if _, err := fb.st.sides[fb.leg].rtp.WriteToUDPAddrPort(fb.rbuf[:n], *dst); err == nil {
				fb.resent.Add(1)
				if fb.m != nil {
					fb.m.resent.Inc()
				}
			}
			return true
		})
	}
}

func (fb *feedback) miss() {
	fb.missed.Add(1)
	if fb.m != nil {
		fb.m.missed.Inc()
	}
}

// run sends the reports until the stream or the feedback stops.
func (fb *feedback) run() {
	defer fb.c.wg.Done()
	t := time.NewTimer(fb.next())
	defer t.Stop()
	for {
		select {
		case <-fb.done:
			return
		case <-t.C:
			fb.report(fb.c.e.now(), time.Now())
			t.Reset(fb.next())
		}
	}
}

func (fb *feedback) next() time.Duration {
	return time.Duration(float64(fb.interval) * (0.5 + rand.Float64()))
}

// report sends the leg one compound RTCP packet (SR or RR, then SDES
// CNAME), protected as the leg negotiated, unless the other leg reports
// itself.
func (fb *feedback) report(now int64, wall time.Time) {
	if at := fb.otherAt.Load(); at != 0 && now-at < int64(reportsSilence) {
		return
	}
	leg, other := fb.st.dirs[fb.leg], fb.st.dirs[1-fb.leg]
	var blocks []rtcp.ReceptionReport
	if ext := fb.rxExt.Load(); ext != 0 {
		cur := uint32(ext)
		lost := leg.lost.Load()
		var frac uint8
		if exp := cur - fb.prevExt; fb.prevExt != 0 && exp > 0 && exp < 1<<15 && lost > fb.prevLost {
			frac = uint8(min(255, (lost-fb.prevLost)*256/uint64(exp)))
		}
		fb.prevExt, fb.prevLost = cur, lost
		var jitter uint32
		if rate := leg.rate.Load(); rate != 0 {
			jitter = uint32(math.Float64frombits(leg.jitter.Load()) * float64(rate) / 1000)
		}
		var dlsr uint32
		lsr := fb.lsr.Load()
		if lsr != 0 {
			dlsr = uint32(float64(now-fb.lsrAt.Load()) * 65536 / 1e9)
		}
		blocks = append(blocks, rtcp.ReceptionReport{SSRC: leg.ssrc.Load(), FractionLost: frac,
			TotalLost: uint32(min(lost, 1<<23-1)), LastSequenceNumber: cur, Jitter: jitter, LastSenderReport: lsr, Delay: dlsr})
	}
	fb.mu.Lock()
	sent := fb.sent
	fb.mu.Unlock()
	var first rtcp.Packet
	ssrc := fb.own
	if sent.any && sent.packets != fb.prevSent {
		ssrc = sent.ssrc
		ts := sent.ts
		if rate := other.rate.Load(); rate != 0 {
			ts += uint32(float64(now-sent.at) * float64(rate) / 1e9)
		}
		first = &rtcp.SenderReport{SSRC: ssrc, NTPTime: ntpTime(wall), RTPTime: ts,
			PacketCount: sent.packets, OctetCount: sent.octets, Reports: blocks}
	} else {
		if sent.any {
			ssrc = sent.ssrc
		}
		if len(blocks) == 0 {
			return // nothing to say yet
		}
		first = &rtcp.ReceiverReport{SSRC: ssrc, Reports: blocks}
	}
	fb.prevSent = sent.packets
	raw, err := rtcp.Marshal([]rtcp.Packet{first, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{
		Source: ssrc, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: fb.cname}}}}}})
	if err != nil {
		return
	}
	// The direction towards the leg holds the context that protects
	// what it is sent.
	cfg := other.cfg.Load()
	if cfg == nil || cfg.needKeys || cfg.rtcpEnc == nil {
		return
	}
	other.rtcpMu.Lock()
	out, err := cfg.rtcpEnc.EncryptRTCP(nil, raw, nil)
	other.rtcpMu.Unlock()
	if err != nil {
		return
	}
	conn, dst := fb.st.sides[fb.leg].rtcp, leg.rtcpDst.Load()
	if cfg.outMux {
		conn, dst = fb.st.sides[fb.leg].rtp, leg.rtpDst.Load()
	}
	if dst == nil {
		return
	}
	if _, err := conn.WriteToUDPAddrPort(out, *dst); err == nil {
		fb.reported.Add(1)
		if fb.m != nil {
			fb.m.reports.Inc()
		}
	}
}

// ntpTime is t as a 64-bit NTP timestamp.
func ntpTime(t time.Time) uint64 {
	secs := uint64(t.Unix()) + 2208988800
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

// FeedbackStats are the figures of a stream's Feedback.
type FeedbackStats struct {
	Retransmitted uint64 // packets sent again on a NACK
	Missed        uint64 // NACKed packets not in the cache (or over the retransmission rate)
	Reports       uint64 // report packets the gateway sent
}

// FeedbackStats returns the figures of the Feedback of stream index
// (zero when it has none).
func (c *Call) FeedbackStats(index int) FeedbackStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	if index < 0 || index >= len(c.streams) || c.streams[index] == nil {
		return FeedbackStats{}
	}
	fb := c.streams[index].fb.Load()
	if fb == nil {
		return FeedbackStats{}
	}
	return FeedbackStats{Retransmitted: fb.resent.Load(), Missed: fb.missed.Load(), Reports: fb.reported.Load()}
}
