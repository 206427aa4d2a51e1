package acl

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// set is a union of prefixes compiled into sorted, disjoint, non-adjacent
// address ranges per family, for a binary search that never allocates.
type set struct {
	v4 []range4
	v6 []range6
}

type range4 struct{ lo, hi uint32 }

// u128 is an IPv6 address as a big-endian pair of words.
type u128 struct{ hi, lo uint64 }

type range6 struct{ lo, hi u128 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) next() (u128, bool) {
	if a.lo == ^uint64(0) {
		if a.hi == ^uint64(0) {
			return a, false
		}
		return u128{a.hi + 1, 0}, true
	}
	return u128{a.hi, a.lo + 1}, true
}

func v4key(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func v6key(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// newSet compiles prefixes (already masked, IPv4 ones unmapped).
func newSet(prefixes []netip.Prefix) set {
	var s set
	for _, p := range prefixes {
		a, bits := p.Addr(), p.Bits()
		if a.Is4() {
			lo := v4key(a)
			hi := lo | uint32(uint64(1)<<(32-bits)-1)
			s.v4 = append(s.v4, range4{lo, hi})
			continue
		}
		lo := v6key(a)
		hi := lo
		switch {
		case bits <= 64:
			hi.hi |= uint64(1)<<(64-bits) - 1 // a shift of 64 is 0: all ones
			hi.lo = ^uint64(0)
		default:
			hi.lo |= uint64(1)<<(128-bits) - 1
		}
		s.v6 = append(s.v6, range6{lo, hi})
	}
	slices.SortFunc(s.v4, func(x, y range4) int {
		switch {
		case x.lo < y.lo:
			return -1
		case x.lo > y.lo:
			return 1
		}
		return 0
	})
	slices.SortFunc(s.v6, func(x, y range6) int {
		switch {
		case x.lo.less(y.lo):
			return -1
		case y.lo.less(x.lo):
			return 1
		}
		return 0
	})
	s.v4 = merge4(s.v4)
	s.v6 = merge6(s.v6)
	return s
}

func merge4(rs []range4) []range4 {
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.hi == ^uint32(0) || r.lo <= last.hi+1 {
				last.hi = max(last.hi, r.hi)
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func merge6(rs []range6) []range6 {
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			nx, ok := last.hi.next()
			if !ok || !nx.less(r.lo) {
				if last.hi.less(r.hi) {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// contains reports whether a (unmapped) is in the set. An invalid address
// is in no set.
func (s *set) contains(a netip.Addr) bool {
	switch {
	case a.Is4():
		x := v4key(a)
		rs := s.v4
		// Find the last range starting at or below x.
		lo, hi := 0, len(rs)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if rs[m].lo <= x {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return lo > 0 && x <= rs[lo-1].hi
	case a.Is6():
		x := v6key(a)
		rs := s.v6
		lo, hi := 0, len(rs)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if !x.less(rs[m].lo) {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return lo > 0 && !rs[lo-1].hi.less(x)
	}
	return false
}
