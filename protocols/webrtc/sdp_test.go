package webrtc

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

func chromeOffer(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/chrome-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t *testing.T, b []byte) *sdp.SessionDescription {
	t.Helper()
	var s sdp.SessionDescription
	if err := s.UnmarshalString(string(b)); err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, b)
	}
	return &s
}

func attrKeys(attrs []sdp.Attribute) []string {
	var out []string
	for _, a := range attrs {
		out = append(out, a.Key)
	}
	return out
}

// TestFromBrowserChrome translates Chromium's offer for the SIP side.
func TestFromBrowserChrome(t *testing.T) {
	for _, tc := range []struct {
		family string
		addr   string
		port   int
	}{{"127.0.0.1", "127.0.0.1", 51322}, {"::1", "::1", 51323}, {"", "127.0.0.1", 51322}} {
		t.Run("family "+tc.family, func(t *testing.T) {
			var fam netip.Addr
			if tc.family != "" {
				fam = netip.MustParseAddr(tc.family)
			}
			out, rd, err := fromBrowser(chromeOffer(t), fam)
			if err != nil {
				t.Fatal(err)
			}
			s := mustParse(t, out)
			if keys := attrKeys(s.Attributes); slices.Contains(keys, "group") || slices.Contains(keys, "msid-semantic") || slices.Contains(keys, "extmap-allow-mixed") {
				t.Errorf("session attributes %v keep WebRTC-only ones", keys)
			}
			want := [][]string{{"111", "0", "8", "110", "126"}, {"96", "102"}}
			for i, m := range s.MediaDescriptions {
				if !slices.Equal(m.MediaName.Formats, want[i]) {
					t.Errorf("stream %d formats %v, want %v", i, m.MediaName.Formats, want[i])
				}
				keys := attrKeys(m.Attributes)
				for _, k := range []string{"extmap", "ssrc", "msid", "mid", "rtcp-fb", "rtcp-rsize"} {
					if slices.Contains(keys, k) {
						t.Errorf("stream %d keeps a=%s", i, k)
					}
				}
				for _, k := range []string{"ice-ufrag", "ice-pwd", "fingerprint", "setup", "rtcp-mux"} {
					if !slices.Contains(keys, k) {
						t.Errorf("stream %d lost a=%s (the media engine reads it)", i, k)
					}
				}
				for _, a := range m.Attributes {
					if a.Key == "rtpmap" && (strings.Contains(a.Value, "red/") || strings.Contains(a.Value, "G722") || strings.Contains(a.Value, "AV1") || strings.Contains(a.Value, "rtx")) {
						t.Errorf("stream %d keeps %s", i, a.Value)
					}
				}
				if i == 0 && (m.ConnectionInformation == nil || m.ConnectionInformation.Address.Address != tc.addr || m.MediaName.Port.Value != tc.port) {
					t.Errorf("audio at %v port %d, want %s %d", m.ConnectionInformation, m.MediaName.Port.Value, tc.addr, tc.port)
				}
			}
			if len(rd.streams) != 2 || rd.streams[0].ufrag != "hohu" || rd.streams[1].mid != "1" || rd.streams[0].setup != "actpass" ||
				len(rd.streams[0].fingerprints) != 1 || rd.streams[0].fingerprints[0].alg != "sha-256" {
				t.Errorf("parameters %+v", rd.streams)
			}
		})
	}
}

