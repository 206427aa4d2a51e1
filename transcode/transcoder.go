package transcode

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

type decoder interface {
	Decode(frame []byte) (*Image, error)
	Close()
}

type encoder interface {
	Encode(img *Image, pts90k int64, dur90k int, forceKey bool) ([]byte, bool, error)
	SetBitrate(bps int) error
	Size() (w, h int)
	Close()
}

// Stats counts what a Transcoder did. Read it with Transcoder.Stats.
type Stats struct {
	Assembler           AssemblerStats
	FramesDecoded       uint64
	FramesEncoded       uint64
	KeyframesSent       uint64
	FramesSkippedByRate uint64
	DecodeErrors        uint64
	EncodeErrors        uint64
	KeyframeRequests    uint64 // sent upstream
	KeyframesForced     uint64 // asked for by the receiver (PLI, FIR) or by the host
	PacketsSent         uint64
	Bitrate             int
	Width, Height       int
	// Adaptation is the step the receiver's feedback brought the output
	// down to (see adaptSteps): 0 none, 1 half the size, 2 half the size
	// and frame rate, 3 a quarter of the size and half the frame rate.
	Adaptation int
	// FrameRate is the most frames per second sent, after adaptation.
	FrameRate float64
}

// Adaptation of the picture to the receiver's feedback, as libwebrtc's
// quality scaling does it: once REMB (or the host, from TWCC, through
// SetBitrate) has set the bitrate, a stream left with fewer than
// adaptDownBPP bits per pixel steps down (adaptSteps), and steps back up
// when the better step would have adaptUpBPP; at most one step per
// adaptInterval, never below adaptMinW x adaptMinH.
const (
	adaptDownBPP  = 0.02
	adaptUpBPP    = 0.05
	adaptInterval = 2 * time.Second
	adaptMinW     = 160
	adaptMinH     = 90
)

// adaptSteps divide the output's size and frame rate.
var adaptSteps = [...]struct{ size, fps int }{{1, 1}, {2, 1}, {2, 2}, {4, 2}}

// ErrClosed is returned by a Transcoder used after Close.
var ErrClosed = errors.New("transcode: transcoder closed")

// Transcoder transcodes one RTP video stream from one codec to the other.
//
// WriteRTP is called by one goroutine (the stream's reader) and calls out
// synchronously with each packet it produces. RequestKeyframe, SetBitrate,
// SetResolution, SetFrameRate, HandleRTCP and Stats may be called from any
// goroutine: they only set values the next frame reads (Stats waits for the
// packet in progress).
type Transcoder struct {
	cfg    Config
	stream Stream
	out    func(pkt []byte)
	onKey  func()
	now    func() time.Time

	mu     sync.Mutex // held by WriteRTP and Close
	closed bool
	asm    *Assembler
	dec    decoder
	enc    encoder
	scale  scaler
	pay    packetizer

	// set from any goroutine, read per frame
	forceKey atomic.Bool
	feedback atomic.Bool // the bitrate comes from the receiver's feedback
	bitrate  atomic.Int64
	size     atomic.Uint64 // width<<32 | height; 0 = input size
	fpsMilli atomic.Int64

	// WriteRTP's own state
	encBitrate int
	unwrap     int64
	lastTS     uint32
	haveTS     bool
	nextOut    int64 // the pts from which the next frame may be sent (frame_rate)
	haveOut    bool
	lastReqAt  time.Time
	step       int       // adaptSteps index in use
	encStep    int       // the step the encoder was made for
	lastAdapt  time.Time // when step last changed
	lastFIRSeq atomic.Int32
	stats      Stats
}

