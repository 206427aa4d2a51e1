package bruteforce

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// The rules this stage writes.
const (
	RuleSource  = "bruteforce/source"  // a source over source_failures: dropped
	RuleHarvest = "bruteforce/harvest" // a source over harvest_users: dropped
	RuleUser    = "bruteforce/user"    // a username over user_failures: refused like an auth failure
	RuleLockout = "bruteforce/lockout" // the security event raised when a lockout starts
)

// FailureDetail is the detail of the refusal of a locked-out user: the
// same text as the auth stage's failures, so the lockout shows nothing.
const FailureDetail = "authentication failed"

// Lockout is a source or a username this stage refuses, as the admin API
// shows it.
type Lockout struct {
	// Rule is RuleSource, RuleHarvest or RuleUser.
	Rule string `json:"rule"`
	// Key is what is locked out: an address ("192.0.2.7"), an IPv6 prefix
	// ("2001:db8:1:2::/64") or a username.
	Key   string    `json:"key"`
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Count is what crossed the limit: failures, or distinct usernames for
	// RuleHarvest.
	Count int `json:"count"`
}

// Stage is the bruteforce stage. It is safe for concurrent use; Alert may
// run on another goroutine than Decide.
type Stage struct {
	cfg     Config
	log     *slog.Logger
	alerts  *core.Alerts
	blocker core.Blocker
	now     func() time.Time
	rules   map[string]bool
	exempt  []netip.Prefix
	closed  atomic.Bool
	m       metrics
	t       *tables // shared with a successor by Inherit
}

// tables are the stage's memory: counters and lockouts.
type tables struct {
	seed    maphash.Seed
	sources *table[netip.Prefix, sourceRec]
	users   *table[string, userRec]

	mu       sync.RWMutex
	srcLocks map[netip.Prefix]Lockout
	usrLocks map[string]Lockout
	nLocks   atomic.Int64 // len(srcLocks)+len(usrLocks): zero means Decide has nothing to look up
}

// sourceRec is what one source did lately.
type sourceRec struct {
	fails ring
	users []seenUser // distinct usernames within harvest_window, at most harvest_users
}

type seenUser struct {
	h  uint64 // maphash of the username
	at int64
}

type userRec struct {
	fails ring
}

// ring holds the times of the last failures, as many as the limit: the
// limit is crossed when it is full and its oldest is within the window.
type ring struct {
	at   []int64
	next int
	n    int
}

// add records a failure at now and reports whether limit failures fell
// within window (then the ring is emptied, so counting starts afresh).
func (r *ring) add(now int64, limit int, window int64) bool {
	if len(r.at) != limit { // new, or the limit changed on a reload
		r.at, r.next, r.n = make([]int64, limit), 0, 0
	}
	r.at[r.next] = now
	r.next = (r.next + 1) % limit
	if r.n < limit {
		r.n++
	}
	if r.n == limit && now-r.at[r.next%limit] < window {
		r.n = 0
		return true
	}
	return false
}

// New builds the stage. deps.Blocker (may be nil: then the stage only
// drops locked sources itself), deps.Alerts (lockout events) and
// deps.Metrics may be nil. The gateway must subscribe the stage to
// deps.Alerts (deps.Alerts.Subscribe(stage)) for it to learn failures.
func New(cfg Config, deps core.Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Stage{
		cfg:     cfg,
		log:     log.With("stage", "bruteforce"),
		alerts:  deps.Alerts,
		blocker: deps.Blocker,
		now:     time.Now,
		rules:   map[string]bool{},
		m:       m,
		t: &tables{
			seed:     maphash.MakeSeed(),
			sources:  newTable[netip.Prefix, sourceRec](),
			users:    newTable[string, userRec](),
			srcLocks: map[netip.Prefix]Lockout{},
			usrLocks: map[string]Lockout{},
		},
	}
	for _, r := range cfg.Rules {
		s.rules[r] = true
	}
	for _, p := range cfg.Exempt {
		pp, _ := parsePrefix(p) // validated
		s.exempt = append(s.exempt, pp)
	}
	return s, nil
}

// Inherit takes over prev's counters and lockouts, so that a reload does
// not lift them, and stops prev from counting (it may stay subscribed to
// the alerts). Call it before s decides anything.
func (s *Stage) Inherit(prev *Stage) {
	if prev == nil || prev == s {
		return
	}
	s.t = prev.t
	prev.closed.Store(true)
}

