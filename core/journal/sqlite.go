package journal

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ucgate/ucgate/core"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrSchema is returned when a database was written by a newer ucgate.
var ErrSchema = errors.New("journal: database schema is newer than this ucgate")

// schemaVersion is stored in PRAGMA user_version.
const schemaVersion = 5

// Times are stored as fixed-width UTC text, so that they sort as text,
// read well in the sqlite3 shell and work with SQLite's date functions.
// Durations are REAL milliseconds.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// The indexes are the ones the queries and the pruner use, no more: each
// costs every insert a page written to the WAL and again to the database,
// and one on a random key (a call id, a session, a source) also a page read
// once the table outgrows the page cache. The call id indexes leave out rows
// without one (refused out-of-dialog requests have no peer call id,
// unparsable messages no call id at all). The pruner deletes by the time
// indexes, which grow at their end: cdrs_end_time costs a commit one page,
// the index's last, whatever the number of CDRs it carries.
const schema = `
CREATE TABLE IF NOT EXISTS transactions (
	id           INTEGER PRIMARY KEY,
	time         TEXT    NOT NULL,
	protocol     TEXT    NOT NULL,
	zone         TEXT    NOT NULL,
	src          TEXT    NOT NULL,
	dst          TEXT    NOT NULL,
	transport    TEXT    NOT NULL,
	encrypted    INTEGER NOT NULL,
	method       TEXT    NOT NULL,
	from_party   TEXT    NOT NULL,
	to_party     TEXT    NOT NULL,
	call_id      TEXT    NOT NULL,
	peer_call_id TEXT    NOT NULL,
	session      TEXT    NOT NULL,
	status       INTEGER NOT NULL,
	action       TEXT    NOT NULL,
	rule         TEXT    NOT NULL,
	reason       TEXT    NOT NULL,
	detail       TEXT    NOT NULL,
	elapsed_ms   REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_time ON transactions(time);
CREATE INDEX IF NOT EXISTS transactions_call_id ON transactions(call_id) WHERE call_id <> '';
CREATE INDEX IF NOT EXISTS transactions_peer_call_id ON transactions(peer_call_id) WHERE peer_call_id <> '';

CREATE TABLE IF NOT EXISTS cdrs (
	id                     INTEGER PRIMARY KEY,
	session                TEXT    NOT NULL,
	kind                   TEXT    NOT NULL,
	from_party             TEXT    NOT NULL,
	to_party               TEXT    NOT NULL,
	start_time             TEXT    NOT NULL,
	answer_time            TEXT,
	end_time               TEXT    NOT NULL,
	duration_ms            REAL    NOT NULL,
	status                 INTEGER NOT NULL,
	end_reason             TEXT    NOT NULL,
	ended_by               TEXT    NOT NULL,
	caller_transport       TEXT    NOT NULL,
	caller_encrypted       INTEGER NOT NULL,
	caller_media_encrypted INTEGER NOT NULL,
	caller_call_id         TEXT    NOT NULL,
	callee_transport       TEXT    NOT NULL,
	callee_encrypted       INTEGER NOT NULL,
	callee_media_encrypted INTEGER NOT NULL,
	callee_call_id         TEXT    NOT NULL,
	legs                   TEXT    NOT NULL,
	media                  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS cdrs_start_time ON cdrs(start_time);
CREATE INDEX IF NOT EXISTS cdrs_end_time ON cdrs(end_time);
CREATE INDEX IF NOT EXISTS cdrs_session ON cdrs(session);

CREATE TABLE IF NOT EXISTS security (
	id       INTEGER PRIMARY KEY,
	time     TEXT NOT NULL,
	rule     TEXT NOT NULL,
	action   TEXT NOT NULL,
	src      TEXT NOT NULL,
	zone     TEXT NOT NULL,
	user     TEXT NOT NULL,
	session  TEXT NOT NULL,
	protocol TEXT NOT NULL,
	detail   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS security_time ON security(time);
CREATE INDEX IF NOT EXISTS security_src ON security(src);

CREATE TABLE IF NOT EXISTS messages (
	id         INTEGER PRIMARY KEY,
	time       TEXT    NOT NULL,
	protocol   TEXT    NOT NULL,
	src        TEXT    NOT NULL,
	encrypted  INTEGER NOT NULL,
	from_party TEXT    NOT NULL,
	to_party   TEXT    NOT NULL,
	message_id TEXT    NOT NULL,
	type       TEXT    NOT NULL,
	size       INTEGER NOT NULL,
	body       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_time ON messages(time);
`

