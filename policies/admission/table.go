package admission

import (
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ucgate/ucgate/core"
)

// limit is a Limit ready for use: a concurrency cap and a GCRA bucket.
// Zero fields are limits turned off.
type limit struct {
	concurrent int32
	interval   int64 // nanoseconds per call at the sustained rate
	tolerance  int64 // burst*interval: how far ahead of now the bucket may run
}

func newLimit(l Limit) limit {
	out := limit{concurrent: int32(l.Concurrent)}
	if l.Rate > 0 {
		out.interval = max(1, int64(float64(time.Second)/l.Rate))
		burst := l.Burst
		if burst == 0 {
			burst = max(1, int(l.Rate+0.999999))
		}
		out.tolerance = int64(burst) * out.interval
	}
	return out
}

// verdict codes of a limit check.
const (
	passed = iota
	overConcurrent
	overRate
)

// check says whether one more call fits under l for a key with active
// calls whose bucket is at tat, and returns the bucket's next tat.
func (l *limit) check(active int32, tat, now int64) (int, int64) {
	if l.concurrent > 0 && active >= l.concurrent {
		return overConcurrent, tat
	}
	if l.interval == 0 {
		return passed, tat
	}
	next := max(tat, now) + l.interval
	if next-now > l.tolerance {
		return overRate, tat
	}
	return passed, next
}

// entry is one source's or one user's count. It is guarded by its
// shard's mutex.
type entry struct {
	active   int32 // calls counted against the limit, reservations included
	reserved int32 // reservations not yet bound
	tat      int64 // the bucket's theoretical arrival time (monotonic ns)
	// user is the key of a user entry (the map's key, kept for matching
	// reservations and for Snapshot).
	user userKey
	// pending are the reservations made for a source entry, oldest first.
	pending []reservation
}

// idle reports whether e may be evicted: nothing counted and its bucket
// is full again.
func (e *entry) idle(now int64) bool {
	return e.active == 0 && len(e.pending) == 0 && e.tat <= now
}

const nShards = 32

type shard[K comparable] struct {
	mu sync.Mutex
	m  map[K]*entry
	_  [40]byte // keep neighbouring shards' mutexes off one cache line
}

// table is a sharded map of entries. Lock order: a source shard before a
// user shard, never two shards of one table.
type table[K comparable] struct {
	shards [nShards]shard[K]
	hash   func(K) uint64
	keys   atomic.Int64 // entries in the table
	calls  atomic.Int64 // sum of active over entries
}

func (t *table[K]) init(hash func(K) uint64) {
	t.hash = hash
	for i := range t.shards {
		t.shards[i].m = make(map[K]*entry)
	}
}

func (t *table[K]) shard(k K) *shard[K] { return &t.shards[t.hash(k)%nShards] }

// insert adds an entry for k to sh (locked). A shard holds at most
// perShard entries: when it is full its idle entries are evicted first,
// and nil is returned if it stays full, unless force.
func (t *table[K]) insert(sh *shard[K], k K, now int64, perShard int, force bool) *entry {
	if len(sh.m) >= perShard && !force {
		for key, e := range sh.m {
			if e.idle(now) {
				delete(sh.m, key)
				t.keys.Add(-1)
			}
		}
		if len(sh.m) >= perShard {
			return nil
		}
	}
	e := &entry{}
	sh.m[k] = e
	t.keys.Add(1)
	return e
}

// evictIdle removes the idle entries of every shard.
func (t *table[K]) evictIdle(now int64) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.idle(now) {
				delete(sh.m, k)
				t.keys.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
}

// userKey is a calling user: From user part and domain, the domain in
// lower case (user parts are case-sensitive in SIP, hosts are not).
type userKey struct{ user, domain string }

func (u userKey) String() string {
	if u.user == "" {
		return u.domain
	}
	return u.user + "@" + u.domain
}

