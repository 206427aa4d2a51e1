package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var testKey = bytes.Repeat([]byte{7}, keyLen)

func TestNonceKeyIsHMAC(t *testing.T) {
	k := newNonceKey(testKey)
	for _, msg := range [][]byte{nil, []byte("opaque"), bytes.Repeat([]byte("x"), 300)} {
		h := hmac.New(sha256.New, testKey)
		h.Write(msg)
		if got := k.sum(msg); !bytes.Equal(got[:], h.Sum(nil)) {
			t.Fatalf("sum(%d bytes) differs from crypto/hmac", len(msg))
		}
	}
}

func TestNonceRoundTrip(t *testing.T) {
	k := newNonceKey(testKey)
	a4 := netip.MustParseAddr("192.0.2.7")
	a6 := netip.MustParseAddr("2001:db8::7")
	s := k.issue(1_700_000_000_123, a4, "ucgate")
	if len(s) != nonceLen || strings.ContainsAny(s, "\"\\ =+/") {
		t.Fatalf("nonce %q is not %d token characters", s, nonceLen)
	}
	n, ok := k.decode(s, a4, "ucgate")
	if !ok || n.issued != 1_700_000_000_123 {
		t.Fatalf("decode(issue) = %+v, %v", n, ok)
	}
	if _, ok := k.decode(s, netip.MustParseAddr("::ffff:192.0.2.7"), "ucgate"); !ok {
		t.Fatal("an IPv4-mapped source is not the same source")
	}
	if first, second := k.issue(1, a4, "ucgate"), k.issue(1, a4, "ucgate"); first == second {
		t.Fatal("two nonces for the same source and millisecond are equal")
	}
	refused := []struct {
		name  string
		k     *nonceKey
		s     string
		addr  netip.Addr
		realm string
	}{
		{"other source", k, s, netip.MustParseAddr("192.0.2.8"), "ucgate"},
		{"other family", k, s, a6, "ucgate"},
		{"other realm", k, s, a4, "example.com"},
		{"other key", newNonceKey(bytes.Repeat([]byte{8}, keyLen)), s, a4, "ucgate"},
		{"short", k, s[:nonceLen-1], a4, "ucgate"},
		{"long", k, s + "A", a4, "ucgate"},
		{"padded", k, s[:nonceLen-1] + "=", a4, "ucgate"},
		{"not base64", k, s[:10] + "!" + s[11:], a4, "ucgate"},
		{"empty", k, "", a4, "ucgate"},
	}
	for _, tt := range refused {
		if _, ok := tt.k.decode(tt.s, tt.addr, tt.realm); ok {
			t.Errorf("%s: decode accepted", tt.name)
		}
	}
	// Every single-bit change of the raw nonce is refused.
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		for bit := range 8 {
			c := bytes.Clone(raw)
			c[i] ^= 1 << bit
			if _, ok := k.decode(base64.RawURLEncoding.EncodeToString(c), a4, "ucgate"); ok {
				t.Fatalf("flipping bit %d of byte %d was accepted", bit, i)
			}
		}
	}
}

func TestNonceDecodeDoesNotAllocate(t *testing.T) {
	k := newNonceKey(testKey)
	a := netip.MustParseAddr("192.0.2.7")
	s := k.issue(1, a, "ucgate")
	if n := testing.AllocsPerRun(100, func() { k.decode(s, a, "ucgate") }); n != 0 {
		t.Fatalf("decode allocates %v times", n)
	}
}

// FuzzNonceDecode: decoding never panics; whatever verifies re-encodes to
// the same string (the encoding is canonical: no two strings are one
// nonce); and a nonce made with the fuzzed fields verifies for its source
// and realm only.
func FuzzNonceDecode(f *testing.F) {
	k := newNonceKey(testKey)
	a := netip.MustParseAddr("192.0.2.7")
	f.Add(k.issue(1_700_000_000_000, a, "ucgate"), int64(1_700_000_000_000), []byte("12345678"), "ucgate", []byte{192, 0, 2, 7})
	f.Add("7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", int64(0), []byte{}, "", []byte{})
	f.Add("dcd98b7102dd2f0e8b11d0f600bfb0c093", int64(-1), []byte("\xff"), "http-auth@example.org", bytes.Repeat([]byte{0x20, 0x01}, 8))
	f.Add(strings.Repeat("A", nonceLen), int64(1<<62), []byte("salt"), "\x00\"", []byte{1})
	f.Fuzz(func(t *testing.T, s string, issued int64, saltB []byte, realm string, addrB []byte) {
		var addr netip.Addr
		switch len(addrB) {
		case 4:
			addr = netip.AddrFrom4([4]byte(addrB))
		case 16:
			addr = netip.AddrFrom16([16]byte(addrB))
		default:
			addr = a
		}
		if n, ok := k.decode(s, addr, realm); ok {
			if got := k.encode(n.issued, n.salt, addr, realm); got != s {
				t.Fatalf("decode(%q) re-encodes as %q", s, got)
			}
		}
		var salt [8]byte
		copy(salt[:], saltB)
		enc := k.encode(issued, salt, addr, realm)
		n, ok := k.decode(enc, addr, realm)
		if !ok || n.issued != issued || n.salt != salt {
			t.Fatalf("decode(encode(%d, %x)) = %+v, %v", issued, salt, n, ok)
		}
		if _, ok := k.decode(enc, addr, realm+"x"); ok {
			t.Fatal("nonce verified for another realm")
		}
		other := addr.Next()
		if !other.IsValid() {
			other = addr.Prev()
		}
		if _, ok := k.decode(enc, other, realm); ok {
			t.Fatal("nonce verified for another source")
		}
	})
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "auth_nonce.key")
	k1, created, err := loadKey(p)
	if err != nil || !created || len(k1) != keyLen {
		t.Fatalf("first load: %d bytes, created %v, %v", len(k1), created, err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", st.Mode(), err)
	}
	k2, created, err := loadKey(p)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("second load: created %v, same %v, %v", created, bytes.Equal(k1, k2), err)
	}
	if err := os.WriteFile(p, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadKey(p); !errors.Is(err, errKeyFile) {
		t.Fatalf("short key file: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "sub", ".nonce-key-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
