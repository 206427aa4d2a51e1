package blacklist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// Name is the stage's name, its YAML key and the prefix of its rules.
const Name = "blacklist"

// Rules, as the journal shows them.
const (
	// RuleBlocked is the verdict's rule for a blocked source.
	RuleBlocked = "blacklist/blocked"
	// RuleAdmin is the rule of a block the operator added.
	RuleAdmin = "admin"
)

var verdictBlocked = core.Verdict{Action: core.Drop, Reason: core.ReasonForbidden, Rule: RuleBlocked}

// Errors of the operator API.
var (
	ErrBadKey      = errors.New("blacklist: bad key")
	ErrBadDuration = errors.New("blacklist: bad duration")
	ErrBadReason   = errors.New("blacklist: reason too long")
	ErrNotBlocked  = errors.New("blacklist: not blocked")
	ErrFull        = errors.New("blacklist: full")
	ErrConfig      = errors.New("blacklist: invalid configuration")
	ErrClosed      = errors.New("blacklist: closed")
)

const (
	// maxAdminDuration bounds an operator block: a century is forever.
	maxAdminDuration = 100 * 365 * 24 * time.Hour
	// maxReason bounds the reason an operator gives.
	maxReason = 256
	// maxDelta is how many address changes the snapshot's overlay holds
	// before the base is rebuilt: a block costs a copy of at most this
	// many entries, never of the whole blacklist.
	maxDelta = 256
	// cleanupEvery is how often expired blocks leave memory and state.
	cleanupEvery = 10 * time.Second
	// persistTimeout bounds one write to core.State.
	persistTimeout = 5 * time.Second
	// queueSize bounds the writes waiting for core.State.
	queueSize = 4096
)

// Stage is the blacklist. Its methods are safe for concurrent use.
type Stage struct {
	cfg   Config
	log   *slog.Logger
	state core.State
	alert *core.Alerts
	now   func() time.Time
	never []netip.Prefix

	snap atomic.Pointer[snapshot]
	next atomic.Pointer[Stage] // the stage that inherited this one

	mu     sync.Mutex // guards recs, closed and sends on ops
	recs   map[string]*record
	closed bool

	ops       chan op
	done      chan struct{} // closed when the writer has finished
	stop      chan struct{} // closed by Close to stop the cleanup loop
	cleaned   chan struct{} // closed when the cleanup loop has stopped
	closeOnce sync.Once
	handler   http.Handler

	dropped, blocks, overflow, persistErrs prometheus.Counter
	active                                 prometheus.Gauge
}

// record is one key's block: active until b.Until, remembered for its
// offences until b.Until + ForgetAfter.
type record struct {
	b      core.Block
	p      netip.Prefix
	purged bool // the expired block was deleted from core.State
}

// snapshot is what the packet path reads: immutable once published.
type snapshot struct {
	// base and delta map a blocked address to the end of its block, in
	// Unix nanoseconds; delta holds the latest changes and shadows base
	// (0 in delta: lifted).
	base, delta map[netip.Addr]int64
	nets        []netBlock // blocked prefixes
}

type netBlock struct {
	p     netip.Prefix
	until int64
}

func (sn *snapshot) empty() bool {
	return len(sn.base) == 0 && len(sn.delta) == 0 && len(sn.nets) == 0
}

// op is one write to core.State, in the order of the changes in memory;
// one with neither put nor del only reports that the writes before it are
// done.
type op struct {
	put  *core.Block
	del  string
	done chan error // nil: nobody waits
}

// New loads the blocks in deps.State (nil: memory only) and starts the
// writer and the cleanup loop that Close stops.
func New(cfg Config, deps core.Deps) (*Stage, error) {
	return newStage(cfg, deps, time.Now)
}

