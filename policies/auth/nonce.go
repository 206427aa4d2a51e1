package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
)

// A nonce is 33 bytes, base64url without padding (44 characters, all
// token-safe): a version byte, the issue time in Unix milliseconds, a random
// salt (so that two challenges never share a nonce, and so never a
// nonce-count), and the first 16 bytes of
// HMAC-SHA256(key, version | issued | salt | source address | realm).
// Verifying one needs no state: a nonce that was not made by this key for
// this source and this realm does not verify.
const (
	nonceVersion = 1
	nonceRawLen  = 1 + 8 + 8 + 16
	nonceLen     = 44 // base64.RawURLEncoding.EncodedLen(nonceRawLen)
	keyLen       = 32
)

var nonceEncoding = base64.RawURLEncoding.Strict()

// nonce is a decoded, verified nonce.
type nonce struct {
	issued int64 // Unix milliseconds
	salt   [8]byte
	mac    [16]byte
}

// nonceKey is the HMAC key, kept as its inner and outer pads so that a MAC
// is two SHA-256 sums over stack buffers (RFC 2104) with no allocation.
type nonceKey struct {
	ipad, opad [sha256.BlockSize]byte
}

func newNonceKey(k []byte) *nonceKey {
	nk := &nonceKey{}
	for i := range nk.ipad {
		nk.ipad[i], nk.opad[i] = 0x36, 0x5c
	}
	for i, b := range k {
		nk.ipad[i] ^= b
		nk.opad[i] ^= b
	}
	return nk
}

// sum is HMAC-SHA256(key, data).
func (k *nonceKey) sum(data []byte) [sha256.Size]byte {
	var buf [sha256.BlockSize + 256]byte
	b := append(buf[:0], k.ipad[:]...)
	b = append(b, data...)
	inner := sha256.Sum256(b)
	b = append(buf[:0], k.opad[:]...)
	b = append(b, inner[:]...)
	return sha256.Sum256(b)
}

func (k *nonceKey) mac(issued int64, salt [8]byte, addr netip.Addr, realm string) [16]byte {
	var buf [1 + 8 + 8 + 16 + 128]byte
	b := append(buf[:0], nonceVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(issued))
	b = append(b, salt[:]...)
	a16 := addr.Unmap().As16()
	b = append(b, a16[:]...)
	b = append(b, realm...)
	s := k.sum(b)
	var m [16]byte
	copy(m[:], s[:16])
	return m
}

// issue makes a nonce for a request from addr in realm at issued (Unix ms).
func (k *nonceKey) issue(issued int64, addr netip.Addr, realm string) string {
	var salt [8]byte
	_, _ = rand.Read(salt[:]) // never fails (crypto/rand, Go 1.24)
	return k.encode(issued, salt, addr, realm)
}

func (k *nonceKey) encode(issued int64, salt [8]byte, addr netip.Addr, realm string) string {
	var raw [nonceRawLen]byte
	raw[0] = nonceVersion
	binary.BigEndian.PutUint64(raw[1:9], uint64(issued))
	copy(raw[9:17], salt[:])
	m := k.mac(issued, salt, addr, realm)
	copy(raw[17:], m[:])
	var out [nonceLen]byte
	nonceEncoding.Encode(out[:], raw[:])
	return string(out[:])
}

// decode parses s and verifies that this key made it for addr and realm.
// It never panics and does not allocate.
func (k *nonceKey) decode(s string, addr netip.Addr, realm string) (nonce, bool) {
	if len(s) != nonceLen {
		return nonce{}, false
	}
	var src [nonceLen]byte
	copy(src[:], s)
	var raw [nonceRawLen]byte
	if n, err := nonceEncoding.Decode(raw[:], src[:]); err != nil || n != nonceRawLen {
		return nonce{}, false
	}
	if raw[0] != nonceVersion {
		return nonce{}, false
	}
	var n nonce
	n.issued = int64(binary.BigEndian.Uint64(raw[1:9]))
	copy(n.salt[:], raw[9:17])
	copy(n.mac[:], raw[17:])
	want := k.mac(n.issued, n.salt, addr, realm)
	if !hmacEqual(want[:], n.mac[:]) {
		return nonce{}, false
	}
	return n, true
}

func hmacEqual(a, b []byte) bool {
	var v byte
	for i := range a {
		v |= a[i] ^ b[i]
	}
	return v == 0 && len(a) == len(b)
}

// errKeyFile reports a nonce key file that exists but cannot be used.
var errKeyFile = errors.New("auth: bad nonce key file")

// loadKey reads the nonce key at path, creating it (mode 0600, 32 random
// bytes) if it does not exist. The new key is written to a temporary file
// and linked into place, so that a concurrent reader never sees half a key
// and two processes starting together agree on one. created says it was new.
func loadKey(path string) (key []byte, created bool, err error) {
	key, err = readKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, false, fmt.Errorf("auth: create nonce key directory: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".nonce-key-*")
	if err != nil {
		return nil, false, fmt.Errorf("auth: create nonce key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	key = make([]byte, keyLen)
	_, _ = rand.Read(key)
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, fmt.Errorf("auth: write nonce key: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process made it first: use theirs
			key, err = readKey(path)
			return key, false, err
		}
		return nil, false, fmt.Errorf("auth: create nonce key: %w", err)
	}
	return key, true, nil
}

func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("auth: read nonce key: %w", err)
	}
	if len(b) != keyLen {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want %d (delete it to make a new one)", errKeyFile, path, len(b), keyLen)
	}
	return b, nil
}
