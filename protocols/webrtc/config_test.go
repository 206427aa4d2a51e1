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
