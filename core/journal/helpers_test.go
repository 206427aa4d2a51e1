package journal

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

// t0 is the base time of the test records: a UTC time with nanoseconds, so
// that round trips must keep them.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

// hostile is text an attacker controls (a SIP From display or user part),
// with every character syslog and terminals care about.
const hostile = "eve\"]\\ [x=\"1\"]\n\té"

func sampleTx(i int) *core.Transaction {
	t := &core.Transaction{
		Time:      t0.Add(time.Duration(i) * time.Millisecond),
		Protocol:  "sip",
		Zone:      "internet",
		Src:       fmt.Sprintf("192.0.2.%d:5060", i%200+1),
		Dst:       "198.51.100.1:5061",
		Transport: "udp",
		Encrypted: i%2 == 1,
		Method:    "INVITE",
		From:      fmt.Sprintf("alice%d@example.com", i),
		To:        "bob@example.com",
		CallID:    fmt.Sprintf("call-%d@192.0.2.1", i),
		PeerCall:  fmt.Sprintf("peer-%d", i),
		Session:   core.SessionID(fmt.Sprintf("s%05d", i)),
		Status:    200,
		Action:    "allow",
		Elapsed:   time.Duration(48123 + i), // below a millisecond: must survive REAL ms
	}
	if i%3 == 0 {
		t.Status, t.Action, t.Rule, t.Reason, t.Detail = 403, "refuse", "acl/deny", "forbidden", "source in deny list"
	}
	return t
}

// sampleSec is security event i: rules scan/probe, bruteforce/source and
// blacklist/block in turn, from 192.0.2.(i%5+1) on port 5060 (odd i) or
// without a port (even i).
func sampleSec(i int) *core.SecurityEvent {
	rules := []string{"scan/probe", "bruteforce/source", "blacklist/block"}
	actions := []string{"refuse", "lockout", "block"}
	src := fmt.Sprintf("192.0.2.%d", i%5+1)
	if i%2 == 1 {
		src += ":5060"
	}
	return &core.SecurityEvent{
		Time:     t0.Add(time.Duration(i) * time.Millisecond),
		Rule:     rules[i%3],
		Action:   actions[i%3],
		Src:      src,
		Zone:     "internet",
		User:     fmt.Sprintf("user%d", i),
		Session:  core.SessionID(fmt.Sprintf("e%05d", i)),
		Protocol: "sip",
		Detail:   fmt.Sprintf("event %d", i),
	}
}

func sampleCDR(i int) *core.CDR {
	start := t0.Add(time.Duration(i) * time.Second)
	c := &core.CDR{
		Session:   core.SessionID(fmt.Sprintf("c%05d", i)),
		Kind:      "call",
		From:      fmt.Sprintf("alice%d@example.com", i),
		To:        "bob@example.com",
		Start:     start,
		End:       start.Add(90*time.Second + 123456789),
		Status:    487,
		EndReason: "cancel",
		EndedBy:   core.RoleCaller,
		Legs: []core.Leg{
			{
				Role: core.RoleCaller, Protocol: "sip", Transport: "tls", Encrypted: true, MediaEncrypted: true,
				Zone: "internet", Remote: netip.MustParseAddrPort("192.0.2.7:5061"),
				Local: netip.MustParseAddrPort("[2001:db8::1]:5061"), CallID: fmt.Sprintf("a-%d@192.0.2.7", i),
				Party: core.Identity{Display: "Alice", User: fmt.Sprintf("alice%d", i), Domain: "example.com"},
			},
			{
				Role: core.RoleCallee, Protocol: "sip", Transport: "udp", Zone: "trunk",
				Remote: netip.MustParseAddrPort("198.51.100.9:5060"), Local: netip.MustParseAddrPort("198.51.100.1:5060"),
				CallID: fmt.Sprintf("b-%d", i), Party: core.Identity{User: "bob", Domain: "example.com"}, Upstream: "trunk1",
			},
		},
	}
	if i%2 == 0 {
		c.Answer = start.Add(2 * time.Second)
		c.Duration = c.End.Sub(c.Answer)
		c.Status, c.EndReason, c.EndedBy = 200, "bye", core.RoleCallee
		c.Media = []core.MediaStats{
			{Index: 0, Type: "audio", From: core.RoleCaller, Packets: 4500, Bytes: 774000, Lost: 3, JitterMs: 1.25,
				Dropped: map[string]uint64{"rtpguard/ssrc": 2}, Encrypted: true},
			{Index: 0, Type: "audio", From: core.RoleCallee, Packets: 4498, Bytes: 773656, ReportedLost: 1, ReportedJitterMs: 2.5},
		}
	}
	return c
}

// testConfig is a journal with SQLite only, in a fresh directory. It keeps
// everything: the test records are from 2025 (t0), and the retention tests
// set their own.
func testConfig() Config {
	cfg := Defaults()
	cfg.Queue = 1024
	cfg.Retention = 0
	return cfg
}

func open(t testing.TB, cfg Config, dir string) *Journal {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	j, err := Open(cfg, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func dbPath(dir string) string { return filepath.Join(dir, "journal.db") }

// gate wraps a real sink and holds its first write that carries CDRs until
// released, so that a test can pile records up behind it. It also counts
// the batches that went through.
type gate struct {
	sink
	once       sync.Once
	entered    chan struct{} // closed when the first CDR batch arrives
	release    chan struct{}
	mu         sync.Mutex
	txBatches  []int
	secBatches []int
	cdrBatches []int
}

func newGate(s sink) *gate {
	return &gate{sink: s, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) write(b *batch) (error, error, error) {
	if len(b.cdrs) > 0 {
		g.once.Do(func() { close(g.entered); <-g.release })
	}
	g.mu.Lock()
	if len(b.txs) > 0 {
		g.txBatches = append(g.txBatches, len(b.txs))
	}
	if len(b.secs) > 0 {
		g.secBatches = append(g.secBatches, len(b.secs))
	}
	if len(b.cdrs) > 0 {
		g.cdrBatches = append(g.cdrBatches, len(b.cdrs))
	}
	g.mu.Unlock()
	return g.sink.write(b)
}

// levelLog keeps the records logged at level or above, as
// "message key=value ...".
type levelLog struct {
	level slog.Level
	mu    sync.Mutex
	msgs  []string
}

func (l *levelLog) Enabled(_ context.Context, level slog.Level) bool { return level >= l.level }

func (l *levelLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.msgs = append(l.msgs, b.String())
	l.mu.Unlock()
	return nil
}

func (l *levelLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levelLog) WithGroup(string) slog.Handler      { return l }

func (l *levelLog) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}
