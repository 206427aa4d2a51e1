package scan

import (
	"hash/maphash"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The behaviours counted per source, each in a set of its own.
const (
	setTargets  = iota // distinct users addressed outside a dialog
	setOptions         // distinct OPTIONS request-URIs
	setRegister        // distinct users registered
	numSets
)

// source is what the stage remembers of one source address.
type source struct {
	windowStart time.Time
	lastSeen    time.Time
	// flaggedUntil is when a detected source's requests stop being
	// refused by this stage; flag is what it was detected for.
	flaggedUntil time.Time
	flag         signal
	// sets hold the hashes of what the source addressed in the current
	// window, each bounded by the largest threshold configured for it.
	sets [numSets][]uint64
}

// record adds h to set k of the window at now and returns the set's size.
// A set holds at most limit+1 hashes: enough to tell that a threshold
// was passed.
func (src *source) record(k int, h uint64, now time.Time, window time.Duration, limit int) int {
	if now.Sub(src.windowStart) >= window {
		src.restart(now)
	}
	set := src.sets[k]
	if len(set) <= limit && !slices.Contains(set, h) {
		src.sets[k] = append(set, h)
	}
	return len(src.sets[k])
}

// restart begins a new window, keeping the sets' memory.
func (src *source) restart(now time.Time) {
	src.windowStart = now
	for k := range src.sets {
		src.sets[k] = src.sets[k][:0]
	}
}

// table is the per-source state: shards of maps from address to source,
// each with its own lock, together holding at most max sources.
type table struct {
	shards   []shard
	mask     uint64
	perShard int
	idle     time.Duration // a source unseen this long (and not flagged) is forgotten
	seed     maphash.Seed

	evicted prometheus.Counter
	tracked prometheus.Gauge
}

type shard struct {
	mu        sync.Mutex
	m         map[netip.Prefix]*source
	lastSweep time.Time
	peak      int // the most sources held since the map was last rebuilt
}

// maxShards bounds lock contention; fewer are used for a small table so
// that perShard stays at least 1 and the bound exact.
const maxShards = 64

func newTable(max int, idle time.Duration, evicted prometheus.Counter, tracked prometheus.Gauge) *table {
	n := 1
	for n*2 <= maxShards && n*2 <= max {
		n *= 2
	}
	t := &table{shards: make([]shard, n), mask: uint64(n - 1), perShard: max / n, idle: idle,
		seed: maphash.MakeSeed(), evicted: evicted, tracked: tracked}
	for i := range t.shards {
		t.shards[i].m = map[netip.Prefix]*source{}
	}
	return t
}

// shard returns the shard that holds p (a masked prefix: its address
// tells it apart). The hash is keyed with a random seed, so that a peer
// cannot choose addresses that all land in one.
func (t *table) shard(p netip.Prefix) *shard {
	b := p.Addr().As16()
	return &t.shards[maphash.Bytes(t.seed, b[:])&t.mask]
}

// insert adds a new source for a to sh, which the caller has locked.
// Idle sources are swept once per idle period, or once a second while the
// shard is full; a shard still full then forgets an arbitrary source.
func (t *table) insert(sh *shard, a netip.Prefix, now time.Time) *source {
	since := now.Sub(sh.lastSweep)
	if since >= t.idle || len(sh.m) >= t.perShard && since >= time.Second {
		t.sweep(sh, now)
	}
	if len(sh.m) >= t.perShard {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
		t.evicted.Inc()
		t.tracked.Dec()
	}
	src := &source{windowStart: now, lastSeen: now}
	sh.m[a] = src
	sh.peak = max(sh.peak, len(sh.m))
	t.tracked.Inc()
	return src
}

// sweep forgets the sources of sh idle for t.idle and not flagged. A map
// emptied after a flood is rebuilt: Go maps keep their memory otherwise.
func (t *table) sweep(sh *shard, now time.Time) {
	sh.lastSweep = now
	n := 0
	for k, src := range sh.m {
		if now.Sub(src.lastSeen) >= t.idle && !now.Before(src.flaggedUntil) {
			delete(sh.m, k)
			n++
		}
	}
	t.tracked.Sub(float64(n))
	if sh.peak >= 1024 && len(sh.m) <= sh.peak/4 {
		m := make(map[netip.Prefix]*source, len(sh.m))
		for k, v := range sh.m {
			m[k] = v
		}
		sh.m, sh.peak = m, len(m)
	}
}

// copyFrom copies prev's sources into t, as far as t's bound allows; the
// sources are copied, not shared, since prev may still be deciding.
func (t *table) copyFrom(prev *table) {
	for i := range prev.shards {
		psh := &prev.shards[i]
		psh.mu.Lock()
		for k, src := range psh.m {
			c := *src
			for j := range c.sets {
				c.sets[j] = slices.Clone(c.sets[j])
			}
			sh := t.shard(k)
			sh.mu.Lock()
			if _, ok := sh.m[k]; !ok && len(sh.m) < t.perShard {
				sh.m[k] = &c
				sh.peak = max(sh.peak, len(sh.m))
				t.tracked.Inc()
			}
			sh.mu.Unlock()
		}
		psh.mu.Unlock()
	}
}

// size is how many sources the table holds.
func (t *table) size() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// clear forgets every source.
func (t *table) clear() {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		t.tracked.Sub(float64(len(sh.m)))
		sh.m, sh.peak = map[netip.Prefix]*source{}, 0
		sh.mu.Unlock()
	}
}
