package media

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/srtp/v3"
)

// Replay windows of the SRTP contexts that decrypt what a leg sends: wide
// enough for reordered video, as libsrtp's default for SRTCP.
const (
	srtpReplayWindow  = 1024
	srtcpReplayWindow = 128
)

// suite is one SDES crypto suite (RFC 4568, 6188, 7714).
type suite struct {
	name    string
	profile srtp.ProtectionProfile
	keyLen  int
	saltLen int
}

// suites are the SDES crypto suites the engine speaks, in the order it
// offers them when the other leg offered none to mirror.
var suites = []suite{
	{"AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80, 16, 14},
	{"AES_CM_128_HMAC_SHA1_32", srtp.ProtectionProfileAes128CmHmacSha1_32, 16, 14},
	{"AEAD_AES_128_GCM", srtp.ProtectionProfileAeadAes128Gcm, 16, 12},
	{"AES_256_CM_HMAC_SHA1_80", srtp.ProtectionProfileAes256CmHmacSha1_80, 32, 14},
	{"AES_256_CM_HMAC_SHA1_32", srtp.ProtectionProfileAes256CmHmacSha1_32, 32, 14},
	{"AEAD_AES_256_GCM", srtp.ProtectionProfileAeadAes256Gcm, 32, 12},
}

// offeredSuites is how many of suites the engine offers by default.
const offeredSuites = 3

func suiteByName(name string) *suite {
	for i := range suites {
		if strings.EqualFold(suites[i].name, name) {
			return &suites[i]
		}
	}
	return nil
}

// Errors of SDES key handling. Their text never carries key material.
var (
	// ErrSuite reports a crypto suite the engine does not speak.
	ErrSuite = errors.New("media: unsupported srtp crypto suite")
	// ErrKey reports an SDES key-params value the engine cannot use.
	ErrKey = errors.New("media: unusable sdes key")
)

// maxMKILen bounds the MKI length the engine accepts, in bytes (RFC 4568
// allows 1-128; real peers use 1-4).
const maxMKILen = 4

// sdesKey is one SDES master key: a peer's (it decrypts what the peer
// sends) or the gateway's own (it encrypts what the gateway sends). Each
// owns the SRTP contexts made from it, created once: a context is never
// made twice from the same key, which would reset its replay window (a
// peer's key) or reuse its keystream (the gateway's).
type sdesKey struct {
	suite  *suite
	master secret // key || salt
	mki    []byte // nil: none
	// inline is the key-params text as it travelled, to recognise the
	// same key in a later description. Never logged.
	inline secret

	rtp, rtcp *srtp.Context // created on first use
	local     bool
}

// secret is key material: it prints as a placeholder whatever verb
// formats it, so it cannot reach a log or an error by accident.
type secret []byte

func (secret) String() string   { return "[secret]" }
func (secret) GoString() string { return "[secret]" }

// Format implements fmt.Formatter for every verb.
func (s secret) Format(f fmt.State, _ rune) {
	_, _ = f.Write([]byte("[secret]"))
}

// parseInline reads SDES key-params for suite name: "inline:" base64
// (key || salt), optionally "|lifetime" (2^n or decimal; accepted and not
// enforced) and "|mki:length". More than one key (";") and MKIs longer
// than 4 bytes are refused. The error never quotes the input.
func parseInline(name, params string) (*sdesKey, error) {
	s := suiteByName(name)
	if s == nil {
		return nil, ErrSuite
	}
	k, err := parseKeyParams(s, params)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func parseKeyParams(s *suite, params string) (*sdesKey, error) {
	if len(params) > 256 {
		return nil, keyErr("too long")
	}
	if strings.IndexByte(params, ';') >= 0 {
		return nil, keyErr("more than one key")
	}
	rest, ok := strings.CutPrefix(params, "inline:")
	if !ok {
		return nil, keyErr(`method is not "inline"`)
	}
	fields := strings.Split(rest, "|")
	if len(fields) > 3 {
		return nil, keyErr("too many fields")
	}
	want := s.keyLen + s.saltLen
	raw, err := decodeKey(fields[0], want)
	if err != nil {
		return nil, err
	}
	k := &sdesKey{suite: s, master: raw, inline: secret(params)}
	fields = fields[1:]
	// A lifetime comes first when both are present; it has no colon.
	if len(fields) > 0 && !strings.Contains(fields[0], ":") {
		if !validLifetime(fields[0]) {
			return nil, keyErr("bad lifetime")
		}
		fields = fields[1:]
	}
	if len(fields) > 0 {
		mki, err := parseMKI(fields[0])
		if err != nil {
			return nil, err
		}
		k.mki = mki
		fields = fields[1:]
	}
	if len(fields) > 0 {
		return nil, keyErr("bad field order")
	}
	return k, nil
}

func decodeKey(b64 string, want int) (secret, error) {
	if len(b64) > 4*((want+2)/3) {
		return nil, keyErr("key and salt have the wrong length")
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(b64)
	}
	if err != nil {
		return nil, keyErr("key is not base64")
	}
	if len(raw) != want {
		return nil, keyErr("key and salt have the wrong length")
	}
	return secret(raw), nil
}

func validLifetime(v string) bool {
	if e, ok := strings.CutPrefix(v, "2^"); ok {
		n, err := strconv.ParseUint(e, 10, 8)
		return err == nil && n >= 1 && n <= 48
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return err == nil && n >= 1 && n <= 1<<48
}

func parseMKI(v string) ([]byte, error) {
	val, length, ok := strings.Cut(v, ":")
	if !ok {
		return nil, keyErr("bad mki")
	}
	n, err := strconv.ParseUint(length, 10, 8)
	if err != nil || n < 1 || n > 128 {
		return nil, keyErr("bad mki length")
	}
	if n > maxMKILen {
		return nil, keyErr("mki longer than 4 bytes")
	}
	x, err := strconv.ParseUint(val, 10, int(8*n))
	if err != nil {
		return nil, keyErr("mki value does not fit its length")
	}
	mki := make([]byte, n)
	for i := int(n) - 1; i >= 0; i-- {
		mki[i] = byte(x)
		x >>= 8
	}
	return mki, nil
}

func keyErr(why string) error { return &keyError{why} }

type keyError struct{ why string }

func (e *keyError) Error() string { return ErrKey.Error() + ": " + e.why }
func (e *keyError) Unwrap() error { return ErrKey }

// formatInline writes k's key-params the way parseInline reads them.
func (k *sdesKey) formatInline() string {
	s := "inline:" + base64.StdEncoding.EncodeToString(k.master)
	if len(k.mki) > 0 {
		var x uint64
		for _, b := range k.mki {
			x = x<<8 | uint64(b)
		}
		s += "|" + strconv.FormatUint(x, 10) + ":" + strconv.Itoa(len(k.mki))
	}
	return s
}

// newLocalKey makes a fresh gateway key for s.
func newLocalKey(s *suite) (*sdesKey, error) {
	raw := make(secret, s.keyLen+s.saltLen)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	k := &sdesKey{suite: s, master: raw, local: true}
	k.inline = secret(k.formatInline())
	return k, nil
}

// newKeys makes key material from an externally keyed leg (DTLS-SRTP).
func newKeys(k Keys, local bool) (*sdesKey, error) {
	s := suiteByName(k.Suite)
	if s == nil {
		return nil, ErrSuite
	}
	if len(k.Key) != s.keyLen || len(k.Salt) != s.saltLen {
		return nil, keyErr("key and salt have the wrong length")
	}
	raw := make(secret, 0, s.keyLen+s.saltLen)
	raw = append(raw, k.Key...)
	raw = append(raw, k.Salt...)
	return &sdesKey{suite: s, master: raw, local: local}, nil
}

// same reports whether o is the key k, as a later description repeats it.
func (k *sdesKey) same(o *sdesKey) bool {
	return k != nil && o != nil && k.suite == o.suite && string(k.inline) == string(o.inline) && len(k.inline) > 0
}

// contexts returns the RTP and RTCP contexts of k, making them on first
// use. A peer's key decrypts with replay protection; the gateway's
// encrypts.
func (k *sdesKey) contexts() (rtpCtx, rtcpCtx *srtp.Context, err error) {
	if k.rtp != nil {
		return k.rtp, k.rtcp, nil
	}
	key, salt := k.master[:k.suite.keyLen], k.master[k.suite.keyLen:]
	var opts []srtp.ContextOption
	if len(k.mki) > 0 {
		opts = append(opts, srtp.MasterKeyIndicator(k.mki))
	}
	rtpOpts, rtcpOpts := opts, opts
	if !k.local {
		rtpOpts = append(rtpOpts[:len(rtpOpts):len(rtpOpts)], srtp.SRTPReplayProtection(srtpReplayWindow))
		rtcpOpts = append(rtcpOpts[:len(rtcpOpts):len(rtcpOpts)], srtp.SRTCPReplayProtection(srtcpReplayWindow))
	}
	r, err := srtp.CreateContext(key, salt, k.suite.profile, rtpOpts...)
	if err != nil {
		return nil, nil, errors.New("media: srtp context: " + k.suite.name)
	}
	c, err := srtp.CreateContext(key, salt, k.suite.profile, rtcpOpts...)
	if err != nil {
		return nil, nil, errors.New("media: srtcp context: " + k.suite.name)
	}
	k.rtp, k.rtcp = r, c
	return r, c, nil
}
