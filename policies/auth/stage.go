package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// The rules this stage writes, as the journal and security events show them.
const (
	RuleChallenge    = "auth/challenge"     // no usable credentials: challenged (not a failure)
	RuleStale        = "auth/stale"         // right answer to an expired nonce: challenged again, stale=true
	RuleFailure      = "auth/failure"       // wrong password, unknown user, unacceptable credentials
	RuleNonce        = "auth/nonce"         // a nonce this gateway did not issue for this source and realm
	RuleReplay       = "auth/replay"        // a nonce-count used before
	RuleUserMismatch = "auth/user_mismatch" // authenticated, but as someone else than the From/To user
)

// FailureDetail is the Detail of every failed verdict (wrong password,
// unknown user, bad nonce, replay): one text, so that nothing an adapter
// might show the peer depends on which check failed.
const FailureDetail = "authentication failed"

// maxSkew is how far in the future a nonce's issue time may be (a clock
// stepped back) before the nonce is treated as stale.
const maxSkew = time.Minute

// Stage is the auth stage. It is safe for concurrent use.
type Stage struct {
	enabled   bool
	log       *slog.Logger
	alerts    *core.Alerts
	state     core.State
	now       func() time.Time
	key       *nonceKey
	opaque    string
	ttl       int64 // milliseconds
	delay     time.Duration
	def       *zone
	zones     map[string]*zone
	protocols []string
	users     map[string]core.User
	dummy     [hashSHA256 + 1]string // an HA1 per hash for unknown users
	replay    *replay
	m         metrics
}

// zone is the resolved configuration of one zone.
type zone struct {
	enabled bool
	realm   string
	require requestClass
	match   requestClass
	trusted []netip.Prefix
	proxy   bool
	algs    []algorithm
	offered []string // shared by every challenge: read-only
}

