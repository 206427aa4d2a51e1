package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

// openSink opens a SQLite sink alone, without a journal around it.
func openSink(t *testing.T, path string) *sqliteSink {
	t.Helper()
	s, err := openSQLite(path, "normal", 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

// TestInsertBoundaries writes batches around the multi-row statement sizes
// (64, 16, 4 and 1 rows) and reads every row back.
func TestInsertBoundaries(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 15, 63, 64, 65, 85, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p := dbPath(t.TempDir())
			s := openSink(t, p)
			var txs []*core.Transaction
			var secs []*core.SecurityEvent
			var cdrs []*core.CDR
			for i := range n {
				txs = append(txs, sampleTx(i))
				secs = append(secs, sampleSec(i))
				c := sampleCDR(i)
				if i == 64 {
					c.Legs = nil // a CDR of a session that never had a leg
				}
				cdrs = append(cdrs, c)
			}
			// Every kind in one transaction, then each alone.
			for _, b := range []batch{{txs: txs, secs: secs, cdrs: cdrs}, {txs: txs}, {secs: secs}, {cdrs: cdrs}} {
				if txErr, secErr, cdrErr := s.write(&b); txErr != nil || secErr != nil || cdrErr != nil {
					t.Fatal(txErr, secErr, cdrErr)
				}
			}
			if err := s.close(); err != nil {
				t.Fatal(err)
			}

			gotTxs, err := QueryTransactions(context.Background(), p, TxFilter{Limit: 3 * n})
			if err != nil {
				t.Fatal(err)
			}
			if len(gotTxs) != 2*n {
				t.Fatalf("%d transactions, want %d", len(gotTxs), 2*n)
			}
			for i, got := range gotTxs { // newest first, each twice
				if want := txs[n-1-i/2]; !reflect.DeepEqual(&got, want) {
					t.Fatalf("transaction %d:\n got %+v\nwant %+v", i, got, *want)
				}
			}
			gotCDRs, err := QueryCDRs(context.Background(), p, CDRFilter{Limit: 3 * n})
			if err != nil {
				t.Fatal(err)
			}
			if len(gotCDRs) != 2*n {
				t.Fatalf("%d cdrs, want %d", len(gotCDRs), 2*n)
			}
			for i, got := range gotCDRs {
				if want := cdrs[n-1-i/2]; !reflect.DeepEqual(&got, want) {
					t.Fatalf("cdr %d:\n got %+v\nwant %+v", i, got, *want)
				}
			}
			gotSecs, err := QuerySecurity(context.Background(), p, SecFilter{Limit: 3 * n})
			if err != nil {
				t.Fatal(err)
			}
			if len(gotSecs) != 2*n {
				t.Fatalf("%d security events, want %d", len(gotSecs), 2*n)
			}
			for i, got := range gotSecs {
				if want := secs[n-1-i/2]; !reflect.DeepEqual(&got, want) {
					t.Fatalf("security event %d:\n got %+v\nwant %+v", i, got, *want)
				}
			}
		})
	}
}

// TestWriteFailureIsolation: when one kind of record cannot be written,
// the others still are.
func TestWriteFailureIsolation(t *testing.T) {
	for _, table := range []string{"transactions", "security", "cdrs"} {
		t.Run(table, func(t *testing.T) {
			p := dbPath(t.TempDir())
			s := openSink(t, p)
			if _, err := s.conn.ExecContext(context.Background(), "CREATE TRIGGER refuse BEFORE INSERT ON "+table+
				" BEGIN SELECT RAISE(ABORT, 'refused by test'); END"); err != nil {
				t.Fatal(err)
			}
			txErr, secErr, cdrErr := s.write(&batch{
				txs:  []*core.Transaction{sampleTx(1), sampleTx(2)},
				secs: []*core.SecurityEvent{sampleSec(1), sampleSec(2), sampleSec(3)},
				cdrs: []*core.CDR{sampleCDR(1)},
			})
			errs := map[string]error{"transactions": txErr, "security": secErr, "cdrs": cdrErr}
			want := map[string]int{"transactions": 2, "security": 3, "cdrs": 1}
			for k, err := range errs {
				if (err != nil) != (k == table) {
					t.Errorf("%s: err %v", k, err)
				}
			}
			want[table] = 0
			if err := s.close(); err != nil {
				t.Fatal(err)
			}
			txs, err := QueryTransactions(context.Background(), p, TxFilter{})
			if err != nil || len(txs) != want["transactions"] {
				t.Fatalf("%d transactions, err %v; want %d", len(txs), err, want["transactions"])
			}
			secs, err := QuerySecurity(context.Background(), p, SecFilter{})
			if err != nil || len(secs) != want["security"] {
				t.Fatalf("%d security events, err %v; want %d", len(secs), err, want["security"])
			}
			cdrs, err := QueryCDRs(context.Background(), p, CDRFilter{})
			if err != nil || len(cdrs) != want["cdrs"] {
				t.Fatalf("%d cdrs, err %v; want %d", len(cdrs), err, want["cdrs"])
			}
		})
	}
}

