package main

import (
	"strings"
	"testing"

	"github.com/ucgate/ucgate/plugins/host"
)

func TestValidateTranscoder(t *testing.T) {
	c := defaults()
	if err := validateTranscoder(c); err != nil {
		t.Fatalf("no transcoder: %v", err)
	}
	c.WebRTC.Transcoder = "transcode"
	if err := validateTranscoder(c); err == nil || !strings.Contains(err.Error(), "webrtc.transcoder") || !strings.Contains(err.Error(), `no plugin named "transcode"`) {
		t.Fatalf("missing plugin: %v", err)
	}
	c.Plugins = []host.Config{{Name: "transcode", Kind: "stage"}}
	if err := validateTranscoder(c); err == nil || !strings.Contains(err.Error(), "not media") {
		t.Fatalf("stage plugin: %v", err)
	}
	c.Plugins[0].Kind = "media"
	if err := validateTranscoder(c); err != nil {
		t.Fatalf("media plugin: %v", err)
	}
}