// TestFromBrowserRefusals: what the SIP side could not carry is an error
// the adapter answers with 488; a data channel is disabled.
func TestFromBrowserRefusals(t *testing.T) {
	offer := string(chromeOffer(t))
	cases := []struct {
		name string
		edit func(string) string
		want error
	}{
		{"video only AV1", func(s string) string {
			return strings.Replace(s, "m=video 51322 UDP/TLS/RTP/SAVPF 96 97 102 103 45", "m=video 51322 UDP/TLS/RTP/SAVPF 45", 1)
		}, ErrVideoCodec},
		{"audio only G722", func(s string) string {
			return strings.Replace(s, "m=audio 51322 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "m=audio 51322 UDP/TLS/RTP/SAVPF 9 126", 1)
		}, ErrNoAudioCodec},
		{"no ice-pwd", func(s string) string { return strings.ReplaceAll(s, "a=ice-pwd:Fn2JbCdE3qKzY+rS1tUvWx0a\r\n", "") }, ErrNoICE},
		{"no fingerprint", func(s string) string {
			return strings.ReplaceAll(s, "a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n", "")
		}, ErrNoICE},
		{"oversized", func(s string) string { return s + strings.Repeat("a=x:y\r\n", 3000) }, ErrSDP},
		{"garbage", func(string) string { return "v=0\r\nm=\r\n" }, ErrSDP},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := fromBrowser([]byte(tc.edit(offer)), netip.Addr{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("data channel disabled", func(t *testing.T) {
		s := offer + "m=application 51322 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 127.0.0.1\r\na=mid:2\r\na=sctp-port:5000\r\n"
		out, rd, err := fromBrowser([]byte(s), netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		d := mustParse(t, out)
		if len(rd.streams) != 3 || d.MediaDescriptions[2].MediaName.Port.Value != 0 {
			t.Fatalf("data channel not disabled:\n%s", out)
		}
	})
}

// TestNarrow filters a SIP trunk's offer for a browser.
func TestNarrow(t *testing.T) {
	in := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 18 0 8 101\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n" +
		"m=video 4002 RTP/AVP 34 99\r\na=rtpmap:34 H263/90000\r\na=rtpmap:99 H264/90000\r\na=fmtp:99 packetization-mode=1\r\n"
	out, err := Narrow([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	s := mustParse(t, out)
	if f := s.MediaDescriptions[0].MediaName.Formats; !slices.Equal(f, []string{"0", "8", "101"}) {
		t.Errorf("audio formats %v", f)
	}
	if f := s.MediaDescriptions[1].MediaName.Formats; !slices.Equal(f, []string{"99"}) {
		t.Errorf("video formats %v", f)
	}
	if strings.Contains(string(out), "G729") || strings.Contains(string(out), "annexb") || strings.Contains(string(out), "H263") {
		t.Errorf("dropped codecs left lines:\n%s", out)
	}
	h263 := strings.Replace(in, "m=video 4002 RTP/AVP 34 99", "m=video 4002 RTP/AVP 34", 1)
	if _, err := Narrow([]byte(h263)); !errors.Is(err, ErrVideoCodec) || !strings.Contains(err.Error(), "h263") {
		t.Errorf("H.263-only video: %v, want ErrVideoCodec naming h263", err)
	}
	off := strings.Replace(h263, "m=video 4002 RTP/AVP 34", "m=video 0 RTP/AVP 34", 1)
	if _, err := Narrow([]byte(off)); err != nil {
		t.Errorf("a disabled video stream is not a mismatch: %v", err)
	}
}

// TestToBrowser completes the SIP adapter's answer and offer for a
// browser.
func TestToBrowser(t *testing.T) {
	_, rd, err := fromBrowser(chromeOffer(t), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	loc := local{ufrag: "GWuf", pwd: "gatewaypasswordgatewaypw", fingerprint: "sha-256 AA:BB"}
	answer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 40002 UDP/TLS/RTP/SAVPF 0 126\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\na=rtcp-mux\r\n" +
		"m=video 0 UDP/TLS/RTP/SAVPF 96\r\n"
	out, err := toBrowser([]byte(answer), loc, rd, false)
	if err != nil {
		t.Fatal(err)
	}
	s := mustParse(t, out)
	if !slices.Contains(attrKeys(s.Attributes), "ice-lite") {
		t.Error("no a=ice-lite")
	}
	a := s.MediaDescriptions[0]
	got := map[string]string{}
	n := map[string]int{}
	for _, at := range a.Attributes {
		got[at.Key] = at.Value
		n[at.Key]++
	}
	for k, v := range map[string]string{"mid": "0", "ice-ufrag": "GWuf", "ice-pwd": loc.pwd, "fingerprint": "sha-256 AA:BB",
		"setup": "passive", "candidate": "1 1 udp 2130706431 127.0.0.1 40002 typ host"} {
		if got[k] != v {
			t.Errorf("a=%s:%q, want %q", k, got[k], v)
		}
	}
	if n["rtcp-mux"] != 1 || n["end-of-candidates"] != 1 {
		t.Errorf("rtcp-mux %d times, end-of-candidates %d times", n["rtcp-mux"], n["end-of-candidates"])
	}
	if v := s.MediaDescriptions[1]; len(v.Attributes) != 1 || v.Attributes[0].Value != "1" {
		t.Errorf("refused video: %v, want only its mid", v.Attributes)
	}
	// The browser said passive: the gateway is the DTLS client.
	rd.streams[0].setup = "passive"
	out, _ = toBrowser([]byte(answer), loc, rd, false)
	if !strings.Contains(string(out), "a=setup:active") {
		t.Errorf("answer to a passive browser:\n%s", out)
	}
	// An offer: actpass, mids by position.
	out, err = toBrowser([]byte(answer), loc, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "a=setup:actpass") || !strings.Contains(string(out), "a=mid:0") || !strings.Contains(string(out), "a=mid:1") {
		t.Errorf("offer:\n%s", out)
	}
	// A re-offer keeps the browser's mids.
	rd.streams[0].mid, rd.streams[1].mid = "audio", "video"
	out, err = toBrowser([]byte(answer), loc, rd, true)
	if err != nil {
		t.Fatal(err)
	}
	if o := string(out); !strings.Contains(o, "a=mid:audio") || !strings.Contains(o, "a=mid:video") || !strings.Contains(o, "a=setup:actpass") {
		t.Errorf("re-offer:\n%s", o)
	}
	// Video gets picture loss and full intra requests; generic NACK
	// only from a gateway that answers it (below).
	video := strings.Replace(answer, "m=video 0 UDP/TLS/RTP/SAVPF 96\r\n", "m=video 40004 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 VP8/90000\r\n", 1)
	out, err = toBrowser([]byte(video), loc, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if v := string(out); !strings.Contains(v, "a=rtcp-fb:96 nack pli") || !strings.Contains(v, "a=rtcp-fb:96 ccm fir") || strings.Contains(v, "a=rtcp-fb:96 nack\r\n") {
		t.Errorf("video feedback:\n%s", v)
	}
	// With the responder: generic NACK offered on every format,
	// answered on those the browser offered it for (Chrome: VP8 96 yes,
	// PCMU 0 and the refused video's formats no).
	loc.nack = true
	out, _ = toBrowser([]byte(video), loc, nil, true)
	if v := string(out); !strings.Contains(v, "a=rtcp-fb:96 nack\r\n") || !strings.Contains(v, "a=rtcp-fb:0 nack\r\n") {
		t.Errorf("offer with a responder:\n%s", v)
	}
	_, rd, _ = fromBrowser(chromeOffer(t), netip.Addr{})
	if !rd.streams[1].nacks() || rd.streams[0].nacks() || !rd.streams[1].nack["96"] || rd.streams[1].nack["102"] {
		t.Errorf("the browser's generic nacks: audio %v, video %v", rd.streams[0].nack, rd.streams[1].nack)
	}
	out, _ = toBrowser([]byte(video), loc, rd, false)
	if v := string(out); !strings.Contains(v, "a=rtcp-fb:96 nack\r\n") || strings.Contains(v, "a=rtcp-fb:0 nack\r\n") {
		t.Errorf("answer with a responder:\n%s", v)
	}
	// A plain RTP stream cannot go to a browser.
	if _, err := toBrowser([]byte(strings.Replace(answer, "40002 UDP/TLS/RTP/SAVPF", "40002 RTP/AVP", 1)), loc, nil, true); !errors.Is(err, ErrSDP) {
		t.Errorf("RTP/AVP to a browser: %v", err)
	}
	// An answer with another number of streams than the offer.
	if _, err := toBrowser([]byte(strings.Split(answer, "m=video")[0]), loc, rd, false); !errors.Is(err, ErrSDP) {
		t.Errorf("one stream answered for two: %v", err)
	}
}

// FuzzFromBrowser: any description from the network translates or fails
// with an error; what it returns parses again.
func FuzzFromBrowser(f *testing.F) {
	f.Add(chromeOffer(f))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 ::1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:a\r\na=ice-pwd:b\r\na=fingerprint:sha-256 AB\r\na=candidate:1 1 udp 1 ::1 5 typ host\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, rd, err := fromBrowser(b, netip.MustParseAddr("::1"))
		if err != nil {
			return
		}
		var s sdp.SessionDescription
		if err := s.UnmarshalString(string(out)); err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
		loc := local{ufrag: "u", pwd: "p", fingerprint: "sha-256 AA"}
		if _, err := toBrowser(out, loc, rd, false); err != nil && !errors.Is(err, ErrSDP) {
			t.Fatalf("toBrowser: %v", err)
		}
	})
}

// FuzzNarrow: a SIP side's offer narrows or fails with an error.
func FuzzNarrow(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := Narrow(b)
		if err != nil {
			return
		}
		var s sdp.SessionDescription
		if err := s.UnmarshalString(string(out)); err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
	})
}
