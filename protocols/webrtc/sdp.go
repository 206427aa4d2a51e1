package webrtc

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// maxSDP bounds a description this package reads.
const maxSDP = 16 << 10

// Errors of the translation. The SIP adapter answers each with 488.
var (
	// ErrNoAudioCodec reports an audio stream with no codec in the common
	// set.
	ErrNoAudioCodec = errors.New("webrtc: no common audio codec")
	// ErrVideoCodec reports a video stream whose codecs the other side
	// cannot decode: it needs the transcoding plugin, which is not there.
	ErrVideoCodec = errors.New("webrtc: no common video codec (transcoding not available)")
	// ErrSDP reports a description that does not parse or is too large.
	ErrSDP = errors.New("webrtc: unusable session description")
	// ErrNoICE reports a WebRTC stream without ICE credentials or a DTLS
	// fingerprint.
	ErrNoICE = errors.New("webrtc: stream without ice credentials or dtls fingerprint")
)

// commonAudio and commonVideo are the codecs both a browser and a SIP
// trunk carry without transcoding, by lower-case encoding name.
// telephone-event carries DTMF (RFC 4733) beside them.
var (
	commonAudio = map[string]bool{"opus": true, "pcmu": true, "pcma": true, "telephone-event": true}
	commonVideo = map[string]bool{"vp8": true, "h264": true}
)

// webrtcOnly are attributes that mean something only between WebRTC
// peers (bundling, stream identification, header extensions, feedback of
// the AVPF profile the SIP side does not speak). ICE and DTLS attributes
// stay for the SIP adapter's media engine to see; it drops them itself.
var webrtcOnly = map[string]bool{
	"group": true, "msid-semantic": true, "extmap-allow-mixed": true, "mid": true, "msid": true,
	"ssrc": true, "ssrc-group": true, "extmap": true, "rtcp-fb": true, "rtcp-rsize": true,
	"rid": true, "simulcast": true, "bundle-only": true, "sctp-port": true, "max-message-size": true,
}

// streamParams are what a browser's description says about one stream's
// transport.
type streamParams struct {
	ufrag, pwd   string
	fingerprints []certFP
	setup        string // actpass, active, passive
	mid          string
	nack         map[string]bool // formats with generic NACK (rtcp-fb nack), "*" for all
}

type certFP struct{ alg, value string }

// remoteDesc is what this package keeps of a browser's description.
type remoteDesc struct {
	streams []streamParams
}

// parse reads a description with the package's bounds.
func parse(body []byte) (*sdp.SessionDescription, error) {
	if len(body) > maxSDP {
		return nil, fmt.Errorf("%w: %d bytes", ErrSDP, len(body))
	}
	if !bytes.HasPrefix(body, []byte("v=0")) {
		return nil, fmt.Errorf("%w: no v=0 line first", ErrSDP)
	}
	var s sdp.SessionDescription
	if err := s.UnmarshalString(string(body)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSDP, err)
	}
	if len(s.MediaDescriptions) > 16 {
		return nil, fmt.Errorf("%w: %d streams", ErrSDP, len(s.MediaDescriptions))
	}
	return &s, nil
}

// fromBrowser translates a browser's description for the SIP side: each
// stream narrowed to the common codecs, WebRTC-only attributes dropped,
// and its address set to the browser's host candidate in the family of
// the signalling source (so that an IPv6 browser gets an IPv6 relay
// port). ICE and DTLS attributes stay. It returns the stream parameters
// it read.
func fromBrowser(body []byte, family netip.Addr) ([]byte, *remoteDesc, error) {
	s, err := parse(body)
	if err != nil {
		return nil, nil, err
	}
	sess := paramsOf(s.Attributes, streamParams{})
	rd := &remoteDesc{}
	s.Attributes = dropWebRTC(s.Attributes)
	for _, m := range s.MediaDescriptions {
		p := paramsOf(m.Attributes, sess)
		rd.streams = append(rd.streams, p)
		if m.MediaName.Port.Value == 0 {
			m.Attributes = dropWebRTC(m.Attributes)
			continue
		}
		if !strings.HasPrefix(strings.Join(m.MediaName.Protos, "/"), "UDP/TLS/RTP/SAVP") {
			// Not a WebRTC media stream (a data channel): refused.
			m.MediaName.Port = sdp.RangedPort{Value: 0}
			m.Attributes = dropWebRTC(m.Attributes)
			continue
		}
		if p.ufrag == "" || p.pwd == "" || len(p.fingerprints) == 0 {
			return nil, nil, fmt.Errorf("%w: stream %d", ErrNoICE, len(rd.streams)-1)
		}
		if err := narrow(m); err != nil {
			return nil, nil, err
		}
		if c, ok := hostCandidate(m.Attributes, family); ok {
			m.MediaName.Port = sdp.RangedPort{Value: int(c.Port())}
			ip := c.Addr().String()
			m.ConnectionInformation = &sdp.ConnectionInformation{NetworkType: "IN", AddressType: ipType(c.Addr()), Address: &sdp.Address{Address: ip}}
		}
		m.Attributes = dropWebRTC(m.Attributes)
	}
	out, err := marshal(s)
	if err != nil {
		return nil, nil, err
	}
	return out, rd, nil
}

