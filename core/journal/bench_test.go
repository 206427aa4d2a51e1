package journal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

// BenchmarkTransaction measures what Transaction costs its caller: with no
// sink ("enqueue": the copy and the queue alone) and with SQLite draining
// the queue ("sqlite": once the queue is full, this is the writer's
// sustained rate).
func BenchmarkTransaction(b *testing.B) {
	for _, bc := range []struct {
		name   string
		sqlite bool
	}{{"enqueue", false}, {"sqlite", true}} {
		cfg := testConfig()
		cfg.Queue = Defaults().Queue
		cfg.SQLite.Enabled = bc.sqlite
		tx := sampleTx(3)
		b.Run(bc.name, func(b *testing.B) {
			j := open(b, cfg, b.TempDir())
			b.ReportAllocs()
			for b.Loop() {
				j.Transaction(tx)
			}
			j.Close()
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			j := open(b, cfg, b.TempDir())
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					j.Transaction(tx)
				}
			})
			j.Close()
		})
	}
}

// BenchmarkCDRGroupCommit measures durable CDRs per second, one caller at a
// time and with many callers sharing commits.
func BenchmarkCDRGroupCommit(b *testing.B) {
	for _, sync := range []string{"normal", "full"} {
		cfg := testConfig()
		cfg.SQLite.Synchronous = sync
		c := sampleCDR(2)
		b.Run("sync="+sync+"/serial", func(b *testing.B) {
			j := open(b, cfg, b.TempDir())
			b.ReportAllocs()
			for b.Loop() {
				if err := j.CDR(context.Background(), c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cdrs/s")
		})
		b.Run("sync="+sync+"/parallel", func(b *testing.B) {
			j := open(b, cfg, b.TempDir())
			b.ReportAllocs()
			b.SetParallelism(64)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := j.CDR(context.Background(), c); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cdrs/s")
		})
	}
}

// BenchmarkCallLoad mirrors the gateway under SIP load. One op is one call:
// an INVITE transaction, the BYE transaction and the CDR of a call that
// started 2048 calls earlier (so a call's two transactions are not in one
// batch), from 64 goroutines at once into a journal with SQLite on and
// synchronous normal. ns/op is wall time per call at the rate the journal
// sustains, allocs/op allocations per call, cpu-ns/call the process's CPU
// time per call: what the gateway pays for its journal. The timed part ends
// after Close, once every queued transaction is written.
//
// "empty" starts each run with a new database; "prefilled" with a copy of
// one that already holds prefillCalls calls, where the indexes no longer
// fit in SQLite's page cache, as on a gateway that has run for a while.
// Both make calls as fast as the journal takes them. "prefilled/3000cps"
// starts them at 3000 per second instead, the load the journal is sized
// for: ns/op is then 333µs as long as the journal keeps up, and commits
// carry fewer records than at full speed. "prefilled/3000cps/pruning" does
// that while the pruner deletes the prefilled calls, all older than the
// retention (pruned/call is the rows it deleted per call made).
func BenchmarkCallLoad(b *testing.B) {
	calls := newCalls(1<<14, 1)
	b.Run("empty", func(b *testing.B) {
		benchCalls(b, b.TempDir(), calls, 0, false)
	})
	var (
		once     sync.Once
		template string // in a directory of its own, removed at the end
	)
	b.Cleanup(func() {
		if template != "" {
			os.RemoveAll(filepath.Dir(template))
		}
	})
	for _, bc := range []struct {
		rate  int
		prune bool
	}{{0, false}, {3000, false}, {3000, true}} {
		name := "prefilled"
		if bc.rate > 0 {
			name += fmt.Sprintf("/%dcps", bc.rate)
		}
		if bc.prune {
			name += "/pruning"
		}
		b.Run(name, func(b *testing.B) {
			once.Do(func() { template = prefill(b) })
			dir := b.TempDir()
			copyFile(b, template, dbPath(dir))
			benchCalls(b, dir, calls, bc.rate, bc.prune)
		})
	}
}

// prefillCalls is how many calls the "prefilled" database holds.
const prefillCalls = 100_000

// prefill writes prefillCalls calls with other ids than the benchmark's to
// a database in a new directory and returns the file's path.
func prefill(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("", "journal-prefill-")
	if err != nil {
		b.Fatal(err)
	}
	cfg := testConfig()
	cfg.Queue = Defaults().Queue
	j, err := Open(cfg, dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	makeCalls(b, j, newCalls(1<<14, 2), prefillCalls, -prefillCalls, 0)
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	return dbPath(dir)
}

func copyFile(b *testing.B, from, to string) {
	b.Helper()
	src, err := os.Open(from)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		b.Fatal(err)
	}
	// On disk before the timer starts: the first checkpoint's fsync would
	// write the whole copy.
	if err := dst.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		b.Fatal(err)
	}
}

// benchCalls runs makeCalls on a journal in dir. If prune is set, a pruner
// deletes every call made before t0 meanwhile.
func benchCalls(b *testing.B, dir string, calls []call, rate int, prune bool) {
	cfg := testConfig()
	cfg.Queue = Defaults().Queue
	j := open(b, cfg, dir)
	var p *pruner
	if prune {
		s := j.durable[0].(*sqliteSink)
		var err error
		if p, err = newPruner(s, 24*time.Hour, slog.New(slog.DiscardHandler)); err != nil {
			b.Fatal(err)
		}
		p.now = func() time.Time { return t0.Add(24 * time.Hour) }
		s.prune = p // stopped by Close
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	w0 := written()
	b.ResetTimer()
	if p != nil {
		p.start()
	}
	makeCalls(b, j, calls, b.N, 0, rate)
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/call")
	}
	if w := written() - w0; w > 0 {
		b.ReportMetric(float64(w)/float64(b.N), "wbytes/call")
	}
	if p != nil {
		b.ReportMetric(float64(p.deleted.Load())/float64(b.N), "pruned/call")
	}
}

// makeCalls journals n calls from 64 goroutines, taking the records from
// calls in turn, as fast as the journal takes them or, if rate is above 0,
// starting rate calls per second. Call i (counted from first) starts at t0
// plus i times 1/3 ms, as at 3000 calls per second, and ends 2048 calls
// later.
func makeCalls(b *testing.B, j *Journal, calls []call, n, first, rate int) {
	const callers, later = 64, 2048
	const interval = time.Second / 3000
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
				}
				k := int64(first) + i
				start := &calls[uint64(k)%uint64(len(calls))]
				end := &calls[uint64(k-later)%uint64(len(calls))]
				invite, bye, cdr := start.invite, end.bye, end.cdr
				invite.Time = t0.Add(time.Duration(k) * interval)
				bye.Time = invite.Time
				cdr.End = invite.Time
				cdr.Start = cdr.End.Add(-later * interval)
				j.Transaction(&invite)
				j.Transaction(&bye)
				if err := j.CDR(context.Background(), &cdr); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// call is what one SIP call gives the journal.
type call struct {
	invite, bye core.Transaction
	cdr         core.CDR
}

// newCalls builds n calls with random ids (from seed), as the gateway's
// are, so that the indexes see inserts spread over the whole key range.
func newCalls(n int, seed uint64) []call {
	rng := rand.New(rand.NewPCG(seed, 0))
	hex := func(n int) string {
		const digits = "0123456789abcdef"
		b := make([]byte, n)
		for i := range b {
			b[i] = digits[rng.IntN(16)]
		}
		return string(b)
	}
	calls := make([]call, n)
	for i := range calls {
		a, z := hex(32)+"@192.0.2.7", hex(32)
		session := core.SessionID(hex(24))
		from, to := fmt.Sprintf("\"Alice\" <sip:alice%d@example.com>", i), "<sip:bob@example.com>"
		invite := core.Transaction{
			Protocol: "sip", Zone: "internet", Src: "192.0.2.7:5060",
			Dst: "198.51.100.1:5060", Transport: "udp", Method: "INVITE", From: from, To: to,
			CallID: a, PeerCall: z, Session: session, Status: 200, Action: "allow",
			Elapsed: 20 * time.Millisecond,
		}
		bye := invite
		bye.Method, bye.Elapsed = "BYE", 2*time.Millisecond
		c := sampleCDR(i)
		c.Session, c.From, c.To = session, from, to
		c.Legs[0].CallID, c.Legs[1].CallID = a, z
		calls[i] = call{invite: invite, bye: bye, cdr: *c}
	}
	return calls
}
