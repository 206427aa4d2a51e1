package core

import "net/netip"

// MediaDesc is a media offer or answer in neutral form: what each stream
// carries, where it should be sent and how it is protected.
type MediaDesc struct {
	// Origin is the address the description claims to come from (SDP o=).
	Origin  string
	Streams []Stream
}

// Stream is one media stream (SDP m= line).
type Stream struct {
	Type      string         // "audio", "video", "application", "text", "message"
	Addr      netip.AddrPort // where the peer wants to receive; zero if unresolvable
	RTCP      netip.AddrPort // explicit RTCP address, if given
	Protocol  string         // "RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", ...
	Direction string         // "sendrecv", "sendonly", "recvonly", "inactive"
	Disabled  bool           // port 0: the stream was refused or removed
	Codecs    []Codec
	Crypto    []Crypto // SDES offers (RFC 4568)
	// Fingerprint is the DTLS certificate fingerprint ("sha-256 AB:CD:..").
	Fingerprint string
	ICE         bool // ICE credentials or candidates are present
	RTCPMux     bool
}

// Codec is one payload format of a stream.
type Codec struct {
	PT       uint8
	Name     string // encoding name as the peer wrote it, e.g. "PCMU", "opus", "H264"
	Rate     uint32 // clock rate
	Channels uint8
	Params   string // fmtp parameters, verbatim
}

// Crypto is one SDES crypto attribute. The key material stays with the
// media engine: the journal records only the suite.
type Crypto struct {
	Tag   int
	Suite string
	Key   string `json:"-"`
}

// Encrypted reports whether every enabled stream is protected.
func (m *MediaDesc) Encrypted() bool {
	if m == nil || len(m.Streams) == 0 {
		return false
	}
	for _, s := range m.Streams {
		if s.Disabled {
			continue
		}
		if len(s.Crypto) == 0 && s.Fingerprint == "" {
			return false
		}
	}
	return true
}
