package admission

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ucgate/ucgate/core"
)

// Name is the stage's name, its YAML key and the prefix of its rules.
const Name = "admission"

// The rules a refusal carries, as the journal shows them.
const (
	RuleSource     = "admission/source"
	RuleSourceRate = "admission/source_rate"
	RuleUser       = "admission/user"
	RuleUserRate   = "admission/user_rate"
	RuleTrunk      = "admission/trunk"
	RuleTrunkRate  = "admission/trunk_rate"
	RuleGlobal     = "admission/global"
	RuleGlobalRate = "admission/global_rate"
)

// rule indexes: kind*2 for concurrency, kind*2+1 for the rate.
const (
	kindSource = iota
	kindUser
	kindTrunk
	kindGlobal
	nKinds
)

var (
	kindNames = [nKinds]string{"source", "user", "trunk", "global"}
	ruleNames = [2 * nKinds]string{RuleSource, RuleSourceRate, RuleUser, RuleUserRate,
		RuleTrunk, RuleTrunkRate, RuleGlobal, RuleGlobalRate}
	ruleDetails = [2 * nKinds]string{
		"too many concurrent calls from this source", "too many new calls per second from this source",
		"too many concurrent calls from this user", "too many new calls per second from this user",
		"too many concurrent calls to this trunk", "too many new calls per second to this trunk",
		"too many concurrent calls through the gateway", "too many new calls per second through the gateway",
	}
)

const (
	detailSourcesFull = "too many sources tracked"
	detailUsersFull   = "too many users tracked"
	// sweepEvery is how often reservations expire and idle entries leave.
	sweepEvery = time.Second
)

// limits are the source and user limits of one zone.
type limits struct{ source, user limit }

// Stage is call admission control. Build it with New; it is safe for
// concurrent use, and Bind and Unbind keep working after Close (a swapped
// pipeline's calls still end).
type Stage struct {
	log      *slog.Logger
	now      func() time.Time
	enabled  bool
	reason   core.Reason
	retry    time.Duration
	def      limits
	zones    map[string]*limits
	trunks   map[string]limit // configured trunk limits; others are unlimited
	global   limit
	v6bits   int
	ttl      int64
	perShard int // entries a table shard may hold: max_keys/nShards

	st atomic.Pointer[state] // replaced once, by Inherit

	m    *metrics
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New builds the stage from cfg, which must pass Validate, and starts a
// janitor that Close stops. On a configuration reload, call Inherit
// before the new stage sees traffic.
func New(cfg Config, deps core.Deps) (*Stage, error) {
	return newStage(cfg, deps, time.Now, true)
}

func newStage(cfg Config, deps core.Deps, now func() time.Time, janitor bool) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stage{
		log:      log.With("stage", Name),
		now:      now,
		enabled:  cfg.Enabled,
		reason:   core.ReasonUnavailable,
		retry:    cfg.RetryAfter,
		def:      limits{source: newLimit(cfg.Source), user: newLimit(cfg.User)},
		zones:    make(map[string]*limits, len(cfg.Zones)),
		trunks:   make(map[string]limit, len(cfg.Trunks)),
		global:   newLimit(cfg.Global),
		v6bits:   cfg.IPv6Prefix,
		ttl:      int64(cfg.ReserveTimeout),
		perShard: max(1, cfg.MaxKeys/nShards),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if cfg.Over == "busy" {
		s.reason = core.ReasonBusy
	}
	for name, z := range cfg.Zones {
		s.zones[name] = &limits{source: newLimit(z.Source.apply(cfg.Source)), user: newLimit(z.User.apply(cfg.User))}
	}
	for name, l := range cfg.Trunks {
		s.trunks[name] = newLimit(l)
	}
	st := newState(now())
	s.addTrunks(st)
	s.st.Store(st)
	m, err := newMetrics(deps.Metrics, s)
	if err != nil {
		return nil, err
	}
	s.m = m
	if janitor {
		go s.janitor()
	} else {
		close(s.done)
	}
	return s, nil
}

// addTrunks makes sure st counts every configured trunk.
func (s *Stage) addTrunks(st *state) {
	for name := range s.trunks {
		st.trunk(name)
	}
}

// Inherit takes over prev's counts: the calls in progress, the
// reservations and the buckets. cmd/ucgate calls it on a configuration
// reload before the new stage sees traffic; from then on both stages
// count in the same tables, under their own limits, so a call bound to
// the old pipeline is released by its Unbind there.
func (s *Stage) Inherit(prev *Stage) {
	if prev == nil || prev == s {
		return
	}
	st := prev.st.Load()
	s.addTrunks(st)
	s.st.Store(st)
}

// Name implements core.Stage.
func (s *Stage) Name() string { return Name }

// Layer implements core.Stage.
func (s *Stage) Layer() core.Layer { return core.Application }

// mono is the state's monotonic clock in nanoseconds.
func (s *Stage) mono(st *state) int64 { return int64(s.now().Sub(st.epoch)) }

// sourceKey is the address a source is counted under: IPv4 as is (an
// IPv4-mapped IPv6 address as IPv4), IPv6 masked to its prefix.
func (s *Stage) sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		a = a.WithZone("")
		if s.v6bits < 128 {
			p, _ := a.Prefix(s.v6bits)
			a = p.Addr()
		}
	}
	return a
}