// Close stops the stage from counting failures: core.Alerts has no
// Unsubscribe, and a replaced stage must not count twice.
func (s *Stage) Close() error {
	s.closed.Store(true)
	return nil
}

// Name implements core.Stage.
func (s *Stage) Name() string { return "bruteforce" }

// Layer implements core.Stage.
func (s *Stage) Layer() core.Layer { return core.Application }

// Decide implements core.Stage: it drops requests from a locked-out
// source and refuses requests carrying the credentials of a locked-out
// username like an authentication failure. With no lockout in force it
// costs one atomic load.
func (s *Stage) Decide(_ context.Context, ev *core.Event) (core.Verdict, error) {
	if !s.cfg.Enabled || s.t.nLocks.Load() == 0 || ev.Kind == core.KindResponse {
		return core.Verdict{}, nil
	}
	now := s.now()
	if key, ok := s.sourceKey(ev.Src.Addr.Addr()); ok {
		s.t.mu.RLock()
		l, locked := s.t.srcLocks[key]
		s.t.mu.RUnlock()
		if locked && now.Before(l.Until) {
			s.m.refused(l.Rule).Inc()
			return core.Verdict{Action: core.Drop, Reason: core.ReasonForbidden, Rule: l.Rule,
				Detail: "source locked out after repeated authentication failures"}, nil
		}
	}
	if c := ev.Credentials; c != nil && s.cfg.UserFailures > 0 && authenticates(ev) {
		user := CleanUser(c.Username)
		s.t.mu.RLock()
		l, locked := s.t.usrLocks[user]
		s.t.mu.RUnlock()
		if locked && now.Before(l.Until) {
			s.m.refused(RuleUser).Inc()
			return core.Verdict{Action: core.Refuse, Reason: core.ReasonForbidden, Rule: RuleUser,
				Detail: FailureDetail, Delay: s.cfg.FailureDelay}, nil
		}
	}
	return core.Verdict{}, nil
}

// authenticates reports whether ev is a request whose credentials the auth
// stage would judge: not an in-dialog request of a known dialog, an ACK
// or a CANCEL (a locked-out user's established calls go on).
func authenticates(ev *core.Event) bool {
	return !(ev.InDialog && ev.DialogKnown) && ev.Method != "ACK" && ev.Method != "CANCEL"
}

// Alert implements core.Alerter: it counts the failures named in rules.
// It never blocks for long: a few map updates under short locks, and
// Blocker.Block when a source crosses a limit.
func (s *Stage) Alert(e *core.SecurityEvent) {
	if e == nil || !s.cfg.Enabled || s.closed.Load() || !s.rules[e.Rule] {
		return
	}
	s.m.failures.Inc()
	now := s.now()
	ns := now.UnixNano()
	user := CleanUser(e.User)
	addr, ok := parseSrc(e.Src)
	if ok && !s.isExempt(addr) {
		key, _ := s.sourceKey(addr)
		var srcHit, harvestHit bool
		var distinct int
		horizon := ns - max(s.cfg.SourceWindow, s.cfg.HarvestWindow).Nanoseconds()
		if s.t.sources.update(key, ns, horizon, s.cfg.MaxSources, func(r *sourceRec) {
			if s.cfg.SourceFailures > 0 {
				srcHit = r.fails.add(ns, s.cfg.SourceFailures, s.cfg.SourceWindow.Nanoseconds())
			}
			if s.cfg.HarvestUsers > 0 && user != "" {
				distinct, harvestHit = r.seen(maphash.String(s.t.seed, user), ns, s.cfg.HarvestUsers, s.cfg.HarvestWindow.Nanoseconds())
			}
		}) {
			s.m.evictSource.Inc()
		}
		switch {
		case harvestHit:
			s.lockSource(key, addr, RuleHarvest, distinct, e, now,
				fmt.Sprintf("%d distinct usernames in %v", distinct, s.cfg.HarvestWindow))
		case srcHit:
			s.lockSource(key, addr, RuleSource, s.cfg.SourceFailures, e, now,
				fmt.Sprintf("%d authentication failures in %v", s.cfg.SourceFailures, s.cfg.SourceWindow))
		}
	}
	if user != "" && s.cfg.UserFailures > 0 {
		var hit bool
		horizon := ns - s.cfg.UserWindow.Nanoseconds()
		if s.t.users.update(user, ns, horizon, s.cfg.MaxUsers, func(r *userRec) {
			hit = r.fails.add(ns, s.cfg.UserFailures, s.cfg.UserWindow.Nanoseconds())
		}) {
			s.m.evictUser.Inc()
		}
		if hit {
			s.lockUser(user, e, now)
		}
	}
}