// New builds the stage. The nonce key is read from (or created in)
// deps.DataDir; users are looked up in cfg.Users, then deps.State (may be
// nil); security events go to deps.Alerts and metrics to deps.Metrics
// (both may be nil). A disabled configuration gives a stage that allows
// everything.
func New(cfg Config, deps core.Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stage{
		enabled: cfg.Enabled,
		log:     log.With("stage", "auth"),
		alerts:  deps.Alerts,
		state:   deps.State,
		now:     time.Now,
		ttl:     cfg.NonceTTL.Milliseconds(),
		delay:   cfg.FailureDelay,
	}
	if !s.enabled {
		return s, nil
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	s.m = m
	key, err := s.loadKey(cfg.NonceKeyFile, deps.DataDir)
	if err != nil {
		return nil, err
	}
	s.key = newNonceKey(key)
	op := s.key.sum([]byte("opaque"))
	s.opaque = hex.EncodeToString(op[:12])
	// Nonces issued before this stage existed may have been used with a
	// previous replay table: a correct answer to one gets a stale challenge.
	s.replay = newReplay(cfg.MaxNonces, s.ttl, s.now().UnixMilli())

	for _, h := range []hashID{hashMD5, hashSHA256} {
		var b [32]byte
		_, _ = rand.Read(b[:])
		s.dummy[h] = string(h.appendHex(nil, b[:]))
	}
	s.users = make(map[string]core.User, len(cfg.Users))
	for _, u := range cfg.Users {
		realm := u.Realm
		if realm == "" {
			realm = cfg.Realm
		}
		s.users[u.Name] = core.User{Name: u.Name, Realm: realm, HA1: u.HA1, Disabled: u.Disabled}
	}
	s.protocols = slices.Clone(cfg.Protocols)

	var algs []algorithm
	for _, a := range cfg.Algorithms {
		alg, _ := parseAlgorithm(a)
		algs = append(algs, alg)
	}
	offered := slices.Clone(cfg.Algorithms)
	trusted := func(ps []string) []netip.Prefix {
		out := make([]netip.Prefix, 0, len(ps))
		for _, p := range ps {
			pp, _ := parsePrefix(p) // validated
			out = append(out, pp)
		}
		return out
	}
	s.def = &zone{
		enabled: true,
		realm:   cfg.Realm,
		require: classMask(cfg.Require),
		match:   classMask(cfg.MatchIdentity),
		trusted: trusted(cfg.Trusted),
		proxy:   cfg.Proxy,
		algs:    algs,
		offered: offered,
	}
	s.zones = make(map[string]*zone, len(cfg.Zones))
	for name, zc := range cfg.Zones {
		z := *s.def
		if zc.Enabled != nil {
			z.enabled = *zc.Enabled
		}
		if zc.Realm != "" {
			z.realm = zc.Realm
		}
		if zc.Require != nil {
			z.require = classMask(zc.Require)
		}
		if zc.Trusted != nil {
			z.trusted = trusted(zc.Trusted)
		}
		if zc.Proxy != nil {
			z.proxy = *zc.Proxy
		}
		s.zones[name] = &z
	}
	return s, nil
}

func (s *Stage) loadKey(file, dataDir string) ([]byte, error) {
	if file != "" && !filepath.IsAbs(file) && dataDir != "" {
		file = filepath.Join(dataDir, file)
	}
	if file == "" || !filepath.IsAbs(file) && dataDir == "" {
		key := make([]byte, keyLen)
		_, _ = rand.Read(key)
		s.log.Debug("nonce key is random: nonces will not survive a restart")
		return key, nil
	}
	key, created, err := loadKey(file)
	if err != nil {
		return nil, err
	}
	if created {
		s.log.Info("created nonce key", "path", file)
	}
	return key, nil
}

// Name implements core.Stage.
func (s *Stage) Name() string { return "auth" }

// Layer implements core.Stage.
func (s *Stage) Layer() core.Layer { return core.Application }

// Decide implements core.Stage. It challenges a required request that
// carries no usable credentials, refuses one whose credentials fail, and
// allows one that authenticates. It errs only when the user store does.
func (s *Stage) Decide(ctx context.Context, ev *core.Event) (core.Verdict, error) {
	if !s.enabled {
		return core.Verdict{}, nil
	}
	z := s.def
	if zz, ok := s.zones[ev.Src.Zone]; ok {
		z = zz
	}
	if !z.enabled || !slices.Contains(s.protocols, ev.Protocol) {
		return core.Verdict{}, nil
	}
	cls := classify(ev)
	if cls&z.require == 0 {
		return core.Verdict{}, nil
	}
	addr := ev.Src.Addr.Addr().Unmap()
	for _, p := range z.trusted {
		if p.Contains(addr) {
			s.m.trusted.Inc()
			return core.Verdict{}, nil
		}
	}
	c := ev.Credentials
	if c == nil || c.Scheme != "" && !strings.EqualFold(c.Scheme, "digest") || c.Realm != z.realm {
		s.m.challenge.Inc()
		return s.challenge(z, ev, addr, RuleChallenge, false), nil
	}
	return s.verify(ctx, z, cls, ev, addr, c)
}

// classify names the request as the require list does; 0 for what is
// never challenged.
func classify(ev *core.Event) requestClass {
	if ev.InDialog && ev.DialogKnown {
		return 0
	}
	switch ev.Method {
	case "ACK", "CANCEL":
		return 0
	case "SUBSCRIBE":
		return classSubscribe
	case "PUBLISH":
		return classPublish
	case "NOTIFY":
		return classNotify
	case "REFER":
		return classRefer
	}
	switch ev.Kind {
	case core.KindRegister:
		return classRegister
	case core.KindSessionOffer:
		return classInvite
	case core.KindSessionUpdate:
		// A re-INVITE for a dialog the gateway does not know is a new call
		// in disguise: challenge it like one.
		if ev.InDialog && !ev.DialogKnown {
			return classInvite
		}
	case core.KindMessage:
		return classMessage
	case core.KindProbe:
		return classOptions
	}
	return 0
}

func (s *Stage) verify(ctx context.Context, z *zone, cls requestClass, ev *core.Event, addr netip.Addr, c *core.Credentials) (core.Verdict, error) {
	// First what does not depend on the user, so that nothing about the
	// user store shows in which check fails.
	var alg algorithm
	offered := false
	if a, ok := parseAlgorithm(c.Algorithm); ok {
		for _, o := range z.algs {
			if o == a {
				alg, offered = a, true
				break
			}
		}
	}
	if !offered {
		return s.fail(ev, c, RuleFailure, "algorithm not offered"), nil
	}
	nc, ok := parseNC(c.NC)
	if !strings.EqualFold(c.QOP, "auth") || !ok || c.CNonce == "" {
		return s.fail(ev, c, RuleFailure, "qop=auth with nc and cnonce required"), nil
	}
	n, ok := s.key.decode(c.Nonce, addr, z.realm)
	if !ok || c.Opaque != "" && c.Opaque != s.opaque {
		return s.fail(ev, c, RuleNonce, "nonce not issued by this gateway for this source and realm"), nil
	}

	// Then the digest, over a dummy HA1 when the user is unknown: the same
	// work, the same answer.
	ha1, known, err := s.lookup(ctx, c.Username, z.realm, alg.hash)
	if err != nil {
		return core.Verdict{}, fmt.Errorf("auth: look up user: %w", err)
	}
	method := c.Method
	if method == "" {
		method = ev.Method
	}
	match := alg.verify(c.Response, ha1, c.Nonce, c.NC, c.CNonce, c.QOP, method, c.URI)
	if !known || !match {
		return s.fail(ev, c, RuleFailure, FailureDetail), nil
	}

	// The password was right: now whether this nonce may still be used.
	now := s.now().UnixMilli()
	if now-n.issued >= s.ttl || n.issued > now+maxSkew.Milliseconds() {
		s.m.stale.Inc()
		return s.challenge(z, ev, addr, RuleStale, true), nil
	}
	switch s.replay.use(&n, nc, now) {
	case useStale:
		s.m.stale.Inc()
		return s.challenge(z, ev, addr, RuleStale, true), nil
	case useReplay:
		return s.fail(ev, c, RuleReplay, "nonce count "+c.NC+" used before"), nil
	}
	if z.match&cls != 0 && (ev.From.User != c.Username || cls == classRegister && ev.To.User != c.Username) {
		s.m.mismatch.Inc()
		s.alert(ev, RuleUserMismatch, c.Username, "digest username is not the From or To user")
		return core.Verdict{Action: core.Refuse, Reason: core.ReasonForbidden, Rule: RuleUserMismatch,
			Detail: "authenticated user does not match the request's user"}, nil
	}
	s.m.ok.Inc()
	return core.Verdict{}, nil
}

// lookup finds the HA1 of user name in realm for hash h. For a user that
// is unknown, disabled, of another realm or without a usable HA1 for h it
// returns a dummy HA1 and known=false.
func (s *Stage) lookup(ctx context.Context, name, realm string, h hashID) (ha1 string, known bool, err error) {
	u, ok := s.users[name]
	if !ok && s.state != nil && name != "" {
		su, err := s.state.GetUser(ctx, name)
		switch {
		case err == nil:
			u, ok = su, true
		case !errors.Is(err, core.ErrNotFound):
			return "", false, err
		}
	}
	ha1 = u.HA1[h.name()]
	if !ok || u.Disabled || u.Realm != realm || !validHA1(h, ha1) {
		return s.dummy[h], false, nil
	}
	return ha1, true, nil
}

// parseNC reads a nonce-count: exactly 8 hex digits, not zero.
func parseNC(s string) (uint32, bool) {
	if len(s) != 8 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil || v == 0 {
		return 0, false
	}
	return uint32(v), true
}

func (s *Stage) challenge(z *zone, ev *core.Event, addr netip.Addr, rule string, stale bool) core.Verdict {
	return core.Verdict{
		Action: core.Challenge,
		Reason: core.ReasonUnauthorized,
		Rule:   rule,
		Challenge: &core.AuthChallenge{
			Proxy:      z.proxy && ev.Kind != core.KindRegister,
			Realm:      z.realm,
			Nonce:      s.key.issue(s.now().UnixMilli(), addr, z.realm),
			Opaque:     s.opaque,
			Algorithms: z.offered,
			QOP:        "auth",
			Stale:      stale,
		},
	}
}

// fail refuses after the failure delay and raises a security event. The
// verdict is the same for every failure; the event differs only in its
// rule, the username tried and, for failures that do not depend on the
// user store, its detail.
func (s *Stage) fail(ev *core.Event, c *core.Credentials, rule, detail string) core.Verdict {
	switch rule {
	case RuleNonce:
		s.m.nonce.Inc()
	case RuleReplay:
		s.m.replay.Inc()
	default:
		s.m.failure.Inc()
	}
	s.alert(ev, rule, c.Username, detail)
	return core.Verdict{Action: core.Refuse, Reason: core.ReasonForbidden, Rule: rule, Detail: FailureDetail, Delay: s.delay}
}

func (s *Stage) alert(ev *core.Event, rule, user, detail string) {
	if s.alerts == nil {
		return
	}
	s.alerts.Alert(&core.SecurityEvent{
		Time:     s.now(),
		Rule:     rule,
		Action:   "refuse",
		Src:      ev.Src.Addr.String(),
		Zone:     ev.Src.Zone,
		User:     CleanUser(user),
		Session:  ev.Session,
		Protocol: ev.Protocol,
		Detail:   detail,
	})
}

// MaxUserLen bounds the username a security event carries.
const MaxUserLen = 128

// CleanUser is the username as security events carry it: invalid UTF-8
// replaced by '?', cut to at most MaxUserLen bytes on a character
// boundary. It is idempotent, and does not allocate for a valid, short name.
func CleanUser(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= MaxUserLen {
		return s
	}
	i := MaxUserLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

type metrics struct {
	ok, trusted, challenge, stale, failure, nonce, replay, mismatch prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	// A reload registers it again: keep counting where the last stage stopped.
	vec, err := core.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_auth_results_total",
		Help: "Digest authentication outcomes of the requests the auth stage judged, by result.",
	}, []string{"result"}))
	if err != nil {
		return metrics{}, fmt.Errorf("auth: register metrics: %w", err)
	}
	return metrics{
		ok:        vec.WithLabelValues("ok"),
		trusted:   vec.WithLabelValues("trusted"),
		challenge: vec.WithLabelValues("challenge"),
		stale:     vec.WithLabelValues("stale"),
		failure:   vec.WithLabelValues("failure"),
		nonce:     vec.WithLabelValues("nonce"),
		replay:    vec.WithLabelValues("replay"),
		mismatch:  vec.WithLabelValues("user_mismatch"),
	}, nil
}

var _ core.Stage = (*Stage)(nil)
