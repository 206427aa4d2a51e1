package auth

import (
	"encoding/binary"
	"testing"
)

func testNonce(i uint64, issued int64) nonce {
	n := nonce{issued: issued}
	binary.BigEndian.PutUint64(n.mac[:8], i*0x9E3779B97F4A7C15) // spread over shards
	binary.BigEndian.PutUint64(n.mac[8:], i)
	return n
}

func TestReplayWindow(t *testing.T) {
	r := newReplay(1024, 60_000, 0)
	n := testNonce(1, 1000)
	steps := []struct {
		nc   uint32
		want useResult
	}{
		{1, useOK},
		{1, useReplay},
		{3, useOK},
		{2, useOK}, // late, within the window, first time
		{2, useReplay},
		{3, useReplay},
		{100, useOK},
		{100 - replayWindow + 1, useOK},
		{100 - replayWindow, useReplay}, // too far behind
		{36, useReplay},
		{101, useOK},
		{1 << 31, useOK},
		{101, useReplay},
	}
	for i, st := range steps {
		if got := r.use(&n, st.nc, 2000); got != st.want {
			t.Fatalf("step %d: use(nc=%d) = %d, want %d", i, st.nc, got, st.want)
		}
	}
	other := testNonce(2, 1000)
	if got := r.use(&other, 1, 2000); got != useOK {
		t.Fatalf("another nonce's nc=1 = %d", got)
	}
}

func TestReplayFloorAtStart(t *testing.T) {
	r := newReplay(1024, 60_000, 5000)
	old, fresh := testNonce(1, 4999), testNonce(2, 5000)
	if got := r.use(&old, 1, 6000); got != useStale {
		t.Fatalf("nonce issued before the table = %d, want stale", got)
	}
	if got := r.use(&fresh, 1, 6000); got != useOK {
		t.Fatalf("nonce issued at the start = %d", got)
	}
}

// The table never holds more than its bound, and a nonce it forgot can
// never be replayed: it is stale instead.
func TestReplayBound(t *testing.T) {
	const max = 1024
	r := newReplay(max, 3_600_000, 0)
	for i := range uint64(20 * max) {
		n := testNonce(i, int64(1000+i))
		if got := r.use(&n, 1, int64(1000+i)); got != useOK {
			t.Fatalf("nonce %d: %d", i, got)
		}
		if l := r.len(); l > max {
			t.Fatalf("table holds %d > %d", l, max)
		}
	}
	for i := range uint64(20 * max) {
		n := testNonce(i, int64(1000+i))
		if got := r.use(&n, 1, int64(1000+20*max)); got == useOK {
			t.Fatalf("nonce %d replayed after it was forgotten or with it remembered", i)
		}
	}
}

func TestReplaySweepsExpired(t *testing.T) {
	r := newReplay(1024, 1000, 0)
	for i := range uint64(500) {
		n := testNonce(i, 0)
		r.use(&n, 1, 0)
	}
	touched := map[byte]bool{}
	for i := uint64(0); len(touched) < replayShards; i++ {
		n := testNonce(1000+i, 5000)
		r.use(&n, 1, 5000)
		touched[n.mac[0]%replayShards] = true
		if i > 10000 {
			t.Fatal("testNonce does not reach every shard")
		}
	}
	if l := r.len(); l >= 500 {
		t.Fatalf("after expiry the table holds %d", l)
	}
	for i := range r.shards {
		for _, e := range r.shards[i].m {
			if e.issued == 0 {
				t.Fatal("an expired entry survived a sweep of its shard")
			}
		}
	}
	old := testNonce(3, 0)
	if got := r.use(&old, 2, 5000); got != useStale {
		t.Fatalf("an expired, swept nonce = %d, want stale", got)
	}
}
