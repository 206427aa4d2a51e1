package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// The digest test vectors of RFC 2617 section 3.5 and RFC 7616 section
// 3.9.1 (user "Mufasa"); RFC 8760 uses the same computation for SIP.
func TestResponseVectors(t *testing.T) {
	tests := []struct {
		name                                       string
		alg, user, realm, pass                     string
		nonce, nc, cnonce, qop, method, uri, wantR string
	}{
		{"RFC 2617 3.5 MD5", "MD5", "Mufasa", "testrealm@host.com", "Circle Of Life",
			"dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b", "auth", "GET", "/dir/index.html",
			"6629fae49393a05397450978507c4ef1"},
		{"RFC 7616 3.9.1 MD5", "MD5", "Mufasa", "http-auth@example.org", "Circle of Life",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth", "GET", "/dir/index.html",
			"8ca523f5e9506fed4657c9700eebdbec"},
		{"RFC 7616 3.9.1 SHA-256", "SHA-256", "Mufasa", "http-auth@example.org", "Circle of Life",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth", "GET", "/dir/index.html",
			"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ha1 := HA1(tt.alg, tt.user, tt.realm, tt.pass)
			got := Response(tt.alg, ha1, tt.nonce, tt.nc, tt.cnonce, tt.qop, tt.method, tt.uri)
			if got != tt.wantR {
				t.Fatalf("Response = %s, want %s", got, tt.wantR)
			}
			a, _ := parseAlgorithm(tt.alg)
			if !a.verify(tt.wantR, ha1, tt.nonce, tt.nc, tt.cnonce, tt.qop, tt.method, tt.uri) {
				t.Fatal("verify refused the RFC's response")
			}
			upper := []byte(tt.wantR)
			for i, c := range upper {
				if c >= 'a' && c <= 'f' {
					upper[i] = c - 32
				}
			}
			if !a.verify(string(upper), ha1, tt.nonce, tt.nc, tt.cnonce, tt.qop, tt.method, tt.uri) {
				t.Fatal("verify refused the response in upper case")
			}
			for _, bad := range []string{tt.wantR[:len(tt.wantR)-1] + "0", tt.wantR[:len(tt.wantR)-2], "", tt.wantR + "00", "zz" + tt.wantR[2:]} {
				if bad == tt.wantR {
					continue
				}
				if a.verify(bad, ha1, tt.nonce, tt.nc, tt.cnonce, tt.qop, tt.method, tt.uri) {
					t.Fatalf("verify accepted %q", bad)
				}
			}
		})
	}
}

func TestHA1(t *testing.T) {
	md := md5.Sum([]byte("Mufasa:http-auth@example.org:Circle of Life"))
	sh := sha256.Sum256([]byte("Mufasa:http-auth@example.org:Circle of Life"))
	tests := []struct{ alg, want string }{
		{"MD5", hex.EncodeToString(md[:])},
		{"md5", hex.EncodeToString(md[:])},
		{"MD5-sess", hex.EncodeToString(md[:])},
		{"SHA-256", hex.EncodeToString(sh[:])},
		{"sha-256-sess", hex.EncodeToString(sh[:])},
		{"SHA-512-256", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := HA1(tt.alg, "Mufasa", "http-auth@example.org", "Circle of Life"); got != tt.want {
			t.Errorf("HA1(%q) = %q, want %q", tt.alg, got, tt.want)
		}
	}
}

// The -sess variants: H(A1) becomes H(HA1:nonce:cnonce) (RFC 7616 3.4.2),
// checked against a computation written out by hand.
func TestResponseSess(t *testing.T) {
	ha1 := HA1("SHA-256", "alice", "ucgate", "secret")
	s1 := sha256.Sum256([]byte(ha1 + ":n1:c1"))
	s2 := sha256.Sum256([]byte("REGISTER:sip:example.com"))
	want := sha256.Sum256([]byte(hex.EncodeToString(s1[:]) + ":n1:00000001:c1:auth:" + hex.EncodeToString(s2[:])))
	if got := Response("SHA-256-sess", ha1, "n1", "00000001", "c1", "auth", "REGISTER", "sip:example.com"); got != hex.EncodeToString(want[:]) {
		t.Fatalf("SHA-256-sess = %s, want %x", got, want)
	}
	if Response("SHA-256-sess", ha1, "n1", "00000001", "c1", "auth", "REGISTER", "sip:example.com") ==
		Response("SHA-256", ha1, "n1", "00000001", "c1", "auth", "REGISTER", "sip:example.com") {
		t.Fatal("-sess gives the same response as its base algorithm")
	}
	if Response("SHA-1", ha1, "n", "00000001", "c", "auth", "M", "u") != "" {
		t.Fatal("unknown algorithm gave a response")
	}
}

func TestParseAlgorithm(t *testing.T) {
	for in, want := range map[string]string{"": "MD5", "md5": "MD5", "SHA-256": "SHA-256", "sha-256-SESS": "SHA-256-sess", "MD5-sess": "MD5-sess"} {
		a, ok := parseAlgorithm(in)
		if !ok || a.name != want {
			t.Errorf("parseAlgorithm(%q) = %v %v, want %s", in, a.name, ok, want)
		}
	}
	for _, in := range []string{"SHA-512-256", "AKAv1-MD5", "MD5 ", "sha256"} {
		if _, ok := parseAlgorithm(in); ok {
			t.Errorf("parseAlgorithm(%q) accepted", in)
		}
	}
}

func TestResponseDoesNotAllocate(t *testing.T) {
	a, _ := parseAlgorithm("SHA-256")
	ha1 := HA1("SHA-256", "alice", "ucgate", "secret")
	allocs := testing.AllocsPerRun(100, func() {
		a.verify("00", ha1, "nonce", "00000001", "cnonce", "auth", "INVITE", "sip:bob@example.com")
	})
	if allocs != 0 {
		t.Fatalf("verify allocates %v times", allocs)
	}
}