// errorLog records the messages of the Error records logged to it.
type errorLog struct {
	slog.Handler
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		l.mu.Lock()
		l.msgs = append(l.msgs, r.Message)
		l.mu.Unlock()
	}
	return nil
}

func (l *errorLog) Enabled(context.Context, slog.Level) bool { return true }

// TestCheckpointKeepsRows checkpoints and restarts the WAL as often as it
// can while many callers write and a reader queries: every row is there
// in the end, and the WAL did start over.
func TestCheckpointKeepsRows(t *testing.T) {
	dir := t.TempDir()
	errs := &errorLog{Handler: slog.DiscardHandler}
	j, err := Open(testConfig(), dir, slog.New(errs))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	s := j.durable[0].(*sqliteSink)
	// Before any record: the checkpointer reads these after its first wake.
	s.ckpt.every, s.ckpt.restart = 0, 1

	const callers, calls = 16, 100
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := QueryTransactions(context.Background(), dbPath(dir), TxFilter{Limit: 10}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range calls {
				k := c*calls + i
				j.Transaction(sampleTx(2 * k))
				j.Transaction(sampleTx(2*k + 1))
				if err := j.CDR(context.Background(), sampleCDR(k)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	if s.ckpt.passive.Load() == 0 || s.ckpt.restarts.Load() == 0 {
		t.Errorf("%d passive checkpoints, %d restarts: the test checkpointed nothing", s.ckpt.passive.Load(), s.ckpt.restarts.Load())
	}
	if len(errs.msgs) > 0 {
		t.Errorf("errors logged: %q", errs.msgs)
	}
	txs, err := QueryTransactions(context.Background(), dbPath(dir), TxFilter{Limit: 1 << 20})
	if err != nil || len(txs) != 2*callers*calls {
		t.Fatalf("%d transactions, err %v; want %d", len(txs), err, 2*callers*calls)
	}
	cdrs, err := QueryCDRs(context.Background(), dbPath(dir), CDRFilter{Limit: 1 << 20})
	if err != nil || len(cdrs) != callers*calls {
		t.Fatalf("%d cdrs, err %v; want %d", len(cdrs), err, callers*calls)
	}
}

// TestTransactionAlone: a transaction that no CDR follows is written all
// the same, after txDelay.
func TestTransactionAlone(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	j.Transaction(sampleTx(1))
	waitFor(t, func() bool {
		txs, err := QueryTransactions(context.Background(), dbPath(dir), TxFilter{})
		return err == nil && len(txs) == 1
	})
}

// schemaV1 is the schema ucgate wrote as version 1, for the upgrade test.
const schemaV1 = `
CREATE TABLE transactions (
	id INTEGER PRIMARY KEY, time TEXT NOT NULL, protocol TEXT NOT NULL, zone TEXT NOT NULL,
	src TEXT NOT NULL, dst TEXT NOT NULL, transport TEXT NOT NULL, encrypted INTEGER NOT NULL,
	method TEXT NOT NULL, from_party TEXT NOT NULL, to_party TEXT NOT NULL, call_id TEXT NOT NULL,
	peer_call_id TEXT NOT NULL, session TEXT NOT NULL, status INTEGER NOT NULL, action TEXT NOT NULL,
	rule TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, elapsed_ms REAL NOT NULL
);
CREATE INDEX transactions_time ON transactions(time);
CREATE INDEX transactions_session ON transactions(session);
CREATE INDEX transactions_call_id ON transactions(call_id);
CREATE INDEX transactions_peer_call_id ON transactions(peer_call_id);
CREATE TABLE cdrs (
	id INTEGER PRIMARY KEY, session TEXT NOT NULL, kind TEXT NOT NULL, from_party TEXT NOT NULL,
	to_party TEXT NOT NULL, start_time TEXT NOT NULL, answer_time TEXT, end_time TEXT NOT NULL,
	duration_ms REAL NOT NULL, status INTEGER NOT NULL, end_reason TEXT NOT NULL, ended_by TEXT NOT NULL,
	caller_transport TEXT NOT NULL, caller_encrypted INTEGER NOT NULL, caller_media_encrypted INTEGER NOT NULL,
	caller_call_id TEXT NOT NULL, callee_transport TEXT NOT NULL, callee_encrypted INTEGER NOT NULL,
	callee_media_encrypted INTEGER NOT NULL, callee_call_id TEXT NOT NULL, legs TEXT NOT NULL
);
CREATE INDEX cdrs_start_time ON cdrs(start_time);
CREATE INDEX cdrs_end_time ON cdrs(end_time);
CREATE INDEX cdrs_session ON cdrs(session);
CREATE INDEX cdrs_caller_call_id ON cdrs(caller_call_id);
CREATE INDEX cdrs_callee_call_id ON cdrs(callee_call_id);
INSERT INTO transactions VALUES (1, '2025-03-14T15:09:26.535897932Z', 'sip', 'internet', '192.0.2.7:5060',
	'198.51.100.1:5061', 'udp', 0, 'INVITE', 'alice@example.com', 'bob@example.com', 'a-1@192.0.2.7',
	'b-1', 's1', 200, 'allow', '', '', '', 20.5);
INSERT INTO cdrs VALUES (1, 's1', 'call', 'alice@example.com', 'bob@example.com',
	'2025-03-14T15:09:26.535897932Z', NULL, '2025-03-14T15:09:30.535897932Z', 0, 487, 'cancel', 'caller',
	'udp', 0, 0, 'a-1@192.0.2.7', 'udp', 0, 0, 'b-1', '[]');
PRAGMA user_version = 1;
`

// schemaV2 is the schema ucgate wrote as version 2, for the upgrade test,
// with the same rows as schemaV1.
const schemaV2 = `
CREATE TABLE transactions (
	id INTEGER PRIMARY KEY, time TEXT NOT NULL, protocol TEXT NOT NULL, zone TEXT NOT NULL,
	src TEXT NOT NULL, dst TEXT NOT NULL, transport TEXT NOT NULL, encrypted INTEGER NOT NULL,
	method TEXT NOT NULL, from_party TEXT NOT NULL, to_party TEXT NOT NULL, call_id TEXT NOT NULL,
	peer_call_id TEXT NOT NULL, session TEXT NOT NULL, status INTEGER NOT NULL, action TEXT NOT NULL,
	rule TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, elapsed_ms REAL NOT NULL
);
CREATE INDEX transactions_time ON transactions(time);
CREATE INDEX transactions_call_id ON transactions(call_id) WHERE call_id <> '';
CREATE INDEX transactions_peer_call_id ON transactions(peer_call_id) WHERE peer_call_id <> '';
CREATE TABLE cdrs (
	id INTEGER PRIMARY KEY, session TEXT NOT NULL, kind TEXT NOT NULL, from_party TEXT NOT NULL,
	to_party TEXT NOT NULL, start_time TEXT NOT NULL, answer_time TEXT, end_time TEXT NOT NULL,
	duration_ms REAL NOT NULL, status INTEGER NOT NULL, end_reason TEXT NOT NULL, ended_by TEXT NOT NULL,
	caller_transport TEXT NOT NULL, caller_encrypted INTEGER NOT NULL, caller_media_encrypted INTEGER NOT NULL,
	caller_call_id TEXT NOT NULL, callee_transport TEXT NOT NULL, callee_encrypted INTEGER NOT NULL,
	callee_media_encrypted INTEGER NOT NULL, callee_call_id TEXT NOT NULL, legs TEXT NOT NULL
);
CREATE INDEX cdrs_start_time ON cdrs(start_time);
CREATE INDEX cdrs_session ON cdrs(session);
INSERT INTO transactions VALUES (1, '2025-03-14T15:09:26.535897932Z', 'sip', 'internet', '192.0.2.7:5060',
	'198.51.100.1:5061', 'udp', 0, 'INVITE', 'alice@example.com', 'bob@example.com', 'a-1@192.0.2.7',
	'b-1', 's1', 200, 'allow', '', '', '', 20.5);
INSERT INTO cdrs VALUES (1, 's1', 'call', 'alice@example.com', 'bob@example.com',
	'2025-03-14T15:09:26.535897932Z', NULL, '2025-03-14T15:09:30.535897932Z', 0, 487, 'cancel', 'caller',
	'udp', 0, 0, 'a-1@192.0.2.7', 'udp', 0, 0, 'b-1', '[]');
PRAGMA user_version = 2;
`

// TestUpgrade opens databases of the earlier versions: their rows stay,
// their indexes become this version's, security events can be written.
func TestUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name, schema string
	}{{"from 1", schemaV1}, {"from 2", schemaV2}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db, err := openSQL(dbPath(dir), "_pragma=journal_mode(WAL)")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(tc.schema); err != nil {
				t.Fatal(err)
			}
			db.Close()

			j := open(t, testConfig(), dir)
			s := j.durable[0].(*sqliteSink)
			var version int
			if err := s.conn.QueryRowContext(context.Background(), "PRAGMA user_version").Scan(&version); err != nil || version != schemaVersion {
				t.Fatalf("user_version %d, err %v; want %d", version, err, schemaVersion)
			}
			rows, err := s.conn.QueryContext(context.Background(),
				"SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
			if err != nil {
				t.Fatal(err)
			}
			var indexes []string
			for rows.Next() {
				var ix string
				if err := rows.Scan(&ix); err != nil {
					t.Fatal(err)
				}
				indexes = append(indexes, ix)
			}
			rows.Close()
			want := []string{
				"CREATE INDEX cdrs_end_time ON cdrs(end_time)",
				"CREATE INDEX cdrs_session ON cdrs(session)",
				"CREATE INDEX cdrs_start_time ON cdrs(start_time)",
				"CREATE INDEX messages_time ON messages(time)",
				"CREATE INDEX security_src ON security(src)",
				"CREATE INDEX security_time ON security(time)",
				"CREATE INDEX transactions_call_id ON transactions(call_id) WHERE call_id <> ''",
				"CREATE INDEX transactions_peer_call_id ON transactions(peer_call_id) WHERE peer_call_id <> ''",
				"CREATE INDEX transactions_time ON transactions(time)",
			}
			if !slices.Equal(indexes, want) {
				t.Errorf("indexes\n%q\nwant\n%q", indexes, want)
			}
			j.Transaction(sampleTx(5))
			j.Alert(sampleSec(5))
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"a-1@192.0.2.7", "b-1"} {
				txs, err := QueryTransactions(context.Background(), dbPath(dir), TxFilter{CallID: id})
				if err != nil || len(txs) != 1 || txs[0].Session != "s1" {
					t.Errorf("call id %s: %+v, %v", id, txs, err)
				}
			}
			if txs, err := QueryTransactions(context.Background(), dbPath(dir), TxFilter{}); err != nil || len(txs) != 2 {
				t.Errorf("%d transactions, %v; want 2", len(txs), err)
			}
			if cdrs, err := QueryCDRs(context.Background(), dbPath(dir), CDRFilter{Session: "s1"}); err != nil || len(cdrs) != 1 {
				t.Errorf("%d cdrs, %v; want 1", len(cdrs), err)
			}
			if secs, err := QuerySecurity(context.Background(), dbPath(dir), SecFilter{}); err != nil || len(secs) != 1 {
				t.Errorf("%d security events, %v; want 1", len(secs), err)
			}
		})
	}
}