// newStage is New with a clock, for tests.
func newStage(cfg Config, deps core.Deps, now func() time.Time) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stage{
		cfg:     cfg,
		log:     log.With("stage", Name),
		state:   deps.State,
		alert:   deps.Alerts,
		now:     now,
		recs:    map[string]*record{},
		ops:     make(chan op, queueSize),
		done:    make(chan struct{}),
		stop:    make(chan struct{}),
		cleaned: make(chan struct{}),
	}
	for _, k := range cfg.AllowNeverBlock {
		p, _, _ := parseKey(k)
		s.never = append(s.never, p)
	}
	s.dropped, _ = core.RegisterMetric(deps.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_blacklist_dropped_total",
		Help: "Packets, connections and events dropped because their source is blocked.",
	}))
	s.blocks, _ = core.RegisterMetric(deps.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_blacklist_blocks_total",
		Help: "Blocks added, by stages and by the operator.",
	}))
	s.overflow, _ = core.RegisterMetric(deps.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_blacklist_overflow_total",
		Help: "Blocks refused because the blacklist held max_entries sources.",
	}))
	s.persistErrs, _ = core.RegisterMetric(deps.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_blacklist_persist_errors_total",
		Help: "Blocks that could not be written to or deleted from the state store.",
	}))
	s.active, _ = core.RegisterMetric(deps.Metrics, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ucgate_blacklist_entries",
		Help: "Sources blocked now (exact after each cleanup, every 10s).",
	}))
	if s.state != nil {
		ctx, cancel := context.WithTimeout(context.Background(), persistTimeout)
		blocks, err := s.state.Blocks(ctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("blacklist: load blocks: %w", err)
		}
		for _, b := range blocks {
			p, key, msg := parseKey(b.Key)
			if msg != "" {
				s.log.Warn("ignoring a stored block with a bad key", "key", b.Key, "reason", msg)
				continue
			}
			b.Key = key
			s.recs[key] = &record{b: b, p: p}
		}
	}
	s.mu.Lock()
	s.rebuild(s.now())
	s.mu.Unlock()
	s.active.Set(float64(len(s.List())))
	s.handler = s.newHandler()
	go s.writer()
	go s.cleanupLoop()
	return s, nil
}

// Inherit takes over prev's blacklist, for a configuration reload:
// cmd/ucgate calls it before the new stage sees traffic. The new stage
// loaded the blocks in force from core.State; from prev it also takes the
// blocks not yet written there and the offences remembered for sources
// whose blocks ended. From then on prev hands everything to the new stage:
// its packet checks, Block and BlockFor from stages of the old pipeline,
// and its operator API.
func (s *Stage) Inherit(prev *Stage) {
	if prev == nil || prev == s || s.next.Load() != nil {
		return
	}
	prev.mu.Lock()
	recs := make([]record, 0, len(prev.recs))
	for _, r := range prev.recs {
		recs = append(recs, *r)
	}
	prev.mu.Unlock()
	now := s.now()
	s.mu.Lock()
	for _, r := range recs {
		if cur, ok := s.recs[r.b.Key]; !ok || r.b.Created.After(cur.b.Created) {
			s.recs[r.b.Key] = &r
		}
	}
	s.rebuild(now)
	s.mu.Unlock()
	prev.next.CompareAndSwap(nil, s)
}

// latest is the stage that inherited s last, or s.
func (s *Stage) latest() *Stage {
	for {
		n := s.next.Load()
		if n == nil {
			return s
		}
		s = n
	}
}

// Name implements core.Stage.
func (s *Stage) Name() string { return Name }

// Layer implements core.Stage.
func (s *Stage) Layer() core.Layer { return core.Network }

// Decide implements core.Stage: a parsed event from a blocked source is
// dropped too (it may come on a connection opened before the block).
func (s *Stage) Decide(_ context.Context, ev *core.Event) (core.Verdict, error) {
	return s.check(ev.Src.Addr.Addr()), nil
}

// DecidePacket implements core.PacketStage. It takes no lock and does not
// allocate.
func (s *Stage) DecidePacket(p *core.PacketMeta) core.Verdict {
	return s.check(p.Src.Addr())
}

func (s *Stage) check(a netip.Addr) core.Verdict {
	s = s.latest()
	if !s.cfg.Enabled {
		return core.Verdict{}
	}
	sn := s.snap.Load()
	if sn.empty() {
		return core.Verdict{}
	}
	if s.blockedIn(sn, a.Unmap().WithZone("")) {
		s.dropped.Inc()
		return verdictBlocked
	}
	return core.Verdict{}
}

// blockedIn reports whether a (unmapped, without zone) is blocked in sn.
// The clock is read only when a is found.
func (s *Stage) blockedIn(sn *snapshot, a netip.Addr) bool {
	until, ok := sn.delta[a]
	if !ok {
		until, ok = sn.base[a]
	}
	if ok && until != 0 && s.now().UnixNano() < until {
		return true
	}
	if len(sn.nets) == 0 {
		return false
	}
	var now int64
	for i := range sn.nets {
		if sn.nets[i].p.Contains(a) {
			if now == 0 {
				now = s.now().UnixNano()
			}
			if now < sn.nets[i].until {
				return true
			}
		}
	}
	return false
}

