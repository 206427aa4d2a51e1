package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
	"github.com/ucgate/ucgate/plugins/host"
	"github.com/ucgate/ucgate/plugins/sdk"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
	"github.com/ucgate/ucgate/protocols/sip"
)

// tcQueue bounds the packets waiting for the plugin, per stream
// direction; beyond it they are dropped (the transcoder asks for a
// keyframe when frames are missing).
const tcQueue = 256

// tcGrace is how long a stream the plugin ended waits for the host to say
// why (crashed, hung) before it is reported as failed on its own.
const tcGrace = 5 * time.Second

// validateTranscoder checks that webrtc.transcoder names a media plugin.
func validateTranscoder(c Config) error {
	name := c.WebRTC.Transcoder
	if name == "" {
		return nil
	}
	for _, p := range c.Plugins {
		if p.Name == name {
			if p.Kind != sdk.KindMedia {
				return config.Invalid("webrtc.transcoder", "plugin %q is of kind %s, not media", name, p.Kind)
			}
			return nil
		}
	}
	return config.Invalid("webrtc.transcoder", "no plugin named %q in the plugins section", name)
}

// transcoder is the SIP adapter's video transcoder: the media plugin
// named by webrtc.transcoder, run by the plugin host.
type transcoder struct {
	h    *host.Host
	name string

	mu      sync.Mutex
	streams map[core.SessionID]map[*tcStream]bool
}

// newTranscoder returns the transcoder of the configuration, or nil.
func (gw *gateway) newTranscoder() sip.Transcoder {
	name := gw.cfg.WebRTC.Transcoder
	if name == "" || gw.plugins == nil || gw.rtc == nil {
		return nil
	}
	t := &transcoder{h: gw.plugins, name: name, streams: map[core.SessionID]map[*tcStream]bool{}}
	gw.plugins.OnMediaLost(t.onLost)
	return t
}

// Available implements sip.Transcoder.
func (t *transcoder) Available() bool {
	for _, s := range t.h.Status() {
		if s.Name == t.name {
			return s.State == host.StateRunning
		}
	}
	return false
}

func pbCodec(c sip.VideoCodec) *pb.Codec {
	return &pb.Codec{Pt: uint32(c.PT), Name: c.Name, Rate: c.Rate, Params: c.Params}
}

// Open implements sip.Transcoder.
func (t *transcoder) Open(session core.SessionID, index int, in, out sip.VideoCodec, recv func([]byte, bool), lost func(string)) (sip.TranscodeStream, error) {
	s := &tcStream{t: t, session: session, lost: lost, ch: make(chan *pb.Packet, tcQueue), done: make(chan struct{})}
	o := &pb.MediaOpen{Session: string(session), Stream: uint32(index), In: pbCodec(in), Out: pbCodec(out)}
	// The stream lives until Close: its context is not the call's setup.
	conn, err := t.h.OpenMedia(context.Background(), t.name, session, o, func(p *pb.Packet) {
		recv(p.GetData(), p.GetRtcp())
	})
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", t.name, err)
	}
	s.conn = conn
	t.mu.Lock()
	if t.streams[session] == nil {
		t.streams[session] = map[*tcStream]bool{}
	}
	t.streams[session][s] = true
	t.mu.Unlock()
	go s.pump()
	go s.watch()
	return s, nil
}

// onLost is the host's report that the plugin stopped under a session's
// streams.
func (t *transcoder) onLost(session core.SessionID, reason string) {
	t.mu.Lock()
	list := t.streams[session]
	t.mu.Unlock()
	for s := range list {
		s.fail(reason)
	}
}

func (t *transcoder) forget(s *tcStream) {
	t.mu.Lock()
	delete(t.streams[s.session], s)
	if len(t.streams[s.session]) == 0 {
		delete(t.streams, s.session)
	}
	t.mu.Unlock()
}

// tcStream is one direction open through the plugin.
type tcStream struct {
	t       *transcoder
	session core.SessionID
	conn    *sdk.MediaConn
	lost    func(string)
	ch      chan *pb.Packet
	done    chan struct{}
	once    sync.Once // done, and lost at most once
}

// Send implements sip.TranscodeStream: it never blocks the relay.
func (s *tcStream) Send(pkt []byte, rtcp bool) {
	select {
	case s.ch <- &pb.Packet{Data: bytes.Clone(pkt), Rtcp: rtcp}:
	default:
	}
}

// pump sends the queued packets to the plugin.
func (s *tcStream) pump() {
	for {
		select {
		case <-s.done:
			return
		case p := <-s.ch:
			if err := s.conn.Send(p); err != nil {
				return // watch sees the stream end
			}
		}
	}
}

// watch waits for the stream to end: closed by the call, or ended under
// it (then the host says why within tcGrace, or it failed on its own).
func (s *tcStream) watch() {
	select {
	case <-s.done:
		return
	case <-s.conn.Done():
	}
	select {
	case <-s.done:
	case <-time.After(tcGrace):
		s.fail("plugin_stream_failed")
	}
}

// fail ends the stream and tells the call why.
func (s *tcStream) fail(reason string) {
	first := false
	s.once.Do(func() { close(s.done); first = true })
	if !first {
		return
	}
	s.t.forget(s)
	_ = s.t.h.CloseMedia(s.t.name, s.conn) // the host holds the stream until then
	s.lost(reason)
}

// Close implements sip.TranscodeStream.
func (s *tcStream) Close() {
	first := false
	s.once.Do(func() { close(s.done); first = true })
	if !first {
		return
	}
	s.t.forget(s)
	_ = s.t.h.CloseMedia(s.t.name, s.conn)
}
