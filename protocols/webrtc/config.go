package webrtc

import (
	"errors"
	"time"

	"github.com/ucgate/ucgate/core/config"
	"github.com/ucgate/ucgate/core/media"
)

// Config is the webrtc section of ucgate.yaml.
type Config struct {
	// Enabled lets browsers (DTLS-SRTP offers, WebSocket users) call.
	// Default true; false refuses their offers with 488.
	Enabled bool `yaml:"enabled"`
	// HandshakeTimeout bounds the time from the answer to the end of the
	// DTLS handshake on each stream; a leg that has not finished by then
	// ends the call. Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// NACKBuffer is how many packets sent to each browser stream the
	// gateway keeps, by sequence number, to answer the browser's generic
	// NACKs (RFC 4585) itself: the SIP side never negotiates NACK, so it
	// would not. A power of two up to 16384; 0: no responder, and the
	// gateway does not offer nack to browsers. Default 256 (some 1.7 s
	// of video at 150 packets per second, 5 s of 20 ms audio).
	NACKBuffer int `yaml:"nack_buffer"`
	// RTCPInterval is the mean interval of the receiver and sender
	// reports the gateway sends each browser stream while the SIP side
	// sends no RTCP of its own for it (many trunks send none); when the
	// SIP side reports, its reports pass through instead. 0: none.
	// Default 1s.
	RTCPInterval time.Duration `yaml:"rtcp_interval"`
	// Transcoder names the plugin (plugins section, kind: media, e.g.
	// ucgate-transcode) that carries the video of calls whose browser
	// and SIP sides share no codec (VP8 and H.264). Empty: none; such a
	// video stream is refused by one side or the other.
	Transcoder string `yaml:"transcoder"`
}

// Defaults returns the values used where the file says nothing.
func Defaults() Config {
	return Config{Enabled: true, HandshakeTimeout: 10 * time.Second, NACKBuffer: 256, RTCPInterval: time.Second}
}

// Validate reports every problem in c.
func (c Config) Validate() error {
	var errs []error
	if c.HandshakeTimeout <= 0 || c.HandshakeTimeout > 2*time.Minute {
		errs = append(errs, config.Invalid("handshake_timeout", "must be above 0 and at most 2m, got %v", c.HandshakeTimeout))
	}
	if n := c.NACKBuffer; n < 0 || n > media.MaxNACK || n&(n-1) != 0 {
		errs = append(errs, config.Invalid("nack_buffer", "must be 0 or a power of two up to %d, got %d", media.MaxNACK, n))
	}
	if c.RTCPInterval < 0 || (c.RTCPInterval > 0 && c.RTCPInterval < 100*time.Millisecond) || c.RTCPInterval > time.Minute {
		errs = append(errs, config.Invalid("rtcp_interval", "must be 0 (none) or between 100ms and 1m, got %v", c.RTCPInterval))
	}
	return errors.Join(errs...)
}
