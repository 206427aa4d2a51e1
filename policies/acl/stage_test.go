package acl

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

func newStage(t testing.TB, yaml string, reg prometheus.Registerer) *Stage {
	t.Helper()
	cfg := Defaults()
	if _, err := config.Decode([]byte(yaml), "ucgate.yaml", &cfg); err != nil {
		t.Fatalf("decode: %v", err)
	}
	s, err := New(cfg, core.Deps{Metrics: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestDecidePacket(t *testing.T) {
	const zoned = "allow: [192.0.2.0/24, '2001:db8::/32']\ndeny: [192.0.2.128/25, '2001:db8:bad::/48']\n" +
		"zones:\n  trunk: {allow: [198.51.100.0/24], deny: [198.51.100.66]}\n  internet: {allow: []}\n  lab: {deny: [192.0.2.0/26]}"
	tests := []struct {
		name   string
		yaml   string
		src    string
		zone   string
		action core.Action
		rule   string
	}{
		{"defaults allow", "", "192.0.2.7:5060", "internet", core.Allow, ""},
		{"defaults allow v6", "", "[2001:db8::7]:5060", "internet", core.Allow, ""},
		{"defaults drop unspecified", "", "0.0.0.0:5060", "internet", core.Drop, RuleInvalidSource},
		{"defaults drop multicast", "", "224.0.0.1:5060", "internet", core.Drop, RuleInvalidSource},
		{"defaults drop broadcast", "", "255.255.255.255:5060", "internet", core.Drop, RuleInvalidSource},
		{"defaults drop v6 multicast", "", "[ff02::1]:5060", "internet", core.Drop, RuleInvalidSource},
		{"defaults drop v6 unspecified", "", "[::]:5060", "internet", core.Drop, RuleInvalidSource},
		{"defaults drop mapped multicast", "", "[::ffff:239.1.1.1]:5060", "internet", core.Drop, RuleInvalidSource},
		{"invalid sources allowed when off", "deny_invalid: false", "224.0.0.1:5060", "internet", core.Allow, ""},
		{"disabled allows denied", "enabled: false\ndeny: [192.0.2.7]", "192.0.2.7:5060", "", core.Allow, ""},
		{"deny address", "deny: [192.0.2.7]", "192.0.2.7:5060", "", core.Drop, RuleDeny},
		{"deny address neighbour allowed", "deny: [192.0.2.7]", "192.0.2.8:5060", "", core.Allow, ""},
		{"deny mapped source", "deny: [192.0.2.0/24]", "[::ffff:192.0.2.9]:5060", "", core.Drop, RuleDeny},
		{"deny v6 prefix", "deny: ['2001:db8::/32']", "[2001:db8:ffff::1]:5060", "", core.Drop, RuleDeny},
		{"deny v6 outside", "deny: ['2001:db8::/32']", "[2001:db9::1]:5060", "", core.Allow, ""},
		{"deny v4 does not match v6", "deny: [0.0.0.0/0]", "[2001:db8::1]:5060", "", core.Allow, ""},
		{"deny all v6", "deny: ['::/0']", "[2001:db8::1]:5060", "", core.Drop, RuleDeny},
		{"allow list in", "allow: [192.0.2.0/24]", "192.0.2.200:5060", "", core.Allow, ""},
		{"allow list out", "allow: [192.0.2.0/24]", "198.51.100.1:5060", "", core.Drop, RuleNotAllowed},
		{"allow v4 only refuses v6", "allow: [192.0.2.0/24]", "[2001:db8::1]:5060", "", core.Drop, RuleNotAllowed},
		{"deny wins over allow", zoned, "192.0.2.130:5060", "unlisted", core.Drop, RuleDeny},
		{"allowed, not denied", zoned, "192.0.2.1:5060", "unlisted", core.Allow, ""},
		{"v6 deny wins", zoned, "[2001:db8:bad::1]:5060", "unlisted", core.Drop, RuleDeny},
		{"v6 allowed", zoned, "[2001:db8:600d::1]:5060", "unlisted", core.Allow, ""},
		{"zone allow replaces", zoned, "192.0.2.1:5060", "trunk", core.Drop, RuleNotAllowed},
		{"zone allow admits", zoned, "198.51.100.1:5060", "trunk", core.Allow, ""},
		{"zone deny added", zoned, "198.51.100.66:5060", "trunk", core.Drop, RuleDeny},
		{"top deny in every zone", zoned, "192.0.2.130:5060", "internet", core.Drop, RuleDeny},
		{"zone empty allow admits all", zoned, "203.0.113.1:5060", "internet", core.Allow, ""},
		{"zone inherits allow", zoned, "203.0.113.1:5060", "lab", core.Drop, RuleNotAllowed},
		{"zone own deny", zoned, "192.0.2.5:5060", "lab", core.Drop, RuleDeny},
		{"zone inherited allow admits", zoned, "192.0.2.65:5060", "lab", core.Allow, ""},
		{"no address with allow list", "allow: [192.0.2.0/24]", "", "", core.Drop, RuleNotAllowed},
		{"no address without allow list", "deny: [0.0.0.0/0, '::/0']", "", "", core.Allow, ""},
		{"whole space allowed", "allow: [0.0.0.0/0]\ndeny_invalid: false", "255.255.255.254:5060", "", core.Allow, ""},
		{"top of v6 space", "deny_invalid: false\ndeny: ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124']", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1", "", core.Drop, RuleDeny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStage(t, tt.yaml, nil)
			var src netip.AddrPort
			if tt.src != "" {
				src = netip.MustParseAddrPort(tt.src)
			}
			v := s.DecidePacket(&core.PacketMeta{Src: src, Transport: "udp", Zone: tt.zone})
			if v.Action != tt.action || v.Rule != tt.rule {
				t.Errorf("DecidePacket = %v %q, want %v %q", v.Action, v.Rule, tt.action, tt.rule)
			}
			ev := &core.Event{Src: core.Source{Addr: src, Zone: tt.zone, Transport: "tcp"}}
			v, err := s.Decide(context.Background(), ev)
			if err != nil || v.Action != tt.action || v.Rule != tt.rule {
				t.Errorf("Decide = %v %q %v, want %v %q", v.Action, v.Rule, err, tt.action, tt.rule)
			}
		})
	}
}

func TestNewRefusesInvalidConfig(t *testing.T) {
	cfg := Defaults()
	cfg.Deny = []string{"nonsense"}
	if _, err := New(cfg, core.Deps{}); err == nil {
		t.Fatal("New accepted an invalid deny list")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newStage(t, "deny: [192.0.2.7]\nallow: [192.0.2.0/24]", reg)
	s.DecidePacket(&core.PacketMeta{Src: netip.MustParseAddrPort("192.0.2.7:1")})
	s.DecidePacket(&core.PacketMeta{Src: netip.MustParseAddrPort("198.51.100.1:1")})
	s.DecidePacket(&core.PacketMeta{Src: netip.MustParseAddrPort("198.51.100.1:1")})
	// A second stage (a reload) keeps counting on the same collectors.
	s2 := newStage(t, "deny: [192.0.2.7]", reg)
	s2.DecidePacket(&core.PacketMeta{Src: netip.MustParseAddrPort("192.0.2.7:1")})
	got := counters(t, reg, "ucgate_acl_dropped_total")
	if got["deny"] != 2 || got["not_allowed"] != 2 || got["invalid_source"] != 0 {
		t.Fatalf("counters = %v", got)
	}
}

// counters reads the values of a counter vector by its "rule" label.
func counters(t *testing.T, g prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "rule" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func TestSetMerge(t *testing.T) {
	s := newSet(parseList([]string{"192.0.2.0/25", "192.0.2.128/25", "192.0.2.7", "198.51.100.0/24",
		"2001:db8::/33", "2001:db8:8000::/33", "2001:db8::1"}))
	if len(s.v4) != 2 || len(s.v6) != 1 {
		t.Fatalf("merged to %d v4 and %d v6 ranges, want 2 and 1: %+v", len(s.v4), len(s.v6), s)
	}
	for _, a := range []string{"192.0.2.0", "192.0.2.255", "198.51.100.0", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"} {
		if !s.contains(netip.MustParseAddr(a)) {
			t.Errorf("%s not in set", a)
		}
	}
	for _, a := range []string{"192.0.1.255", "192.0.3.0", "198.51.99.255", "2001:db9::", "2001:db7::"} {
		if s.contains(netip.MustParseAddr(a)) {
			t.Errorf("%s in set", a)
		}
	}
}

// FuzzSet: the compiled set answers exactly as a linear scan of its
// prefixes. The input is read as prefixes of 17 bytes (16 address bytes,
// bits; IPv4 when the bits byte is odd) followed by the address to test.
func FuzzSet(f *testing.F) {
	f.Add([]byte{192, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 49, 192, 0, 2, 7})
	f.Add(append(make([]byte, 17), 1, 2, 3, 4))
	f.Add([]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ps []netip.Prefix
		for len(b) >= 17+4 && len(ps) < 64 {
			var a16 [16]byte
			copy(a16[:], b[:16])
			bits := int(b[16])
			if bits&1 == 1 {
				a := netip.AddrFrom4([4]byte(a16[:4]))
				ps = append(ps, netip.PrefixFrom(a, bits/2%33).Masked())
			} else {
				ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(a16), bits/2%129).Masked())
			}
			b = b[17:]
		}
		var a netip.Addr
		switch {
		case len(b) >= 16:
			a = netip.AddrFrom16([16]byte(b[:16]))
		case len(b) >= 4:
			a = netip.AddrFrom4([4]byte(b[:4]))
		default:
			return
		}
		a = a.Unmap()
		s := newSet(ps)
		want := false
		for _, p := range ps {
			if p.Contains(a) {
				want = true
			}
		}
		if got := s.contains(a); got != want {
			t.Fatalf("contains(%v) = %v, linear scan of %v says %v", a, got, ps, want)
		}
		// Each family's ranges are sorted, disjoint and not adjacent.
		for i := 1; i < len(s.v4); i++ {
			if s.v4[i].lo <= s.v4[i-1].hi+1 || s.v4[i-1].hi == ^uint32(0) {
				t.Fatalf("v4 ranges %d and %d overlap or touch: %+v", i-1, i, s.v4)
			}
		}
		for i := 1; i < len(s.v6); i++ {
			nx, ok := s.v6[i-1].hi.next()
			if !ok || !nx.less(s.v6[i].lo) {
				t.Fatalf("v6 ranges %d and %d overlap or touch: %+v", i-1, i, s.v6)
			}
		}
	})
}

func TestDecidePacketDoesNotAllocate(t *testing.T) {
	s := newStage(t, bigList(1000)+"\nzones:\n  trunk: {allow: [198.51.100.0/24]}", prometheus.NewRegistry())
	for _, src := range []string{"10.0.0.1:5060", "192.0.2.1:5060", "[2001:db8::1]:5060", "[::ffff:10.1.2.3]:5060"} {
		m := &core.PacketMeta{Src: netip.MustParseAddrPort(src), Zone: "trunk", Transport: "udp"}
		if n := testing.AllocsPerRun(100, func() { s.DecidePacket(m) }); n != 0 {
			t.Errorf("DecidePacket(%s) allocates %v times", src, n)
		}
	}
}

// bigList is a deny list of n /24s and n /48s spread over 10.0.0.0/8 and
// 2001:db8::/32, plus an allow list of 0.0.0.0/0 and ::/0.
func bigList(n int) string {
	y := "allow: [0.0.0.0/0, '::/0']\ndeny:\n"
	for i := range n {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 10<<24|uint32(i*37%65536)<<8)
		y += fmt.Sprintf("  - %s/24\n  - '2001:db8:%x::/48'\n", netip.AddrFrom4(b), i*37%65536)
	}
	return y
}

func BenchmarkDecidePacket(b *testing.B) {
	for _, bc := range []struct {
		name, yaml, src string
	}{
		{"defaults/allowed", "", "192.0.2.1:5060"},
		{"1000x2/allowed_v4", bigList(1000), "192.0.2.1:5060"},
		{"1000x2/denied_v4", bigList(1000), "10.0.37.1:5060"},
		{"1000x2/allowed_v6", bigList(1000), "[2001:db9::1]:5060"},
		{"1000x2/denied_v6", bigList(1000), "[2001:db8:25::1]:5060"},
		{"zones/not_allowed", "zones:\n  internet: {allow: [198.51.100.0/24]}", "192.0.2.1:5060"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := newStage(b, bc.yaml, prometheus.NewRegistry())
			m := &core.PacketMeta{Src: netip.MustParseAddrPort(bc.src), Zone: "internet", Transport: "udp"}
			b.ReportAllocs()
			for b.Loop() {
				s.DecidePacket(m)
			}
		})
	}
}