// blockedUntil is the end of the longest block of a in sn, in Unix
// nanoseconds (0: none; it may be past).
func blockedUntil(sn *snapshot, a netip.Addr) int64 {
	until, ok := sn.delta[a]
	if !ok {
		until = sn.base[a]
	}
	for i := range sn.nets {
		if sn.nets[i].p.Contains(a) {
			until = max(until, sn.nets[i].until)
		}
	}
	return until
}

// Block implements core.Blocker: it blocks src for block_time, times
// growth for each earlier offence not yet forgotten, up to max_block_time.
// A source already blocked, or in allow_never_block, is left as it is. It
// never waits for the state store: the block holds at once, its write
// follows.
func (s *Stage) Block(src netip.Addr, rule, reason string) {
	s.block(src, 0, rule, reason)
}

// BlockFor is Block for a given time d (0: as Block) rather than the
// growing block time, for actions the operator configured with a duration
// (a trigger). It counts as an offence. A source already blocked for
// longer is left as it is; one blocked for less is blocked until d from
// now.
func (s *Stage) BlockFor(src netip.Addr, d time.Duration, rule, reason string) {
	s.block(src, max(d, 0), rule, reason)
}

func (s *Stage) block(src netip.Addr, fixed time.Duration, rule, reason string) {
	s = s.latest()
	a := src.Unmap().WithZone("")
	if !s.cfg.Enabled || !a.IsValid() {
		return
	}
	for _, p := range s.never {
		if p.Contains(a) {
			s.log.Debug("source never blocked", "src", a, "rule", rule)
			return
		}
	}
	if len(reason) > maxReason { // a stage may quote what a peer sent
		reason = strings.ToValidUTF8(reason[:maxReason], "")
	}
	now := s.now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	key := a.String()
	rec := s.recs[key]
	until := blockedUntil(s.snap.Load(), a)
	active := until > now.UnixNano()
	if active && (fixed == 0 || until >= now.Add(fixed).UnixNano()) {
		s.mu.Unlock() // blocked (by its own block or a prefix's) for long enough
		return
	}
	n := 1
	if rec != nil {
		switch {
		case rec.b.Until.After(now): // extended: the same offence
			n = rec.b.Offences
		case now.Sub(rec.b.Until) < s.cfg.ForgetAfter:
			n = rec.b.Offences + 1
		}
	} else if len(s.recs) >= s.cfg.MaxEntries {
		s.mu.Unlock()
		s.overflow.Inc()
		s.log.Debug("blacklist full, block refused", "src", a, "rule", rule)
		return
	}
	d := fixed
	if d == 0 {
		d = s.blockTime(n)
	}
	b := core.Block{Key: key, Until: now.Add(d), Created: now, Rule: rule, Reason: reason, Offences: max(n, 1)}
	s.recs[key] = &record{b: b, p: netip.PrefixFrom(a, a.BitLen())}
	s.publishAddr(a, b.Until.UnixNano(), now)
	s.enqueue(op{put: &b})
	s.mu.Unlock()
	s.blocked(b, d, !active)
}

// blockTime is the block time of the n-th offence.
func (s *Stage) blockTime(n int) time.Duration {
	d := float64(s.cfg.BlockTime) * math.Pow(s.cfg.Growth, float64(n-1))
	if d >= float64(s.cfg.MaxBlockTime) || math.IsInf(d, 0) || math.IsNaN(d) {
		return s.cfg.MaxBlockTime
	}
	return time.Duration(d)
}

// blocked counts, logs and raises the security event of a new block;
// fresh is false when it replaced a block in force.
func (s *Stage) blocked(b core.Block, d time.Duration, fresh bool) {
	s.blocks.Inc()
	if fresh {
		s.active.Inc()
	}
	s.log.Debug("blocked", "src", b.Key, "rule", b.Rule, "reason", b.Reason, "until", b.Until, "offences", b.Offences)
	detail := fmt.Sprintf("blocked for %v", d)
	if b.Offences > 1 {
		detail += fmt.Sprintf(" (offence %d)", b.Offences)
	}
	if b.Reason != "" {
		detail += ": " + b.Reason
	}
	s.alert.Alert(&core.SecurityEvent{Time: b.Created, Rule: b.Rule, Action: "block", Src: b.Key, Detail: detail})
}

