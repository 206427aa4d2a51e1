package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ucgate/ucgate/core"
)

// ErrClosed is returned by CDR once the journal is closed.
var ErrClosed = errors.New("journal: closed")

// Batching. Every commit writes again the last page of each table and of
// each time index (and SQLite's header page), whatever it carries: at 3000
// calls per second, commits of one call each wrote a quarter more than
// commits of five or six (BenchmarkCallLoad/prefilled/3000cps).
const (
	// maxBatch is the most records of each kind one sink write carries.
	maxBatch = 512
	// txDelay is the longest a transaction waits for a CDR to share a
	// commit with: at most this much of the journal is lost if ucgate
	// crashes while no call ends (CDRs are durable before CDR returns).
	txDelay = 100 * time.Millisecond
	// commitGap is the least time from the start of one commit to the next
	// that carries CDRs while CDR callers overlap (the last commit carried
	// more than one CDR, or one arrived while it ran), unless groupCDRs of
	// them are waiting: at 3000 calls per second a commit then carries five
	// or six CDRs instead of one, and each CDR waits 2 ms at most. A lone
	// caller, and one that writes CDRs one after the other (the SIP adapter
	// ending its calls at shutdown), never waits.
	commitGap = 2 * time.Millisecond
	// groupCDRs is the number of waiting CDRs that is company enough: they
	// are committed as soon as the writer is free.
	groupCDRs = 16
	// secQueue is how many security events wait for the writer before
	// Alert drops them. They come from core.Alerts, which has a queue of
	// its own in front: this one need only cover a commit or two.
	secQueue = 4096
)

// batch is what the writer hands every sink at once. Any part may be
// empty.
type batch struct {
	txs  []*core.Transaction
	secs []*core.SecurityEvent
	cdrs []*core.CDR
	// msgs are captured instant messages; the SQLite sink (messages table)
	// and the JSONL sink (type message) keep them, syslog does not.
	msgs []*core.CapturedMessage
}

// sink is one place records go. The journal calls it from its one writer
// goroutine, and never after close.
type sink interface {
	name() string
	// write writes a batch and reports the failure of each kind of record
	// in it; a durable sink returns once the CDRs would survive a crash.
	// It must not keep the pointers: the records are reused once it
	// returns.
	write(b *batch) (txErr, secErr, cdrErr error)
	close() error
}

// Journal is the core.Journal of a running gateway. Create it with Open and
// release it with Close.
type Journal struct {
	log     *slog.Logger
	durable []sink // CDR callers wait for these
	others  []sink // best effort, written after the callers are released

	mu      sync.RWMutex // held for reading while sending, for writing to close the queues
	closed  bool
	tx      chan *core.Transaction
	sec     chan *core.SecurityEvent
	cdr     chan cdrRequest
	msg     chan *core.CapturedMessage
	done    chan struct{} // closed when the writer has written everything
	pool    sync.Pool     // of *core.Transaction
	secPool sync.Pool     // of *core.SecurityEvent
	late    atomic.Uint64 // transactions refused after Close
	secDrop dropCounter   // security events Alert could not queue
	msgDrop dropCounter   // captured messages Message could not queue
}

type cdrRequest struct {
	c    *core.CDR
	done chan error // buffered: the writer never waits for a caller that gave up
}

var (
	_ core.Journal        = (*Journal)(nil)
	_ core.Alerter        = (*Journal)(nil)
	_ core.MessageJournal = (*Journal)(nil)
)

// Open opens the sinks cfg enables (relative paths are taken from dataDir)
// and starts the writers. cfg must have passed Validate. A nil log discards.
func Open(cfg Config, dataDir string, log *slog.Logger) (*Journal, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	j := &Journal{log: log}
	j.secDrop.log = log
	j.msgDrop.log, j.msgDrop.what = log, "captured messages"
	fail := func(err error) (*Journal, error) {
		return nil, errors.Join(err, j.closeSinks())
	}
	if cfg.SQLite.Enabled {
		s, err := openSQLite(inDir(dataDir, cfg.SQLite.Path), cfg.SQLite.Synchronous, cfg.Retention, log)
		if err != nil {
			return fail(err)
		}
		j.durable = append(j.durable, s)
	}
	if cfg.JSONL.Path != "" {
		s, err := openJSONL(inDir(dataDir, cfg.JSONL.Path))
		if err != nil {
			return fail(err)
		}
		if cfg.SQLite.Enabled {
			j.others = append(j.others, s)
		} else {
			j.durable = append(j.durable, s) // the only file left: synced on every CDR batch
		}
	}
	if cfg.Syslog.Address != "" {
		j.others = append(j.others, startSyslog(cfg.Syslog, log))
	}
	if len(j.durable) == 0 {
		log.Warn("journal has no durable sink: CDRs are not kept")
	}
	j.pool.New = func() any { return new(core.Transaction) }
	j.secPool.New = func() any { return new(core.SecurityEvent) }
	j.tx = make(chan *core.Transaction, cfg.Queue)
	j.sec = make(chan *core.SecurityEvent, secQueue)
	j.cdr = make(chan cdrRequest, maxBatch)
	j.msg = make(chan *core.CapturedMessage, secQueue)
	j.done = make(chan struct{})
	go j.write()
	return j, nil
}

