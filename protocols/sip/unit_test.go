package sip

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core"
)

func TestEveryReasonHasASIPStatus(t *testing.T) {
	for _, r := range core.AllReasons() {
		s, ok := sipStatus[r]
		if !ok {
			t.Errorf("core reason %v has no SIP status", r)
			continue
		}
		if s.code < 400 || s.code > 699 || s.phrase == "" {
			t.Errorf("reason %v maps to %d %q", r, s.code, s.phrase)
		}
	}
}

func TestMatchRoute(t *testing.T) {
	a, b, c := &upstream{name: "a"}, &upstream{name: "b"}, &upstream{name: "c"}
	routes := []route{
		{domain: "example.com", upstreams: []*upstream{a}},
		{prefix: "00", strip: 2, upstreams: []*upstream{b, c}},
		{prefix: "9", upstreams: []*upstream{c}},
		{def: true, upstreams: []*upstream{a}},
	}
	tests := []struct {
		user, host string
		wantUser   string
		wantFirst  string
		wantN      int
	}{
		{"alice", "EXAMPLE.com", "alice", "a", 1},
		{"0049301234", "192.0.2.1", "49301234", "b", 2},
		{"00", "192.0.2.1", "", "a", 1}, // nothing left after the strip: next route
		{"9123", "192.0.2.1", "9123", "c", 1},
		{"123", "192.0.2.1", "123", "a", 1},
	}
	for _, tt := range tests {
		u, ups, ok := matchRoute(routes, tt.user, tt.host)
		if !ok || u != tt.wantUser && tt.wantUser != "" || ups[0].name != tt.wantFirst || len(ups) != tt.wantN {
			t.Errorf("%s@%s: got %q %v %v", tt.user, tt.host, u, ups, ok)
		}
	}
	if _, _, ok := matchRoute(routes[:1], "x", "other.example"); ok {
		t.Error("no default route, yet a match")
	}
}

func TestHideSDP(t *testing.T) {
	tests := []struct {
		name, in, host, want string
	}{
		{"ipv4", "v=0\r\no=root 123 456 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\n", "192.0.2.1",
			"v=0\r\no=- 123 456 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 10.0.0.7\r\n"},
		{"ipv6 gateway", "v=0\no=pbx 1 2 IN IP4 pbx.internal\ns=-\n", "2001:db8::1",
			"v=0\no=- 1 2 IN IP6 2001:db8::1\ns=-\n"},
		{"origin last line, no newline", "v=0\r\no=a 1 2 IN IP4 10.1.1.1", "192.0.2.1", "v=0\r\no=- 1 2 IN IP4 192.0.2.1"},
		{"no origin", "v=0\r\ns=-\r\n", "192.0.2.1", "v=0\r\ns=-\r\n"},
		{"short origin left alone", "v=0\r\no=x\r\n", "192.0.2.1", "v=0\r\no=x\r\n"},
	}
	for _, tt := range tests {
		if got := string(hideSDP([]byte(tt.in), tt.host)); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

func FuzzHideSDP(f *testing.F) {
	f.Add([]byte("v=0\r\no=root 123 456 IN IP4 10.0.0.7\r\ns=-\r\n"), "192.0.2.1")
	f.Add([]byte("o="), "::1")
	f.Add([]byte("\no=a b c d e f g\n\n"), "h")
	f.Fuzz(func(t *testing.T, body []byte, host string) {
		out := hideSDP(body, host)
		if len(out) > len(body)+len(host)+32 {
			t.Fatalf("output grew from %d to %d", len(body), len(out))
		}
		// Everything after the origin line is unchanged.
		if i := bytes.Index(body, []byte("\no=")); i >= 0 {
			if j := bytes.IndexByte(body[i+1:], '\n'); j >= 0 && !bytes.HasSuffix(out, body[i+1+j:]) {
				t.Fatalf("tail changed: %q -> %q", body, out)
			}
		}
	})
}

func TestMediaFromSDP(t *testing.T) {
	body := "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/SAVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n" +
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32\r\na=sendonly\r\n" +
		"m=video 0 RTP/AVP 96\r\nc=IN IP6 2001:db8::5\r\na=rtpmap:96 VP8/90000\r\n"
	md, err := mediaFromSDP([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Streams) != 2 {
		t.Fatalf("streams = %+v", md.Streams)
	}
	a := md.Streams[0]
	if a.Addr.String() != "192.0.2.10:4000" || a.Direction != "sendonly" || len(a.Codecs) != 3 ||
		a.Codecs[0].Name != "PCMU" || a.Codecs[2].Name != "telephone-event" || a.Codecs[2].Params != "0-16" ||
		len(a.Crypto) != 1 || a.Crypto[0].Suite != "AES_CM_128_HMAC_SHA1_80" {
		t.Fatalf("audio = %+v", a)
	}
	if v := md.Streams[1]; !v.Disabled || v.Codecs[0].Name != "VP8" {
		t.Fatalf("video = %+v", v)
	}
	if !md.Encrypted() == true && md.Streams[0].Crypto == nil {
		t.Fatal("encryption not seen")
	}
	if _, err := mediaFromSDP([]byte("v=0\r\nthis is not sdp\r\n")); err == nil {
		t.Fatal("garbage accepted")
	}
}

func FuzzMediaFromSDP(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\na=rtpmap:8 PCMA/8000\r\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=fingerprint:sha-256 AB:CD\r\na=ice-ufrag:x\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		md, err := mediaFromSDP(body)
		if err != nil {
			return
		}
		for _, s := range md.Streams {
			if len(s.Codecs) > len(body) {
				t.Fatalf("%d codecs from %d bytes", len(s.Codecs), len(body))
			}
		}
	})
}

func TestSalvage(t *testing.T) {
	good := "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n" +
		"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\n" +
		"Content-Length: notanumber\r\n\r\n"
	res, method := salvage([]byte(good))
	if res == nil || method != "INVITE" || res.StatusCode != 400 || res.CallID().Value() != "abc" || !res.To().Params.Has("tag") {
		t.Fatalf("salvage = %v %q", res, method)
	}
	for _, bad := range []string{
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=1\r\n\r\n",    // a response
		"ACK sip:x SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=1\r\n\r\n", // an ACK
		"INVITE sip:x SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\n\r\n",    // no Via
		"GARBAGE\r\n\r\n", // no start line
		"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\nFrom: x\r\nTo: y\r\nCall-ID: z\r\nCSeq: 1 INVITE\r\n\r\n", // unreadable Via
	} {
		if res, _ := salvage([]byte(bad)); res != nil {
			t.Errorf("answered %q with %v", bad, res.StartLine())
		}
	}
}

func FuzzSalvage(f *testing.F) {
	f.Add([]byte("INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\n\r\n"))
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\nv: SIP/2.0/TCP h\r\nf: <sip:a@b>\r\nt: <sip:c@d>\r\ni: q\r\nCSeq: 9 OPTIONS\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, _ := salvage(data)
		if res == nil {
			return
		}
		if res.StatusCode != 400 || res.Via() == nil || res.CallID() == nil || res.CSeq() == nil {
			t.Fatalf("incomplete 400: %q", res.String())
		}
		if strings.Count(res.String(), "\r\n\r\n") < 1 {
			t.Fatal("no header end")
		}
	})
}