// Upgrades. schema creates what a database lacks, so that an upgrade need
// only drop what an older version had and this one does not want; each
// runs in the transaction that runs schema after it.
//
// Version 4 to 5 has nothing to drop either: schema adds the messages
// table (captured instant messages) with its time index.
//
// Version 2 to 3 has nothing to drop: schema adds the security table with
// its indexes, and cdrs_end_time, which version 2 had dropped and the
// pruner needs. Building that index reads the whole cdrs table (about
// 1 KB per CDR) once, at the first start of this version, before the
// journal opens: a quarter of a second for 300 000 CDRs in the page cache,
// as long as reading the table takes from a cold disk.
//
// upgradeFrom1 drops the indexes of version 1 that no query uses (the
// session of transactions, the call ids of CDRs) and the call id indexes
// of transactions, which schema creates again as partial indexes. Its
// cdrs_end_time is the one version 3 wants.
// upgradeMedia adds the media figures of a call (version 4) to the CDRs of
// an older database; their media column stays empty.
const upgradeMedia = `
ALTER TABLE cdrs ADD COLUMN media TEXT NOT NULL DEFAULT '';
`

const upgradeFrom1 = `
DROP INDEX IF EXISTS transactions_session;
DROP INDEX IF EXISTS transactions_call_id;
DROP INDEX IF EXISTS transactions_peer_call_id;
DROP INDEX IF EXISTS cdrs_caller_call_id;
DROP INDEX IF EXISTS cdrs_callee_call_id;
`

// The columns the sink writes, in the order of txArgs, secArgs and cdrArgs.
const (
	txColumns = `time, protocol, zone, src, dst, transport, encrypted, method,
	from_party, to_party, call_id, peer_call_id, session, status, action, rule,
	reason, detail, elapsed_ms`
	secColumns = `time, rule, action, src, zone, user, session, protocol, detail`
	msgColumns = `time, protocol, src, encrypted, from_party, to_party, message_id, type, size, body`
	cdrColumns = `session, kind, from_party, to_party, start_time, answer_time,
	end_time, duration_ms, status, end_reason, ended_by, caller_transport,
	caller_encrypted, caller_media_encrypted, caller_call_id, callee_transport,
	callee_encrypted, callee_media_encrypted, callee_call_id, legs, media`
)

// maxRows is the most rows one INSERT statement carries. The sink prepares
// statements for maxRows, maxRows/4, ... 1 rows and writes a batch with as
// few of them as it can: a batch of 130 takes two statements of 64 and two
// of 1. 64 rows of 20 columns stay well below SQLite's limit of 32766
// parameters. The statements are INSERT OR ROLLBACK: a failing row ends the
// whole transaction, which the sink rolls back anyway, and so SQLite need
// not keep a statement journal to undo a multi-row statement on its own
// (that journal cost a tenth of the writer's time).
const maxRows = 64

// sqliteSink writes every table through one connection: SQLite has one
// writer at a time anyway, and one connection never meets SQLITE_BUSY from
// itself. The writer never checkpoints the WAL (wal_autocheckpoint is off
// on its connection); a checkpointer does, from a connection of its own.
// The pruner deletes old rows through the writer's connection, between
// the writer's transactions.
type sqliteSink struct {
	db   *sql.DB
	conn *sql.Conn  // the writer's connection, held from open to close
	mu   sync.Mutex // held for each transaction; the checkpointer takes it to restart the WAL, the pruner for each chunk

	begin, commit, rollback *sql.Stmt
	txIns, secIns, cdrIns   inserter
	msgIns                  inserter

	legs   bytes.Buffer  // a CDR's legs as JSON
	enc    *json.Encoder // writes to legs
	ckpt   *checkpointer // nil until open has started it
	prune  *pruner       // nil when the retention is 0
	closed bool
}

// inserter writes rows to one table with multi-row INSERT statements.
type inserter struct {
	stmts []*sql.Stmt // stmts[i] inserts rows[i] rows
	rows  []int
	args  []any // reused: one statement's arguments
}

// dsn renders path as an SQLite URI with the given query parameters.
func dsn(path string, params string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	return u.String() + "?" + params, nil
}