// seen records a failure with the username hashed h and returns how many
// distinct usernames the source failed with within window, and whether
// that reached limit (then the list is emptied).
func (r *sourceRec) seen(h uint64, now int64, limit int, window int64) (int, bool) {
	r.users = slices.DeleteFunc(r.users, func(u seenUser) bool { return now-u.at >= window })
	for i := range r.users {
		if r.users[i].h == h {
			r.users[i].at = now
			return len(r.users), false
		}
	}
	if r.users == nil {
		r.users = make([]seenUser, 0, limit)
	}
	r.users = append(r.users, seenUser{h: h, at: now})
	if n := len(r.users); n >= limit {
		r.users = r.users[:0]
		return n, true
	}
	return len(r.users), false
}

func (s *Stage) lockSource(key netip.Prefix, addr netip.Addr, rule string, count int, e *core.SecurityEvent, now time.Time, why string) {
	l := Lockout{Rule: rule, Key: keyString(key), Since: now, Until: now.Add(s.cfg.SourceLockout), Count: count}
	t := s.t
	t.mu.Lock()
	if old, ok := t.srcLocks[key]; ok && now.Before(old.Until) {
		t.mu.Unlock()
		return
	}
	putBounded(t.srcLocks, key, l, s.cfg.MaxSources, now, &t.nLocks)
	t.mu.Unlock()
	s.m.lockouts(rule).Inc()
	if s.blocker != nil {
		s.blocker.Block(addr, rule, why)
	}
	s.log.Info("source locked out", "src", l.Key, "rule", rule, "until", l.Until)
	s.raise(e, "block", "", rule+": "+why+"; source "+l.Key+" locked out until "+l.Until.UTC().Format(time.RFC3339), now)
}

func (s *Stage) lockUser(user string, e *core.SecurityEvent, now time.Time) {
	l := Lockout{Rule: RuleUser, Key: user, Since: now, Until: now.Add(s.cfg.UserLockout), Count: s.cfg.UserFailures}
	t := s.t
	t.mu.Lock()
	if old, ok := t.usrLocks[user]; ok && now.Before(old.Until) {
		t.mu.Unlock()
		return
	}
	putBounded(t.usrLocks, user, l, s.cfg.MaxUsers, now, &t.nLocks)
	t.mu.Unlock()
	s.m.lockouts(RuleUser).Inc()
	s.log.Info("user locked out", "user", user, "rule", RuleUser, "until", l.Until)
	s.raise(e, "lockout", user, fmt.Sprintf("%s: %d authentication failures in %v; user locked out until %s",
		RuleUser, s.cfg.UserFailures, s.cfg.UserWindow, l.Until.UTC().Format(time.RFC3339)), now)
}

// putBounded stores l under k, first dropping expired lockouts and, if the
// map is still full, the one that ends first. The caller holds the lock.
func putBounded[K comparable](m map[K]Lockout, k K, l Lockout, max int, now time.Time, n *atomic.Int64) {
	if _, ok := m[k]; !ok && len(m) >= max {
		for kk, ll := range m {
			if !now.Before(ll.Until) {
				delete(m, kk)
				n.Add(-1)
			}
		}
		if len(m) >= max {
			var first K
			var end time.Time
			for kk, ll := range m {
				if end.IsZero() || ll.Until.Before(end) {
					first, end = kk, ll.Until
				}
			}
			delete(m, first)
			n.Add(-1)
		}
	}
	if _, ok := m[k]; !ok {
		n.Add(1)
	}
	m[k] = l
}

func (s *Stage) raise(e *core.SecurityEvent, action, user, detail string, now time.Time) {
	if s.alerts == nil {
		return
	}
	s.alerts.Alert(&core.SecurityEvent{
		Time: now, Rule: RuleLockout, Action: action, Src: e.Src, Zone: e.Zone, User: user,
		Protocol: e.Protocol, Detail: detail,
	})
}

