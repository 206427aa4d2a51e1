package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/ucgate/ucgate/plugins/sdk"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
	"github.com/ucgate/ucgate/transcode"
)

// Errors of Open, as the host sees them (the stream is refused).
var (
	errBusy  = errors.New("ucgate-transcode: too many streams")
	errCodec = errors.New("ucgate-transcode: unsupported stream")
)

// media serves the media kind of the plugin contract: each Relay stream is
// one direction of one video stream, transcoded.
type media struct {
	cfg        transcode.Config
	maxStreams int64
	open       atomic.Int64
	log        *slog.Logger
}

var _ sdk.Media = (*media)(nil)

// codecOf maps a contract codec to a transcoder codec; it refuses what this
// transcoder cannot send or take (a 90 kHz clock is the only one for video,
// and H.264 only in packetization mode 1).
func codecOf(c *pb.Codec) (transcode.Codec, error) {
	if c == nil {
		return 0, fmt.Errorf("%w: no codec", errCodec)
	}
	tc, err := transcode.ParseCodec(c.GetName())
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errCodec, err)
	}
	if c.GetPt() > 127 || c.GetRate() != 0 && c.GetRate() != 90000 {
		return 0, fmt.Errorf("%w: %s payload type %d clock rate %d", errCodec, tc, c.GetPt(), c.GetRate())
	}
	if tc == transcode.H264 {
		for _, kv := range strings.Split(c.GetParams(), ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			if strings.EqualFold(k, "packetization-mode") && strings.TrimSpace(v) != "1" {
				return 0, fmt.Errorf("%w: H.264 packetization-mode %s (only 1 is sent and taken)", errCodec, v)
			}
		}
	}
	return tc, nil
}

// Open starts one stream direction: the transcoder is created with the
// first RTP packet, whose SSRC the output keeps.
func (m *media) Open(_ context.Context, o *pb.MediaOpen, send func(*pb.Packet) error) (sdk.MediaStream, error) {
	from, err := codecOf(o.GetIn())
	if err != nil {
		return nil, err
	}
	to, err := codecOf(o.GetOut())
	if err != nil {
		return nil, err
	}
	if from == to {
		return nil, fmt.Errorf("%w: %s to %s is not a transcoding", errCodec, from, to)
	}
	cfg := m.cfg
	if b := int(o.GetBitrate()); b > 0 {
		cfg.Bitrate = max(cfg.MinBitrate, min(cfg.MaxBitrate, b))
	}
	if w, h := int(o.GetWidth())&^1, int(o.GetHeight())&^1; w > 0 && h > 0 && w <= 4096 && h <= 2304 {
		cfg.Width, cfg.Height = w, h
	}
	if f := o.GetFps(); f >= 1 && f <= 60 {
		cfg.FrameRate = float64(f)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", errCodec, err)
	}
	if m.open.Add(1) > m.maxStreams {
		m.open.Add(-1)
		return nil, errBusy
	}
	s := &stream{
		m:    m,
		cfg:  cfg,
		spec: transcode.Stream{From: from, To: to, InPayloadType: uint8(o.GetIn().GetPt()), OutPayloadType: uint8(o.GetOut().GetPt())},
		send: send,
		log:  m.log.With("session", o.GetSession(), "stream", o.GetStream(), "from", from.String(), "to", to.String()),
	}
	s.log.Debug("stream open")
	return s, nil
}

// stream is one transcoded stream direction.
type stream struct {
	m    *media
	cfg  transcode.Config
	spec transcode.Stream
	send func(*pb.Packet) error
	log  *slog.Logger

	mu      sync.Mutex // Packet and Close
	t       *transcode.Transcoder
	inSSRC  uint32
	closed  bool
	hdr     rtp.Header
	sendErr error
}

// Packet takes one packet from the host: RTP of the incoming stream, or
// RTCP feedback from the receiver of the outgoing one (PLI, FIR, REMB).
func (s *stream) Packet(p *pb.Packet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return transcode.ErrClosed
	}
	if p.GetRtcp() {
		if s.t != nil {
			// Unparsable feedback is the receiver's problem, not the stream's.
			_ = s.t.HandleRTCP(p.GetData())
		}
		return nil
	}
	if s.t == nil {
		if _, err := s.hdr.Unmarshal(p.GetData()); err != nil || uint8(s.hdr.PayloadType) != s.spec.InPayloadType {
			return nil // not the stream's first packet: dropped
		}
		s.inSSRC = s.hdr.SSRC
		s.spec.OutSSRC = s.hdr.SSRC
		t, err := transcode.New(s.cfg, s.spec, s.out, s.keyframeRequest)
		if err != nil {
			return err
		}
		s.t = t
	}
	if err := s.t.WriteRTP(p.GetData()); err != nil {
		return err
	}
	return s.sendErr
}

// out sends one transcoded RTP packet to the host.
func (s *stream) out(pkt []byte) {
	if s.sendErr != nil {
		return
	}
	s.sendErr = s.send(&pb.Packet{Data: append([]byte(nil), pkt...)})
}

// keyframeRequest asks the sender of the incoming stream for a keyframe: a
// PLI (RFC 4585) the host forwards upstream.
func (s *stream) keyframeRequest() {
	if s.sendErr != nil {
		return
	}
	b, err := (&rtcp.PictureLossIndication{SenderSSRC: s.spec.OutSSRC, MediaSSRC: s.inSSRC}).Marshal()
	if err != nil {
		return
	}
	s.sendErr = s.send(&pb.Packet{Data: b, Rtcp: true})
}

// Close ends the stream and releases its codecs.
func (s *stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.m.open.Add(-1)
	if s.t != nil {
		st := s.t.Stats()
		s.t.Close()
		s.log.Debug("stream closed", "frames_in", st.Assembler.Frames, "frames_out", st.FramesEncoded,
			"lost", st.Assembler.Lost, "garbage", st.Assembler.Garbage, "decode_errors", st.DecodeErrors,
			"keyframe_requests", st.KeyframeRequests)
	}
	return nil
}
