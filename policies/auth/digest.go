package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// hashID is a digest hash function.
type hashID uint8

const (
	hashMD5 hashID = iota + 1
	hashSHA256
)

// size is the hash's output in bytes.
func (h hashID) size() int {
	if h == hashMD5 {
		return md5.Size
	}
	return sha256.Size
}

// name is the base algorithm's name, the key of core.User.HA1.
func (h hashID) name() string {
	if h == hashMD5 {
		return "MD5"
	}
	return "SHA-256"
}

// sum hashes data into out and returns the digest's length. It does not
// allocate: data stays on the caller's stack.
func (h hashID) sum(out *[sha256.Size]byte, data []byte) int {
	if h == hashMD5 {
		s := md5.Sum(data)
		copy(out[:], s[:])
		return md5.Size
	}
	*out = sha256.Sum256(data)
	return sha256.Size
}

// appendHex appends the lowercase hex digest of data to dst.
func (h hashID) appendHex(dst, data []byte) []byte {
	var out [sha256.Size]byte
	n := h.sum(&out, data)
	return hex.AppendEncode(dst, out[:n])
}

// algorithm is one digest algorithm as the wire names it.
type algorithm struct {
	name string // "MD5", "SHA-256", "MD5-sess", "SHA-256-sess"
	hash hashID
	sess bool // H(A1) is rehashed with the nonce and cnonce (RFC 7616 3.4.2)
}

var algorithms = [...]algorithm{
	{"SHA-256", hashSHA256, false},
	{"MD5", hashMD5, false},
	{"SHA-256-sess", hashSHA256, true},
	{"MD5-sess", hashMD5, true},
}

// parseAlgorithm maps an algorithm parameter to an algorithm. Names are
// case-insensitive (RFC 7616 section 3.3); an empty one is MD5 (RFC 2617).
func parseAlgorithm(s string) (algorithm, bool) {
	if s == "" {
		return algorithms[1], true
	}
	for _, a := range algorithms {
		if strings.EqualFold(s, a.name) {
			return a, true
		}
	}
	return algorithm{}, false
}

// SupportedAlgorithms lists the algorithm names this package verifies, in
// the order of preference it offers them.
func SupportedAlgorithms() []string {
	out := make([]string, len(algorithms))
	for i, a := range algorithms {
		out[i] = a.name
	}
	return out
}

// HA1 returns the hex digest H(user:realm:password) that digest
// authentication stores instead of a password (RFC 7616 section 3.4.2), for
// the algorithm alg: "MD5" or "SHA-256" (a "-sess" name gives its base
// algorithm's HA1, which is what is stored). It returns "" for an
// algorithm it does not know.
func HA1(alg, user, realm, password string) string {
	a, ok := parseAlgorithm(alg)
	if !ok || alg == "" {
		return ""
	}
	b := make([]byte, 0, len(user)+len(realm)+len(password)+2)
	b = append(b, user...)
	b = append(b, ':')
	b = append(b, realm...)
	b = append(b, ':')
	b = append(b, password...)
	return string(a.hash.appendHex(nil, b))
}

// Response returns the hex request-digest a client sends for qop "auth"
// (RFC 7616 section 3.4.1): KD(H(A1), nonce:nc:cnonce:qop:H(method:uri)),
// where H(A1) is ha1 itself or, for a "-sess" algorithm,
// H(ha1:nonce:cnonce). It returns "" for an algorithm it does not know.
func Response(alg, ha1, nonce, nc, cnonce, qop, method, uri string) string {
	a, ok := parseAlgorithm(alg)
	if !ok {
		return ""
	}
	var out [sha256.Size]byte
	n := a.response(&out, ha1, nonce, nc, cnonce, qop, method, uri)
	return hex.EncodeToString(out[:n])
}

// response computes the raw request-digest into out and returns its
// length. With inputs of ordinary size it does not allocate.
func (a algorithm) response(out *[sha256.Size]byte, ha1, nonce, nc, cnonce, qop, method, uri string) int {
	var buf [512]byte
	var k [2 * sha256.Size]byte
	key := append(k[:0], ha1...)
	if a.sess {
		b := append(buf[:0], ha1...)
		b = append(b, ':')
		b = append(b, nonce...)
		b = append(b, ':')
		b = append(b, cnonce...)
		key = a.hash.appendHex(k[:0], b)
	}
	var h2 [2 * sha256.Size]byte
	b := append(buf[:0], method...)
	b = append(b, ':')
	b = append(b, uri...)
	ha2 := a.hash.appendHex(h2[:0], b)

	b = append(buf[:0], key...)
	b = append(b, ':')
	b = append(b, nonce...)
	b = append(b, ':')
	b = append(b, nc...)
	b = append(b, ':')
	b = append(b, cnonce...)
	b = append(b, ':')
	b = append(b, qop...)
	b = append(b, ':')
	b = append(b, ha2...)
	return a.hash.sum(out, b)
}

// verify reports whether response (hex, either case) is the request-digest
// for the other inputs. It runs in time independent of where the digests
// differ.
func (a algorithm) verify(response, ha1, nonce, nc, cnonce, qop, method, uri string) bool {
	var want [sha256.Size]byte
	n := a.response(&want, ha1, nonce, nc, cnonce, qop, method, uri)
	var got [sha256.Size]byte
	if !decodeHex(got[:n], response) {
		return false
	}
	return subtle.ConstantTimeCompare(got[:n], want[:n]) == 1
}

// decodeHex decodes s, which must be exactly 2*len(dst) hex digits, into
// dst, without allocating.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := fromHex(s[2*i])
		lo, ok2 := fromHex(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// validHA1 reports whether s is a hex digest of the right size for h.
func validHA1(h hashID, s string) bool {
	var b [sha256.Size]byte
	return decodeHex(b[:h.size()], s)
}