// Narrow filters a SIP leg's offer for a browser: each enabled stream
// narrowed to the common codecs. A video stream with none is refused
// with ErrVideoCodec, an audio stream with none with ErrNoAudioCodec.
func Narrow(body []byte) ([]byte, error) {
	s, err := parse(body)
	if err != nil {
		return nil, err
	}
	for _, m := range s.MediaDescriptions {
		if m.MediaName.Port.Value == 0 {
			continue
		}
		if err := narrow(m); err != nil {
			return nil, err
		}
	}
	return marshal(s)
}

// narrow keeps the formats of m in the common set, with their rtpmap and
// fmtp lines. Streams other than audio and video are left alone.
func narrow(m *sdp.MediaDescription) error {
	var set map[string]bool
	switch m.MediaName.Media {
	case "audio":
		set = commonAudio
	case "video":
		set = commonVideo
	default:
		return nil
	}
	names := map[string]string{}
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		pt, rest, ok := strings.Cut(a.Value, " ")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, "/")
		names[pt] = strings.ToLower(strings.TrimSpace(name))
	}
	keep := map[string]bool{}
	var formats []string
	media := 0
	var refused []string
	for _, f := range m.MediaName.Formats {
		name, ok := names[f]
		if !ok {
			name = staticName(f)
		}
		if set[name] {
			keep[f] = true
			formats = append(formats, f)
			if name != "telephone-event" {
				media++
			}
		} else if name != "" {
			refused = append(refused, name)
		}
	}
	if media == 0 {
		if m.MediaName.Media == "video" {
			return fmt.Errorf("%w: offered %s", ErrVideoCodec, strings.Join(refused, ","))
		}
		return fmt.Errorf("%w: offered %s", ErrNoAudioCodec, strings.Join(refused, ","))
	}
	m.MediaName.Formats = formats
	attrs := m.Attributes[:0:0]
	for _, a := range m.Attributes {
		switch a.Key {
		case "rtpmap", "fmtp", "rtcp-fb":
			pt, _, _ := strings.Cut(a.Value, " ")
			if !keep[pt] {
				continue
			}
		}
		attrs = append(attrs, a)
	}
	m.Attributes = attrs
	return nil
}

// staticName names the static payload types of the common set.
func staticName(pt string) string {
	switch pt {
	case "0":
		return "pcmu"
	case "8":
		return "pcma"
	}
	return ""
}

func dropWebRTC(in []sdp.Attribute) []sdp.Attribute {
	out := in[:0:0]
	for _, a := range in {
		if !webrtcOnly[a.Key] {
			out = append(out, a)
		}
	}
	return out
}

// paramsOf reads a stream's transport parameters, falling back on the
// session's.
func paramsOf(attrs []sdp.Attribute, def streamParams) streamParams {
	p := def
	p.fingerprints = append([]certFP(nil), def.fingerprints...)
	ownFP := false
	for _, a := range attrs {
		switch a.Key {
		case "ice-ufrag":
			p.ufrag = strings.TrimSpace(a.Value)
		case "ice-pwd":
			p.pwd = strings.TrimSpace(a.Value)
		case "setup":
			p.setup = strings.TrimSpace(a.Value)
		case "mid":
			p.mid = strings.TrimSpace(a.Value)
		case "rtcp-fb":
			// Generic NACK only: "nack" with no parameter (not "nack pli").
			if f := strings.Fields(a.Value); len(f) == 2 && f[1] == "nack" && len(p.nack) < 64 {
				if p.nack == nil {
					p.nack = map[string]bool{}
				}
				p.nack[f[0]] = true
			}
		case "fingerprint":
			alg, v, ok := strings.Cut(strings.TrimSpace(a.Value), " ")
			if !ok {
				continue
			}
			if !ownFP {
				p.fingerprints, ownFP = nil, true
			}
			if len(p.fingerprints) < 4 {
				p.fingerprints = append(p.fingerprints, certFP{strings.ToLower(alg), strings.TrimSpace(v)})
			}
		}
	}
	return p
}

// hostCandidate finds the stream's first UDP host candidate in the family
// of want (any family when want is not valid).
func hostCandidate(attrs []sdp.Attribute, want netip.Addr) (netip.AddrPort, bool) {
	var first netip.AddrPort
	for _, a := range attrs {
		if a.Key != "candidate" {
			continue
		}
		// foundation component transport priority address port typ type
		f := strings.Fields(a.Value)
		if len(f) < 8 || !strings.EqualFold(f[2], "udp") || f[6] != "typ" || f[7] != "host" {
			continue
		}
		ip, err := netip.ParseAddr(f[4])
		if err != nil || ip.Zone() != "" {
			continue
		}
		port, err := strconv.ParseUint(f[5], 10, 16)
		if err != nil || port == 0 {
			continue
		}
		c := netip.AddrPortFrom(ip.Unmap(), uint16(port))
		if !want.IsValid() || c.Addr().Is4() == want.Unmap().Is4() {
			return c, true
		}
		if !first.IsValid() {
			first = c
		}
	}
	return first, false
}

