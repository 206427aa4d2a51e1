package auth

import (
	"sync"
	"sync/atomic"
)

// replay remembers, for each nonce that authenticated a request, which
// nonce-counts it has been used with, so that a captured request cannot be
// played again while its nonce is fresh.
//
// Memory is bounded: at most max entries in all. An entry leaves when its
// nonce expires or, when the table is full, in first-use order; then every
// nonce issued no later than the evicted one is treated as stale (floor),
// so that a forgotten nonce can never be replayed: its client just gets a
// new one. The floor also starts at the stage's creation, since a new stage
// (a restart or a reload) remembers nothing of the nonces used before.
type replay struct {
	shards [replayShards]replayShard
	per    int   // entries per shard
	ttl    int64 // milliseconds
	floor  atomic.Int64
}

const replayShards = 16

// replayWindow is how far behind the highest nonce-count seen a count may
// arrive and still be accepted once (requests sent in parallel over UDP
// can arrive out of order).
const replayWindow = 64

type replayEntry struct {
	issued int64
	max    uint32 // highest nonce-count seen
	seen   uint64 // bit i: max-i was seen
}

type replayShard struct {
	mu   sync.Mutex
	m    map[[16]byte]replayEntry
	fifo [][16]byte // keys in first-use order, a ring of len per
	head int
	n    int
}

func newReplay(max int, ttlMillis, floor int64) *replay {
	per := max / replayShards
	if per < 1 {
		per = 1
	}
	r := &replay{per: per, ttl: ttlMillis}
	r.floor.Store(floor)
	for i := range r.shards {
		r.shards[i].m = make(map[[16]byte]replayEntry)
		r.shards[i].fifo = make([][16]byte, per)
	}
	return r
}

// useResult is what use found.
type useResult uint8

const (
	useOK     useResult = iota // a nonce-count not seen before: accepted
	useReplay                  // seen before, or too far behind: refused
	useStale                   // the nonce is older than the table can vouch for
)

// use records that nonce n was used with count nc at now (Unix ms). The
// floor is read under the shard's lock, which an eviction holds while it
// raises the floor, so a nonce cannot be forgotten between the check and
// the record.
func (r *replay) use(n *nonce, nc uint32, now int64) useResult {
	s := &r.shards[n.mac[0]%replayShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[n.mac]
	if !ok {
		if n.issued < r.floor.Load() {
			return useStale
		}
		r.sweep(s, now)
		if s.n == r.per {
			r.forget(s)
		}
		s.fifo[(s.head+s.n)%r.per] = n.mac
		s.n++
		s.m[n.mac] = replayEntry{issued: n.issued, max: nc, seen: 1}
		return useOK
	}
	switch {
	case nc > e.max:
		if d := nc - e.max; d >= replayWindow {
			e.seen = 1
		} else {
			e.seen = e.seen<<d | 1
		}
		e.max = nc
	default:
		d := e.max - nc
		if d >= replayWindow || e.seen&(1<<d) != 0 {
			return useReplay
		}
		e.seen |= 1 << d
	}
	s.m[n.mac] = e
	return useOK
}

// sweep forgets expired entries from the head of the ring. Forgetting an
// expired nonce raises the floor no further than nonces that have expired
// anyway, and closes the race with a request whose clock was read just
// before the sweep's.
func (r *replay) sweep(s *replayShard, now int64) {
	for s.n > 0 {
		if e, ok := s.m[s.fifo[s.head]]; ok && e.issued+r.ttl > now {
			return
		}
		r.forget(s)
	}
}

// forget drops the oldest entry of s and raises the floor past its nonce.
func (r *replay) forget(s *replayShard) {
	k := s.fifo[s.head]
	e := s.m[k]
	delete(s.m, k)
	s.head = (s.head + 1) % r.per
	s.n--
	for {
		f := r.floor.Load()
		if e.issued+1 <= f || r.floor.CompareAndSwap(f, e.issued+1) {
			return
		}
	}
}

// len is the number of nonces remembered.
func (r *replay) len() int {
	n := 0
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