// New returns a Transcoder for one stream. out receives each RTP packet it
// produces (the slice is reused after out returns); onKeyframeRequest, which
// may be nil, is called when the transcoder needs a keyframe from upstream:
// the host sends a PLI or FIR to the stream's sender. Both are called from
// the goroutine that calls WriteRTP.
func New(cfg Config, stream Stream, out func(pkt []byte), onKeyframeRequest func()) (*Transcoder, error) {
	cfg = cfg.Defaults()
	if err := errors.Join(cfg.Validate(), stream.validate()); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, errors.New("transcode: New needs an out function")
	}
	asm, err := NewAssembler(AssemblerConfig{
		Codec:           stream.From,
		PayloadType:     stream.InPayloadType,
		WindowPackets:   cfg.JitterPackets,
		WindowTicks:     uint32(cfg.Jitter * 90000 / time.Second),
		MaxFramePackets: cfg.MaxFramePackets,
	})
	if err != nil {
		return nil, err
	}
	t := &Transcoder{cfg: cfg, stream: stream, out: out, onKey: onKeyframeRequest, now: time.Now, asm: asm}
	switch stream.From {
	case VP8:
		t.dec, err = newVP8Decoder(cfg.MaxInputWidth, cfg.MaxInputHeight)
	case H264:
		t.dec, err = newH264Decoder(cfg.MaxInputWidth, cfg.MaxInputHeight)
	}
	if err != nil {
		return nil, err
	}
	t.pay = newPacketizer(stream.To, stream.OutPayloadType, stream.OutSSRC, cfg.MTU)
	t.bitrate.Store(int64(cfg.Bitrate))
	t.size.Store(uint64(cfg.Width)<<32 | uint64(cfg.Height))
	t.fpsMilli.Store(int64(cfg.FrameRate * 1000))
	t.lastFIRSeq.Store(-1)
	return t, nil
}

// RequestKeyframe makes the next frame sent a keyframe (the receiver sent a
// PLI or FIR).
func (t *Transcoder) RequestKeyframe() { t.forceKey.Store(true) }

// SetBitrate sets the output bitrate in bits per second, within
// [min_bitrate, max_bitrate]; it applies from the next frame. It is the
// receiver's feedback (REMB, or the host's estimate from TWCC): from then
// on the output's size and frame rate follow the bitrate too.
func (t *Transcoder) SetBitrate(bps int) {
	bps = max(t.cfg.MinBitrate, min(t.cfg.MaxBitrate, bps))
	t.bitrate.Store(int64(bps))
	t.feedback.Store(true)
}

// SetResolution sets the output picture size (even, at most 4096x2304); 0x0
// follows the input. The encoder is restarted, so the next frame is a
// keyframe.
func (t *Transcoder) SetResolution(w, h int) error {
	if w < 0 || h < 0 || w%2 != 0 || h%2 != 0 || w > 4096 || h > 2304 || (w == 0) != (h == 0) {
		return fmt.Errorf("transcode: resolution %dx%d: want even sizes up to 4096x2304, or 0x0", w, h)
	}
	t.size.Store(uint64(w)<<32 | uint64(h))
	return nil
}

// SetFrameRate sets the most frames per second sent (1 to 60).
func (t *Transcoder) SetFrameRate(fps float64) error {
	if fps < 1 || fps > 60 {
		return fmt.Errorf("transcode: frame rate %v: want 1 to 60", fps)
	}
	t.fpsMilli.Store(int64(fps * 1000))
	return nil
}

// HandleRTCP applies the receiver's feedback about the output stream: PLI and
// FIR force a keyframe, REMB sets the bitrate. Feedback for another SSRC is
// ignored. TWCC feedback carries no estimate by itself: a host running a
// congestion controller on it would call SetBitrate (none does yet: the
// gateway negotiates no transport-cc). It returns an error for a compound
// packet that does not parse.
func (t *Transcoder) HandleRTCP(raw []byte) error {
	pkts, err := rtcp.Unmarshal(raw)
	if err != nil {
		return fmt.Errorf("transcode: RTCP feedback: %w", err)
	}
	ssrc := t.stream.OutSSRC
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.PictureLossIndication:
			if p.MediaSSRC == ssrc {
				t.RequestKeyframe()
			}
		case *rtcp.FullIntraRequest:
			for _, e := range p.FIR {
				// RFC 5104 4.3.1: a repeated sequence number is a retransmission.
				if e.SSRC == ssrc && t.lastFIRSeq.Swap(int32(e.SequenceNumber)) != int32(e.SequenceNumber) {
					t.RequestKeyframe()
				}
			}
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			for _, s := range p.SSRCs {
				if s == ssrc {
					t.SetBitrate(int(min(p.Bitrate, 1e9)))
					break
				}
			}
		}
	}
	return nil
}

