package sip

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core"
)

// relayFor builds the media description a relay would return for an
// offer: every enabled stream on the gateway's relay address, the given
// profile and keys.
func relayFor(t *testing.T, body []byte, gw string, proto string, crypto []core.Crypto) *core.MediaDesc {
	t.Helper()
	md, err := mediaFromSDP(body)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr(gw)
	for i := range md.Streams {
		st := &md.Streams[i]
		if st.Disabled {
			continue
		}
		st.Addr = netip.AddrPortFrom(ip, uint16(40000+2*i))
		st.RTCP = netip.AddrPortFrom(ip, uint16(40001+2*i))
		st.RTCPMux = false
		st.Protocol = proto
		st.Crypto = crypto
		st.ICE, st.Fingerprint = false, ""
	}
	return md
}

// TestRewriteRealOffers rewrites offers of real phones, PBXs and a browser
// and checks every line of the result: nothing of the peer's transport
// remains, the gateway's endpoint is everywhere it must be, and the codecs
// pass unchanged.
func TestRewriteRealOffers(t *testing.T) {
	ours := []core.Crypto{{Tag: 1, Suite: "AES_CM_128_HMAC_SHA1_80", Key: "inline:R2F0ZXdheU93bktleU1hdGVyaWFsMDEyMzQ1Njc4OTAx"}}
	tests := []struct {
		file   string
		gw     string
		proto  string
		crypto []core.Crypto
		leak   []string // must not appear anywhere in the result
	}{
		{"yealink.sdp", "203.0.113.1", "RTP/AVP", nil, []string{"192.168.1.23", "11780"}},
		{"asterisk.sdp", "203.0.113.1", "RTP/SAVP", ours, []string{"10.0.0.5", "14052", "Asterisk "}},
		{"freeswitch-srtp.sdp", "203.0.113.1", "RTP/AVP", nil, []string{"172.16.5.9", "23452", "23453", "s6Pj0Cp0", "Xz4mvhVR", "FreeSWITCH 1711"}},
		{"freeswitch-srtp.sdp", "203.0.113.1", "RTP/SAVP", ours, []string{"172.16.5.9", "s6Pj0Cp0", "Xz4mvhVR"}},
		{"linphone-ipv6.sdp", "192.0.2.10", "RTP/AVP", nil, []string{"2001:db8:5::17", "7078", "9078"}},
		{"chrome-jssip.sdp", "203.0.113.1", "RTP/AVP", nil, []string{"192.168.88.12", "203.0.113.77", "54921", "candidate", "ice-", "fingerprint", "setup:", "SAVPF"}},
		{"polycom-video.sdp", "2001:db8::1", "RTP/AVP", nil, []string{"10.11.12.13", "2222", "2226"}},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.proto, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", "sdp", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			md := relayFor(t, in, tt.gw, tt.proto, tt.crypto)
			out, err := rewriteSDP(in, md, tt.gw)
			if err != nil {
				t.Fatal(err)
			}
			text := string(out)
			for _, l := range tt.leak {
				if strings.Contains(text, l) {
					t.Errorf("%q survived:\n%s", l, text)
				}
			}
			orig, _ := mediaFromSDP(in)
			got, err := mediaFromSDP(out)
			if err != nil {
				t.Fatalf("result does not parse: %v\n%s", err, text)
			}
			if got.Origin != tt.gw {
				t.Errorf("origin %q", got.Origin)
			}
			for i, st := range got.Streams {
				o := orig.Streams[i]
				if st.Addr != md.Streams[i].Addr {
					t.Errorf("stream %d at %v, want %v", i, st.Addr, md.Streams[i].Addr)
				}
				if st.Protocol != tt.proto || st.Type != o.Type || st.Direction != o.Direction {
					t.Errorf("stream %d: %+v (offer %+v)", i, st, o)
				}
				if len(st.Codecs) != len(o.Codecs) {
					t.Fatalf("stream %d codecs %v, offer %v", i, st.Codecs, o.Codecs)
				}
				for j := range st.Codecs {
					if st.Codecs[j] != o.Codecs[j] {
						t.Errorf("stream %d codec %d: %+v, offer %+v", i, j, st.Codecs[j], o.Codecs[j])
					}
				}
				if len(st.Crypto) != len(tt.crypto) || len(tt.crypto) > 0 && st.Crypto[0] != tt.crypto[0] {
					t.Errorf("stream %d crypto %+v", i, st.Crypto)
				}
				if st.ICE || st.Fingerprint != "" {
					t.Errorf("stream %d still has ICE or DTLS: %+v", i, st)
				}
			}
			for _, line := range strings.Split(strings.TrimSpace(text), "\r\n") {
				if strings.HasPrefix(line, "c=") && !strings.HasSuffix(line, " "+tt.gw) {
					t.Errorf("connection line %q does not name the gateway", line)
				}
			}
		})
	}
}

func TestRewriteDisabledStreamAndMismatch(t *testing.T) {
	in, _ := os.ReadFile(filepath.Join("testdata", "sdp", "polycom-video.sdp"))
	md := relayFor(t, in, "192.0.2.1", "RTP/AVP", nil)
	md.Streams[1].Disabled = true
	out, err := rewriteSDP(in, md, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "m=video 0 RTP/AVP 109 34") {
		t.Fatalf("refused stream not at port 0:\n%s", out)
	}
	md.Streams = md.Streams[:1]
	if _, err := rewriteSDP(in, md, "192.0.2.1"); err == nil {
		t.Fatal("a description with fewer streams than the SDP was applied")
	}
}

func FuzzRewriteSDP(f *testing.F) {
	for _, name := range []string{"yealink.sdp", "chrome-jssip.sdp", "linphone-ipv6.sdp"} {
		b, _ := os.ReadFile(filepath.Join("testdata", "sdp", name))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		md, err := mediaFromSDP(body)
		if err != nil {
			return
		}
		for i := range md.Streams {
			md.Streams[i].Addr = netip.MustParseAddrPort("192.0.2.1:40000")
		}
		out, err := rewriteSDP(body, md, "192.0.2.1")
		if err != nil {
			return
		}
		got, err := mediaFromSDP(out)
		if err != nil {
			t.Fatalf("rewritten SDP does not parse: %v\n%q", err, out)
		}
		if len(got.Streams) != len(md.Streams) {
			t.Fatalf("%d streams became %d", len(md.Streams), len(got.Streams))
		}
	})
}
