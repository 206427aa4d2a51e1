package conncap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// Name is the stage's name, its YAML key and the prefix of its rules.
const Name = "conncap"

// Rules, as the journal shows them.
const (
	RuleSource = "conncap/source" // the source holds per_source connections
	RuleTotal  = "conncap/total"  // the gateway holds total connections
)

var (
	verdictSource = core.Verdict{Action: core.Drop, Reason: core.ReasonBusy, Rule: RuleSource}
	verdictTotal  = core.Verdict{Action: core.Drop, Reason: core.ReasonUnavailable, Rule: RuleTotal}
)

// ErrConfig reports a configuration that does not validate.
var ErrConfig = errors.New("conncap: invalid configuration")

const nShards = 32

// Stage is the connection cap. Its methods are safe for concurrent use.
type Stage struct {
	cfg   Config
	log   *slog.Logger
	zones map[string]int // per_source by zone; nil when none
	tab   atomic.Pointer[table]

	refusedSource, refusedTotal prometheus.Counter
	open                        prometheus.Gauge
}

// table is the count of open connections. A reload's stage inherits its
// predecessor's, so that both count the same connections.
type table struct {
	total  atomic.Int64
	shards [nShards]shard
}

type shard struct {
	mu sync.Mutex
	// perSource counts the connections of each source; conns counts the
	// open connections by their addresses, so that ConnClosed uncounts
	// only what was counted.
	perSource map[netip.Addr]int32
	conns     map[connID]int32
}

type connID struct{ src, local netip.AddrPort }

// New builds the connection cap.
func New(cfg Config, deps core.Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stage{cfg: cfg, log: log.With("stage", Name)}
	if len(cfg.Zones) > 0 {
		s.zones = make(map[string]int, len(cfg.Zones))
		for n, z := range cfg.Zones {
			s.zones[n] = z.PerSource
		}
	}
	tab := new(table)
	for i := range tab.shards {
		tab.shards[i].perSource = map[netip.Addr]int32{}
		tab.shards[i].conns = map[connID]int32{}
	}
	s.tab.Store(tab)
	vec, _ := core.RegisterMetric(deps.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_conncap_refused_total",
		Help: "New connections closed at once, by rule.",
	}, []string{"rule"}))
	s.refusedSource = vec.WithLabelValues("source")
	s.refusedTotal = vec.WithLabelValues("total")
	// The gauge is shared with the stage a reload replaced: each counts
	// its own connections up and down, so it sums both.
	s.open, _ = core.RegisterMetric(deps.Metrics, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ucgate_conncap_connections",
		Help: "Connections open (counted by the stage).",
	}))
	return s, nil
}

// Inherit takes over prev's counts, for a configuration reload: cmd/ucgate
// calls it before the new stage sees traffic. From then on both stages
// count in the same table, each under its own caps, so a connection
// opened under the old pipeline is uncounted by its ConnClosed there.
func (s *Stage) Inherit(prev *Stage) {
	if prev == nil || prev == s {
		return
	}
	s.tab.Store(prev.tab.Load())
}

// Name implements core.Stage.
func (s *Stage) Name() string { return Name }

// Layer implements core.Stage.
func (s *Stage) Layer() core.Layer { return core.Network }

// Decide implements core.Stage: messages are not this stage's business.
func (s *Stage) Decide(context.Context, *core.Event) (core.Verdict, error) {
	return core.Verdict{}, nil
}

// Timeouts implements core.ConnTimeouts: how long a new connection may
// take to send its first bytes, and how long one may stay silent. Zero
// values (or a disabled stage) mean no limit.
func (s *Stage) Timeouts() (handshake, idle time.Duration) {
	if !s.cfg.Enabled {
		return 0, 0
	}
	return s.cfg.HandshakeTimeout, s.cfg.IdleTimeout
}

// DecidePacket implements core.PacketStage. A new connection within the
// caps is counted until ConnClosed; datagrams and reads pass.
func (s *Stage) DecidePacket(p *core.PacketMeta) core.Verdict {
	if !s.cfg.Enabled || !p.Conn {
		return core.Verdict{}
	}
	limit := s.cfg.PerSource
	if s.zones != nil {
		if z, ok := s.zones[p.Zone]; ok {
			limit = z
		}
	}
	tab := s.tab.Load()
	src := s.key(p.Src.Addr())
	id := connID{p.Src, p.Local}
	sh := tab.shardOf(src)
	sh.mu.Lock()
	if src.IsValid() && int(sh.perSource[src]) >= limit {
		sh.mu.Unlock()
		s.refusedSource.Inc()
		return verdictSource
	}
	if tab.total.Add(1) > int64(s.cfg.Total) {
		tab.total.Add(-1)
		sh.mu.Unlock()
		s.refusedTotal.Inc()
		return verdictTotal
	}
	if src.IsValid() { // a source the adapter could not name counts in total only
		sh.perSource[src]++
	}
	sh.conns[id]++
	sh.mu.Unlock()
	s.open.Inc()
	return core.Verdict{}
}

// ConnClosed implements core.ConnTracker. A connection the stage did not
// count (refused, opened before a reload, or reported twice) changes
// nothing.
func (s *Stage) ConnClosed(p *core.PacketMeta) {
	tab := s.tab.Load()
	src := s.key(p.Src.Addr())
	id := connID{p.Src, p.Local}
	sh := tab.shardOf(src)
	sh.mu.Lock()
	n, ok := sh.conns[id]
	if !ok {
		sh.mu.Unlock()
		return
	}
	if n <= 1 {
		delete(sh.conns, id)
	} else {
		sh.conns[id] = n - 1
	}
	if c := sh.perSource[src]; c > 1 {
		sh.perSource[src] = c - 1
	} else {
		delete(sh.perSource, src)
	}
	tab.total.Add(-1)
	sh.mu.Unlock()
	s.open.Dec()
}

// Open reports how many connections are counted: all of them, and those
// of src.
func (s *Stage) Open(src netip.Addr) (total, ofSource int) {
	tab := s.tab.Load()
	k := s.key(src)
	sh := tab.shardOf(k)
	sh.mu.Lock()
	ofSource = int(sh.perSource[k])
	sh.mu.Unlock()
	return int(tab.total.Load()), ofSource
}

// key is the source a count stands for: the address, or its prefix.
func (s *Stage) key(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	bits := s.cfg.IPv6Prefix
	if a.Is4() {
		bits = s.cfg.IPv4Prefix
	}
	if !a.IsValid() || bits >= a.BitLen() {
		return a
	}
	p, _ := a.Prefix(bits)
	return p.Addr()
}

func (t *table) shardOf(a netip.Addr) *shard {
	b := a.As16()
	h := binary.BigEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ binary.BigEndian.Uint64(b[8:])
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	return &t.shards[h%nShards]
}

var (
	_ core.Stage        = (*Stage)(nil)
	_ core.PacketStage  = (*Stage)(nil)
	_ core.ConnTracker  = (*Stage)(nil)
	_ core.ConnTimeouts = (*Stage)(nil)
)
