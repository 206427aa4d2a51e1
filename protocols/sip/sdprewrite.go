package sip

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/pion/sdp/v3"

	"github.com/ucgate/ucgate/core"
)

// errStreams reports a media description that does not match the SDP it
// is applied to.
var errStreams = errors.New("sip: media description and SDP disagree on the streams")

// dropAttrs are the attributes that would leak a peer's transport to the
// other leg or mislead it once media is anchored: ICE, DTLS, the peer's
// own RTCP address and SDES keys (the gateway writes its own).
var dropAttrs = map[string]bool{
	"candidate": true, "end-of-candidates": true, "ice-ufrag": true, "ice-pwd": true,
	"ice-options": true, "ice-lite": true, "ice-mismatch": true, "remote-candidates": true,
	"fingerprint": true, "setup": true, "tls-id": true, "rtcp": true, "crypto": true,
	"rtcp-mux": true, "rtcp-mux-only": true,
}

// rewriteSDP writes the SDP the other leg gets: the original description
// with every stream pointed at the gateway's relay endpoint from md (its
// address, port, RTCP port, profile, keys), the origin naming the
// gateway, and nothing of the peer's transport left in it. Payload
// formats, codecs and their parameters pass unchanged.
func rewriteSDP(body []byte, md *core.MediaDesc, origin string) ([]byte, error) {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(string(body)); err != nil {
		return nil, err
	}
	if len(s.MediaDescriptions) != len(md.Streams) {
		return nil, fmt.Errorf("%w: %d m= lines, %d streams", errStreams, len(s.MediaDescriptions), len(md.Streams))
	}
	s.Origin.Username = "-"
	s.Origin.NetworkType = "IN"
	s.Origin.AddressType, s.Origin.UnicastAddress = addrType(origin), origin
	s.Attributes = keepAttrs(s.Attributes)
	s.ConnectionInformation = nil
	for i, m := range s.MediaDescriptions {
		st := md.Streams[i]
		if st.Disabled || !st.Addr.IsValid() {
			m.MediaName.Port = sdp.RangedPort{Value: 0}
			m.Attributes = keepAttrs(m.Attributes)
			continue
		}
		ip := st.Addr.Addr().Unmap().String()
		m.MediaName.Port = sdp.RangedPort{Value: int(st.Addr.Port())}
		if st.Protocol != "" {
			m.MediaName.Protos = splitProto(st.Protocol)
		}
		m.ConnectionInformation = &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType(ip), Address: &sdp.Address{Address: ip}}
		attrs := keepAttrs(m.Attributes)
		if st.RTCPMux {
			attrs = append(attrs, sdp.NewPropertyAttribute("rtcp-mux"))
		} else if st.RTCP.IsValid() && st.RTCP.Port() != st.Addr.Port()+1 {
			attrs = append(attrs, sdp.NewAttribute("rtcp", strconv.Itoa(int(st.RTCP.Port()))))
		}
		for _, c := range st.Crypto {
			attrs = append(attrs, sdp.NewAttribute("crypto", strconv.Itoa(c.Tag)+" "+c.Suite+" "+c.Key))
		}
		m.Attributes = attrs
	}
	// A session-level c= line is what old parsers look for first: point it
	// at the first active stream.
	for _, m := range s.MediaDescriptions {
		if m.ConnectionInformation != nil {
			ci := *m.ConnectionInformation
			s.ConnectionInformation = &ci
			break
		}
	}
	if s.ConnectionInformation == nil {
		s.ConnectionInformation = &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType(origin), Address: &sdp.Address{Address: origin}}
	}
	return s.Marshal()
}

func keepAttrs(in []sdp.Attribute) []sdp.Attribute {
	out := in[:0:0]
	for _, a := range in {
		if !dropAttrs[a.Key] {
			out = append(out, a)
		}
	}
	return out
}

func addrType(ip string) string {
	for i := 0; i < len(ip); i++ {
		if ip[i] == ':' {
			return "IP6"
		}
	}
	return "IP4"
}

func splitProto(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}