// Stats returns the counters as of the last packet (it waits for a packet
// being transcoded).
func (t *Transcoder) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Assembler = t.asm.Stats
	return s
}

// Close releases the codecs. WriteRTP after Close returns ErrClosed.
func (t *Transcoder) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed = true
	t.dec.Close()
	if t.enc != nil {
		t.enc.Close()
	}
}

// WriteRTP takes one RTP packet of the incoming stream. Malformed, late and
// foreign packets are counted and dropped: an error means the transcoder
// itself failed (an encoder that cannot be created) or is closed.
func (t *Transcoder) WriteRTP(raw []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	var ferr error
	ev := t.asm.Push(raw, func(f Frame) {
		if err := t.frame(f); err != nil && ferr == nil {
			ferr = err
		}
	})
	if ev&(EventLoss|EventGarbage|EventNeedKey) != 0 {
		t.requestUpstream()
	}
	return ferr
}

func (t *Transcoder) requestUpstream() {
	now := t.now()
	if !t.lastReqAt.IsZero() && now.Sub(t.lastReqAt) < t.cfg.KeyframeRequestInterval {
		return
	}
	t.lastReqAt = now
	t.stats.KeyframeRequests++
	if t.onKey != nil {
		t.onKey()
	}
}

func (t *Transcoder) frame(f Frame) error {
	if t.haveTS {
		t.unwrap += int64(int32(f.Timestamp - t.lastTS))
	}
	t.lastTS, t.haveTS = f.Timestamp, true
	pts := t.unwrap

	img, err := t.dec.Decode(f.Data)
	if err != nil {
		t.stats.DecodeErrors++
		t.asm.waitKey = true // nothing more until a keyframe
		t.requestUpstream()
		return nil
	}
	if img == nil {
		return nil
	}
	t.stats.FramesDecoded++

	w, h := img.Width&^1, img.Height&^1
	if sz := t.size.Load(); sz != 0 {
		w, h = int(sz>>32), int(sz&0xffffffff)
	}
	fpsMilli := t.fpsMilli.Load()
	if t.feedback.Load() {
		t.adapt(w, h, fpsMilli)
	}
	// A smaller input (or SetResolution) may leave a step below the
	// smallest adapted size: back to the step that keeps it.
	for t.step > 0 && adaptSteps[t.step].size > 1 && (w/adaptSteps[t.step].size < adaptMinW || h/adaptSteps[t.step].size < adaptMinH) {
		t.step--
	}
	st := adaptSteps[t.step]
	w, h, fpsMilli = (w/st.size)&^1, (h/st.size)&^1, fpsMilli/int64(st.fps)

	force := t.forceKey.Load()
	interval := int64(90000*1000) / fpsMilli
	// Frames are sent on a schedule of one per interval, not one per
	// interval after the last one sent: 20 fps in at 15 fps out keeps
	// three frames in four (15 fps), where spacing from the last frame
	// sent would keep one in two (10 fps). A tenth of an interval absorbs
	// timestamp jitter.
	if t.haveOut && !force && pts < t.nextOut-interval/10 {
		t.stats.FramesSkippedByRate++
		return nil
	}

	if w < 2 || h < 2 {
		return nil
	}
	if t.enc != nil {
		// A new size, or a new frame rate the encoder's rate control
		// must know: a new encoder, starting with a keyframe.
		if ew, eh := t.enc.Size(); ew != w || eh != h || t.encStep != t.step {
			t.enc.Close()
			t.enc = nil
		}
	}
	bps := int(t.bitrate.Load())
	if t.enc == nil {
		kf := 0
		if t.cfg.KeyframeInterval > 0 {
			kf = int(t.cfg.KeyframeInterval.Seconds() * float64(fpsMilli) / 1000)
		}
		switch t.stream.To {
		case VP8:
			t.enc, err = newVP8Encoder(w, h, bps, max(kf, 0))
		case H264:
			t.enc, err = newH264Encoder(w, h, bps, float64(fpsMilli)/1000, max(kf, 0))
		}
		if err != nil {
			t.enc = nil
			t.stats.EncodeErrors++
			return err
		}
		t.encBitrate, t.encStep = bps, t.step
		force = true
		t.stats.Width, t.stats.Height = w, h
		t.stats.Adaptation, t.stats.FrameRate = t.step, float64(fpsMilli)/1000
	}
	if bps != t.encBitrate {
		if err := t.enc.SetBitrate(bps); err == nil {
			t.encBitrate = bps
		}
	}
	t.stats.Bitrate = t.encBitrate
	if img.Width != w || img.Height != h {
		if img, err = t.scale.Scale(img, w, h); err != nil {
			t.stats.EncodeErrors++
			return nil
		}
	}
	if force {
		t.forceKey.Store(false)
		t.stats.KeyframesForced++
	}
	dur := int(interval)
	data, key, err := t.enc.Encode(img, pts, dur, force)
	if err != nil {
		t.stats.EncodeErrors++
		t.forceKey.Store(force || t.forceKey.Load())
		return nil
	}
	if data == nil {
		if force {
			t.forceKey.Store(true) // skipped: the next one is the keyframe
		}
		return nil
	}
	// The schedule moves one interval on, or restarts from this frame
	// after a gap (a pause, a forced keyframe far off the schedule).
	if !t.haveOut || pts-t.nextOut >= interval || pts < t.nextOut-interval {
		t.nextOut = pts + interval
	} else {
		t.nextOut += interval
	}
	t.haveOut = true
	t.stats.FramesEncoded++
	if key {
		t.stats.KeyframesSent++
	}
	t.stats.PacketsSent += uint64(t.pay.packetize(data, f.Timestamp, t.out))
	return nil
}