func ipType(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "IP4"
	}
	return "IP6"
}

// local are the gateway's transport parameters for one leg.
type local struct {
	ufrag, pwd  string
	fingerprint string // "sha-256 AB:CD:..."
	nack        bool   // the gateway answers generic NACKs (Config.NACKBuffer)
}

// nacks reports whether a browser's stream asked for generic NACK on any
// format.
func (p streamParams) nacks() bool { return len(p.nack) > 0 }

// toBrowser adds what a browser needs to reach the gateway to a
// description the SIP adapter wrote for it (streams already pointed at
// the relay, ICE and DTLS of the other side removed): ICE-lite, the
// gateway's credentials and fingerprint, a DTLS role, RTCP multiplexing,
// the browser's stream identifiers and one host candidate per stream.
// rd is the browser's last description: the one this answers (required
// for an answer), or, for a re-offer, the one that names its streams' mids
// (nil for a first offer).
func toBrowser(body []byte, loc local, rd *remoteDesc, offer bool) ([]byte, error) {
	s, err := parse(body)
	if err != nil {
		return nil, err
	}
	if !offer && (rd == nil || len(rd.streams) != len(s.MediaDescriptions)) {
		n := 0
		if rd != nil {
			n = len(rd.streams)
		}
		return nil, fmt.Errorf("%w: %d streams answered, %d offered", ErrSDP, len(s.MediaDescriptions), n)
	}
	s.Attributes = append(dropWebRTC(s.Attributes), sdp.NewPropertyAttribute("ice-lite"))
	for i, m := range s.MediaDescriptions {
		mid := strconv.Itoa(i)
		if rd != nil && i < len(rd.streams) && rd.streams[i].mid != "" {
			mid = rd.streams[i].mid
		}
		setup := "actpass"
		if !offer {
			setup = "passive"
			if rd.streams[i].setup == "passive" {
				setup = "active"
			}
		}
		attrs := dropWebRTC(m.Attributes)
		if mid != "" {
			attrs = append(attrs, sdp.NewAttribute("mid", mid))
		}
		if m.MediaName.Port.Value == 0 {
			m.Attributes = attrs
			continue
		}
		if !strings.HasPrefix(strings.Join(m.MediaName.Protos, "/"), "UDP/TLS/RTP/SAVP") {
			return nil, fmt.Errorf("%w: stream %d is %s", ErrSDP, i, strings.Join(m.MediaName.Protos, "/"))
		}
		var host string
		if ci := m.ConnectionInformation; ci != nil && ci.Address != nil {
			host = ci.Address.Address
		} else if ci := s.ConnectionInformation; ci != nil && ci.Address != nil {
			host = ci.Address.Address
		}
		if loc.nack && (m.MediaName.Media == "audio" || m.MediaName.Media == "video") {
			// Generic NACK: the gateway answers it from its cache of what
			// it sent (core/media Feedback). Offered on every format;
			// answered on those the browser offered it for.
			for _, pt := range m.MediaName.Formats {
				if offer || rd.streams[i].nack["*"] || rd.streams[i].nack[pt] {
					attrs = append(attrs, sdp.NewAttribute("rtcp-fb", pt+" nack"))
				}
			}
		}
		if m.MediaName.Media == "video" {
			// Picture loss and full intra requests: the relay forwards
			// them to the SIP side, so that video recovers after a loss.
			for _, pt := range m.MediaName.Formats {
				attrs = append(attrs, sdp.NewAttribute("rtcp-fb", pt+" nack pli"), sdp.NewAttribute("rtcp-fb", pt+" ccm fir"))
			}
		}
		attrs = append(attrs,
			sdp.NewAttribute("ice-ufrag", loc.ufrag),
			sdp.NewAttribute("ice-pwd", loc.pwd),
			sdp.NewAttribute("fingerprint", loc.fingerprint),
			sdp.NewAttribute("setup", setup))
		if !hasAttr(attrs, "rtcp-mux") {
			attrs = append(attrs, sdp.NewPropertyAttribute("rtcp-mux"))
		}
		if host != "" {
			attrs = append(attrs, sdp.NewAttribute("candidate",
				fmt.Sprintf("1 1 udp 2130706431 %s %d typ host", host, m.MediaName.Port.Value)))
		}
		attrs = append(attrs, sdp.NewPropertyAttribute("end-of-candidates"))
		m.Attributes = attrs
	}
	return marshal(s)
}

func hasAttr(attrs []sdp.Attribute, key string) bool {
	for _, a := range attrs {
		if a.Key == key {
			return true
		}
	}
	return false
}

// marshal writes a description and checks that it reads back: what
// leaves the gateway is a description its own parser accepts.
func marshal(s *sdp.SessionDescription) ([]byte, error) {
	out, err := s.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSDP, err)
	}
	var back sdp.SessionDescription
	if err := back.UnmarshalString(string(out)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSDP, err)
	}
	return out, nil
}