// TestQueryPlans: the queries that must stay fast on a large journal use
// an index, whatever else they filter on.
func TestQueryPlans(t *testing.T) {
	dir := t.TempDir()
	j := open(t, testConfig(), dir)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := openSQL(dbPath(dir), "mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	since := t0.Add(-time.Hour)
	tests := []struct {
		name string
		q    sqlQuery
		want []string // in the plan, in this order
	}{
		{"newest transactions", q(txQuery(TxFilter{})), []string{"SCAN transactions USING INDEX transactions_time"}},
		{"transactions in a time range", q(txQuery(TxFilter{Since: since, Until: t0, Method: "INVITE"})),
			[]string{"SEARCH transactions USING INDEX transactions_time (time>? AND time<?)"}},
		{"transactions of a call id", q(txQuery(TxFilter{CallID: "a-1", Since: since})), []string{
			"SEARCH transactions USING INDEX transactions_call_id (call_id=?)",
			"SEARCH transactions USING INDEX transactions_peer_call_id (peer_call_id=?)",
		}},
		{"newest cdrs", q(cdrQuery(CDRFilter{Party: "alice"})), []string{"SCAN cdrs USING INDEX cdrs_start_time"}},
		{"cdrs in a time range", q(cdrQuery(CDRFilter{Since: since, Until: t0})),
			[]string{"SEARCH cdrs USING INDEX cdrs_start_time (start_time>? AND start_time<?)"}},
		{"cdr of a session", q(cdrQuery(CDRFilter{Session: "s1"})), []string{"SEARCH cdrs USING INDEX cdrs_session (session=?)"}},
		{"newest security events", q(secQuery(SecFilter{Rule: "scan/"})), []string{"SCAN security USING INDEX security_time"}},
		{"security events in a time range", q(secQuery(SecFilter{Since: since, Until: t0})),
			[]string{"SEARCH security USING INDEX security_time (time>? AND time<?)"}},
		{"security events of a source", q(secQuery(SecFilter{Src: "192.0.2.7", Since: since, Until: t0})), []string{
			"SEARCH security USING INDEX security_src (src=?)",
			"SEARCH security USING INDEX security_src (src>? AND src<?)",
			"SEARCH security USING INDEX security_src (src>? AND src<?)",
		}},
	}
	// The pruner reads the oldest rows off a time index, in its order: a
	// sort would read every old row for each chunk.
	for _, pt := range pruneTables {
		index := pt.table + "_" + pt.column
		tests = append(tests, struct {
			name string
			q    sqlQuery
			want []string
		}{"prune " + pt.table, q(pruneQuery(pt.table, pt.column), []any{formatTime(t0), 10}), []string{
			"SEARCH " + pt.table + " USING INTEGER PRIMARY KEY (rowid=?)",
			"SEARCH " + pt.table + " USING COVERING INDEX " + index + " (" + pt.column + "<?)",
		}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := explain(t, db, tt.q)
			if strings.HasPrefix(tt.name, "prune ") && strings.Contains(plan, "TEMP B-TREE") {
				t.Errorf("plan\n%s\nsorts", plan)
			}
			rest := plan
			for _, step := range tt.want {
				i := strings.Index(rest, step)
				if i < 0 {
					t.Fatalf("plan\n%s\nlacks %q", plan, step)
				}
				rest = rest[i+len(step):]
			}
		})
	}
}

type sqlQuery struct {
	sql  string
	args []any
}

func q(sql string, args []any) sqlQuery { return sqlQuery{sql, args} }

func explain(t *testing.T, db *sql.DB, q sqlQuery) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+q.sql, q.args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(detail + "\n")
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	return plan.String()
}