// List returns the blocks in force, by key.
func (s *Stage) List() []core.Block {
	s = s.latest()
	now := s.now()
	s.mu.Lock()
	out := make([]core.Block, 0, len(s.recs))
	for _, r := range s.recs {
		if r.b.Until.After(now) {
			out = append(out, r.b)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(x, y core.Block) int { return strings.Compare(x.Key, y.Key) })
	return out
}

// Add blocks key (an address or a CIDR prefix) for d (0: block_time) on
// the operator's behalf, with rule "admin", replacing any block of the same
// key. It returns once the block is persisted; an error from the state
// store leaves the block in force in memory.
func (s *Stage) Add(key string, d time.Duration, reason string) error {
	_, err := s.add(key, d, reason)
	return err
}

func (s *Stage) add(key string, d time.Duration, reason string) (core.Block, error) {
	s = s.latest()
	p, key, msg := parseKey(key)
	if msg != "" {
		return core.Block{}, fmt.Errorf("%w: %s", ErrBadKey, msg)
	}
	if d == 0 {
		d = s.cfg.BlockTime
	}
	if d < 0 || d > maxAdminDuration {
		return core.Block{}, fmt.Errorf("%w: must be between 0 and 100 years, got %v", ErrBadDuration, d)
	}
	if len(reason) > maxReason {
		return core.Block{}, fmt.Errorf("%w: at most %d bytes, got %d", ErrBadReason, maxReason, len(reason))
	}
	now := s.now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return core.Block{}, ErrClosed
	}
	rec := s.recs[key]
	offences, fresh := 0, true
	if rec != nil {
		offences, fresh = rec.b.Offences, !rec.b.Until.After(now)
	} else if len(s.recs) >= s.cfg.MaxEntries {
		s.mu.Unlock()
		s.overflow.Inc()
		return core.Block{}, fmt.Errorf("%w: %d entries", ErrFull, s.cfg.MaxEntries)
	}
	b := core.Block{Key: key, Until: now.Add(d), Created: now, Rule: RuleAdmin, Reason: reason, Offences: offences}
	s.recs[key] = &record{b: b, p: p}
	if p.IsSingleIP() {
		s.publishAddr(p.Addr(), b.Until.UnixNano(), now)
	} else {
		s.rebuild(now)
	}
	done := s.enqueueWait(op{put: &b})
	s.mu.Unlock()
	s.blocked(b, d, fresh)
	return b, wait(done)
}

// Remove lifts the block of key (an address or a CIDR prefix, as listed)
// and forgets its offences. ErrNotBlocked if key is not blocked.
func (s *Stage) Remove(key string) error {
	s = s.latest()
	p, key, msg := parseKey(key)
	if msg != "" {
		return fmt.Errorf("%w: %s", ErrBadKey, msg)
	}
	now := s.now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	rec := s.recs[key]
	if rec == nil || !rec.b.Until.After(now) {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotBlocked, key)
	}
	delete(s.recs, key)
	if p.IsSingleIP() {
		s.publishAddr(p.Addr(), 0, now)
	} else {
		s.rebuild(now)
	}
	done := s.enqueueWait(op{del: key})
	s.mu.Unlock()
	s.active.Dec()
	s.log.Debug("unblocked", "src", key, "rule", RuleAdmin)
	s.alert.Alert(&core.SecurityEvent{Time: now, Rule: RuleAdmin, Action: "unblock", Src: key})
	return wait(done)
}

// Handler returns the operator API, for the admin HTTP server:
//
//	GET    /blacklist        the blocks in force, a JSON array of core.Block
//	POST   /blacklist        {"key": "192.0.2.0/24", "duration": "1h", "reason": "..."}
//	DELETE /blacklist/{key}  lift a block (a prefix's "/" may be escaped as %2F)
//
// Mount it at the root (mux.Handle("/blacklist", h) and
// mux.Handle("/blacklist/", h)) or strip a prefix first with
// http.StripPrefix.
func (s *Stage) Handler() http.Handler { return s.handler }