func inDir(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Transaction queues a copy of t for the sinks. It blocks while the queue
// is full. After Close the record is counted and reported, not kept.
func (j *Journal) Transaction(t *core.Transaction) {
	cp := j.pool.Get().(*core.Transaction)
	*cp = *t
	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		j.pool.Put(cp)
		if j.late.Add(1) == 1 {
			j.log.Error("journal closed: transaction not recorded")
		}
		return
	}
	j.tx <- cp
	j.mu.RUnlock()
}

// Alert implements core.Alerter: it queues a copy of e for the sinks, to be
// written with the next batch of transactions. It never waits: when the
// queue is full (a flood of events outruns the writer) or the journal is
// closing, the event is dropped, counted, and the count logged at most once
// a minute. Security events are best effort; transactions and CDRs are not.
// A zero e.Time is taken as now.
func (j *Journal) Alert(e *core.SecurityEvent) {
	// TryRLock fails only while Close waits for the lock or holds it: the
	// event would be refused once it got it.
	if !j.mu.TryRLock() {
		j.secDrop.add(time.Now())
		return
	}
	defer j.mu.RUnlock()
	if j.closed {
		j.secDrop.add(time.Now())
		return
	}
	cp := j.secPool.Get().(*core.SecurityEvent)
	*cp = *e
	if cp.Time.IsZero() {
		cp.Time = time.Now()
	}
	select {
	case j.sec <- cp:
	default:
		*cp = core.SecurityEvent{}
		j.secPool.Put(cp)
		j.secDrop.add(time.Now())
	}
}

// Message implements core.MessageJournal: it queues a copy of m for the
// SQLite sink (the messages table) and the JSONL sink (a line of type
// message), written with the next batch. Like
// Alert it never waits: when the queue is full or the journal is closing
// the message is dropped, counted, and the count logged at most once a
// minute.
func (j *Journal) Message(m *core.CapturedMessage) {
	if !j.mu.TryRLock() {
		j.msgDrop.add(time.Now())
		return
	}
	defer j.mu.RUnlock()
	if j.closed || j.msg == nil {
		j.msgDrop.add(time.Now())
		return
	}
	cp := *m
	if cp.Time.IsZero() {
		cp.Time = time.Now()
	}
	select {
	case j.msg <- &cp:
	default:
		j.msgDrop.add(time.Now())
	}
}

// CDR writes a copy of c and returns once the durable sinks have committed
// it, together with the CDRs of concurrent callers. If ctx ends first, CDR
// returns its error; the record may still be written.
func (j *Journal) CDR(ctx context.Context, c *core.CDR) error {
	cp := *c
	cp.Legs = slices.Clone(c.Legs)
	req := cdrRequest{c: &cp, done: make(chan error, 1)}
	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		return ErrClosed
	}
	select {
	case j.cdr <- req:
		j.mu.RUnlock()
	case <-ctx.Done():
		j.mu.RUnlock()
		return fmt.Errorf("journal: cdr of session %s not queued: %w", c.Session, ctx.Err())
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("journal: cdr of session %s not confirmed: %w", c.Session, ctx.Err())
	}
}

// Close writes everything queued, stops the writers and closes the sinks.
// It is safe to call more than once and on a nil Journal.
func (j *Journal) Close() error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	if j.tx != nil {
		close(j.tx)
		close(j.sec)
		close(j.cdr)
		close(j.msg)
	}
	j.mu.Unlock()
	if j.done != nil {
		<-j.done
	}
	j.secDrop.flush()
	j.msgDrop.flush()
	return j.closeSinks()
}

func (j *Journal) closeSinks() error {
	var errs []error
	for _, s := range slices.Concat(j.durable, j.others) {
		if err := s.close(); err != nil {
			errs = append(errs, fmt.Errorf("close journal %s: %w", s.name(), err))
		}
	}
	j.durable, j.others = nil, nil
	return errors.Join(errs...)
}

