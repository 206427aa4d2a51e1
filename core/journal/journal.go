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

// maxBatch is the most records one sink write carries.
const maxBatch = 512

// sink is one place records go. The journal calls it from its two writer
// goroutines, possibly at the same time, and never after close.
type sink interface {
	name() string
	// transactions writes a batch. It must not keep the pointers: the
	// records are reused once it returns.
	transactions(batch []*core.Transaction) error
	// cdrs writes a batch of CDRs; a durable sink returns once they would
	// survive a crash.
	cdrs(batch []*core.CDR) error
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
	wg     sync.WaitGroup
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
		s, err := openSQLite(inDir(dataDir, cfg.SQLite.Path), cfg.SQLite.Synchronous)
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
	j.wg.Go(j.writeTransactions)
	j.wg.Go(j.writeCDRs)
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
	j.wg.Wait()
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

// writeTransactions is the transaction writer: it takes what is queued, up
// to maxBatch records, and hands the batch to every sink.
func (j *Journal) writeTransactions() {
	batch := make([]*core.Transaction, 0, maxBatch)
	report := newLimiter(j.log, "journal sink failed: transactions lost")
	for first := range j.tx {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case t, ok := <-j.tx:
				if !ok {
					break fill
				}
				batch = append(batch, t)
			default:
				break fill
			}
		}
		for _, s := range slices.Concat(j.durable, j.others) {
			if err := s.transactions(batch); err != nil {
				report.failed(s.name(), len(batch), err)
			}
		}
		for i, t := range batch {
			*t = core.Transaction{}
			j.pool.Put(t)
			batch[i] = nil
		}
	}
}

// writeCDRs is the CDR writer. Every batch is one commit in each durable
// sink; the callers wait for it while the next batch queues up (group
// commit).
func (j *Journal) writeCDRs() {
	batch := make([]cdrRequest, 0, maxBatch)
	recs := make([]*core.CDR, 0, maxBatch)
	report := newLimiter(j.log, "journal sink failed: CDRs not sent")
	for first := range j.cdr {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-j.cdr:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		recs = recs[:0]
		for _, r := range batch {
			recs = append(recs, r.c)
		}
		var errs []error
		for _, s := range j.durable {
			if err := s.cdrs(recs); err != nil {
				errs = append(errs, fmt.Errorf("journal: write %d cdrs to %s: %w", len(recs), s.name(), err))
			}
		}
		err := errors.Join(errs...)
		for _, r := range batch {
			r.done <- err
		}
		for _, s := range j.others {
			if err := s.cdrs(recs); err != nil {
				report.failed(s.name(), len(recs), err)
			}
		}
		clear(recs)
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
