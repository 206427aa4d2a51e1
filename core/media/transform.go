package media

import (
	"encoding/binary"
	"sync"
)

// Transform takes over the RTP of one stream direction (a video stream
// transcoded by a media plugin): the relay hands it what the sending leg
// sends, after its own checks (source, SRTP, rate) and the content
// guards, in the clear, instead of relaying it; the transform sends its
// own packets to the receiving leg through its TransformOut. Only
// directions with a transform pay for it: the relay's path of the others
// loads one pointer more.
//
// Both methods run on the relay's readers: they must not block and must
// copy what they keep (the buffer is the reader's).
type Transform interface {
	// RTP gets one RTP packet of the direction.
	RTP(pkt []byte)
	// Feedback gets one RTCP packet (compound) the receiving leg sent:
	// its reports and feedback (PLI, FIR, REMB) about what the transform
	// sends it. The relay still forwards it to the sender as well.
	Feedback(pkt []byte)
}

// TransformOut sends a transform's packets. Its methods are safe for
// concurrent use.
type TransformOut struct {
	c    *Call
	st   *stream
	from int // the leg the direction comes from

	mu   sync.Mutex
	rbuf []byte
	cbuf []byte
	// What a transform sends is input too (a plugin's): bounded like what
	// a leg sends (max_packets_per_second, max_bitrate), and its RTCP to
	// the sender to maxUpstreamRTCP packets a second.
	pps, bps, rtcp bucket
}

// maxUpstreamRTCP bounds the RTCP a transform sends the sender of its
// direction (keyframe requests), per second.
const maxUpstreamRTCP = 50

// SetTransform puts t (made by mk with its output) on the direction of
// stream index that leg from sends; it replaces an earlier transform.
// The stream must be running (after Answer). Set it before the
// direction's first packet: a packet the relay is relaying when it is set
// still goes the old way.
func (c *Call) SetTransform(from string, index int, mk func(*TransformOut) Transform) error {
	l, err := legIndex(from)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.streamLocked(index, true)
	if err != nil {
		return err
	}
	out := &TransformOut{c: c, st: st, from: l, rbuf: make([]byte, bufSize), cbuf: make([]byte, bufSize),
		pps: newBucket(c.e.cfg.MaxPacketsPerSecond, 1), bps: newBucket(c.e.cfg.MaxBitrate, maxPacket),
		rtcp: newBucket(maxUpstreamRTCP, 1)}
	t := mk(out)
	st.dirs[l].transform.Store(&t)
	return nil
}

// ClearTransform removes the transform of a direction: the relay relays
// it again.
func (c *Call) ClearTransform(from string, index int) {
	l, err := legIndex(from)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if index >= 0 && index < len(c.streams) && c.streams[index] != nil && c.streams[index].dirs[l] != nil {
		c.streams[index].dirs[l].transform.Store(nil)
	}
}

// RTP sends one RTP packet to the receiving leg, protected as that leg
// negotiated. Packets that cannot go (no keys or address yet, stream
// closed, oversized) are counted as drops of the direction.
func (o *TransformOut) RTP(pkt []byte) {
	d, peer := o.st.dirs[o.from], o.st.dirs[1-o.from]
	if len(pkt) > maxPacket || len(pkt) < 12 {
		o.drop(d, RuleMalformed)
		return
	}
	cfg := d.cfg.Load()
	if cfg.needKeys {
		o.drop(d, RuleSRTP)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.c.e.now()
	if !o.pps.allow(now, 1) || !o.bps.allow(now, len(pkt)) {
		o.drop(d, RuleRate)
		return
	}
	ssrc, seq, ts := binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:])
	octets := len(pkt) - 12 - 4*int(pkt[0]&0x0f)
	b := append(o.rbuf[:0], pkt...)
	if cfg.rtpEnc != nil {
		var err error
		if b, err = cfg.rtpEnc.EncryptRTP(b, b, nil); err != nil {
			o.drop(d, RuleSRTP)
			return
		}
	}
	dst := peer.rtpDst.Load()
	if dst == nil {
		o.drop(d, RuleNoDestination)
		return
	}
	if _, err := o.st.sides[1-o.from].rtp.WriteToUDPAddrPort(b, *dst); err != nil {
		o.drop(d, RuleSend)
		return
	}
	if fb := o.st.fb.Load(); fb != nil && fb.leg != o.from {
		// Sent to the DTLS leg: kept for its NACKs and sender reports,
		// as the relay keeps what it sends.
		fb.sentPacket(b, ssrc, seq, ts, octets, now)
	}
}

// Upstream sends one RTCP packet (a PLI asking for a keyframe) to the
// leg the direction comes from, protected as that leg negotiated.
func (o *TransformOut) Upstream(pkt []byte) {
	d, back := o.st.dirs[o.from], o.st.dirs[1-o.from]
	if len(pkt) > maxPacket || !checkRTCP(pkt, false) {
		o.drop(d, RuleMalformed)
		return
	}
	cfg := back.cfg.Load() // the direction towards the sending leg
	if cfg.needKeys {
		o.drop(d, RuleSRTP)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.rtcp.allow(o.c.e.now(), 1) {
		o.drop(d, RuleRate)
		return
	}
	b := append(o.cbuf[:0], pkt...)
	if cfg.rtcpEnc != nil {
		back.rtcpMu.Lock()
		out, err := cfg.rtcpEnc.EncryptRTCP(b, b, nil)
		back.rtcpMu.Unlock()
		if err != nil {
			o.drop(d, RuleSRTP)
			return
		}
		b = out
	}
	conn, dst := o.st.sides[o.from].rtcp, d.rtcpDst.Load()
	if cfg.outMux {
		conn, dst = o.st.sides[o.from].rtp, d.rtpDst.Load()
	}
	if dst == nil {
		o.drop(d, RuleNoDestination)
		return
	}
	if _, err := conn.WriteToUDPAddrPort(b, *dst); err != nil {
		o.drop(d, RuleSend)
	}
}

func (o *TransformOut) drop(d *dir, rule string) {
	d.dropMu.Lock()
	d.dropped[rule+"/transform"]++
	d.dropMu.Unlock()
}