// Lockouts lists the lockouts in force, oldest first, for the admin API.
// Expired ones are forgotten on the way.
func (s *Stage) Lockouts() []Lockout {
	now := s.now()
	t := s.t
	t.mu.Lock()
	out := make([]Lockout, 0, len(t.srcLocks)+len(t.usrLocks))
	for k, l := range t.srcLocks {
		if now.Before(l.Until) {
			out = append(out, l)
		} else {
			delete(t.srcLocks, k)
			t.nLocks.Add(-1)
		}
	}
	for k, l := range t.usrLocks {
		if now.Before(l.Until) {
			out = append(out, l)
		} else {
			delete(t.usrLocks, k)
			t.nLocks.Add(-1)
		}
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Lockout) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

// ErrNoLockout reports an Unlock of a key that is not locked out.
var ErrNoLockout = errors.New("bruteforce: no such lockout")

// Unlock lifts the lockout of key (an address, an IPv6 prefix as Lockouts
// shows it, or a username) and forgets its failures. It does not lift a
// block in the blacklist: that has its own admin call.
func (s *Stage) Unlock(key string) error {
	t := s.t
	found := false
	if p, err := parsePrefix(key); err == nil {
		if k, ok := s.sourceKey(p.Addr()); ok && (p.IsSingleIP() || k == p) {
			t.mu.Lock()
			if _, ok := t.srcLocks[k]; ok {
				delete(t.srcLocks, k)
				t.nLocks.Add(-1)
				found = true
			}
			t.mu.Unlock()
			t.sources.delete(k)
		}
	}
	t.mu.Lock()
	if _, ok := t.usrLocks[key]; ok {
		delete(t.usrLocks, key)
		t.nLocks.Add(-1)
		found = true
	}
	t.mu.Unlock()
	t.users.delete(key)
	if !found {
		return fmt.Errorf("%w: %q", ErrNoLockout, key)
	}
	return nil
}

// sourceKey is what counts as one source: the IPv4 address, or the IPv6
// address's ipv6_prefix.
func (s *Stage) sourceKey(a netip.Addr) (netip.Prefix, bool) {
	if !a.IsValid() {
		return netip.Prefix{}, false
	}
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = s.cfg.IPv6Prefix
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

func (s *Stage) isExempt(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// keyString shows a host prefix as its address.
func keyString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// parseSrc reads a security event's source: "192.0.2.7:5060",
// "[2001:db8::7]:5060" or a bare address.
func parseSrc(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// MaxUserLen bounds the usernames this stage remembers.
const MaxUserLen = 128

// CleanUser is a username as this stage keys it (and as the auth stage's
// security events carry it): invalid UTF-8 replaced by '?', cut to at
// most MaxUserLen bytes on a character boundary. It is idempotent.
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
	failures               prometheus.Counter
	lockoutBy, refusedBy   map[string]prometheus.Counter // by rule, resolved once
	evictSource, evictUser prometheus.Counter
}

func (m metrics) lockouts(rule string) prometheus.Counter { return m.lockoutBy[rule] }
func (m metrics) refused(rule string) prometheus.Counter  { return m.refusedBy[rule] }

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	failures := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_bruteforce_failures_total",
		Help: "Authentication failure events counted by the bruteforce stage.",
	})
	lockouts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_bruteforce_lockouts_total",
		Help: "Lockouts started, by rule.",
	}, []string{"rule"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_bruteforce_refused_total",
		Help: "Requests dropped or refused because of a lockout, by rule.",
	}, []string{"rule"})
	evictions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_bruteforce_evictions_total",
		Help: "Records forgotten because their table was full, by table.",
	}, []string{"table"})
	failures, err1 := core.RegisterMetric(reg, failures)
	lockouts, err2 := core.RegisterMetric(reg, lockouts)
	refused, err3 := core.RegisterMetric(reg, refused)
	evictions, err4 := core.RegisterMetric(reg, evictions)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return metrics{}, fmt.Errorf("bruteforce: register metrics: %w", err)
	}
	m := metrics{failures: failures, lockoutBy: map[string]prometheus.Counter{}, refusedBy: map[string]prometheus.Counter{},
		evictSource: evictions.WithLabelValues("source"), evictUser: evictions.WithLabelValues("user")}
	for _, r := range []string{RuleSource, RuleHarvest, RuleUser} {
		m.lockoutBy[r] = lockouts.WithLabelValues(r)
		m.refusedBy[r] = refused.WithLabelValues(r)
	}
	return m, nil
}

var (
	_ core.Stage   = (*Stage)(nil)
	_ core.Alerter = (*Stage)(nil)
)
