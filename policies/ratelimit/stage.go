package ratelimit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// Name is the stage's name, its YAML key and the prefix of its rules.
const Name = "ratelimit"

// Rules, as the journal shows them.
const (
	RulePackets = "ratelimit/packets" // the source's packet budget is spent
	RuleBytes   = "ratelimit/bytes"   // the source's byte budget is spent
	RuleGlobal  = "ratelimit/global"  // the global budget is spent
	RuleFlood   = "ratelimit/flood"   // the rule of the block and the security event of a flood
)

var (
	verdictPackets = core.Verdict{Action: core.Drop, Reason: core.ReasonRateLimited, Rule: RulePackets}
	verdictBytes   = core.Verdict{Action: core.Drop, Reason: core.ReasonRateLimited, Rule: RuleBytes}
	verdictGlobal  = core.Verdict{Action: core.Drop, Reason: core.ReasonRateLimited, Rule: RuleGlobal}
)

// ErrConfig reports a configuration that does not validate.
var ErrConfig = errors.New("ratelimit: invalid configuration")

const (
	// maxShards is the most shards of the source table.
	maxShards = 64
	// minPerShard keeps shards big enough for eviction to choose well.
	minPerShard = 64
	// evictSample is how many sources an eviction compares.
	evictSample = 8
	// sweepEvery is how often idle sources leave the table.
	sweepEvery = 30 * time.Second
)

// Stage is the rate limiter. Its methods are safe for concurrent use.
type Stage struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	epoch   time.Time
	blocker core.Blocker
	alerts  *core.Alerts

	trusted   []netip.Prefix
	untrusted *class
	trustedC  *class
	zones     map[string]*class // nil when no zone overrides
	global    gcra              // zero interval: off
	window    int64             // flood window, ns

	shards   []shard
	shift    uint // 64 - log2(len(shards))
	perShard int
	seed     uint64

	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once

	dropPackets, dropBytes, dropGlobal, floods, evictions prometheus.Counter
	sources                                               prometheus.Gauge
}

// class is a compiled budget.
type class struct {
	trusted     bool
	pktInterval int64   // ns per packet
	pktLimit    int64   // ns of burst: packet_burst * pktInterval
	nsPerByte   float64 // ns per byte
	byteLimit   int64   // ns of burst: byte_burst * nsPerByte
}

func newClass(b Budget, trusted bool) *class {
	c := &class{trusted: trusted}
	c.pktInterval = int64(float64(time.Second) / b.Packets)
	c.pktLimit = int64(b.PacketBurst) * c.pktInterval
	c.nsPerByte = float64(time.Second) / b.Bytes
	c.byteLimit = int64(float64(b.ByteBurst) * c.nsPerByte)
	return c
}

// bucket is one source's state. Times are ns since Stage.epoch.
type bucket struct {
	class    *class
	src      netip.Addr // the first source seen, and its zone: what chose class
	zone     string
	pkt, byt int64 // theoretical arrival times (GCRA)
	seen     int64
	winStart int64 // start of the current flood window
	lastDrop int64
	drops    int32
	flooding bool
}

type shard struct {
	mu sync.Mutex
	m  map[netip.Addr]*bucket
	_  [48]byte // 64 bytes a shard: shards do not share cache lines
}

// gcra is a lock-free global bucket.
type gcra struct {
	tat      atomic.Int64
	interval int64
	limit    int64
}

// allow takes one packet if the budget allows.
func (g *gcra) allow(now int64) bool {
	for {
		old := g.tat.Load()
		t := max(old, now) + g.interval
		if t-now > g.limit {
			return false
		}
		if g.tat.CompareAndSwap(old, t) {
			return true
		}
	}
}

// charge takes one packet whatever the budget says, keeping the debt
// within one burst.
func (g *gcra) charge(now int64) {
	for {
		old := g.tat.Load()
		t := min(max(old, now)+g.interval, now+g.limit)
		if t <= old || g.tat.CompareAndSwap(old, t) {
			return
		}
	}
}

