package main

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/state"
	"github.com/ucgate/ucgate/policies/blacklist"
)

// defaultPipeline builds the stages of the embedded default configuration
// with an in-memory state store.
func defaultPipeline(tb testing.TB) (*pipeline, *blacklist.Stage) {
	tb.Helper()
	cfg, err := loadConfig("")
	if err != nil {
		tb.Fatal(err)
	}
	st, _ := state.Open("", "")
	alerts := core.NewAlerts(1 << 16)
	tb.Cleanup(func() { alerts.Close() })
	p, err := buildPipeline(cfg, core.Deps{Log: slog.New(slog.DiscardHandler), State: st, Alerts: alerts, DataDir: tb.TempDir()}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.close() })
	bl, ok := stage[*blacklist.Stage](&gateway{pipe: p})
	if !ok {
		tb.Fatal("no blacklist in the default pipeline")
	}
	return p, bl
}

var invite = []byte("INVITE sip:echo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1\r\n" +
	"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: b1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")

// BenchmarkNetworkAdmission is the cost per datagram of the default
// network stages (acl, blacklist, ratelimit, conncap) run by the adapter
// before sipgo parses anything.
func BenchmarkNetworkAdmission(b *testing.B) {
	p, bl := defaultPipeline(b)
	local := netip.MustParseAddrPort("127.0.0.1:5060")
	allowed := netip.MustParseAddrPort("192.0.2.7:5060")
	blocked := netip.MustParseAddrPort("198.51.100.66:5060")
	bl.BlockFor(blocked.Addr(), time.Hour, "bench", "benchmark")
	b.Run("allowed", func(b *testing.B) {
		m := core.PacketMeta{Src: allowed, Local: local, Transport: "udp", Zone: "internet", Data: invite}
		b.ReportAllocs()
		for b.Loop() {
			if d := p.RunPacket(&m); d.Action != core.Allow {
				// Over its rate budget in a tight loop: the decision is still
				// the full cost of the path, count it but keep going.
				_ = d
			}
		}
	})
	b.Run("blocked", func(b *testing.B) {
		m := core.PacketMeta{Src: blocked, Local: local, Transport: "udp", Zone: "internet", Data: invite}
		b.ReportAllocs()
		for b.Loop() {
			if d := p.RunPacket(&m); d.Action == core.Allow {
				b.Fatal("blocked source allowed")
			}
		}
	})
}
