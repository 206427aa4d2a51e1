package bruteforce

import (
	"hash/maphash"
	"sync"
)

const shards = 16

// table is a bounded, sharded map of records, each stamped with the time
// it was last touched. When a shard is full, a few entries are sampled and
// the first one found quiet for longer than the caller's horizon is
// evicted, else the one quiet longest among the sample: an approximate LRU
// that costs O(1) per insertion, so a spray from many sources cannot make
// the table grow nor make an insertion slow.
type table[K comparable, V any] struct {
	seed   maphash.Seed
	shards [shards]tableShard[K, V]
}

type tableShard[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]*entry[V]
}

type entry[V any] struct {
	last int64 // Unix ns of the last touch
	v    V
}

// evictSample is how many entries an eviction looks at.
const evictSample = 8

func newTable[K comparable, V any]() *table[K, V] {
	t := &table[K, V]{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[K]*entry[V])
	}
	return t
}

func (t *table[K, V]) shard(k K) *tableShard[K, V] {
	return &t.shards[maphash.Comparable(t.seed, k)%shards]
}

// update runs fn on k's record, creating it (zero V) if needed, under the
// shard's lock, and stamps it with now. max is the table's bound; horizon
// is the time before which a record is of no more use. It reports whether
// a record was evicted to make room.
func (t *table[K, V]) update(k K, now, horizon int64, max int, fn func(v *V)) (evicted bool) {
	s := t.shard(k)
	per := max / shards
	if per < 1 {
		per = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[k]
	if !ok {
		for len(s.m) >= per {
			evicted = true
			s.evict(horizon)
		}
		e = &entry[V]{}
		s.m[k] = e
	}
	e.last = now
	fn(&e.v)
	return evicted
}

func (s *tableShard[K, V]) evict(horizon int64) {
	var oldest K
	var oldestLast int64
	n := 0
	for k, e := range s.m {
		if e.last < horizon {
			delete(s.m, k)
			return
		}
		if n == 0 || e.last < oldestLast {
			oldest, oldestLast = k, e.last
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(s.m, oldest)
}

// delete forgets k.
func (t *table[K, V]) delete(k K) {
	s := t.shard(k)
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

// len is the number of records.
func (t *table[K, V]) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