// New builds the rate limiter and starts the sweep that Close stops.
// deps.Blocker (may be nil) receives flooding sources.
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
		cfg:       cfg,
		log:       log.With("stage", Name),
		now:       now,
		epoch:     now(),
		blocker:   deps.Blocker,
		alerts:    deps.Alerts,
		untrusted: newClass(cfg.Budget, false),
		trustedC:  newClass(cfg.TrustedBudget, true),
		window:    int64(cfg.FloodWindow),
		seed:      rand.Uint64(),
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
	for _, t := range cfg.Trusted {
		p, _ := parsePrefix(t)
		s.trusted = append(s.trusted, p)
	}
	if len(cfg.Zones) > 0 {
		s.zones = make(map[string]*class, len(cfg.Zones))
		for name, z := range cfg.Zones {
			switch {
			case z.Trusted:
				s.zones[name] = s.trustedC
			case z.Budget != nil:
				s.zones[name] = newClass(z.Budget.merge(cfg.Budget), false)
			}
		}
	}
	if cfg.GlobalPackets > 0 {
		s.global.interval = int64(float64(time.Second) / cfg.GlobalPackets)
		s.global.limit = int64(cfg.GlobalBurst) * s.global.interval
	}
	n, bits := 1, uint(0)
	for n < maxShards && cfg.MaxSources/(n*2) >= minPerShard {
		n, bits = n*2, bits+1
	}
	s.shards = make([]shard, n)
	s.shift = 64 - bits
	s.perShard = max(cfg.MaxSources/n, 1)
	for i := range s.shards {
		s.shards[i].m = make(map[netip.Addr]*bucket)
	}

	vec, _ := core.RegisterMetric(deps.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_ratelimit_dropped_total",
		Help: "Packets, connections and stream messages dropped, by rule.",
	}, []string{"rule"}))
	s.dropPackets = vec.WithLabelValues("packets")
	s.dropBytes = vec.WithLabelValues("bytes")
	s.dropGlobal = vec.WithLabelValues("global")
	s.floods, _ = core.RegisterMetric(deps.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_ratelimit_floods_total",
		Help: "Flood episodes detected (sources handed to the blacklist, trusted ones excepted).",
	}))
	s.evictions, _ = core.RegisterMetric(deps.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_ratelimit_evictions_total",
		Help: "Sources evicted from a full table to make room for a new one.",
	}))
	s.sources, _ = core.RegisterMetric(deps.Metrics, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ucgate_ratelimit_sources",
		Help: "Sources tracked (updated every 30s).",
	}))
	go s.sweepLoop()
	return s, nil
}

// Inherit takes over prev's sources, for a configuration reload: cmd/ucgate
// calls it before the new stage sees traffic. Each source keeps its
// buckets and flood state under the budget the new configuration gives it;
// the global budget carries over too. Sources beyond the new max_sources
// are left behind (they start afresh).
func (s *Stage) Inherit(prev *Stage) {
	if prev == nil || prev == s {
		return
	}
	shift := int64(prev.epoch.Sub(s.epoch)) // prev's times in s's
	now := int64(s.now().Sub(s.epoch))
	for i := range prev.shards {
		psh := &prev.shards[i]
		psh.mu.Lock()
		for k, b := range psh.m {
			sh := s.shardOf(k)
			sh.mu.Lock()
			if _, ok := sh.m[k]; !ok && len(sh.m) < s.perShard {
				nb := *b
				nb.class = s.classFor(b.src, b.zone)
				// The tokens left carry over, not the time to refill them.
				left := float64(b.class.pktLimit-max(b.pkt+shift-now, 0)) / float64(b.class.pktInterval)
				nb.pkt = now + max(nb.class.pktLimit-int64(left*float64(nb.class.pktInterval)), 0)
				left = float64(b.class.byteLimit-max(b.byt+shift-now, 0)) / b.class.nsPerByte
				nb.byt = now + max(nb.class.byteLimit-int64(left*nb.class.nsPerByte), 0)
				nb.seen += shift
				nb.winStart += shift
				nb.lastDrop += shift
				sh.m[k] = &nb
			}
			sh.mu.Unlock()
		}
		psh.mu.Unlock()
	}
	if s.global.interval > 0 && prev.global.interval > 0 {
		s.global.tat.Store(prev.global.tat.Load() + shift)
	}
}

// Name implements core.Stage.
func (s *Stage) Name() string { return Name }

// Layer implements core.Stage.
func (s *Stage) Layer() core.Layer { return core.Network }

// DecidePacket implements core.PacketStage: a datagram (its length
// charged in bytes) or a new connection (a packet of no bytes).
func (s *Stage) DecidePacket(p *core.PacketMeta) core.Verdict {
	if !s.cfg.Enabled {
		return core.Verdict{}
	}
	return s.take(p.Src.Addr(), p.Zone, len(p.Data))
}

// Decide implements core.Stage. A message that came on a stream (TCP,
// TLS, WebSocket) is charged as one packet of ev.Size bytes; a datagram's
// was charged by DecidePacket already.
func (s *Stage) Decide(_ context.Context, ev *core.Event) (core.Verdict, error) {
	if !s.cfg.Enabled || ev.Src.Transport == "udp" || ev.Src.Transport == "dtls" {
		return core.Verdict{}, nil
	}
	return s.take(ev.Src.Addr.Addr(), ev.Src.Zone, max(ev.Size, 0)), nil
}

