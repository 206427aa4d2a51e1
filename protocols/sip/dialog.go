package sip

import (
	"hash/maphash"
	"sync"
)

// dialogTable finds the call a request belongs to by the dialog it names:
// its Call-ID and the tag the gateway gave that leg (the request's To tag).
// Both legs of a call are in the table, each under its own key.
type dialogTable struct {
	seed   maphash.Seed
	shards [64]dialogShard
}

type dialogShard struct {
	mu sync.RWMutex
	m  map[dialogKey]dialogRef
}

type dialogKey struct {
	callID string
	tag    string
}

// dialogRef is one leg of a call: of a B2BUA call, or (bc set, call nil)
// the SIP leg of a call bridged from another adapter (bridgecall.go).
type dialogRef struct {
	call *call
	side int // sideA or sideB
	bc   *bridgeCall
}

func newDialogTable() *dialogTable {
	t := &dialogTable{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[dialogKey]dialogRef)
	}
	return t
}

func (t *dialogTable) shard(k dialogKey) *dialogShard {
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.WriteString(k.callID)
	h.WriteString(k.tag)
	return &t.shards[h.Sum64()&63]
}

func (t *dialogTable) put(callID, tag string, r dialogRef) {
	k := dialogKey{callID, tag}
	sh := t.shard(k)
	sh.mu.Lock()
	sh.m[k] = r
	sh.mu.Unlock()
}

func (t *dialogTable) get(callID, tag string) (dialogRef, bool) {
	k := dialogKey{callID, tag}
	sh := t.shard(k)
	sh.mu.RLock()
	r, ok := sh.m[k]
	sh.mu.RUnlock()
	return r, ok
}

func (t *dialogTable) del(callID, tag string) {
	k := dialogKey{callID, tag}
	sh := t.shard(k)
	sh.mu.Lock()
	delete(sh.m, k)
	sh.mu.Unlock()
}

// each calls f once for every call in the table.
func (t *dialogTable) each(f func(*call)) {
	seen := map[*call]bool{}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		var calls []*call
		for _, r := range sh.m {
			if r.call != nil && !seen[r.call] {
				seen[r.call] = true
				calls = append(calls, r.call)
			}
		}
		sh.mu.RUnlock()
		for _, c := range calls {
			f(c)
		}
	}
}

// eachBridged calls f once for every bridged call in the table.
func (t *dialogTable) eachBridged(f func(*bridgeCall)) {
	var list []*bridgeCall
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for _, r := range sh.m {
			if r.bc != nil {
				list = append(list, r.bc)
			}
		}
		sh.mu.RUnlock()
	}
	for _, c := range list {
		f(c)
	}
}
