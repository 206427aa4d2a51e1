package sip

import (
	"bytes"
	"errors"
	"net/netip"

	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/media"
)

// noOffer marks a call with no offer outstanding.
const noOffer = -1

// errMedia carries the SIP status a media failure is answered with.
type errMedia struct {
	status int
	phrase string
	err    error
}

func (e *errMedia) Error() string { return e.err.Error() }
func (e *errMedia) Unwrap() error { return e.err }

// mediaError maps the engine's errors to SIP: no relay port left is a
// temporary failure (503), anything about the offer itself is 488.
func mediaError(err error) error {
	if errors.Is(err, media.ErrNoPorts) {
		return &errMedia{503, "Service Unavailable", err}
	}
	return &errMedia{488, "Not Acceptable Here", err}
}

func roleOf(side int) string {
	if side == sideA {
		return core.RoleCaller
	}
	return core.RoleCallee
}

// sdpBody copies the body of a message from side `from` to the message
// going to the other side. With media anchored, an SDP offer or answer goes
// through the call's relay: the other side gets the gateway's relay
// endpoints, keys and origin, never the peer's. Without anchoring, only
// the origin is hidden. offer says whether the SDP is an offer (true) or
// the answer to the other side's offer.
func (c *call) sdpBody(from int, offer bool, m message, to sip.Message) error {
	body := m.Body()
	other := c.legs[1-from]
	if len(body) == 0 {
		to.SetBody(nil)
		return nil
	}
	if c.media == nil || !isSDP(m) {
		setBody(m, to, other.l.host)
		return nil
	}
	// A browser's side (ICE and DTLS-SRTP) is translated on the way in
	// and completed on the way out; a SIP side's offer to a browser is
	// narrowed to the codecs a browser carries.
	rtcFrom, rtcTo := c.rtcLeg(from, body), c.rtcLeg(1-from, nil)
	switch {
	case rtcFrom != nil:
		t, err := rtcFrom.Remote(body)
		if err != nil {
			return rtcError(err)
		}
		body = t
	case rtcTo != nil && offer:
		t, err := c.a.rtc.Narrow(body)
		if err != nil {
			return rtcError(err)
		}
		body = t
	case bytes.Contains(body, []byte("UDP/TLS/RTP/SAVP")):
		return &errMedia{488, "Not Acceptable Here", errNoWebRTC}
	}
	md, err := mediaFromSDP(body)
	if err != nil {
		return &errMedia{400, "Malformed SDP", err}
	}
	peer := c.peerInfo(from)
	var out *core.MediaDesc
	switch {
	case offer && c.answered:
		out, err = c.media.Update(roleOf(from), md, peer)
	case offer:
		out, err = c.media.Offer(roleOf(from), md, peer)
	default:
		out, err = c.media.Answer(roleOf(from), md, peer)
	}
	if err != nil {
		return mediaError(err)
	}
	c.mu.Lock()
	c.mediaEnc[from] = md.Encrypted() || rtcFrom != nil
	c.mediaEnc[1-from] = out.Encrypted() || rtcTo != nil
	if offer {
		c.offerFrom = from
	} else {
		c.offerFrom = noOffer
	}
	c.mu.Unlock()
	c.sess.UpdateLeg(roleOf(from), func(l *core.Leg) { l.MediaCrypto = mediaCrypto(md) })
	c.sess.UpdateLeg(roleOf(1-from), func(l *core.Leg) { l.MediaCrypto = mediaCrypto(out) })
	if !offer {
		// The streams run now: ICE and DTLS start on the browser's side.
		for _, l := range []WebRTCLeg{rtcFrom, rtcTo} {
			if l != nil {
				if err := l.Start(); err != nil {
					return &errMedia{488, "Not Acceptable Here", err}
				}
			}
		}
	}
	text, err := rewriteSDP(body, out, other.l.host)
	if err != nil {
		return &errMedia{488, "Not Acceptable Here", err}
	}
	if text, err = c.transcodeSDP(from, offer, rtcFrom != nil || rtcTo != nil, text); err != nil {
		return err
	}
	if rtcTo != nil {
		if text, err = rtcTo.Local(text, offer); err != nil {
			return &errMedia{488, "Not Acceptable Here", err}
		}
	}
	to.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	to.SetBody(text)
	return nil
}

// isOffer says whether SDP from side `from` now is an offer: it is an
// answer only when the other side's offer is outstanding.
func (c *call) isOffer(from int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offerFrom != 1-from
}

// peerInfo is what the signalling tells the relay about the sender on one
// side, and about the other side's needs.
func (c *call) peerInfo(from int) media.PeerInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	sender, other := c.legs[from], c.legs[1-from]
	p := media.PeerInfo{Addr: sender.src, Zone: sender.zone, BehindNAT: sender.natted, SRTP: other.srtp}
	if other.src.Addr().Is4() {
		p.Family = media.FamilyIPv4
	} else if other.src.IsValid() {
		p.Family = media.FamilyIPv6
	}
	return p
}

// behindNAT guesses from a request whether its sender is behind NAT: its
// SDP names a private address other than the one it sends from, or its
// Via names another address than the source (RFC 3581's received case).
func behindNAT(req *sip.Request, src netip.AddrPort, md *core.MediaDesc) bool {
	if v := req.Via(); v != nil {
		if ip, err := netip.ParseAddr(trimBrackets(v.Host)); err == nil && ip.Unmap() != src.Addr() {
			return true
		}
	}
	if md == nil {
		return false
	}
	for _, s := range md.Streams {
		if a := s.Addr.Addr(); s.Addr.IsValid() && a != src.Addr() && (a.IsPrivate() || a.IsLinkLocalUnicast()) {
			return true
		}
	}
	return false
}

// srtpMode reads an upstream's media protection setting.
func srtpMode(s string) media.SRTPMode {
	switch s {
	case "none":
		return media.SRTPNone
	case "sdes":
		return media.SRTPWant
	case "sdes_optional":
		return media.SRTPOffer
	}
	return media.SRTPAuto
}