// publishAddr publishes a change of one address's block (until 0: lifted)
// in the overlay, or rebuilds the snapshot when the overlay is full.
// s.mu must be held.
func (s *Stage) publishAddr(a netip.Addr, until int64, now time.Time) {
	old := s.snap.Load()
	if len(old.delta) >= maxDelta {
		s.rebuild(now)
		return
	}
	delta := make(map[netip.Addr]int64, len(old.delta)+1)
	maps.Copy(delta, old.delta)
	if _, inBase := old.base[a]; until == 0 && !inBase {
		delete(delta, a)
	} else {
		delta[a] = until
	}
	s.snap.Store(&snapshot{base: old.base, delta: delta, nets: old.nets})
}

// rebuild publishes a snapshot of the blocks in force at now. s.mu must
// be held.
func (s *Stage) rebuild(now time.Time) {
	sn := &snapshot{base: make(map[netip.Addr]int64)}
	for _, r := range s.recs {
		if !r.b.Until.After(now) {
			continue
		}
		if r.p.IsSingleIP() {
			sn.base[r.p.Addr()] = r.b.Until.UnixNano()
		} else {
			sn.nets = append(sn.nets, netBlock{r.p, r.b.Until.UnixNano()})
		}
	}
	s.snap.Store(sn)
}

// cleanup drops expired blocks from the snapshot and from core.State, and
// forgets the offences of sources that stayed clean for forget_after.
func (s *Stage) cleanup() {
	now := s.now()
	s.mu.Lock()
	expired, active := 0, 0
	for key, r := range s.recs {
		if r.b.Until.After(now) {
			active++
			continue
		}
		if !r.purged {
			r.purged = true
			expired++
			s.enqueue(op{del: key})
		}
		if now.Sub(r.b.Until) >= s.cfg.ForgetAfter {
			delete(s.recs, key)
		}
	}
	if expired > 0 {
		s.rebuild(now)
	}
	s.mu.Unlock()
	s.active.Set(float64(active))
}

func (s *Stage) cleanupLoop() {
	defer close(s.cleaned)
	t := time.NewTicker(cleanupEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.cleanup()
		}
	}
}

// enqueue queues a write without waiting; s.mu must be held.
func (s *Stage) enqueue(o op) {
	if s.state == nil || s.closed {
		return
	}
	select {
	case s.ops <- o:
	default:
		s.persistErrs.Inc()
		key := o.del
		if o.put != nil {
			key = o.put.Key
		}
		s.log.Warn("state write queue full, change not persisted", "src", key)
	}
}

// enqueueWait queues a write and returns a channel for its result (nil
// when there is nothing to wait for); s.mu must be held.
func (s *Stage) enqueueWait(o op) chan error {
	if s.state == nil {
		return nil
	}
	o.done = make(chan error, 1)
	select {
	case s.ops <- o:
		return o.done
	default:
		s.persistErrs.Inc()
		o.done <- errors.New("blacklist: state write queue full")
		return o.done
	}
}

func wait(done chan error) error {
	if done == nil {
		return nil
	}
	return <-done
}

// writer applies queued writes to core.State in order.
func (s *Stage) writer() {
	defer close(s.done)
	for o := range s.ops {
		ctx, cancel := context.WithTimeout(context.Background(), persistTimeout)
		var err error
		switch {
		case o.put != nil:
			err = s.state.PutBlock(ctx, *o.put)
		case o.del != "":
			err = s.state.DeleteBlock(ctx, o.del)
		}
		cancel()
		if err != nil {
			s.persistErrs.Inc()
			s.log.Warn("state write failed", "err", err)
			err = fmt.Errorf("blacklist: persist: %w", err)
		}
		if o.done != nil {
			o.done <- err
		}
	}
}

// Close stops the cleanup loop, writes what is queued to core.State and
// stops the writer. The snapshot stays: a stage closed by a reload still
// answers until its pipeline is dropped.
func (s *Stage) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.cleaned
		s.mu.Lock()
		s.closed = true
		close(s.ops)
		s.mu.Unlock()
		<-s.done
	})
	return nil
}

var (
	_ core.Stage       = (*Stage)(nil)
	_ core.PacketStage = (*Stage)(nil)
	_ core.Blocker     = (*Stage)(nil)
	_ interface {
		BlockFor(src netip.Addr, d time.Duration, rule, reason string)
	} = (*Stage)(nil) // triggers.DurationBlocker, without importing another policy
)
