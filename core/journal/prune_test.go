package journal

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// aged returns copies of the sample records i in [from, to) moved by d:
// transactions, security events and CDRs.
func aged(from, to int, d time.Duration) *batch {
	var b batch
	for i := from; i < to; i++ {
		tx, e, c := sampleTx(i), sampleSec(i), sampleCDR(i)
		tx.Time = tx.Time.Add(d)
		e.Time = e.Time.Add(d)
		c.Start, c.End = c.Start.Add(d), c.End.Add(d)
		if !c.Answer.IsZero() {
			c.Answer = c.Answer.Add(d)
		}
		b.txs, b.secs, b.cdrs = append(b.txs, tx), append(b.secs, e), append(b.cdrs, c)
	}
	return &b
}

func writeBatch(t *testing.T, s *sqliteSink, b *batch) {
	t.Helper()
	if txErr, secErr, cdrErr := s.write(b); txErr != nil || secErr != nil || cdrErr != nil {
		t.Fatal(txErr, secErr, cdrErr)
	}
}

// sessions lists the sessions of the rows in each table, oldest first.
func sessions(t *testing.T, path string) (txs, secs, cdrs []string) {
	t.Helper()
	ctx := context.Background()
	gotTxs, err := QueryTransactions(ctx, path, TxFilter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range slices.Backward(gotTxs) {
		txs = append(txs, string(x.Session))
	}
	gotSecs, err := QuerySecurity(ctx, path, SecFilter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range slices.Backward(gotSecs) {
		secs = append(secs, string(x.Session))
	}
	gotCDRs, err := QueryCDRs(ctx, path, CDRFilter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range slices.Backward(gotCDRs) {
		cdrs = append(cdrs, string(x.Session))
	}
	return txs, secs, cdrs
}

// TestPrune deletes exactly the rows older than the retention, in chunks:
// transactions and security events by their time, CDRs by their end, so
// that a session that started before the cutoff and ended after it stays.
func TestPrune(t *testing.T) {
	path := dbPath(t.TempDir())
	s := openSink(t, path)
	const retention = 90 * 24 * time.Hour
	now := t0.Add(100 * 24 * time.Hour)
	cutoff := now.Add(-retention) // t0 plus 10 days

	// 0..99 are old by far; 100..103 sit around the cutoff; 104 is young.
	old := aged(0, 100, 0)
	writeBatch(t, s, old)
	edge := aged(100, 105, 0)
	for k, at := range []time.Time{cutoff.Add(-time.Nanosecond), cutoff, cutoff.Add(time.Nanosecond), cutoff.Add(-time.Hour), now} {
		edge.txs[k].Time, edge.secs[k].Time = at, at
		c := edge.cdrs[k]
		c.Start, c.Answer, c.End = at.Add(-time.Hour), time.Time{}, at
		c.Duration = 0
	}
	edge.cdrs[3].End = cutoff.Add(time.Hour) // started an hour before the cutoff, ended an hour after
	writeBatch(t, s, edge)

	p, err := newPruner(s, retention, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return now }
	p.maxChunk = 7 // many chunks, the last one short
	if err := p.pass(); err != nil {
		t.Fatal(err)
	}
	if got := p.deleted.Load(); got != 3*101+2 {
		t.Errorf("deleted %d rows, want %d", got, 3*101+2)
	}
	if p.passes.Load() != 1 {
		t.Errorf("%d passes, want 1", p.passes.Load())
	}
	if err := p.close(); err != nil { // never started: close only releases the statements
		t.Fatal(err)
	}
	txs, secs, cdrs := sessions(t, path)
	if want := []string{"s00101", "s00102", "s00104"}; !slices.Equal(txs, want) {
		t.Errorf("transactions %v, want %v", txs, want)
	}
	if want := []string{"e00101", "e00102", "e00104"}; !slices.Equal(secs, want) {
		t.Errorf("security events %v, want %v", secs, want)
	}
	if want := []string{"c00103", "c00101", "c00102", "c00104"}; !slices.Equal(cdrs, want) { // by start
		t.Errorf("cdrs %v, want %v", cdrs, want)
	}
}

// TestPruneChunkSize: the chunk shrinks when a DELETE takes longer than
// the target and grows, up to the most, while it is fast and full.
func TestPruneChunkSize(t *testing.T) {
	path := dbPath(t.TempDir())
	s := openSink(t, path)
	writeBatch(t, s, aged(0, 600, 0))
	p, err := newPruner(s, time.Hour, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	p.now = func() time.Time { return t0.Add(24 * time.Hour) }
	cutoff := formatTime(p.now().Add(-p.retention))

	p.target = time.Hour // every chunk is fast
	p.chunk, p.maxChunk = 16, 100
	var sizes []int64
	for {
		n, full, _, err := p.deleteChunk(p.stmts[0], cutoff)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
		if !full {
			break
		}
	}
	if want := []int64{16, 32, 64, 100, 100, 100, 100, 88}; !slices.Equal(sizes, want) {
		t.Errorf("chunks %v, want %v", sizes, want)
	}

	p.target = 0 // every chunk is slow
	p.chunk = 100
	for _, want := range []int{50, 25, pruneMinChunk, pruneMinChunk} {
		if _, _, _, err := p.deleteChunk(p.stmts[1], cutoff); err != nil {
			t.Fatal(err)
		}
		if p.chunk != want {
			t.Errorf("chunk %d, want %d", p.chunk, want)
		}
	}
}

// TestPruneWhileWriting prunes a backlog in small chunks while callers
// journal calls: the callers' CDRs are committed between the chunks, every
// new record stays and every old one goes.
func TestPruneWhileWriting(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	s := j.durable[0].(*sqliteSink)
	const backlog = 4096
	for i := 0; i < backlog; i += maxBatch {
		writeBatch(t, s, aged(i, min(i+maxBatch, backlog), -365*24*time.Hour))
	}
	p, err := newPruner(s, 24*time.Hour, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return t0.Add(time.Hour) } // the callers' records are young
	p.maxChunk = 64

	var (
		pruning   atomic.Bool
		during    atomic.Int64 // CDRs begun and committed while the pass ran
		committed atomic.Int64
		slowest   atomic.Int64 // ns
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	const callers = 8
	for c := range callers {
		wg.Go(func() {
			for i := c; ; i += callers {
				select {
				case <-stop:
					return
				default:
				}
				j.Transaction(sampleTx(i))
				j.Alert(sampleSec(i))
				began, start := pruning.Load(), time.Now()
				if err := j.CDR(context.Background(), sampleCDR(i)); err != nil {
					t.Error(err)
					return
				}
				if d := time.Since(start).Nanoseconds(); d > slowest.Load() {
					slowest.Store(d) // roughly: callers may race here
				}
				committed.Add(1)
				if began && pruning.Load() {
					during.Add(1)
				}
			}
		})
	}
	waitFor(t, func() bool { return committed.Load() > 0 })
	pruning.Store(true)
	start := time.Now()
	if err := p.pass(); err != nil {
		t.Fatal(err)
	}
	pruning.Store(false)
	took := time.Since(start)
	close(stop)
	wg.Wait()
	t.Logf("pruned %d rows in %v while %d CDRs were committed; slowest CDR %v",
		p.deleted.Load(), took, during.Load(), time.Duration(slowest.Load()))
	if during.Load() == 0 {
		t.Error("no CDR was committed while the pruner ran")
	}
	if got := p.deleted.Load(); got != 3*backlog {
		t.Errorf("deleted %d, want %d", got, 3*backlog)
	}
	if err := p.close(); err != nil { // before the connection its statements are on
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	n := int(committed.Load())
	txs, secs, cdrs := sessions(t, dbPath(dir))
	// The callers stopped after their CDR: at most one transaction and
	// one security event each beyond their CDRs.
	if len(cdrs) != n || len(txs) < n || len(txs) > n+callers || len(secs) < n || len(secs) > n+callers {
		t.Errorf("%d transactions, %d security events, %d cdrs; want %d of each (+%d)", len(txs), len(secs), len(cdrs), n, callers)
	}
}

// TestPruneAtOpen: a journal opened with a retention prunes at once, and
// Close stops the pruner.
func TestPruneAtOpen(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir) // keeps everything
	now := time.Now()
	old := aged(0, 10, now.Add(-100*24*time.Hour).Sub(t0))
	young := aged(10, 20, now.Add(-time.Hour).Sub(t0))
	for _, b := range []*batch{old, young} {
		for i := range b.txs {
			j.Transaction(b.txs[i])
			j.Alert(b.secs[i])
			if err := j.CDR(context.Background(), b.cdrs[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig()
	cfg.Retention = 90 * 24 * time.Hour
	j = open(t, cfg, dir)
	p := j.durable[0].(*sqliteSink).prune
	waitFor(t, func() bool { return p.passes.Load() > 0 })
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	default:
		t.Fatal("pruner still running after Close")
	}
	txs, secs, cdrs := sessions(t, dbPath(dir))
	if len(txs) != 10 || txs[0] != "s00010" || len(secs) != 10 || secs[0] != "e00010" || len(cdrs) != 10 || cdrs[0] != "c00010" {
		t.Errorf("left: transactions %v, security events %v, cdrs %v; want 10..19 of each", txs, secs, cdrs)
	}
}

// TestPruneStopsOnClose: Close does not wait for a long pass to finish.
func TestPruneStopsOnClose(t *testing.T) {
	path := dbPath(t.TempDir())
	s, err := openSQLite(path, "normal", 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	const backlog = 5000
	for i := 0; i < backlog; i += maxBatch {
		writeBatch(t, s, aged(i, min(i+maxBatch, backlog), 0))
	}
	if s.prune, err = newPruner(s, time.Hour, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	s.prune.maxChunk = pruneMinChunk // about a thousand chunks, each followed by a pause
	s.prune.start()
	waitFor(t, func() bool { return s.prune.deleted.Load() > 0 })
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if n := s.prune.deleted.Load(); n == 3*backlog || s.prune.passes.Load() != 0 {
		t.Errorf("the pass finished (%d rows deleted) before Close returned", n)
	}
}