// take charges one packet of size bytes to src's buckets, then to the
// global budget.
func (s *Stage) take(src netip.Addr, zone string, size int) core.Verdict {
	src = src.Unmap().WithZone("")
	if !src.IsValid() {
		return core.Verdict{} // not from the network: nothing to limit it by
	}
	key := s.key(src)
	now := int64(s.now().Sub(s.epoch))
	sh := s.shardOf(key)

	sh.mu.Lock()
	b := sh.m[key]
	if b == nil {
		b = s.insert(sh, key, src, zone, now)
	}
	b.seen = now
	c := b.class
	pkt := max(b.pkt, now) + c.pktInterval
	byt := max(b.byt, now) + int64(float64(size)*c.nsPerByte)
	var v *core.Verdict
	switch {
	case pkt-now > c.pktLimit:
		v = &verdictPackets
	case byt-now > c.byteLimit:
		v = &verdictBytes
	default:
		b.pkt, b.byt = pkt, byt
	}
	flood := false
	if v != nil {
		flood = s.dropped(b, now)
	}
	sh.mu.Unlock()

	if v != nil {
		if v == &verdictPackets {
			s.dropPackets.Inc()
		} else {
			s.dropBytes.Inc()
		}
		if flood {
			s.flood(src, zone, c.trusted)
		}
		return *v
	}
	if s.global.interval > 0 {
		if c.trusted {
			s.global.charge(now)
		} else if !s.global.allow(now) {
			s.dropGlobal.Inc()
			return verdictGlobal
		}
	}
	return core.Verdict{}
}

// key is the source a bucket stands for: the address, or its prefix.
func (s *Stage) key(a netip.Addr) netip.Addr {
	bits := s.cfg.IPv6Prefix
	if a.Is4() {
		bits = s.cfg.IPv4Prefix
	}
	if bits >= a.BitLen() {
		return a
	}
	p, _ := a.Prefix(bits) // bits is within range: no error
	return p.Addr()
}

// shardOf picks a's shard: a seeded splitmix64 of the address, top bits.
func (s *Stage) shardOf(a netip.Addr) *shard {
	b := a.As16()
	h := binary.BigEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ binary.BigEndian.Uint64(b[8:]) ^ s.seed
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return &s.shards[h>>s.shift]
}

// insert adds a bucket for key, evicting the least recently seen of a
// sample when the shard is full (and reusing its memory). sh.mu is held.
func (s *Stage) insert(sh *shard, key, src netip.Addr, zone string, now int64) *bucket {
	var b *bucket
	if len(sh.m) >= s.perShard {
		var oldKey netip.Addr
		n := 0
		for k, cand := range sh.m { // map iteration starts at a random place
			if b == nil || cand.seen < b.seen {
				oldKey, b = k, cand
			}
			if n++; n == evictSample {
				break
			}
		}
		delete(sh.m, oldKey)
		s.evictions.Inc()
		*b = bucket{}
	} else {
		b = new(bucket)
	}
	b.class = s.classFor(src, zone)
	b.src, b.zone = src, zone
	b.pkt, b.byt = now, now
	b.winStart, b.lastDrop = now, now-s.window-1
	sh.m[key] = b
	return b
}

// classFor is the budget of a new source.
func (s *Stage) classFor(src netip.Addr, zone string) *class {
	for _, p := range s.trusted {
		if p.Contains(src) {
			return s.trustedC
		}
	}
	if c, ok := s.zones[zone]; ok {
		return c
	}
	return s.untrusted
}

// dropped records a drop and reports whether it starts a flood: more than
// flood_drops drops within flood_window. The flood lasts until a window
// passes without drops. The shard lock is held.
func (s *Stage) dropped(b *bucket, now int64) bool {
	if b.flooding {
		if now-b.lastDrop <= s.window {
			b.lastDrop = now
			return false
		}
		b.flooding = false
		b.drops = 0
		b.winStart = now
	}
	if now-b.winStart > s.window {
		b.winStart, b.drops = now, 0
	}
	b.lastDrop = now
	b.drops++
	if int(b.drops) > s.cfg.FloodDrops {
		b.flooding = true
		return true
	}
	return false
}

// flood reports a flood and hands an untrusted source to the blacklist.
func (s *Stage) flood(src netip.Addr, zone string, trusted bool) {
	s.floods.Inc()
	detail := fmt.Sprintf("more than %d packets dropped within %v", s.cfg.FloodDrops, s.cfg.FloodWindow)
	if trusted {
		detail += "; trusted source, not blocked"
	} else if s.blocker != nil {
		s.blocker.Block(src, RuleFlood, detail)
	}
	s.log.Debug("flood", "src", src, "rule", RuleFlood, "trusted", trusted)
	s.alerts.Alert(&core.SecurityEvent{Time: s.now(), Rule: RuleFlood, Action: "flood", Src: src.String(), Zone: zone, Detail: detail})
}

// sweep removes the sources whose buckets have refilled and whose flood
// window is over: they are indistinguishable from new ones.
func (s *Stage) sweep() {
	now := int64(s.now().Sub(s.epoch))
	total := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, b := range sh.m {
			if b.pkt <= now && b.byt <= now && now-b.lastDrop > s.window {
				delete(sh.m, k)
			}
		}
		total += len(sh.m)
		sh.mu.Unlock()
	}
	s.sources.Set(float64(total))
}

func (s *Stage) sweepLoop() {
	defer close(s.stopped)
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// Len reports how many sources are tracked.
func (s *Stage) Len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.Lock()
		n += len(s.shards[i].m)
		s.shards[i].mu.Unlock()
	}
	return n
}

// Close stops the sweep.
func (s *Stage) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.stopped
	})
	return nil
}

var (
	_ core.Stage       = (*Stage)(nil)
	_ core.PacketStage = (*Stage)(nil)
)
