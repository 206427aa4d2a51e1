package core

import "net/netip"

// MediaPacket is one RTP or RTCP packet as a content stage sees it. Data
// is the packet in the clear (an SRTP leg's packets are decrypted first)
// and must not be retained; the header fields are parsed once by the relay.
type MediaPacket struct {
	Data []byte
	Src  netip.AddrPort
	RTCP bool
	// Now is the relay's monotonic clock when the packet arrived, in
	// nanoseconds; stages use it instead of reading the time themselves.
	Now int64
	// RTP header fields, valid when !RTCP and Parsed.
	Parsed    bool
	Version   uint8
	Marker    bool
	PT        uint8
	Seq       uint16
	Timestamp uint32
	SSRC      uint32
	HeaderLen int
}

// StreamInfo describes one direction of one media stream to the content
// stages when it starts and whenever it is renegotiated.
type StreamInfo struct {
	Session SessionID
	Index   int    // the m= line
	Type    string // "audio", "video", ...
	// From is the role of the leg the packets come from (RoleCaller or
	// RoleCallee); Zone is that leg's zone.
	From string
	Zone string
	// Codecs are the payload formats negotiated for the stream.
	Codecs []Codec
	// Encrypted says the leg the packets come from is SRTP or DTLS-SRTP.
	Encrypted bool
}

// StreamGuard judges the packets of one direction of one stream. Check is
// called for every packet, from one goroutine at a time, and must not
// allocate; Renegotiate is called (from another goroutine, between
// packets) after a re-INVITE changed the stream; Close when it ends.
type StreamGuard interface {
	Check(p *MediaPacket) Verdict
	Renegotiate(info *StreamInfo)
	Close()
}

// MediaStage is the optional ability of a content stage to guard media
// streams: Guard returns the guard of a new stream direction, or nil when
// the stage has nothing to check on it.
type MediaStage interface {
	Guard(info *StreamInfo) StreamGuard
}

// Guards returns the guards of every content stage for a new stream
// direction, in StageOrder.
func (p *Pipeline) Guards(info *StreamInfo) []StreamGuard {
	if p == nil {
		return nil
	}
	var out []StreamGuard
	for _, s := range p.content {
		if m, ok := s.(MediaStage); ok {
			if g := m.Guard(info); g != nil {
				out = append(out, g)
			}
		}
	}
	return out
}
