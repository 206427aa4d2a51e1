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
)

// sink is one place records go. The journal calls it from its one writer
// goroutine, and never after close.
type sink interface {
	name() string
	// write writes a batch of transactions and a batch of CDRs, either of
	// which may be empty, and reports the failure of each; a durable sink
	// returns once the CDRs would survive a crash. It must not keep the
	// pointers: the records are reused once it returns.
	write(txs []*core.Transaction, cdrs []*core.CDR) (txErr, cdrErr error)
	close() error
}

// Journal is the core.Journal of a running gateway. Create it with Open and
// release it with Close.
type Journal struct {
	log     *slog.Logger
	durable []sink // CDR callers wait for these
	others  []sink // best effort, written after the callers are released

	mu     sync.RWMutex // held for reading while sending, for writing to close the queues
	closed bool
	tx     chan *core.Transaction
	cdr    chan cdrRequest
	done   chan struct{} // closed when the writer has written everything
	pool   sync.Pool
	late   atomic.Uint64 // transactions refused after Close
}

type cdrRequest struct {
	c    *core.CDR
	done chan error // buffered: the writer never waits for a caller that gave up
}

var _ core.Journal = (*Journal)(nil)

// Open opens the sinks cfg enables (relative paths are taken from dataDir)
// and starts the writers. cfg must have passed Validate. A nil log discards.
func Open(cfg Config, dataDir string, log *slog.Logger) (*Journal, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	j := &Journal{log: log}
	fail := func(err error) (*Journal, error) {
		return nil, errors.Join(err, j.closeSinks())
	}
	if cfg.SQLite.Enabled {
		s, err := openSQLite(inDir(dataDir, cfg.SQLite.Path), cfg.SQLite.Synchronous, log)
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
	j.tx = make(chan *core.Transaction, cfg.Queue)
	j.cdr = make(chan cdrRequest, maxBatch)
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
		close(j.cdr)
	}
	j.mu.Unlock()
	if j.done != nil {
		<-j.done
	}
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
// transactions and a batch of CDRs at once, and SQLite commits them
// together, so that transactions ride along with a CDR group commit
// instead of paying for commits of their own.
//
// CDRs are written once the writer is free (under load, once groupCDRs of
// them wait or commitGap has passed), with what else is queued (up to
// maxBatch of each); their callers wait for the durable sinks while the
// next batch queues up (group commit). Transactions wait for CDRs, for up to txDelay
// or until maxBatch of them are queued. The other sinks are written after
// the callers are released.
func (j *Journal) write() {
	defer close(j.done)
	var (
		txs       = make([]*core.Transaction, 0, maxBatch)
		reqs      = make([]cdrRequest, 0, maxBatch)
		cdrs      = make([]*core.CDR, 0, maxBatch)
		txq, cdrq = j.tx, j.cdr // nil once closed and drained
		oldestTx  time.Time     // when the first transaction in txs arrived
		next      time.Time     // the earliest start of the next commit with CDRs
		timer     = time.NewTimer(time.Hour)
		waiting   bool // timer runs for a batch that is not due yet
		lost      = newLimiter(j.log, "journal sink failed: transactions lost")
		unsent    = newLimiter(j.log, "journal sink failed: CDRs not sent")
	)
	timer.Stop()
	takeTx := func(t *core.Transaction, ok bool) bool {
		if !ok {
			txq = nil
			return false
		}
		if len(txs) == 0 {
			oldestTx = time.Now()
		}
		txs = append(txs, t)
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
	for txq != nil || cdrq != nil || len(txs) > 0 {
		var due <-chan time.Time
		if waiting {
			due = timer.C
		}
		select {
		case t, ok := <-txq:
			takeTx(t, ok)
		case r, ok := <-cdrq:
			takeCDR(r, ok)
		case <-due:
			waiting = false
		}
		for more := true; more; { // take what else is queued
			more = false
		txs:
			for txq != nil && len(txs) < maxBatch {
				select {
				case t, ok := <-txq:
					more = takeTx(t, ok) || more
				default:
					break txs
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
		if len(txs) == 0 && len(reqs) == 0 {
			continue
		}
		// A full batch, or any batch once the journal closes, is written
		// at once; else when it is due.
		if txq != nil && cdrq != nil && len(txs) < maxBatch && len(reqs) < maxBatch {
			due := oldestTx.Add(txDelay)
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
		start := time.Now()
		j.flush(txs, reqs, cdrs, lost, unsent)
		if len(reqs) > 1 || len(j.cdr) > 0 {
			next = start.Add(commitGap)
		}
		for i, t := range txs {
			*t = core.Transaction{}
			j.pool.Put(t)
			txs[i] = nil
		}
		txs = txs[:0]
		clear(reqs)
		reqs = reqs[:0]
		clear(cdrs)
		cdrs = cdrs[:0]
	}
}

// flush writes one batch to every sink and releases the CDR callers once
// the durable sinks are done.
func (j *Journal) flush(txs []*core.Transaction, reqs []cdrRequest, cdrs []*core.CDR, lost, unsent *limiter) {
	var errs []error
	for _, s := range j.durable {
		txErr, cdrErr := s.write(txs, cdrs)
		if txErr != nil {
			lost.failed(s.name(), len(txs), txErr)
		}
		if cdrErr != nil {
			errs = append(errs, fmt.Errorf("journal: write %d cdrs to %s: %w", len(cdrs), s.name(), cdrErr))
		}
	}
	err := errors.Join(errs...)
	for _, r := range reqs {
		r.done <- err
	}
	for _, s := range j.others {
		txErr, cdrErr := s.write(txs, cdrs)
		if txErr != nil {
			lost.failed(s.name(), len(txs), txErr)
		}
		if cdrErr != nil {
			unsent.failed(s.name(), len(cdrs), cdrErr)
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