// counter is a count shared by every call to one trunk, or by every call:
// lock-free, so that the one global count is not a lock every call queues
// on. Its limit is the stage's (a reload may change it).
type counter struct {
	name     string
	active   atomic.Int32
	reserved atomic.Int32
	tat      atomic.Int64
}

// acquire counts one more call if it fits under l, and reports which
// limit it would exceed otherwise.
func (c *counter) acquire(l *limit, now int64) int {
	if l.concurrent > 0 {
		for {
			n := c.active.Load()
			if n >= l.concurrent {
				return overConcurrent
			}
			if c.active.CompareAndSwap(n, n+1) {
				break
			}
		}
	} else {
		c.active.Add(1)
	}
	if l.interval > 0 {
		for {
			tat := c.tat.Load()
			next := max(tat, now) + l.interval
			if next-now > l.tolerance {
				c.active.Add(-1)
				return overRate
			}
			if c.tat.CompareAndSwap(tat, next) {
				break
			}
		}
	}
	return passed
}

// refund undoes an acquire under l whose call was refused by a later
// limit.
func (c *counter) refund(l *limit) {
	c.active.Add(-1)
	if l.interval > 0 {
		c.tat.Add(-l.interval)
	}
}

// reservation is a slot an admitted offer holds until its session binds.
type reservation struct {
	user     *entry
	trunk    *counter // nil: no trunk
	deadline int64
}

// binding is what a bound session counts against.
type binding struct {
	sess  *core.Session
	src   netip.Addr
	srcE  *entry
	userK userKey
	userE *entry
	trunk *counter
}

type boundShard struct {
	mu sync.Mutex
	m  map[string]binding
	_  [40]byte
}

// maxTrunks bounds the trunks counted (route names come from the
// adapter's configuration, so there are few).
const maxTrunks = 1024

// state is everything admission counts. The stage a configuration reload
// builds inherits its predecessor's state, so that the calls in progress
// stay counted whichever pipeline their Unbind reaches.
type state struct {
	epoch   time.Time // the zero of the monotonic clock
	h       hashers
	sources table[netip.Addr]
	users   table[userKey]
	global  counter
	bound   [nShards]boundShard

	trunksMu sync.Mutex
	trunks   atomic.Pointer[map[string]*counter] // copy on write
}

func newState(epoch time.Time) *state {
	st := &state{epoch: epoch, h: hashers{seed: maphash.MakeSeed()}, global: counter{name: "global"}}
	st.sources.init(st.h.addr)
	st.users.init(st.h.user)
	for i := range st.bound {
		st.bound[i].m = make(map[string]binding)
	}
	st.trunks.Store(&map[string]*counter{})
	return st
}

// trunk returns the counter of the named upstream, creating it; nil for
// none ("": a registered user) and for new names beyond maxTrunks.
func (st *state) trunk(name string) *counter {
	if name == "" {
		return nil
	}
	if c, ok := (*st.trunks.Load())[name]; ok {
		return c
	}
	st.trunksMu.Lock()
	defer st.trunksMu.Unlock()
	old := *st.trunks.Load()
	if c, ok := old[name]; ok {
		return c
	}
	if len(old) >= maxTrunks {
		return nil
	}
	m := make(map[string]*counter, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	c := &counter{name: strings.Clone(name)}
	m[c.name] = c
	st.trunks.Store(&m)
	return c
}

// hashers for the tables: random per stage, so that an attacker cannot
// aim every key at one shard.
type hashers struct{ seed maphash.Seed }

func (h hashers) addr(a netip.Addr) uint64 {
	b := a.As16()
	return maphash.Bytes(h.seed, b[:])
}

func (h hashers) user(u userKey) uint64 {
	return maphash.String(h.seed, u.user) ^ maphash.String(h.seed, u.domain)*0x9e3779b97f4a7c15
}

func (h hashers) str(s string) uint64 { return maphash.String(h.seed, s) }

// lowerASCII lower-cases s, without allocating when it is lower case
// already.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
