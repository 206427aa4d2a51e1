package journal

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/ucgate/ucgate/core"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrSchema is returned when a database was written by a newer ucgate.
var ErrSchema = errors.New("journal: database schema is newer than this ucgate")

// schemaVersion is stored in PRAGMA user_version.
const schemaVersion = 1

// Times are stored as fixed-width UTC text, so that they sort as text,
// read well in the sqlite3 shell and work with SQLite's date functions.
// Durations are REAL milliseconds.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

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
CREATE INDEX IF NOT EXISTS transactions_session ON transactions(session);
CREATE INDEX IF NOT EXISTS transactions_call_id ON transactions(call_id);
CREATE INDEX IF NOT EXISTS transactions_peer_call_id ON transactions(peer_call_id);

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
	legs                   TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS cdrs_start_time ON cdrs(start_time);
CREATE INDEX IF NOT EXISTS cdrs_end_time ON cdrs(end_time);
CREATE INDEX IF NOT EXISTS cdrs_session ON cdrs(session);
CREATE INDEX IF NOT EXISTS cdrs_caller_call_id ON cdrs(caller_call_id);
CREATE INDEX IF NOT EXISTS cdrs_callee_call_id ON cdrs(callee_call_id);
`

const insertTx = `INSERT INTO transactions (time, protocol, zone, src, dst, transport,
	encrypted, method, from_party, to_party, call_id, peer_call_id, session,
	status, action, rule, reason, detail, elapsed_ms)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

const insertCDR = `INSERT INTO cdrs (session, kind, from_party, to_party,
	start_time, answer_time, end_time, duration_ms, status, end_reason, ended_by,
	caller_transport, caller_encrypted, caller_media_encrypted, caller_call_id,
	callee_transport, callee_encrypted, callee_media_encrypted, callee_call_id, legs)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// sqliteSink writes both tables through one connection: SQLite has one
// writer at a time anyway, and one connection never meets SQLITE_BUSY from
// itself.
type sqliteSink struct {
	db     *sql.DB
	txIns  *sql.Stmt
	cdrIns *sql.Stmt
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

func openSQLite(path, synchronous string) (s *sqliteSink, err error) {
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
	d, err := dsn(path, "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous("+synchronous+")&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", d)
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s = &sqliteSink{db: db}
	defer func() {
		if err != nil {
			s.close()
			s = nil
		}
	}()
	var version int
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return s, fmt.Errorf("open journal %s: %w", path, err)
	}
	if version > schemaVersion {
		return s, fmt.Errorf("open journal %s: version %d: %w", path, version, ErrSchema)
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return s, fmt.Errorf("open journal %s: %w", path, err)
	}
	if mode != "wal" {
		return s, fmt.Errorf("open journal %s: journal mode is %q, not WAL", path, mode)
	}
	if _, err := db.Exec(schema + fmt.Sprintf("PRAGMA user_version = %d;", schemaVersion)); err != nil {
		return s, fmt.Errorf("create journal schema in %s: %w", path, err)
	}
	if s.txIns, err = db.Prepare(insertTx); err != nil {
		return s, fmt.Errorf("prepare journal insert: %w", err)
	}
	if s.cdrIns, err = db.Prepare(insertCDR); err != nil {
		return s, fmt.Errorf("prepare journal insert: %w", err)
	}
	return s, nil
}

func (s *sqliteSink) name() string { return "sqlite" }

func (s *sqliteSink) transactions(batch []*core.Transaction) error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	stmt := tx.Stmt(s.txIns)
	for _, t := range batch {
		if _, err := stmt.Exec(formatTime(t.Time), t.Protocol, t.Zone, t.Src, t.Dst, t.Transport,
			t.Encrypted, t.Method, t.From, t.To, t.CallID, t.PeerCall, string(t.Session),
			t.Status, t.Action, t.Rule, t.Reason, t.Detail, millis(t.Elapsed)); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

func (s *sqliteSink) cdrs(batch []*core.CDR) error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	stmt := tx.Stmt(s.cdrIns)
	for _, c := range batch {
		legs, err := json.Marshal(c.Legs)
		if err != nil {
			tx.Rollback()
			return err
		}
		var answer any
		if !c.Answer.IsZero() {
			answer = formatTime(c.Answer)
		}
		caller, callee := legsOf(c)
		if _, err := stmt.Exec(string(c.Session), c.Kind, c.From, c.To,
			formatTime(c.Start), answer, formatTime(c.End), millis(c.Duration), c.Status, c.EndReason, c.EndedBy,
			caller.Transport, caller.Encrypted, caller.MediaEncrypted, caller.CallID,
			callee.Transport, callee.Encrypted, callee.MediaEncrypted, callee.CallID, string(legs)); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

func (s *sqliteSink) close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.txIns, s.cdrIns} {
		if st != nil {
			errs = append(errs, st.Close())
		}
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
