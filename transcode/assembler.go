package transcode

import (
	"encoding/binary"
	"fmt"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// maxPayload is the largest RTP payload the assembler keeps; larger packets
// are refused (an RTP video packet fits a 1500-byte Ethernet frame).
const maxPayload = 1500

// AssemblerConfig bounds an Assembler.
type AssemblerConfig struct {
	// Codec is the codec of the incoming stream.
	Codec Codec
	// PayloadType is the negotiated RTP payload type; other types are dropped.
	PayloadType uint8
	// WindowPackets is how far (in sequence numbers) a later packet may run
	// ahead of a missing one before the missing one is declared lost. Default 64.
	WindowPackets int
	// WindowTicks is how far (in 90 kHz timestamp ticks) the newest packet
	// may run ahead of an incomplete frame before its missing packets are
	// declared lost. Default 9000 (100 ms).
	WindowTicks uint32
	// MaxFramePackets is the most packets one frame may span; a longer frame
	// is refused. Default 512.
	MaxFramePackets int
}

func (c *AssemblerConfig) defaults() {
	if c.WindowPackets <= 0 {
		c.WindowPackets = 64
	}
	if c.WindowTicks == 0 {
		c.WindowTicks = 9000
	}
	if c.MaxFramePackets <= 0 {
		c.MaxFramePackets = 512
	}
}

// Frame is one complete encoded frame out of an Assembler. Data is owned by
// the Assembler and valid only during the emit call.
type Frame struct {
	// Data is the frame as a decoder takes it: a VP8 frame, or an H.264
	// access unit in Annex B.
	Data []byte
	// Timestamp is the frame's RTP timestamp (90 kHz).
	Timestamp uint32
	// Key reports a VP8 keyframe or an H.264 access unit with an IDR slice.
	Key bool
}

// Event is a bit set of what a Push noticed.
type Event uint8

const (
	// EventLoss: packets were declared lost, or a frame was dropped as
	// incomplete; the decoder needs a keyframe.
	EventLoss Event = 1 << iota
	// EventGarbage: a packet or frame was refused as malformed.
	EventGarbage
	// EventNeedKey: a frame was held back because no keyframe has been seen
	// since the start or the last loss.
	EventNeedKey
)

// AssemblerStats counts what an Assembler refused or lost.
type AssemblerStats struct {
	Packets, Frames                       uint64
	Lost, Late, Duplicate, Garbage        uint64
	WrongPayloadType, WrongSSRC           uint64
	FramesDropped, FramesAwaitingKeyframe uint64
}

type slot struct {
	used   bool
	marker bool
	seq    uint16
	ts     uint32
	n      int
	buf    []byte // allocated once, on first use
}

// Assembler turns the RTP packets of one video stream into complete frames,
// in order. It tolerates reordering within its window, declares packets lost
// beyond it, drops incomplete or malformed frames, and after a loss hands out
// nothing until a keyframe: the decoder is never fed a frame that refers to
// one it did not get. It is not safe for concurrent use.
type Assembler struct {
	cfg   AssemblerConfig
	slots []slot
	mask  uint16

	pkt rtp.Packet
	vp8 codecs.VP8Packet

	started  bool
	consumed bool // a packet was consumed since the start
	ssrc     uint32
	next     uint16 // first sequence number not yet consumed
	newest   uint16
	newestTS uint32
	refTS    uint32 // timestamp of the last consumed packet
	afterGap bool
	skipping bool
	skipTS   uint32
	waitKey  bool

	frame []byte
	Stats AssemblerStats
}

// NewAssembler returns an Assembler for one stream.
func NewAssembler(cfg AssemblerConfig) (*Assembler, error) {
	cfg.defaults()
	if cfg.Codec != VP8 && cfg.Codec != H264 {
		return nil, fmt.Errorf("transcode: assembler: unsupported codec %v", cfg.Codec)
	}
	if cfg.PayloadType > 127 {
		return nil, fmt.Errorf("transcode: assembler: payload type %d out of range", cfg.PayloadType)
	}
	if cfg.WindowPackets > 4096 || cfg.MaxFramePackets > 4096 {
		return nil, fmt.Errorf("transcode: assembler: window_packets and max_frame_packets must be at most 4096")
	}
	need := cfg.WindowPackets
	if cfg.MaxFramePackets > need {
		need = cfg.MaxFramePackets
	}
	size := 64
	for size < 2*need {
		size <<= 1
	}
	return &Assembler{cfg: cfg, slots: make([]slot, size), mask: uint16(size - 1), waitKey: true}, nil
}

// Reset forgets the stream (after a renegotiation): the next packet starts it
// anew, from any SSRC, and nothing is handed out before a keyframe.
func (a *Assembler) Reset() {
	for i := range a.slots {
		a.slots[i].used = false
	}
	a.started, a.consumed, a.afterGap, a.skipping, a.waitKey = false, false, false, false, true
}

// Push adds one RTP packet (the raw datagram) and calls emit for every frame
// it completes. It reports what it noticed; it never fails: bad input is
// counted and dropped.
func (a *Assembler) Push(raw []byte, emit func(Frame)) Event {
	a.Stats.Packets++
	p := &a.pkt
	if err := p.Unmarshal(raw); err != nil || p.Version != 2 {
		a.Stats.Garbage++
		return EventGarbage
	}
	if p.PayloadType != a.cfg.PayloadType {
		a.Stats.WrongPayloadType++
		return 0
	}
	if a.started && p.SSRC != a.ssrc {
		a.Stats.WrongSSRC++
		return 0
	}
	if len(p.Payload) == 0 || len(p.Payload) > maxPayload {
		a.Stats.Garbage++
		return EventGarbage
	}
	if !a.started {
		a.started, a.ssrc = true, p.SSRC
		a.next, a.newest, a.newestTS, a.refTS = p.SequenceNumber, p.SequenceNumber, p.Timestamp, p.Timestamp
	}
	seq := p.SequenceNumber
	d := int16(seq - a.next)
	if d < 0 && !a.consumed && int(-d) < a.cfg.WindowPackets {
		// Nothing handed out yet: the first packet was not the first sent.
		a.next, d = seq, 0
	}
	if d < 0 {
		a.Stats.Late++
		return 0
	}
	var ev Event
	if int(d) >= len(a.slots)/2 {
		// Far ahead: everything pending is lost.
		for a.next != seq {
			s := &a.slots[a.next&a.mask]
			if !s.used || s.seq != a.next {
				a.Stats.Lost++
			}
			s.used = false
			a.next++
		}
		ev |= EventLoss
		a.afterGap, a.waitKey = true, true
	}
	s := &a.slots[seq&a.mask]
	if s.used && s.seq == seq {
		a.Stats.Duplicate++
		return ev
	}
	if s.buf == nil {
		s.buf = make([]byte, maxPayload)
	}
	s.used, s.marker, s.seq, s.ts = true, p.Marker, seq, p.Timestamp
	s.n = copy(s.buf, p.Payload)
	if int16(seq-a.newest) > 0 {
		a.newest, a.newestTS = seq, p.Timestamp
	}
	return ev | a.drain(emit)
}

// overdue reports whether a packet missing at seq, in a frame whose timestamp
// is ts, is to be declared lost.
func (a *Assembler) overdue(seq uint16, ts uint32) bool {
	return int(int16(a.newest-seq)) >= a.cfg.WindowPackets || int32(a.newestTS-ts) > int32(a.cfg.WindowTicks)
}

func (a *Assembler) consume(n int) {
	for range n {
		s := &a.slots[a.next&a.mask]
		s.used = false
		a.refTS = s.ts
		a.next++
	}
	a.consumed = true
}

func (a *Assembler) isHead(s *slot) bool {
	b := s.buf[:s.n]
	if a.cfg.Codec == VP8 {
		return b[0]&0x10 != 0 && b[0]&0x07 == 0 // S=1, PID=0
	}
	t := b[0] & 0x1f
	if t == 28 {
		return len(b) >= 2 && b[1]&0x80 != 0
	}
	return true
}

// keyStart reports whether s starts a keyframe: a VP8 keyframe's first
// packet, or an H.264 packet with a sequence parameter set or the start of
// an IDR slice.
func (a *Assembler) keyStart(s *slot) bool {
	b := s.buf[:s.n]
	if a.cfg.Codec == VP8 {
		var d codecs.VP8Packet
		pl, err := d.Unmarshal(b)
		return err == nil && d.S == 1 && d.PID == 0 && len(pl) > 0 && pl[0]&1 == 0
	}
	switch t := b[0] & 0x1f; t {
	case 5, 7:
		return true
	case 24:
		return len(b) > 3 && (b[3]&0x1f == 7 || b[3]&0x1f == 5)
	case 28:
		return len(b) > 1 && b[1]&0x80 != 0 && b[1]&0x1f == 5
	}
	return false
}

func (a *Assembler) drain(emit func(Frame)) Event {
	var ev Event
	for {
		s := &a.slots[a.next&a.mask]
		if !s.used || s.seq != a.next {
			if !a.overdue(a.next, a.refTS) {
				return ev
			}
			a.next++
			a.Stats.Lost++
			ev |= EventLoss
			a.afterGap, a.waitKey = true, true
			continue
		}
		if !a.consumed && !a.keyStart(s) && !a.overdue(a.next, a.refTS) {
			// At the start, wait out the window for an earlier packet
			// unless the stream begins with a keyframe.
			return ev
		}
		if a.afterGap {
			// Which frame the packet after a gap belongs to is known for VP8
			// (S bit and partition 0); for H.264 the frame is given up.
			a.afterGap = false
			if a.cfg.Codec == H264 || !a.isHead(s) {
				a.skipping, a.skipTS = true, s.ts
			}
		}
		if a.skipping {
			if s.ts == a.skipTS {
				a.consume(1)
				continue
			}
			a.skipping = false
		}
		if !a.isHead(s) {
			a.Stats.Garbage++
			ev |= EventGarbage
			a.waitKey, a.skipping, a.skipTS = true, true, s.ts
			a.consume(1)
			continue
		}
		// Scan the frame that starts at next.
		n, complete, gap := 0, false, false
		for n < a.cfg.MaxFramePackets {
			q := &a.slots[(a.next+uint16(n))&a.mask]
			if !q.used || q.seq != a.next+uint16(n) {
				gap = true
				break
			}
			if q.ts != s.ts {
				// A new timestamp without a marker before it: the frame ended.
				complete = true
				break
			}
			n++
			if q.marker {
				complete = true
				break
			}
		}
		switch {
		case complete:
			ev |= a.assemble(n, s.ts, emit)
			a.consume(n)
		case gap:
			if !a.overdue(a.next+uint16(n), s.ts) {
				return ev
			}
			// The frame misses a packet: give it up. The loop then declares
			// the missing one lost and skips the rest of the frame.
			a.Stats.FramesDropped++
			ev |= EventLoss
			a.waitKey = true
			a.consume(n)
		default:
			a.Stats.Garbage++
			a.Stats.FramesDropped++
			ev |= EventGarbage
			a.waitKey, a.skipping, a.skipTS = true, true, s.ts
			a.consume(n)
		}
	}
}

// assemble depacketizes the n packets from next into one frame and emits it.
func (a *Assembler) assemble(n int, ts uint32, emit func(Frame)) Event {
	a.frame = a.frame[:0]
	var key bool
	var ok bool
	if a.cfg.Codec == VP8 {
		key, ok = a.assembleVP8(n)
	} else {
		key, ok = a.assembleH264(n)
	}
	if !ok {
		a.Stats.Garbage++
		a.Stats.FramesDropped++
		a.waitKey = true
		return EventGarbage
	}
	if a.waitKey && !key {
		a.Stats.FramesAwaitingKeyframe++
		return EventNeedKey
	}
	a.waitKey = false
	a.Stats.Frames++
	emit(Frame{Data: a.frame, Timestamp: ts, Key: key})
	return 0
}

func (a *Assembler) assembleVP8(n int) (key, ok bool) {
	for i := range n {
		s := &a.slots[(a.next+uint16(i))&a.mask]
		b, err := a.vp8.Unmarshal(s.buf[:s.n])
		if err != nil || len(b) == 0 {
			return false, false
		}
		if i == 0 {
			key = b[0]&1 == 0
		} else if a.vp8.S == 1 && a.vp8.PID == 0 {
			return false, false // a second frame start inside one frame
		}
		a.frame = append(a.frame, b...)
	}
	return key, true
}

// assembleH264 checks the packetization (RFC 6184 mode 1: single NAL units,
// STAP-A, FU-A with one start and one end per fragmented unit) and hands each
// packet to pion's depacketizer.
func (a *Assembler) assembleH264(n int) (key, ok bool) {
	var dep codecs.H264Packet // fresh: no fragment left from an earlier frame
	inFU := false
	var fuType byte
	for i := range n {
		s := &a.slots[(a.next+uint16(i))&a.mask]
		b := s.buf[:s.n]
		if b[0]&0x80 != 0 { // forbidden_zero_bit
			return false, false
		}
		t := b[0] & 0x1f
		switch {
		case t >= 1 && t <= 23:
			if inFU {
				return false, false
			}
			key = key || t == 5
		case t == 24:
			if inFU {
				return false, false
			}
			for off := 1; off+2 <= len(b); {
				l := int(binary.BigEndian.Uint16(b[off:]))
				off += 2
				if l == 0 || off+l > len(b) {
					return false, false
				}
				it := b[off] & 0x1f
				if it == 0 || it > 23 {
					return false, false
				}
				key = key || it == 5
				off += l
			}
		case t == 28:
			if len(b) < 3 {
				return false, false
			}
			start, end, ft := b[1]&0x80 != 0, b[1]&0x40 != 0, b[1]&0x1f
			if start && end || ft == 0 || ft > 23 {
				return false, false
			}
			if start {
				if inFU {
					return false, false
				}
				inFU, fuType = true, ft
				key = key || ft == 5
			} else if !inFU || ft != fuType {
				return false, false
			}
			if end {
				inFU = false
			}
		default: // 0, STAP-B, MTAP, FU-B, reserved: not packetization mode 1
			return false, false
		}
		out, err := dep.Unmarshal(b)
		if err != nil {
			return false, false
		}
		a.frame = append(a.frame, out...)
	}
	if inFU || len(a.frame) == 0 {
		return false, false
	}
	return key, true
}