// write is the journal's writer. It hands each sink a batch of
// transactions, security events and CDRs at once, and SQLite commits them
// together, so that transactions and security events ride along with a CDR
// group commit instead of paying for commits of their own.
//
// CDRs are written once the writer is free (under load, once groupCDRs of
// them wait or commitGap has passed), with what else is queued (up to
// maxBatch of each kind); their callers wait for the durable sinks while
// the next batch queues up (group commit). Transactions and security events
// wait for CDRs, for up to txDelay or until maxBatch of one kind are
// queued. The other sinks are written after the callers are released.
func (j *Journal) write() {
	defer close(j.done)
	var (
		b               = batch{txs: make([]*core.Transaction, 0, maxBatch), secs: make([]*core.SecurityEvent, 0, maxBatch)}
		reqs            = make([]cdrRequest, 0, maxBatch)
		cdrs            = make([]*core.CDR, 0, maxBatch)
		txq, secq, cdrq = j.tx, j.sec, j.cdr // nil once closed and drained
		oldest          time.Time            // when the first transaction or security event in b arrived
		next            time.Time            // the earliest start of the next commit with CDRs
		timer           = time.NewTimer(time.Hour)
		waiting         bool // timer runs for a batch that is not due yet
		fails           = failLimiters{
			tx:  newLimiter(j.log, "journal sink failed: transactions lost"),
			sec: newLimiter(j.log, "journal sink failed: security events lost"),
			cdr: newLimiter(j.log, "journal sink failed: CDRs not sent"),
		}
	)
	timer.Stop()
	msgq := j.msg // nil once closed and drained
	takeTx := func(t *core.Transaction, ok bool) bool {
		if !ok {
			txq = nil
			return false
		}
		if len(b.txs) == 0 && len(b.secs) == 0 {
			oldest = time.Now()
		}
		b.txs = append(b.txs, t)
		return true
	}
	takeSec := func(e *core.SecurityEvent, ok bool) bool {
		if !ok {
			secq = nil
			return false
		}
		if len(b.txs) == 0 && len(b.secs) == 0 {
			oldest = time.Now()
		}
		b.secs = append(b.secs, e)
		return true
	}
	takeMsg := func(m *core.CapturedMessage, ok bool) bool {
		if !ok {
			msgq = nil
			return false
		}
		if len(b.txs) == 0 && len(b.secs) == 0 && len(b.msgs) == 0 {
			oldest = time.Now()
		}
		b.msgs = append(b.msgs, m)
		return true
	}
	takeCDR := func(r cdrRequest, ok bool) bool {
		if !ok {
			cdrq = nil
			return false
		}
		reqs = append(reqs, r)
		return true
	}
	for txq != nil || secq != nil || cdrq != nil || msgq != nil || len(b.txs) > 0 || len(b.secs) > 0 || len(b.msgs) > 0 {
		var due <-chan time.Time
		if waiting {
			due = timer.C
		}
		select {
		case t, ok := <-txq:
			takeTx(t, ok)
		case e, ok := <-secq:
			takeSec(e, ok)
		case r, ok := <-cdrq:
			takeCDR(r, ok)
		case m, ok := <-msgq:
			takeMsg(m, ok)
		case <-due:
			waiting = false
		}
		for more := true; more; { // take what else is queued
			more = false
		txs:
			for txq != nil && len(b.txs) < maxBatch {
				select {
				case t, ok := <-txq:
					more = takeTx(t, ok) || more
				default:
					break txs
				}
			}
		secs:
			for secq != nil && len(b.secs) < maxBatch {
				select {
				case e, ok := <-secq:
					more = takeSec(e, ok) || more
				default:
					break secs
				}
			}
		msgs:
			for msgq != nil && len(b.msgs) < maxBatch {
				select {
				case m, ok := <-msgq:
					more = takeMsg(m, ok) || more
				default:
					break msgs
				}
			}
		cdrs:
			for cdrq != nil && len(reqs) < maxBatch {
				select {
				case r, ok := <-cdrq:
					more = takeCDR(r, ok) || more
				default:
					break cdrs
				}
			}
		}
		if len(b.txs) == 0 && len(b.secs) == 0 && len(b.msgs) == 0 && len(reqs) == 0 {
			continue
		}
		// A full batch, or any batch once the journal closes, is written
		// at once; else when it is due.
		accepting := txq != nil && secq != nil && cdrq != nil && msgq != nil
		if accepting && len(b.txs) < maxBatch && len(b.secs) < maxBatch && len(b.msgs) < maxBatch && len(reqs) < maxBatch {
			due := oldest.Add(txDelay)
			if len(reqs) >= groupCDRs {
				due = time.Time{}
			} else if len(reqs) > 0 {
				due = next
			}
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait)
				waiting = true
				continue
			}
		}
		if waiting {
			timer.Stop()
			waiting = false
		}
		for _, r := range reqs {
			cdrs = append(cdrs, r.c)
		}
		b.cdrs = cdrs
		start := time.Now()
		j.flush(&b, reqs, &fails)
		if len(reqs) > 1 || len(j.cdr) > 0 {
			next = start.Add(commitGap)
		}
		for i, t := range b.txs {
			*t = core.Transaction{}
			j.pool.Put(t)
			b.txs[i] = nil
		}
		b.txs = b.txs[:0]
		for i, e := range b.secs {
			*e = core.SecurityEvent{}
			j.secPool.Put(e)
			b.secs[i] = nil
		}
		b.secs = b.secs[:0]
		clear(b.msgs)
		b.msgs = b.msgs[:0]
		clear(reqs)
		reqs = reqs[:0]
		clear(cdrs)
		cdrs = cdrs[:0]
		b.cdrs = nil
	}
}

