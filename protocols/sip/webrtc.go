package sip

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/media"
)

// WebRTC terminates the ICE and DTLS-SRTP of browser legs; cmd/ucgate
// gives protocols/webrtc's. Without it (nil) an offer keyed by DTLS is
// refused with 488.
type WebRTC interface {
	// NewLeg starts the WebRTC side of one leg of a call whose media
	// relays; onFail ends the call when a transport fails.
	NewLeg(session core.SessionID, role string, call *media.Call, src netip.AddrPort, zone string, onFail func(rule, detail string)) WebRTCLeg
	// Narrow filters a SIP leg's offer for a browser: the codecs both
	// sides carry without transcoding; an error when a stream has none.
	Narrow(sdp []byte) ([]byte, error)
}

// WebRTCLeg is the WebRTC side of one leg.
type WebRTCLeg interface {
	// Remote translates the browser's description (offer or answer) for
	// the SIP side and remembers its ICE and DTLS parameters.
	Remote(sdp []byte) ([]byte, error)
	// Local completes a description for the browser with the gateway's
	// ICE-lite credentials, DTLS fingerprint and candidates.
	Local(sdp []byte, offer bool) ([]byte, error)
	// Start runs ICE and DTLS on the relay ports once the streams run.
	Start() error
	// Close stops its transports.
	Close()
}

// isWebSocket reports a browser's transport.
func isWebSocket(transport string) bool {
	return transport == "WS" || transport == "WSS"
}

// rtcLeg returns the WebRTC side of a call side, making it when the
// side's description is keyed by DTLS (a browser, or any WebRTC
// endpoint). nil: the side is plain SIP media.
func (c *call) rtcLeg(side int, body []byte) WebRTCLeg {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rtc[side] != nil || c.a.rtc == nil || c.media == nil {
		return c.rtc[side]
	}
	if body == nil || !bytes.Contains(body, []byte("UDP/TLS/RTP/SAVP")) {
		return nil
	}
	c.newRTCLocked(side)
	return c.rtc[side]
}

// newRTCLocked makes the WebRTC side of a leg; c.mu is held.
func (c *call) newRTCLocked(side int) {
	lg := c.legs[side]
	// ICE decides where the browser's media comes from; the relay learns
	// it from the first packets that authenticate.
	lg.natted = true
	lg.srtp = media.SRTPDTLS
	c.rtc[side] = c.a.rtc.NewLeg(c.sess.ID, roleOf(side), c.media, lg.src, lg.zone, func(rule, detail string) {
		c.a.log.Info("webrtc leg failed", "session", c.sess.ID, "rule", rule, "detail", detail)
		go c.terminate(core.RoleGateway, rule)
	})
}

// errNoWebRTC reports a DTLS-SRTP offer while no WebRTC side is configured.
var errNoWebRTC = errors.New("sip: media keyed by dtls and webrtc is not enabled")

// rtcError answers a description the WebRTC side cannot carry with 488,
// naming why in the reason phrase (a video codec that needs transcoding,
// no common audio codec).
func rtcError(err error) error {
	phrase := "Not Acceptable Here"
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	if i := strings.Index(msg, ": "); i >= 0 {
		msg = msg[:i]
	}
	if msg != "" && len(msg) < 80 && !strings.ContainsAny(msg, "\r\n") {
		phrase += " (" + msg + ")"
	}
	return &errMedia{488, phrase, err}
}

// mediaCrypto names how a description protects its media, for the CDR:
// "dtls-srtp", "sdes-srtp" or "" (plain RTP or nothing enabled).
func mediaCrypto(md *core.MediaDesc) string {
	if md == nil {
		return ""
	}
	kind := ""
	for _, s := range md.Streams {
		if s.Disabled {
			continue
		}
		switch {
		case strings.HasPrefix(s.Protocol, "UDP/TLS/"):
			kind = "dtls-srtp"
		case len(s.Crypto) > 0 || strings.HasPrefix(s.Protocol, "RTP/SAVP"):
			if kind == "" {
				kind = "sdes-srtp"
			}
		default:
			return ""
		}
	}
	return kind
}
