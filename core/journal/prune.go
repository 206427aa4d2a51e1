package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Retention. The pruner deletes the rows older than the retention from
// the writer's connection, one chunk per statement and per turn of the
// writer's lock, so that the writer waits for a chunk at most. A DELETE
// costs about what the INSERT of the row did (the pages of its random
// indexes are written again), so the chunk size adapts until one takes
// about pruneTarget, and after each chunk the pruner waits as long as it
// took: while it catches up it holds the writer back for half the time at
// most, and never for much longer than pruneTarget at once.
const (
	// pruneEvery is the time between two passes; the first runs at start.
	pruneEvery = 10 * time.Minute
	// pruneTarget is how long one chunk should hold the writer back.
	pruneTarget = 5 * time.Millisecond
	// Rows per chunk: the first, the fewest and the most.
	pruneFirstChunk = 256
	pruneMinChunk   = 16
	pruneMaxChunk   = 5000
)

// pruneTables are the tables the pruner deletes from and the column that
// dates their rows. Each column has an index, by which the pruner finds
// the oldest rows: a CDR is as old as the end of its session.
var pruneTables = [...]struct{ table, column string }{
	{"transactions", "time"},
	{"security", "time"},
	{"cdrs", "end_time"},
	{"messages", "time"},
}

// pruner deletes old rows from the journal database.
type pruner struct {
	s         *sqliteSink
	log       *slog.Logger
	retention time.Duration
	stmts     []*sql.Stmt // one per pruneTables entry, on the writer's connection

	// Tunables, fixed before start or the first pass.
	every    time.Duration
	now      func() time.Time
	target   time.Duration
	maxChunk int

	chunk int // rows per DELETE; owned by the pass

	stop    chan struct{}
	done    chan struct{} // nil until start
	passes  atomic.Uint64 // passes completed
	deleted atomic.Uint64 // rows deleted
}

// newPruner prepares the pruner's statements on s's connection. It does
// not start it.
func newPruner(s *sqliteSink, retention time.Duration, log *slog.Logger) (*pruner, error) {
	p := &pruner{
		s: s, log: log, retention: retention,
		every: pruneEvery, now: time.Now, target: pruneTarget, maxChunk: pruneMaxChunk,
		chunk: pruneFirstChunk, stop: make(chan struct{}),
	}
	for _, t := range pruneTables {
		st, err := s.conn.PrepareContext(context.Background(), pruneQuery(t.table, t.column))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("prepare journal prune of %s: %w", t.table, err), p.closeStmts())
		}
		p.stmts = append(p.stmts, st)
	}
	return p, nil
}

// pruneQuery deletes the oldest rows of table, by column, that are older
// than its first argument, at most as many as its second. The subquery
// reads the oldest rows off the column's index and stops at the limit,
// whatever the size of the table.
func pruneQuery(table, column string) string {
	return fmt.Sprintf("DELETE FROM %[1]s WHERE id IN (SELECT id FROM %[1]s WHERE %[2]s < ? ORDER BY %[2]s LIMIT ?)", table, column)
}

func (p *pruner) start() {
	p.done = make(chan struct{})
	go p.run()
}

func (p *pruner) run() {
	defer close(p.done)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-p.stop:
			return
		}
		if err := p.pass(); err != nil { // once per pass at most
			p.log.Error("journal prune failed: old records stay until a pass succeeds", "sink", "sqlite", "err", err)
		}
		t.Reset(p.every)
	}
}

// pass deletes, table by table, the rows older than the retention, until
// none is left or the pruner is stopped.
func (p *pruner) pass() error {
	cutoff := formatTime(p.now().Add(-p.retention))
	var total uint64
	for i, st := range p.stmts {
		for {
			select {
			case <-p.stop:
				return nil
			default:
			}
			n, full, took, err := p.deleteChunk(st, cutoff)
			total += uint64(n)
			if err != nil {
				return fmt.Errorf("prune journal table %s: %w", pruneTables[i].table, err)
			}
			if !full {
				break // no older rows left
			}
			if !p.pause(took) {
				return nil
			}
		}
	}
	p.passes.Add(1)
	if total > 0 {
		p.log.Debug("journal pruned", "sink", "sqlite", "records", total, "before", cutoff)
	}
	return nil
}

// deleteChunk deletes up to chunk rows older than cutoff through st,
// holding the writer's lock, and adapts the chunk size to the time it
// took. full reports that it deleted as many as it could: there may be
// more.
func (p *pruner) deleteChunk(st *sql.Stmt, cutoff string) (n int64, full bool, took time.Duration, err error) {
	limit := min(p.chunk, p.maxChunk)
	p.s.mu.Lock()
	start := time.Now()
	res, err := st.Exec(cutoff, limit)
	took = time.Since(start)
	p.s.mu.Unlock()
	if err != nil {
		return 0, false, took, err
	}
	p.s.ckpt.wake()
	if n, err = res.RowsAffected(); err != nil {
		return 0, false, took, err
	}
	p.deleted.Add(uint64(n))
	full = n == int64(limit)
	switch {
	case took > p.target:
		p.chunk = max(limit/2, pruneMinChunk)
	case took < p.target/2 && full:
		p.chunk = min(limit*2, p.maxChunk)
	}
	return n, full, took, nil
}

// pause waits for d, so that the writer has the lock at least as long as
// the pruner had it. It reports false if the pruner was stopped.
func (p *pruner) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.stop:
		return false
	}
}

// close stops the pruner, waiting for the chunk it is deleting, and closes
// its statements.
func (p *pruner) close() error {
	close(p.stop)
	if p.done != nil {
		<-p.done
	}
	return p.closeStmts()
}

func (p *pruner) closeStmts() error {
	var errs []error
	for _, st := range p.stmts {
		errs = append(errs, st.Close())
	}
	p.stmts = nil
	return errors.Join(errs...)
}