// Decide implements core.Stage. A session offer within every limit that
// applies to it is allowed and holds a reserved slot in each until its
// session binds or the reservation expires; one over a limit is refused
// with that limit's rule, and counts against nothing.
func (s *Stage) Decide(_ context.Context, ev *core.Event) (core.Verdict, error) {
	if !s.enabled || ev.Kind != core.KindSessionOffer {
		return core.Verdict{}, nil
	}
	st := s.st.Load()
	now := s.mono(st)
	lim := &s.def
	if z, ok := s.zones[ev.Src.Zone]; ok {
		lim = z
	}
	src := s.sourceKey(ev.Src.Addr.Addr())
	uk := userKey{user: ev.From.User, domain: lowerASCII(ev.From.Domain)}

	// Lock order: source shard, then user shard; trunk and global counts
	// are atomic. Nothing is committed until every limit has passed.
	ssh := st.sources.shard(src)
	ssh.mu.Lock()
	se := ssh.m[src]
	var active int32
	var tat int64
	if se != nil {
		active, tat = se.active, se.tat
	}
	code, srcNext := lim.source.check(active, tat, now)
	if code != passed {
		ssh.mu.Unlock()
		return s.refuse(kindSource, code, ""), nil
	}
	ush := st.users.shard(uk)
	ush.mu.Lock()
	ue := ush.m[uk]
	active, tat = 0, 0
	if ue != nil {
		active, tat = ue.active, ue.tat
	}
	code, userNext := lim.user.check(active, tat, now)
	if code != passed {
		ush.mu.Unlock()
		ssh.mu.Unlock()
		return s.refuse(kindUser, code, ""), nil
	}
	trunk := st.trunk(ev.Route)
	tl := s.trunks[ev.Route]
	if trunk != nil {
		if code := trunk.acquire(&tl, now); code != passed {
			ush.mu.Unlock()
			ssh.mu.Unlock()
			return s.refuse(kindTrunk, code, ""), nil
		}
	}
	if code := st.global.acquire(&s.global, now); code != passed {
		if trunk != nil {
			trunk.refund(&tl)
		}
		ush.mu.Unlock()
		ssh.mu.Unlock()
		return s.refuse(kindGlobal, code, ""), nil
	}
	if se == nil {
		if se = st.sources.insert(ssh, src, now, s.perShard, false); se == nil {
			s.unacquire(st, trunk, &tl)
			ush.mu.Unlock()
			ssh.mu.Unlock()
			return s.refuse(kindSource, overConcurrent, detailSourcesFull), nil
		}
	}
	if ue == nil {
		if ue = st.users.insert(ush, uk, now, s.perShard, false); ue == nil {
			s.unacquire(st, trunk, &tl)
			ush.mu.Unlock()
			ssh.mu.Unlock()
			return s.refuse(kindUser, overConcurrent, detailUsersFull), nil
		}
		ue.user = userKey{user: strings.Clone(uk.user), domain: strings.Clone(uk.domain)}
	}
	se.active++
	se.reserved++
	se.tat = srcNext
	se.pending = append(se.pending, reservation{user: ue, trunk: trunk, deadline: now + s.ttl})
	ue.active++
	ue.reserved++
	ue.tat = userNext
	ush.mu.Unlock()
	ssh.mu.Unlock()
	st.sources.calls.Add(1)
	st.users.calls.Add(1)
	if trunk != nil {
		trunk.reserved.Add(1)
	}
	st.global.reserved.Add(1)
	return core.Verdict{}, nil
}

// unacquire gives back the trunk and global counts of an offer refused
// after they were taken.
func (s *Stage) unacquire(st *state, trunk *counter, tl *limit) {
	if trunk != nil {
		trunk.refund(tl)
	}
	st.global.refund(&s.global)
}

func (s *Stage) refuse(kind, code int, detail string) core.Verdict {
	r := kind*2 + code - overConcurrent
	s.m.refused[r].Inc()
	if detail == "" {
		detail = ruleDetails[r]
	}
	return core.Verdict{Action: core.Refuse, Reason: s.reason, Rule: ruleNames[r], Detail: detail,
		RetryAfter: s.retry, CDR: true}
}