// adapt moves the adaptation step one down or up for the bitrate the
// receiver's feedback set, for pictures of w x h at fpsMilli/1000 frames
// per second before adaptation.
func (t *Transcoder) adapt(w, h int, fpsMilli int64) {
	now := t.now()
	if !t.lastAdapt.IsZero() && now.Sub(t.lastAdapt) < adaptInterval {
		return
	}
	bps := float64(t.bitrate.Load())
	bpp := func(i int) float64 {
		s := adaptSteps[i]
		px := float64(w/s.size) * float64(h/s.size) * float64(fpsMilli) / 1000 / float64(s.fps)
		return bps / max(px, 1)
	}
	switch {
	case t.step+1 < len(adaptSteps) && bpp(t.step) < adaptDownBPP &&
		w/adaptSteps[t.step+1].size >= adaptMinW && h/adaptSteps[t.step+1].size >= adaptMinH:
		t.step++
	case t.step > 0 && bpp(t.step-1) >= adaptUpBPP:
		t.step--
	default:
		return
	}
	t.lastAdapt = now
}

// packetizer turns encoded frames into RTP packets with pion's payloaders.
type packetizer struct {
	codec    Codec
	mtu      int
	vp8      codecs.VP8Payloader
	h264     codecs.H264Payloader
	hdr      rtp.Header
	tsOffset uint32
	buf      []byte
}

func newPacketizer(c Codec, pt uint8, ssrc uint32, mtu int) packetizer {
	return packetizer{
		codec:    c,
		mtu:      mtu,
		vp8:      codecs.VP8Payloader{EnablePictureID: true},
		hdr:      rtp.Header{Version: 2, PayloadType: pt, SSRC: ssrc, SequenceNumber: uint16(rand.Uint32())},
		tsOffset: rand.Uint32(),
		buf:      make([]byte, 1500),
	}
}

func (p *packetizer) packetize(frame []byte, ts uint32, out func([]byte)) int {
	room := uint16(p.mtu - 12)
	var payloads [][]byte
	if p.codec == VP8 {
		payloads = p.vp8.Payload(room, frame)
	} else {
		payloads = p.h264.Payload(room, frame)
	}
	p.hdr.Timestamp = ts + p.tsOffset
	for i, pl := range payloads {
		p.hdr.Marker = i == len(payloads)-1
		n, err := p.hdr.MarshalTo(p.buf)
		if err != nil || n+len(pl) > len(p.buf) {
			continue
		}
		n += copy(p.buf[n:], pl)
		out(p.buf[:n])
		p.hdr.SequenceNumber++
	}
	return len(payloads)
}
