package sip

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/ucgate/ucgate/core"
)

// maxSDP bounds the SDP the adapter will read.
const maxSDP = 16 << 10

// mediaFromSDP converts an SDP body into the core's neutral media
// description. An SDP that does not parse is an error: the caller refuses
// the message with 400.
func mediaFromSDP(body []byte) (*core.MediaDesc, error) {
	if len(body) > maxSDP {
		return nil, fmt.Errorf("sdp of %d bytes exceeds %d", len(body), maxSDP)
	}
	var s sdp.SessionDescription
	if err := s.UnmarshalString(string(body)); err != nil {
		return nil, err
	}
	md := &core.MediaDesc{Origin: s.Origin.UnicastAddress}
	var sessAddr netip.Addr
	if ci := s.ConnectionInformation; ci != nil && ci.Address != nil {
		sessAddr, _ = netip.ParseAddr(ci.Address.Address)
	}
	sessDir := direction(s.Attributes)
	sessFP, _ := s.Attribute("fingerprint")
	for _, m := range s.MediaDescriptions {
		st := core.Stream{
			Type:      m.MediaName.Media,
			Protocol:  strings.Join(m.MediaName.Protos, "/"),
			Direction: direction(m.Attributes),
			Disabled:  m.MediaName.Port.Value == 0,
		}
		if st.Direction == "" {
			st.Direction = sessDir
		}
		if st.Direction == "" {
			st.Direction = "sendrecv"
		}
		addr := sessAddr
		if ci := m.ConnectionInformation; ci != nil && ci.Address != nil {
			if a, err := netip.ParseAddr(ci.Address.Address); err == nil {
				addr = a
			}
		}
		if addr.IsValid() && m.MediaName.Port.Value > 0 && m.MediaName.Port.Value < 65536 {
			st.Addr = netip.AddrPortFrom(addr, uint16(m.MediaName.Port.Value))
		}
		rtpmaps := map[uint8]*core.Codec{}
		for _, f := range m.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 7)
			if err != nil {
				continue
			}
			st.Codecs = append(st.Codecs, core.Codec{PT: uint8(pt), Name: staticName(uint8(pt)), Rate: staticRate(uint8(pt))})
		}
		for i := range st.Codecs {
			rtpmaps[st.Codecs[i].PT] = &st.Codecs[i]
		}
		for _, a := range m.Attributes {
			switch a.Key {
			case "rtpmap":
				pt, name, rate, ch, ok := parseRtpmap(a.Value)
				if c := rtpmaps[pt]; ok && c != nil {
					c.Name, c.Rate, c.Channels = name, rate, ch
				}
			case "fmtp":
				if sp := strings.IndexByte(a.Value, ' '); sp > 0 {
					if pt, err := strconv.ParseUint(a.Value[:sp], 10, 7); err == nil {
						if c := rtpmaps[uint8(pt)]; c != nil {
							c.Params = a.Value[sp+1:]
						}
					}
				}
			case "crypto":
				if c, ok := parseCrypto(a.Value); ok {
					st.Crypto = append(st.Crypto, c)
				}
			case "fingerprint":
				st.Fingerprint = a.Value
			case "ice-ufrag", "candidate":
				st.ICE = true
			case "rtcp-mux":
				st.RTCPMux = true
			case "rtcp":
				port, _, _ := strings.Cut(strings.TrimSpace(a.Value), " ")
				if p, err := strconv.ParseUint(port, 10, 16); err == nil && addr.IsValid() {
					st.RTCP = netip.AddrPortFrom(addr, uint16(p))
				}
			}
		}
		if st.Fingerprint == "" {
			st.Fingerprint = sessFP
		}
		md.Streams = append(md.Streams, st)
	}
	return md, nil
}

func direction(attrs []sdp.Attribute) string {
	for _, a := range attrs {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return a.Key
		}
	}
	return ""
}

// parseRtpmap reads "96 opus/48000/2".
func parseRtpmap(v string) (pt uint8, name string, rate uint32, ch uint8, ok bool) {
	sp := strings.IndexByte(v, ' ')
	if sp <= 0 {
		return
	}
	p, err := strconv.ParseUint(v[:sp], 10, 7)
	if err != nil {
		return
	}
	parts := strings.Split(strings.TrimSpace(v[sp+1:]), "/")
	if len(parts) < 2 {
		return
	}
	r, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil {
		return
	}
	ch = 1
	if len(parts) > 2 {
		if c, err := strconv.ParseUint(parts[2], 10, 8); err == nil {
			ch = uint8(c)
		}
	}
	return uint8(p), parts[0], uint32(r), ch, true
}

// parseCrypto reads "1 AES_CM_128_HMAC_SHA1_80 inline:KEY|2^20|1:32".
func parseCrypto(v string) (core.Crypto, bool) {
	f := strings.Fields(v)
	if len(f) < 3 {
		return core.Crypto{}, false
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil {
		return core.Crypto{}, false
	}
	return core.Crypto{Tag: tag, Suite: f[1], Key: f[2]}, true
}

// staticName names the RTP/AVP static payload types (RFC 3551).
func staticName(pt uint8) string {
	switch pt {
	case 0:
		return "PCMU"
	case 3:
		return "GSM"
	case 4:
		return "G723"
	case 8:
		return "PCMA"
	case 9:
		return "G722"
	case 18:
		return "G729"
	case 34:
		return "H263"
	}
	return ""
}

func staticRate(pt uint8) uint32 {
	if pt < 24 {
		return 8000
	}
	if pt < 96 {
		return 90000
	}
	return 0
}