// openSQL opens path with the given parameters as a pool of one
// connection, kept open.
func openSQL(path, params string) (*sql.DB, error) {
	d, err := dsn(path, params)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", d)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// openSQLite opens the database at path, creating or upgrading its schema,
// and starts its checkpointer and, if retention is above 0, its pruner.
func openSQLite(path, synchronous string, retention time.Duration, log *slog.Logger) (s *sqliteSink, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	// The records name people and addresses: create the file (and so its
	// -wal and -shm, which SQLite gives the same mode) readable by the
	// group at most.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	f.Close()
	db, err := openSQL(path, "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous("+synchronous+
		")&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	s = &sqliteSink{db: db}
	s.enc = json.NewEncoder(&s.legs)
	defer func() {
		if err != nil {
			s.close()
			s = nil
		}
	}()
	ctx := context.Background()
	if s.conn, err = db.Conn(ctx); err != nil {
		return s, fmt.Errorf("open journal %s: %w", path, err)
	}
	var version int
	if err := s.conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return s, fmt.Errorf("open journal %s: %w", path, err)
	}
	if version > schemaVersion {
		return s, fmt.Errorf("open journal %s: version %d: %w", path, version, ErrSchema)
	}
	var mode string
	if err := s.conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return s, fmt.Errorf("open journal %s: %w", path, err)
	}
	if mode != "wal" {
		return s, fmt.Errorf("open journal %s: journal mode is %q, not WAL", path, mode)
	}
	script := "BEGIN IMMEDIATE;"
	if version == 1 {
		script += upgradeFrom1
	}
	if version >= 1 && version < 4 {
		script += upgradeMedia
	}
	script += schema + fmt.Sprintf("PRAGMA user_version = %d; COMMIT;", schemaVersion)
	if _, err := s.conn.ExecContext(ctx, script); err != nil {
		return s, fmt.Errorf("create journal schema in %s: %w", path, err)
	}
	for _, p := range []struct {
		st *(*sql.Stmt)
		q  string
	}{{&s.begin, "BEGIN IMMEDIATE"}, {&s.commit, "COMMIT"}, {&s.rollback, "ROLLBACK"}} {
		if *p.st, err = s.conn.PrepareContext(ctx, p.q); err != nil {
			return s, fmt.Errorf("prepare journal statement %s: %w", p.q, err)
		}
	}
	if err := s.txIns.prepare(s.conn, "transactions", txColumns); err != nil {
		return s, err
	}
	if err := s.secIns.prepare(s.conn, "security", secColumns); err != nil {
		return s, err
	}
	if err := s.cdrIns.prepare(s.conn, "cdrs", cdrColumns); err != nil {
		return s, err
	}
	if err := s.msgIns.prepare(s.conn, "messages", msgColumns); err != nil {
		return s, err
	}
	if s.ckpt, err = startCheckpointer(path, synchronous, &s.mu, log); err != nil {
		return s, fmt.Errorf("open journal %s: %w", path, err)
	}
	if retention > 0 {
		if s.prune, err = newPruner(s, retention, log); err != nil {
			return s, fmt.Errorf("open journal %s: %w", path, err)
		}
		s.prune.start()
	}
	return s, nil
}

// prepare prepares the INSERT statements of table for maxRows rows, a
// quarter of that, and so on down to one row.
func (in *inserter) prepare(conn *sql.Conn, table, columns string) error {
	cols := strings.Count(columns, ",") + 1
	row := "(?" + strings.Repeat(", ?", cols-1) + ")"
	for n := maxRows; n >= 1; n /= 4 {
		q := "INSERT OR ROLLBACK INTO " + table + " (" + columns + ") VALUES " + row + strings.Repeat(", "+row, n-1)
		st, err := conn.PrepareContext(context.Background(), q)
		if err != nil {
			return fmt.Errorf("prepare journal insert into %s: %w", table, err)
		}
		in.stmts = append(in.stmts, st)
		in.rows = append(in.rows, n)
	}
	in.args = make([]any, 0, maxRows*cols)
	return nil
}