// Bind implements core.SessionBinder: the session's reservation (made by
// Decide for the same source and user, and the same trunk if it can be
// told) becomes a running call. A session without a reservation is
// counted anyway, without a limit check (it was admitted elsewhere: by a
// pipeline that a reload replaced, say). Binding a session twice counts
// it once.
func (s *Stage) Bind(sess *core.Session) {
	if sess != nil {
		s.bind(sess)
	}
}

func (s *Stage) bind(sess *core.Session) {
	st := s.st.Load()
	bs := &st.bound[st.h.str(string(sess.ID))%nShards]
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if _, dup := bs.m[string(sess.ID)]; dup {
		return
	}
	caller, callee := sess.Legs()
	src := s.sourceKey(caller.Remote.Addr())
	uk := userKey{user: sess.From.User, domain: lowerASCII(sess.From.Domain)}
	now := s.mono(st)
	b := binding{sess: sess, src: src}

	ssh := st.sources.shard(src)
	ssh.mu.Lock()
	se := ssh.m[src]
	if i := claimable(se, uk, callee.Upstream); i >= 0 {
		r := se.pending[i]
		se.pending = slices.Delete(se.pending, i, i+1)
		se.reserved--
		ush := st.users.shard(r.user.user)
		ush.mu.Lock()
		r.user.reserved--
		ush.mu.Unlock()
		if r.trunk != nil {
			r.trunk.reserved.Add(-1)
		}
		st.global.reserved.Add(-1)
		b.srcE, b.userK, b.userE, b.trunk = se, r.user.user, r.user, r.trunk
	} else {
		if se == nil {
			se = st.sources.insert(ssh, src, now, s.perShard, true)
		}
		se.active++
		ush := st.users.shard(uk)
		ush.mu.Lock()
		ue := ush.m[uk]
		if ue == nil {
			ue = st.users.insert(ush, uk, now, s.perShard, true)
			ue.user = userKey{user: strings.Clone(uk.user), domain: strings.Clone(uk.domain)}
		}
		ue.active++
		ush.mu.Unlock()
		b.srcE, b.userK, b.userE = se, ue.user, ue
		if b.trunk = st.trunk(callee.Upstream); b.trunk != nil {
			b.trunk.active.Add(1)
		}
		st.global.active.Add(1)
		st.sources.calls.Add(1)
		st.users.calls.Add(1)
		s.m.unreserved.Inc()
		s.log.Debug("session bound without a reservation", "session", sess.ID)
	}
	ssh.mu.Unlock()
	bs.m[string(sess.ID)] = b
}

// claimable picks the reservation of se a session of user uk to trunk
// should claim: the oldest of the same user and trunk, else the oldest of
// the same user, else the oldest of the source. -1: none.
func claimable(se *entry, uk userKey, trunk string) int {
	if se == nil || len(se.pending) == 0 {
		return -1
	}
	sameUser := -1
	for i, r := range se.pending {
		if r.user.user != uk {
			continue
		}
		name := ""
		if r.trunk != nil {
			name = r.trunk.name
		}
		if name == trunk {
			return i
		}
		if sameUser < 0 {
			sameUser = i
		}
	}
	if sameUser >= 0 {
		return sameUser
	}
	return 0
}

// Unbind implements core.SessionBinder: the session's call no longer
// counts. Unbinding a session that is not bound does nothing.
func (s *Stage) Unbind(sess *core.Session) {
	if sess == nil {
		return
	}
	st := s.st.Load()
	bs := &st.bound[st.h.str(string(sess.ID))%nShards]
	bs.mu.Lock()
	b, ok := bs.m[string(sess.ID)]
	delete(bs.m, string(sess.ID))
	bs.mu.Unlock()
	if ok {
		st.release(&b)
	}
}

// release uncounts a bound call.
func (st *state) release(b *binding) {
	ssh := st.sources.shard(b.src)
	ssh.mu.Lock()
	b.srcE.active--
	ssh.mu.Unlock()
	ush := st.users.shard(b.userK)
	ush.mu.Lock()
	b.userE.active--
	ush.mu.Unlock()
	if b.trunk != nil {
		b.trunk.active.Add(-1)
	}
	st.global.active.Add(-1)
	st.sources.calls.Add(-1)
	st.users.calls.Add(-1)
}

func (s *Stage) janitor() {
	defer close(s.done)
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep(s.mono(s.st.Load()))
		}
	}
}

