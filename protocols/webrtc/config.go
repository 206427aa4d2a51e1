package webrtc

import (
	"errors"
	"time"

	"github.com/ucgate/ucgate/core/config"
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
}

// Defaults returns the values used where the file says nothing.
func Defaults() Config {
	return Config{Enabled: true, HandshakeTimeout: 10 * time.Second}
}

// Validate reports every problem in c.
func (c Config) Validate() error {
	var errs []error
	if c.HandshakeTimeout <= 0 || c.HandshakeTimeout > 2*time.Minute {
		errs = append(errs, config.Invalid("handshake_timeout", "must be above 0 and at most 2m, got %v", c.HandshakeTimeout))
	}
	return errors.Join(errs...)
}