// insertRows inserts recs through in, appending each record's column
// values with add.
func insertRows[R any](in *inserter, recs []R, add func([]any, R) ([]any, error)) error {
	defer func() { clear(in.args[:cap(in.args)]) }() // keep no record alive
	for k, st := range in.stmts {
		for n := in.rows[k]; len(recs) >= n; recs = recs[n:] {
			args := in.args[:0]
			for _, r := range recs[:n] {
				var err error
				if args, err = add(args, r); err != nil {
					return err
				}
			}
			if _, err := st.Exec(args...); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *sqliteSink) name() string { return "sqlite" }

// write commits the batch in one SQLite transaction. If that fails and
// it holds more than one kind of record, each kind is tried again in a
// transaction of its own, so that a failure of one kind does not cost the
// others.
func (s *sqliteSink) write(b *batch) (txErr, secErr, cdrErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.ckpt.wake()
	err := s.commitBatch(b)
	if err == nil {
		return nil, nil, nil
	}
	kinds := 0
	for _, n := range []int{len(b.txs) + len(b.msgs), len(b.secs), len(b.cdrs)} {
		if n > 0 {
			kinds++
		}
	}
	if kinds > 1 {
		if len(b.txs) > 0 || len(b.msgs) > 0 {
			txErr = s.commitBatch(&batch{txs: b.txs, msgs: b.msgs})
		}
		if len(b.secs) > 0 {
			secErr = s.commitBatch(&batch{secs: b.secs})
		}
		if len(b.cdrs) > 0 {
			cdrErr = s.commitBatch(&batch{cdrs: b.cdrs})
		}
		return txErr, secErr, cdrErr
	}
	switch {
	case len(b.txs) > 0 || len(b.msgs) > 0:
		txErr = err
	case len(b.secs) > 0:
		secErr = err
	default:
		cdrErr = err
	}
	return txErr, secErr, cdrErr
}

func (s *sqliteSink) commitBatch(b *batch) error {
	if _, err := s.begin.Exec(); err != nil {
		return err
	}
	err := insertRows(&s.txIns, b.txs, txArgs)
	if err == nil {
		err = insertRows(&s.secIns, b.secs, secArgs)
	}
	if err == nil {
		err = insertRows(&s.cdrIns, b.cdrs, s.cdrArgs)
	}
	if err == nil {
		err = insertRows(&s.msgIns, b.msgs, msgArgs)
	}
	if err == nil {
		if _, err = s.commit.Exec(); err == nil {
			return nil
		}
	}
	// After some errors SQLite has rolled back already; then ROLLBACK
	// fails, and that is fine.
	s.rollback.Exec()
	return err
}

func txArgs(args []any, t *core.Transaction) ([]any, error) {
	return append(args, formatTime(t.Time), t.Protocol, t.Zone, t.Src, t.Dst, t.Transport,
		t.Encrypted, t.Method, t.From, t.To, t.CallID, t.PeerCall, string(t.Session),
		int64(t.Status), t.Action, t.Rule, t.Reason, t.Detail, millis(t.Elapsed)), nil
}

func secArgs(args []any, e *core.SecurityEvent) ([]any, error) {
	return append(args, formatTime(e.Time), e.Rule, e.Action, e.Src, e.Zone, e.User,
		string(e.Session), e.Protocol, e.Detail), nil
}

func msgArgs(args []any, m *core.CapturedMessage) ([]any, error) {
	return append(args, formatTime(m.Time), m.Protocol, m.Src, m.Encrypted, m.From, m.To, m.ID, m.Type,
		int64(m.Size), m.Body), nil
}

func (s *sqliteSink) cdrArgs(args []any, c *core.CDR) ([]any, error) {
	s.legs.Reset()
	if err := s.enc.Encode(c.Legs); err != nil {
		return args, err
	}
	legs := string(bytes.TrimSuffix(s.legs.Bytes(), []byte("\n")))
	media := ""
	if len(c.Media) > 0 {
		s.legs.Reset()
		if err := s.enc.Encode(c.Media); err != nil {
			return args, err
		}
		media = string(bytes.TrimSuffix(s.legs.Bytes(), []byte("\n")))
	}
	var answer any
	if !c.Answer.IsZero() {
		answer = formatTime(c.Answer)
	}
	caller, callee := legsOf(c)
	return append(args, string(c.Session), c.Kind, c.From, c.To,
		formatTime(c.Start), answer, formatTime(c.End), millis(c.Duration), int64(c.Status), c.EndReason, c.EndedBy,
		caller.Transport, caller.Encrypted, caller.MediaEncrypted, caller.CallID,
		callee.Transport, callee.Encrypted, callee.MediaEncrypted, callee.CallID, legs, media), nil
}

// close stops the pruner, then the checkpointer and closes its connection
// before the writer's: the last connection to close checkpoints what is
// left and removes the -wal and -shm files. Closing again does nothing.
func (s *sqliteSink) close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.prune != nil {
		errs = append(errs, s.prune.close())
	}
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.close())
	}
	for _, st := range slices.Concat([]*sql.Stmt{s.begin, s.commit, s.rollback}, s.txIns.stmts, s.secIns.stmts, s.cdrIns.stmts, s.msgIns.stmts) {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.conn != nil {
		errs = append(errs, s.conn.Close())
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}

// legsOf finds the caller's and the callee's legs: by role, or by position
// for a leg whose role was never set.
func legsOf(c *core.CDR) (caller, callee core.Leg) {
	var haveCaller, haveCallee bool
	for i, l := range c.Legs {
		switch {
		case l.Role == core.RoleCaller && !haveCaller, l.Role == "" && i == 0 && !haveCaller:
			caller, haveCaller = l, true
		case l.Role == core.RoleCallee && !haveCallee, l.Role == "" && i == 1 && !haveCallee:
			callee, haveCallee = l, true
		}
	}
	return caller, callee
}

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) { return time.Parse(timeLayout, s) }

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fromMillis(ms float64) time.Duration {
	return time.Duration(math.Round(ms * float64(time.Millisecond)))
}