// sweep releases the reservations that expired by now and the sessions
// that ended without an Unbind, and evicts idle entries.
func (s *Stage) sweep(now int64) {
	st := s.st.Load()
	var ended []binding
	for i := range st.bound {
		bs := &st.bound[i]
		bs.mu.Lock()
		for id, b := range bs.m {
			if b.sess.State() == core.StateEnded {
				delete(bs.m, id)
				ended = append(ended, b)
			}
		}
		bs.mu.Unlock()
	}
	for i := range ended {
		st.release(&ended[i])
	}
	if len(ended) > 0 {
		s.log.Debug("ended sessions released without unbind", "count", len(ended))
	}
	expired := 0
	for i := range st.sources.shards {
		sh := &st.sources.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			kept := e.pending[:0]
			for _, r := range e.pending {
				if r.deadline > now {
					kept = append(kept, r)
					continue
				}
				expired++
				e.active--
				e.reserved--
				ush := st.users.shard(r.user.user)
				ush.mu.Lock()
				r.user.active--
				r.user.reserved--
				ush.mu.Unlock()
				if r.trunk != nil {
					r.trunk.active.Add(-1)
					r.trunk.reserved.Add(-1)
				}
				st.global.active.Add(-1)
				st.global.reserved.Add(-1)
				st.sources.calls.Add(-1)
				st.users.calls.Add(-1)
			}
			clear(e.pending[len(kept):])
			e.pending = kept
			if len(e.pending) == 0 && cap(e.pending) > 64 {
				e.pending = nil
			}
			if e.idle(now) {
				delete(sh.m, k)
				st.sources.keys.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
	if expired > 0 {
		s.m.expired.Add(float64(expired))
	}
	st.users.evictIdle(now)
}

// Close stops the janitor. The stage keeps counting: sessions bound to it
// still end through Unbind.
func (s *Stage) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		s.m.detach(s)
	})
	return nil
}

// Snapshot is the stage's counts at one moment, for the admin API.
type Snapshot struct {
	Global Usage `json:"global"`
	// Trunks lists every configured trunk, and the others with calls.
	Trunks []Usage `json:"trunks"`
	// Sources and Users list those with calls, most calls first.
	Sources []Usage `json:"sources"`
	Users   []Usage `json:"users"`
}

// Usage is the count of one key.
type Usage struct {
	// Key is the trunk's name, the source's address (an IPv6 source as
	// its prefix) or the user as user@domain.
	Key string `json:"key"`
	// Calls counts the calls in progress and the reservations.
	Calls int `json:"calls"`
	// Reserved counts the admitted offers whose sessions have not started.
	Reserved int `json:"reserved"`
	// Limit is the concurrency limit, for trunks and global; 0 means none
	// (or, for sources and users, that it depends on the zone).
	Limit int `json:"limit,omitempty"`
}

// Snapshot returns the current counts.
func (s *Stage) Snapshot() Snapshot {
	st := s.st.Load()
	snap := Snapshot{Global: usageOf(&st.global, s.global)}
	for name, c := range *st.trunks.Load() {
		l, configured := s.trunks[name]
		if u := usageOf(c, l); configured || u.Calls > 0 {
			snap.Trunks = append(snap.Trunks, u)
		}
	}
	slices.SortFunc(snap.Trunks, func(a, b Usage) int { return cmp.Compare(a.Key, b.Key) })
	for i := range st.sources.shards {
		sh := &st.sources.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.active > 0 {
				key := k.String()
				if k.Is6() && s.v6bits < 128 {
					key = netip.PrefixFrom(k, s.v6bits).String()
				}
				snap.Sources = append(snap.Sources, Usage{Key: key, Calls: int(e.active), Reserved: int(e.reserved)})
			}
		}
		sh.mu.Unlock()
	}
	for i := range st.users.shards {
		sh := &st.users.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			if e.active > 0 {
				snap.Users = append(snap.Users, Usage{Key: e.user.String(), Calls: int(e.active), Reserved: int(e.reserved)})
			}
		}
		sh.mu.Unlock()
	}
	byCalls := func(a, b Usage) int {
		if c := cmp.Compare(b.Calls, a.Calls); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	}
	slices.SortFunc(snap.Sources, byCalls)
	slices.SortFunc(snap.Users, byCalls)
	return snap
}

func usageOf(c *counter, l limit) Usage {
	return Usage{Key: c.name, Calls: int(c.active.Load()), Reserved: int(c.reserved.Load()), Limit: int(l.concurrent)}
}

// ErrMetrics reports metrics that could not be registered.
var ErrMetrics = errors.New("admission: register metrics")

var (
	_ core.Stage         = (*Stage)(nil)
	_ core.SessionBinder = (*Stage)(nil)
	_ io.Closer          = (*Stage)(nil)
)
