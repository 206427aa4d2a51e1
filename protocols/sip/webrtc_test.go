package sip

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ucgate/ucgate/core"
)

func TestMediaCrypto(t *testing.T) {
	for _, tc := range []struct {
		md   *core.MediaDesc
		want string
	}{
		{nil, ""},
		{&core.MediaDesc{Streams: []core.Stream{{Protocol: "UDP/TLS/RTP/SAVPF"}}}, "dtls-srtp"},
		{&core.MediaDesc{Streams: []core.Stream{{Protocol: "RTP/SAVP", Crypto: []core.Crypto{{Tag: 1}}}}}, "sdes-srtp"},
		{&core.MediaDesc{Streams: []core.Stream{{Protocol: "RTP/AVP"}}}, ""},
		{&core.MediaDesc{Streams: []core.Stream{{Protocol: "UDP/TLS/RTP/SAVPF"}, {Protocol: "RTP/AVP"}}}, ""},
		{&core.MediaDesc{Streams: []core.Stream{{Protocol: "UDP/TLS/RTP/SAVPF"}, {Protocol: "RTP/AVP", Disabled: true}}}, "dtls-srtp"},
	} {
		if got := mediaCrypto(tc.md); got != tc.want {
			t.Errorf("mediaCrypto(%+v) = %q, want %q", tc.md, got, tc.want)
		}
	}
}

// TestRTCError: a translation error is a 488 whose phrase says why, in
// one short line.
func TestRTCError(t *testing.T) {
	base := errors.New("webrtc: no common video codec (transcoding not available)")
	err := rtcError(fmt.Errorf("%w: offered h263", base))
	var me *errMedia
	if !errors.As(err, &me) || me.status != 488 || me.phrase != "Not Acceptable Here (no common video codec (transcoding not available))" {
		t.Fatalf("%#v", err)
	}
	err = rtcError(errors.New("x: a\r\nInjected: header"))
	if errors.As(err, &me); me.phrase != "Not Acceptable Here" {
		t.Fatalf("phrase %q", me.phrase)
	}
}
