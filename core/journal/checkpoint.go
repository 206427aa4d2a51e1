package journal

import (
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Checkpointing. The SQLite writer appends every page it changes to the
// WAL; a checkpoint copies the newest version of each page back into the
// database file and syncs it, and a restarted WAL is written again from
// its start. SQLite's automatic checkpoint does that inline in the commit
// that crosses 1000 frames, in the writer, and under a steady load it ran
// several times a second. Here the writer's wal_autocheckpoint is off and
// a goroutine with a connection of its own checkpoints instead.
const (
	// checkpointEvery is the least time between two checkpoints. A page
	// changed many times in that span (the last page of a table or of the
	// time index) is copied once.
	checkpointEvery = 250 * time.Millisecond
	// restartFrames is the WAL size in frames (pages) from which the
	// checkpointer restarts the WAL after a passive checkpoint. A passive
	// checkpoint runs beside the writer, but the WAL only starts over when
	// a checkpoint has caught up with the last commit, which under a
	// steady load does not happen by itself, and the WAL file would grow
	// without end. A RESTART checkpoint holds the writer back (it takes the
	// sink's lock: SQLite's own locks would let a busy writer starve it)
	// while it copies what the passive one left, a few frames, and waits
	// for readers to leave the WAL; the next commit writes the WAL from its
	// start again.
	restartFrames = 4096
	// checkpointBusyMS is how long, in milliseconds, a RESTART checkpoint
	// waits for readers before it gives up until the next round; the
	// writer waits that long, and for the copying, at most.
	checkpointBusyMS = 100
)

// checkpointer checkpoints the journal database from its own connection.
// The writer wakes it after each commit; it checkpoints at most once per
// every, so that the WAL is back in the database file within about every
// of the last commit.
type checkpointer struct {
	db      *sql.DB
	writer  *sync.Mutex // held by the writer for each transaction
	log     *slog.Logger
	every   time.Duration // set before the first wake
	restart int           // set before the first wake

	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	passive  atomic.Uint64 // passive checkpoints done
	restarts atomic.Uint64 // WAL restarts done
	lastLog  time.Time     // of a failure
}

func startCheckpointer(path, synchronous string, writer *sync.Mutex, log *slog.Logger) (*checkpointer, error) {
	db, err := openSQL(path, fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=synchronous(%s)", checkpointBusyMS, synchronous))
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	c := &checkpointer{
		db: db, writer: writer, log: log, every: checkpointEvery, restart: restartFrames,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go c.run()
	return c, nil
}

// wake tells the checkpointer that the WAL has grown. It never blocks.
func (c *checkpointer) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	var pace *time.Timer
	for {
		select {
		case <-c.kick:
		case <-c.stop:
			return
		}
		if c.every > 0 {
			if pace == nil {
				pace = time.NewTimer(c.every)
			} else {
				pace.Reset(c.every)
			}
			select {
			case <-pace.C:
			case <-c.stop:
				return
			}
		}
		if err := c.checkpoint(); err != nil && time.Since(c.lastLog) >= 10*time.Second {
			c.log.Error("journal checkpoint failed: the WAL grows until one succeeds", "sink", "sqlite", "err", err)
			c.lastLog = time.Now()
		}
	}
}

// checkpoint runs a passive checkpoint and, if the WAL has grown past
// restart frames, a RESTART one.
func (c *checkpointer) checkpoint() error {
	busy, frames, err := c.walCheckpoint("PASSIVE")
	if err != nil {
		return err
	}
	c.passive.Add(1)
	if busy || frames < c.restart {
		return nil
	}
	c.writer.Lock()
	busy, _, err = c.walCheckpoint("RESTART")
	c.writer.Unlock()
	if err == nil && !busy {
		c.restarts.Add(1)
	}
	return err
}

// walCheckpoint runs PRAGMA wal_checkpoint(mode). busy reports that it
// could not finish (the writer or a reader was in the way); frames is the
// size of the WAL.
func (c *checkpointer) walCheckpoint(mode string) (busy bool, frames int, err error) {
	var b, moved int
	if err := c.db.QueryRow("PRAGMA wal_checkpoint("+mode+")").Scan(&b, &frames, &moved); err != nil {
		return false, 0, fmt.Errorf("checkpoint %s: %w", mode, err)
	}
	return b != 0, frames, nil
}

// close stops the checkpointer and closes its connection.
func (c *checkpointer) close() error {
	close(c.stop)
	<-c.done
	return c.db.Close()
}
