package journal

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

func TestSQLiteRoundTrip(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	var txs []core.Transaction
	for i := range 1500 { // more than one batch
		tx := sampleTx(i)
		if i == 7 {
			tx.From, tx.Detail = hostile, hostile
		}
		j.Transaction(tx)
		txs = append(txs, *tx)
	}
	var secs []core.SecurityEvent
	for i := range 700 { // more than one batch
		e := sampleSec(i)
		if i == 5 {
			e.User, e.Detail = hostile, hostile
		}
		j.Alert(e)
		secs = append(secs, *e)
	}
	var cdrs []core.CDR
	for i := range 20 {
		c := sampleCDR(i)
		if i == 3 {
			c.From = hostile
			c.Legs = c.Legs[:1] // never reached a callee
		}
		if err := j.CDR(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		cdrs = append(cdrs, *c)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(dbPath(dir) + suffix); err == nil {
			t.Errorf("%s left after Close: the last connection should checkpoint", suffix)
		}
	}

	gotCDRs, err := QueryCDRs(context.Background(), dbPath(dir), CDRFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(cdrs) // newest first
	if !reflect.DeepEqual(gotCDRs, cdrs) {
		for i := range min(len(gotCDRs), len(cdrs)) {
			if !reflect.DeepEqual(gotCDRs[i], cdrs[i]) {
				t.Fatalf("cdr %d:\n got %+v\nwant %+v", i, gotCDRs[i], cdrs[i])
			}
		}
		t.Fatalf("got %d cdrs, want %d", len(gotCDRs), len(cdrs))
	}

	gotTxs, err := QueryTransactions(context.Background(), dbPath(dir), TxFilter{Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(txs)
	if len(gotTxs) != len(txs) {
		t.Fatalf("got %d transactions, want %d", len(gotTxs), len(txs))
	}
	for i := range txs {
		if !reflect.DeepEqual(gotTxs[i], txs[i]) {
			t.Fatalf("transaction %d:\n got %+v\nwant %+v", i, gotTxs[i], txs[i])
		}
	}

	gotSecs, err := QuerySecurity(context.Background(), dbPath(dir), SecFilter{Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(secs)
	if !slices.Equal(gotSecs, secs) {
		t.Fatalf("got %d security events, want %d equal ones", len(gotSecs), len(secs))
	}
}

func TestQueryCDRsFilters(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	// c00000..c00009 start one second apart; even ones are answered (200,
	// bye, by callee, 90.12 s), odd ones are not (487, cancel, by caller).
	for i := range 10 {
		c := sampleCDR(i)
		if i == 4 {
			c.Duration = 5 * time.Second
			c.To = "carol_50%@example.com"
		}
		if err := j.CDR(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	yes, no := true, false
	tests := []struct {
		name string
		f    CDRFilter
		want []string
	}{
		{"all, newest first", CDRFilter{}, []string{"c00009", "c00008", "c00007", "c00006", "c00005", "c00004", "c00003", "c00002", "c00001", "c00000"}},
		{"limit", CDRFilter{Limit: 2}, []string{"c00009", "c00008"}},
		{"since until", CDRFilter{Since: t0.Add(3 * time.Second), Until: t0.Add(6 * time.Second)}, []string{"c00005", "c00004", "c00003"}},
		{"party in from", CDRFilter{Party: "ALICE7@"}, []string{"c00007"}},
		{"party in to", CDRFilter{Party: "carol"}, []string{"c00004"}},
		{"party wildcards are literal", CDRFilter{Party: "_50%"}, []string{"c00004"}},
		{"party percent is no wildcard", CDRFilter{Party: "a%e"}, nil},
		{"session", CDRFilter{Session: "c00006"}, []string{"c00006"}},
		{"end reason", CDRFilter{EndReason: "cancel", Limit: 2}, []string{"c00009", "c00007"}},
		{"ended by", CDRFilter{EndedBy: core.RoleCallee, Since: t0.Add(5 * time.Second)}, []string{"c00008", "c00006"}},
		{"min duration", CDRFilter{MinDuration: 5 * time.Second}, []string{"c00008", "c00006", "c00004", "c00002", "c00000"}},
		{"min duration exact", CDRFilter{MinDuration: 88123456789}, []string{"c00008", "c00006", "c00002", "c00000"}},
		{"min duration one ns more", CDRFilter{MinDuration: 88123456790}, nil},
		{"answered", CDRFilter{Answered: &yes, Until: t0.Add(5 * time.Second)}, []string{"c00004", "c00002", "c00000"}},
		{"not answered", CDRFilter{Answered: &no, Since: t0.Add(5 * time.Second)}, []string{"c00009", "c00007", "c00005"}},
		{"nothing", CDRFilter{Session: "nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := QueryCDRs(context.Background(), dbPath(dir), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, c := range got {
				ids = append(ids, string(c.Session))
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("got %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestQueryTransactionsFilters(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	srcs := []string{"192.0.2.1:5060", "192.0.2.10:5060", "[2001:db8::1]:5060", "192.0.2.1:5070", "192.0.2.1"}
	for i, src := range srcs {
		tx := sampleTx(i) // 0 and 3 are refusals by acl/deny
		tx.Src = src
		if i == 2 {
			tx.Method = "register"
		}
		j.Transaction(tx)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    TxFilter
		want []string // sessions, newest first
	}{
		{"all", TxFilter{}, []string{"s00004", "s00003", "s00002", "s00001", "s00000"}},
		{"limit", TxFilter{Limit: 1}, []string{"s00004"}},
		{"since until", TxFilter{Since: t0.Add(time.Millisecond), Until: t0.Add(3 * time.Millisecond)}, []string{"s00002", "s00001"}},
		{"method ignores case", TxFilter{Method: "REGISTER"}, []string{"s00002"}},
		{"src address, any port", TxFilter{Src: "192.0.2.1"}, []string{"s00004", "s00003", "s00000"}},
		{"src with port", TxFilter{Src: "192.0.2.1:5070"}, []string{"s00003"}},
		{"src ipv6", TxFilter{Src: "2001:db8::1"}, []string{"s00002"}},
		{"action", TxFilter{Action: "refuse"}, []string{"s00003", "s00000"}},
		{"rule", TxFilter{Rule: "acl/deny", Until: t0.Add(time.Millisecond)}, []string{"s00000"}},
		{"call id of this leg", TxFilter{CallID: "call-1@192.0.2.1"}, []string{"s00001"}},
		{"call id of the peer leg", TxFilter{CallID: "peer-2"}, []string{"s00002"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := QueryTransactions(context.Background(), dbPath(dir), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, x := range got {
				ids = append(ids, string(x.Session))
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("got %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestQuerySecurityFilters(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	srcs := []string{"192.0.2.1:5060", "192.0.2.10:5060", "[2001:db8::1]:5060", "192.0.2.1", "192.0.2.0/24", "", "192.0.2.1:5070"}
	for i, src := range srcs {
		e := sampleSec(i) // rules scan/probe, bruteforce/source, blacklist/block in turn
		e.Src = src
		if i == 5 {
			e.Rule = "scanner/x" // shares "scan" with scan/probe, not "scan/"
		}
		j.Alert(e)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    SecFilter
		want []string // sessions, newest first
	}{
		{"all", SecFilter{}, []string{"e00006", "e00005", "e00004", "e00003", "e00002", "e00001", "e00000"}},
		{"limit", SecFilter{Limit: 2}, []string{"e00006", "e00005"}},
		{"since until", SecFilter{Since: t0.Add(time.Millisecond), Until: t0.Add(3 * time.Millisecond)}, []string{"e00002", "e00001"}},
		{"rule prefix of a stage", SecFilter{Rule: "scan/"}, []string{"e00006", "e00003", "e00000"}},
		{"rule prefix", SecFilter{Rule: "scan"}, []string{"e00006", "e00005", "e00003", "e00000"}},
		{"rule exact", SecFilter{Rule: "bruteforce/source"}, []string{"e00004", "e00001"}},
		{"rule is case-sensitive", SecFilter{Rule: "SCAN/"}, nil},
		{"rule wildcards are literal", SecFilter{Rule: "%"}, nil},
		{"src address, any port", SecFilter{Src: "192.0.2.1"}, []string{"e00006", "e00003", "e00000"}},
		{"src with port", SecFilter{Src: "192.0.2.1:5070"}, []string{"e00006"}},
		{"src ipv6", SecFilter{Src: "2001:db8::1"}, []string{"e00002"}},
		{"src ipv6 written otherwise", SecFilter{Src: "2001:DB8:0::1"}, []string{"e00002"}},
		{"src ipv6 with port", SecFilter{Src: "[2001:db8::1]:5060"}, []string{"e00002"}},
		{"src prefix", SecFilter{Src: "192.0.2.0/24"}, []string{"e00004"}},
		{"src and time", SecFilter{Src: "192.0.2.1", Since: t0.Add(time.Millisecond), Until: t0.Add(6 * time.Millisecond)}, []string{"e00003"}},
		{"src and rule", SecFilter{Src: "192.0.2.1", Rule: "scan/", Limit: 1}, []string{"e00006"}},
		{"nothing", SecFilter{Src: "198.51.100.1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := QuerySecurity(context.Background(), dbPath(dir), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range got {
				ids = append(ids, string(e.Session))
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("got %v, want %v", ids, tt.want)
			}
		})
	}
}

// TestAlertNeverBlocks fills the security queue while the writer is held:
// Alert returns at once and drops what does not fit; the first drop is
// logged at once, the others when the journal closes (or a minute later);
// what was queued is written.
func TestAlertNeverBlocks(t *testing.T) {
	dir := t.TempDir()
	logged := &levelLog{level: slog.LevelWarn}
	j, err := Open(testConfig(), dir, slog.New(logged))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	g := newGate(j.durable[0])
	j.durable[0] = g
	done := make(chan error, 1)
	go func() { done <- j.CDR(context.Background(), sampleCDR(1)) }()
	<-g.entered // the writer is stuck in a commit

	const extra = 100
	for i := range secQueue + extra {
		j.Alert(sampleSec(i))
	}
	if n := j.secDrop.total.Load(); n != extra {
		t.Errorf("dropped %d, want %d", n, extra)
	}
	if msgs := logged.messages(); len(msgs) != 1 || !strings.HasSuffix(msgs[0], "records=1 total=1") {
		t.Errorf("logged %q, want one line with records=1", msgs)
	}
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if msgs := logged.messages(); len(msgs) != 2 || !strings.HasSuffix(msgs[1], "records=99 total=100") {
		t.Errorf("logged %q, want a second line with records=99", msgs)
	}
	secs, err := QuerySecurity(context.Background(), dbPath(dir), SecFilter{Limit: 1 << 20})
	if err != nil || len(secs) != secQueue {
		t.Fatalf("%d security events, err %v; want %d", len(secs), err, secQueue)
	}
	if len(g.secBatches) == 0 || slices.Max(g.secBatches) > maxBatch {
		t.Errorf("security batches %v: want at most %d each", g.secBatches, maxBatch)
	}

	// After Close: dropped and counted, not logged again within the minute.
	j.Alert(sampleSec(0))
	if n := j.secDrop.total.Load(); n != extra+1 {
		t.Errorf("dropped %d after Close, want %d", n, extra+1)
	}
	if msgs := logged.messages(); len(msgs) != 2 {
		t.Errorf("logged %q, want no new line", msgs)
	}
}

// TestDropCounter logs at most once a minute, with the count since the
// last line, and the rest when flushed.
func TestDropCounter(t *testing.T) {
	logged := &levelLog{level: slog.LevelWarn}
	d := dropCounter{log: slog.New(logged)}
	for i := range 5 {
		d.add(t0.Add(time.Duration(i) * time.Second)) // first logged, four more counted
	}
	d.add(t0.Add(time.Minute))        // logged: 5 since
	d.add(t0.Add(time.Minute + 59e9)) // counted
	d.flush()
	d.flush() // nothing new
	want := []string{"records=1 total=1", "records=5 total=6", "records=1 total=7"}
	msgs := logged.messages()
	if len(msgs) != len(want) {
		t.Fatalf("logged %q, want %d lines", msgs, len(want))
	}
	for i, m := range msgs {
		if !strings.HasSuffix(m, want[i]) {
			t.Errorf("line %d: %q, want it to end with %q", i, m, want[i])
		}
	}
}

// TestAlertDuringClose races alerts against Close: nothing panics or
// races, and every event is written or counted as dropped.
func TestAlertDuringClose(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	const alerters, each = 4, 2000
	start := make(chan struct{})
	var wg sync.WaitGroup
	for a := range alerters {
		wg.Go(func() {
			<-start
			for i := range each {
				j.Alert(sampleSec(a*each + i))
			}
		})
	}
	close(start)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	secs, err := QuerySecurity(context.Background(), dbPath(dir), SecFilter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if got := uint64(len(secs)) + j.secDrop.total.Load(); got != alerters*each {
		t.Fatalf("%d written + %d dropped, want %d", len(secs), j.secDrop.total.Load(), alerters*each)
	}
}

// TestAlertZeroTime: an event without a time is journaled at the time it
// arrived.
func TestAlertZeroTime(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	before := time.Now()
	e := sampleSec(1)
	e.Time = time.Time{}
	j.Alert(e)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	secs, err := QuerySecurity(context.Background(), dbPath(dir), SecFilter{})
	if err != nil || len(secs) != 1 {
		t.Fatalf("%d events, err %v", len(secs), err)
	}
	if got := secs[0].Time; got.Before(before) || got.After(time.Now()) {
		t.Errorf("time %v, want between %v and now", got, before)
	}
	if !e.Time.IsZero() {
		t.Error("Alert changed the caller's event")
	}
}

func TestQueryMissingDatabase(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.db")
	_, err := QueryCDRs(context.Background(), p, CDRFilter{})
	if !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("QueryCDRs err = %v, want ErrNoDatabase", err)
	}
	if _, err := os.Stat(p); err == nil {
		t.Fatal("a read-only query created the database")
	}
}

// TestQueryWhileWriting reads while the gateway holds the database open in
// WAL mode, as `ucgate cdr` does on a running gateway.
func TestQueryWhileWriting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data dir ?#%20") // characters a URI must escape
	j := open(t, testConfig(), dir)
	if fi, err := os.Stat(dbPath(dir)); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("database file: %v, %v; want mode 0640", fi.Mode(), err)
	}
	for i := range 3 {
		if err := j.CDR(context.Background(), sampleCDR(i)); err != nil {
			t.Fatal(err)
		}
		got, err := QueryCDRs(context.Background(), dbPath(dir), CDRFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != i+1 {
			t.Fatalf("after CDR %d: %d rows", i, len(got))
		}
	}
}

// TestCDRGroupCommit: every caller finds its row the moment CDR returns.
func TestCDRGroupCommit(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	const n = 200
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			c := sampleCDR(i)
			if err := j.CDR(context.Background(), c); err != nil {
				errs <- err
				return
			}
			got, err := QueryCDRs(context.Background(), dbPath(dir), CDRFilter{Session: string(c.Session)})
			if err != nil {
				errs <- err
				return
			}
			if len(got) != 1 {
				errs <- errors.New("row of " + string(c.Session) + " missing after CDR returned")
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := QueryCDRs(context.Background(), dbPath(dir), CDRFilter{Limit: 1000})
	if err != nil || len(got) != n {
		t.Fatalf("%d rows, err %v; want %d", len(got), err, n)
	}
}

// TestCDRBatching holds the first commit and checks that the CDRs that
// arrive meanwhile share the next one.
func TestCDRBatching(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	g := newGate(j.durable[0])
	j.durable[0] = g // before any record: the writers read it after a receive

	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	wg.Go(func() { errs <- j.CDR(context.Background(), sampleCDR(0)) })
	<-g.entered
	for i := 1; i < n; i++ {
		wg.Go(func() { errs <- j.CDR(context.Background(), sampleCDR(i)) })
	}
	waitFor(t, func() bool { return len(j.cdr) == n-1 })
	close(g.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := []int{1, n - 1}; !slices.Equal(g.cdrBatches, want) {
		t.Errorf("batches %v, want %v", g.cdrBatches, want)
	}
}

// waitFor spins until cond holds, failing the test after five seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		runtime.Gosched()
	}
}

func TestCDRContextCanceled(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	g := newGate(j.durable[0])
	j.durable[0] = g
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.CDR(ctx, sampleCDR(1)) }()
	<-g.entered // the commit is held
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	close(g.release)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := QueryCDRs(context.Background(), dbPath(dir), CDRFilter{})
	if err != nil || len(got) != 1 {
		t.Fatalf("%d rows, err %v: a queued CDR is still written", len(got), err)
	}
}

func TestCloseDrains(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Queue = 1 // every writer blocks on a full queue: none may be lost
	cfg.JSONL.Path = "journal.jsonl"
	j := open(t, cfg, dir)
	g := newGate(j.durable[0])
	j.durable[0] = g

	const writers, each = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				j.Transaction(sampleTx(w*each + i))
			}
		})
	}
	wg.Go(func() {
		if err := j.CDR(context.Background(), sampleCDR(1)); err != nil {
			t.Error(err)
		}
	})
	<-g.entered
	closed := make(chan error, 1)
	go func() {
		wg.Wait()
		closed <- j.Close()
	}()
	close(g.release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	txs, err := QueryTransactions(context.Background(), dbPath(dir), TxFilter{Limit: 1 << 20})
	if err != nil || len(txs) != writers*each {
		t.Fatalf("%d transactions, err %v; want %d", len(txs), err, writers*each)
	}
	if n := countLines(t, filepath.Join(dir, "journal.jsonl")); n != writers*each+1 {
		t.Fatalf("jsonl has %d lines, want %d", n, writers*each+1)
	}

	// After Close: nothing panics, CDR says so, Close again is fine.
	j.Transaction(sampleTx(0))
	if err := j.CDR(context.Background(), sampleCDR(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("CDR after Close: %v, want ErrClosed", err)
	}
	if j.late.Load() != 1 {
		t.Fatalf("late = %d, want 1", j.late.Load())
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

func countLines(t *testing.T, p string) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func TestOpenPartialFailure(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.JSONL.Path = "adir" // a directory: cannot be opened for appending
	j, err := Open(cfg, dir, nil)
	if err == nil || !strings.Contains(err.Error(), "open journal "+filepath.Join(dir, "adir")) {
		t.Fatalf("Open = %v, want an error naming the jsonl path", err)
	}
	if err := j.Close(); err != nil { // nil Journal
		t.Fatal(err)
	}
	// The SQLite sink opened first was closed: the file is free for a new
	// journal, and a zero Journal closes too.
	j2 := open(t, testConfig(), dir)
	if err := j2.CDR(context.Background(), sampleCDR(1)); err != nil {
		t.Fatal(err)
	}
	if err := new(Journal).Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenNewerSchema(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	s := j.durable[0].(*sqliteSink)
	if _, err := s.conn.ExecContext(context.Background(), "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if _, err := Open(testConfig(), dir, nil); !errors.Is(err, ErrSchema) {
		t.Fatalf("Open = %v, want ErrSchema", err)
	}
}

func TestJSONL(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SQLite.Enabled = false // the file is the durable sink
	cfg.JSONL.Path = "logs/journal.jsonl"
	j := open(t, cfg, dir)
	tx := sampleTx(3)
	tx.Detail = hostile
	j.Transaction(tx)
	sec := sampleSec(4)
	sec.Detail = hostile
	j.Alert(sec)
	c := sampleCDR(2)
	if err := j.CDR(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	// The CDR is on disk once CDR returns, before Close.
	p := filepath.Join(dir, "logs", "journal.jsonl")
	if !strings.Contains(readFile(t, p), `"session":"c00002"`) {
		t.Fatal("CDR not in the file when CDR returned")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var types []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var head struct{ Type string }
		if err := json.Unmarshal(sc.Bytes(), &head); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		types = append(types, head.Type)
		switch head.Type {
		case TypeTransaction:
			var got core.Transaction
			if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&got, tx) {
				t.Errorf("transaction line\n got %+v\nwant %+v", got, *tx)
			}
			if !strings.Contains(sc.Text(), `"elapsed_ns":48126`) || !strings.HasPrefix(sc.Text(), `{"type":"transaction","time":"2025-03-14T15:09:26.538897932Z"`) {
				t.Errorf("transaction line %s", sc.Text())
			}
		case TypeSecurity:
			var got core.SecurityEvent
			if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&got, sec) {
				t.Errorf("security line\n got %+v\nwant %+v", got, *sec)
			}
			if !strings.HasPrefix(sc.Text(), `{"type":"security","time":"2025-03-14T15:09:26.539897932Z","rule":"bruteforce/source"`) {
				t.Errorf("security line %s", sc.Text())
			}
		case TypeCDR:
			var got core.CDR
			if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&got, c) {
				t.Errorf("cdr line\n got %+v\nwant %+v", got, *c)
			}
		}
	}
	slices.Sort(types)
	if !slices.Equal(types, []string{TypeCDR, TypeSecurity, TypeTransaction}) {
		t.Fatalf("types %v", types)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteCDRTable(t *testing.T) {
	a, b := sampleCDR(0), sampleCDR(1)
	b.From = "mallory\x1b[2J\tx@example.com"
	b.Legs = b.Legs[:1]
	var out strings.Builder
	if err := WriteCDRTable(&out, []core.CDR{*a, *b}); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"START                     SESSION  FROM                       TO               DURATION  STATUS  END REASON  ENDED BY  CALLER    CALLEE\n" +
		"2025-03-14 15:09:26.535Z  c00000   alice0@example.com         bob@example.com  88.123    200     bye         callee    tls/full  udp/none\n" +
		"2025-03-14 15:09:27.535Z  c00001   mallory?[2J?x@example.com  bob@example.com  0.000     487     cancel      caller    tls/full  -\n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out.String(), want)
	}
}