// failLimiters log the sinks' failures, one per kind of record.
type failLimiters struct{ tx, sec, cdr *limiter }

// flush writes one batch to every sink and releases the CDR callers once
// the durable sinks are done.
func (j *Journal) flush(b *batch, reqs []cdrRequest, fails *failLimiters) {
	var errs []error
	for _, s := range j.durable {
		txErr, secErr, cdrErr := s.write(b)
		if txErr != nil {
			fails.tx.failed(s.name(), len(b.txs), txErr)
		}
		if secErr != nil {
			fails.sec.failed(s.name(), len(b.secs), secErr)
		}
		if cdrErr != nil {
			errs = append(errs, fmt.Errorf("journal: write %d cdrs to %s: %w", len(b.cdrs), s.name(), cdrErr))
		}
	}
	err := errors.Join(errs...)
	for _, r := range reqs {
		r.done <- err
	}
	for _, s := range j.others {
		txErr, secErr, cdrErr := s.write(b)
		if txErr != nil {
			fails.tx.failed(s.name(), len(b.txs), txErr)
		}
		if secErr != nil {
			fails.sec.failed(s.name(), len(b.secs), secErr)
		}
		if cdrErr != nil {
			fails.cdr.failed(s.name(), len(b.cdrs), cdrErr)
		}
	}
}

// dropCounter counts the security events Alert dropped and logs the count
// at most once a minute, so that a flood that outruns the journal does not
// also flood the log. Its methods may be called concurrently.
type dropCounter struct {
	log      *slog.Logger
	total    atomic.Uint64
	reported atomic.Uint64 // of total, already logged
	last     atomic.Int64  // Unix nanoseconds of the last line
	what     string        // what is dropped; "" means security events
}

// dropReport is the least time between two lines of a dropCounter.
const dropReport = time.Minute

func (d *dropCounter) add(now time.Time) {
	total := d.total.Add(1)
	last := d.last.Load()
	if now.UnixNano()-last < int64(dropReport) || !d.last.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	d.report(total)
}

// flush logs what was dropped since the last line, if anything.
func (d *dropCounter) flush() { d.report(d.total.Load()) }

// report logs the drops up to total that no line has counted yet.
func (d *dropCounter) report(total uint64) {
	for {
		prev := d.reported.Load()
		if total <= prev {
			return // another line counted them
		}
		if d.reported.CompareAndSwap(prev, total) {
			if d.log != nil {
				what := d.what
				if what == "" {
					what = "security events"
				}
				d.log.Warn("journal queue full or closed: "+what+" dropped", "records", total-prev, "total", total)
			}
			return
		}
	}
}

// limiter logs a sink's failures at most once per interval, with the
// number of records affected since the last line, so that a full disk does
// not also flood the log.
type limiter struct {
	log      *slog.Logger
	msg      string
	interval time.Duration
	last     time.Time
	records  int
}

func newLimiter(log *slog.Logger, msg string) *limiter {
	return &limiter{log: log, msg: msg, interval: 10 * time.Second}
}

func (l *limiter) failed(sink string, n int, err error) {
	l.records += n
	if now := time.Now(); now.Sub(l.last) >= l.interval {
		l.log.Error(l.msg, "sink", sink, "records", l.records, "err", err)
		l.last, l.records = now, 0
	}
}
