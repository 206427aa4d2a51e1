package webrtc

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, d := range []time.Duration{0, -time.Second, 3 * time.Minute} {
		c := Defaults()
		c.HandshakeTimeout = d
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "handshake_timeout") {
			t.Errorf("handshake_timeout %v: %v", d, err)
		}
	}
}

func TestConfigFeedback(t *testing.T) {
	for _, n := range []int{-1, 3, 100, 1 << 15} {
		c := Defaults()
		c.NACKBuffer = n
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "nack_buffer: must be 0 or a power of two up to 16384, got") {
			t.Errorf("nack_buffer %d: %v", n, err)
		}
	}
	for _, d := range []time.Duration{-time.Second, time.Millisecond, 2 * time.Minute} {
		c := Defaults()
		c.RTCPInterval = d
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "rtcp_interval") {
			t.Errorf("rtcp_interval %v: %v", d, err)
		}
	}
	c := Defaults()
	c.NACKBuffer, c.RTCPInterval = 0, 0
	if err := c.Validate(); err != nil {
		t.Errorf("no responder, no reports: %v", err)
	}
}
