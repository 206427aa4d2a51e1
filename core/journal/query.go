package journal

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/ucgate/ucgate/core"
)

// ErrNoDatabase is returned by the queries when the database file does not
// exist (the journal never ran with that path, or SQLite is disabled).
var ErrNoDatabase = errors.New("journal: no database")

// DefaultLimit is how many records a query returns when its filter sets no
// Limit.
const DefaultLimit = 100

// CDRFilter selects CDRs. The zero value selects the DefaultLimit newest.
type CDRFilter struct {
	Since time.Time // sessions started at or after Since
	Until time.Time // sessions started before Until
	// Party is a substring of the from or to party (ASCII case-insensitive).
	Party       string
	Session     string // exact session id
	EndReason   string // exact
	EndedBy     string // caller, callee or gateway
	MinDuration time.Duration
	Answered    *bool // only answered (true) or unanswered (false) sessions
	Limit       int   // most CDRs returned; 0 means DefaultLimit
}

// TxFilter selects transactions. The zero value selects the DefaultLimit
// newest.
type TxFilter struct {
	Since  time.Time // at or after
	Until  time.Time // before
	Method string    // exact, case-insensitive ("INVITE")
	// Src is a source address with its port ("192.0.2.7:5060") or without
	// ("192.0.2.7", "2001:db8::7"), which matches every port.
	Src    string
	Action string // allow, refuse, drop, challenge or tarpit
	Rule   string // exact
	CallID string // the call id of either leg
	Limit  int    // most transactions returned; 0 means DefaultLimit
}

// SecFilter selects security events. The zero value selects the
// DefaultLimit newest.
type SecFilter struct {
	Since time.Time // at or after
	Until time.Time // before
	// Rule is a prefix of the rule: "scan/" selects every event of the
	// scan stage, "bruteforce/source" that rule (and any that starts so).
	Rule string
	// Src is a source address with its port ("192.0.2.7:5060") or without
	// ("192.0.2.7", "2001:db8::7"), which matches every port, or any other
	// source as the event names it ("192.0.2.0/24"), matched exactly.
	Src   string
	Limit int // most events returned; 0 means DefaultLimit
}

// where collects the conditions of a query.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) since(col string, since, until time.Time) {
	if !since.IsZero() {
		w.add(col+" >= ?", formatTime(since))
	}
	if !until.IsZero() {
		w.add(col+" < ?", formatTime(until))
	}
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func limit(n int) int {
	if n <= 0 {
		return DefaultLimit
	}
	return n
}

// QueryCDRs returns the CDRs that match f, newest start first, from the
// journal database at dbPath, which it opens read-only: it is safe to run
// while the gateway writes.
func QueryCDRs(ctx context.Context, dbPath string, f CDRFilter) ([]core.CDR, error) {
	q, args := cdrQuery(f)
	var out []core.CDR
	err := query(ctx, dbPath, q, args, func(rows *sql.Rows) error {
		var (
			c                       core.CDR
			session                 string
			start, end, legs, media string
			answer                  sql.NullString
			duration                float64
		)
		if err := rows.Scan(&session, &c.Kind, &c.From, &c.To, &start, &answer, &end,
			&duration, &c.Status, &c.EndReason, &c.EndedBy, &legs, &media); err != nil {
			return err
		}
		c.Session = core.SessionID(session)
		c.Duration = fromMillis(duration)
		var err error
		if c.Start, err = parseTime(start); err != nil {
			return err
		}
		if c.End, err = parseTime(end); err != nil {
			return err
		}
		if answer.Valid {
			if c.Answer, err = parseTime(answer.String); err != nil {
				return err
			}
		}
		if err := json.Unmarshal([]byte(legs), &c.Legs); err != nil {
			return fmt.Errorf("legs of session %s: %w", session, err)
		}
		if media != "" {
			if err := json.Unmarshal([]byte(media), &c.Media); err != nil {
				return fmt.Errorf("media of session %s: %w", session, err)
			}
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// QueryTransactions returns the transactions that match f, newest first,
// from the journal database at dbPath, opened read-only.
func QueryTransactions(ctx context.Context, dbPath string, f TxFilter) ([]core.Transaction, error) {
	q, args := txQuery(f)
	var out []core.Transaction
	err := query(ctx, dbPath, q, args, func(rows *sql.Rows) error {
		var (
			t       core.Transaction
			tm, s   string
			elapsed float64
		)
		if err := rows.Scan(&tm, &t.Protocol, &t.Zone, &t.Src, &t.Dst, &t.Transport, &t.Encrypted,
			&t.Method, &t.From, &t.To, &t.CallID, &t.PeerCall, &s, &t.Status, &t.Action,
			&t.Rule, &t.Reason, &t.Detail, &elapsed); err != nil {
			return err
		}
		var err error
		if t.Time, err = parseTime(tm); err != nil {
			return err
		}
		t.Session = core.SessionID(s)
		t.Elapsed = fromMillis(elapsed)
		out = append(out, t)
		return nil
	})
	return out, err
}

// QuerySecurity returns the security events that match f, newest first,
// from the journal database at dbPath, opened read-only.
func QuerySecurity(ctx context.Context, dbPath string, f SecFilter) ([]core.SecurityEvent, error) {
	q, args := secQuery(f)
	var out []core.SecurityEvent
	err := query(ctx, dbPath, q, args, func(rows *sql.Rows) error {
		var (
			e     core.SecurityEvent
			tm, s string
		)
		if err := rows.Scan(&tm, &e.Rule, &e.Action, &e.Src, &e.Zone, &e.User, &s, &e.Protocol, &e.Detail); err != nil {
			return err
		}
		var err error
		if e.Time, err = parseTime(tm); err != nil {
			return err
		}
		e.Session = core.SessionID(s)
		out = append(out, e)
		return nil
	})
	return out, err
}

// cdrQuery is the SQL of QueryCDRs and its arguments.
func cdrQuery(f CDRFilter) (string, []any) {
	var w where
	w.since("start_time", f.Since, f.Until)
	if f.Party != "" {
		p := "%" + likeEscaper.Replace(f.Party) + "%"
		w.add(`(from_party LIKE ? ESCAPE '\' OR to_party LIKE ? ESCAPE '\')`, p, p)
	}
	if f.Session != "" {
		w.add("session = ?", f.Session)
	}
	if f.EndReason != "" {
		w.add("end_reason = ?", f.EndReason)
	}
	if f.EndedBy != "" {
		w.add("ended_by = ?", f.EndedBy)
	}
	if f.MinDuration > 0 {
		w.add("duration_ms >= ?", millis(f.MinDuration))
	}
	if f.Answered != nil {
		if *f.Answered {
			w.add("answer_time IS NOT NULL")
		} else {
			w.add("answer_time IS NULL")
		}
	}
	q := `SELECT session, kind, from_party, to_party, start_time, answer_time, end_time,
		duration_ms, status, end_reason, ended_by, legs, media FROM cdrs` + w.String() +
		" ORDER BY start_time DESC, id DESC LIMIT ?"
	return q, append(w.args, limit(f.Limit))
}

// txQuery is the SQL of QueryTransactions and its arguments.
func txQuery(f TxFilter) (string, []any) {
	var w where
	w.since("time", f.Since, f.Until)
	if f.Method != "" {
		w.add("method = ? COLLATE NOCASE", f.Method)
	}
	if f.Src != "" {
		e := likeEscaper.Replace(f.Src)
		w.add(`(src = ? OR src LIKE ? ESCAPE '\' OR src LIKE ? ESCAPE '\')`, f.Src, e+":%", "["+e+"]:%")
	}
	if f.Action != "" {
		w.add("action = ?", f.Action)
	}
	if f.Rule != "" {
		w.add("rule = ?", f.Rule)
	}
	if f.CallID != "" {
		// The call id indexes leave out empty ids: each branch says so,
		// or SQLite could not use them.
		w.add("((call_id = ? AND call_id <> '') OR (peer_call_id = ? AND peer_call_id <> ''))", f.CallID, f.CallID)
	}
	q := `SELECT time, protocol, zone, src, dst, transport, encrypted, method, from_party,
		to_party, call_id, peer_call_id, session, status, action, rule, reason, detail,
		elapsed_ms FROM transactions` + w.String() + " ORDER BY time DESC, id DESC LIMIT ?"
	return q, append(w.args, limit(f.Limit))
}

// secQuery is the SQL of QuerySecurity and its arguments.
func secQuery(f SecFilter) (string, []any) {
	var w where
	if f.Src != "" {
		// Few events share a source, many a time range: "+time" keeps
		// SQLite from reading them off security_time instead.
		w.since("+time", f.Since, f.Until)
	} else {
		w.since("time", f.Since, f.Until)
	}
	if f.Rule != "" {
		w.add("substr(rule, 1, length(?)) = ?", f.Rule, f.Rule)
	}
	if f.Src != "" {
		// Ranges rather than LIKE, so that SQLite can use security_src:
		// the sources that start with "192.0.2.7:" are those from
		// "192.0.2.7:" up to "192.0.2.7;" (';' follows ':').
		src := canonicalAddr(f.Src)
		w.add("(src = ? OR (src > ? AND src < ?) OR (src > ? AND src < ?))",
			src, src+":", src+";", "["+src+"]:", "["+src+"];")
	}
	q := `SELECT time, rule, action, src, zone, user, session, protocol, detail FROM security` +
		w.String() + " ORDER BY time DESC, id DESC LIMIT ?"
	return q, append(w.args, limit(f.Limit))
}

// canonicalAddr writes an IP address, or an address and port, as the
// gateway does ("2001:DB8::07" as "2001:db8::7"); anything else stays as it
// is.
func canonicalAddr(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String()
	}
	return s
}

// query opens dbPath read-only, runs q and calls scan for every row.
func query(ctx context.Context, dbPath, q string, args []any, scan func(*sql.Rows) error) error {
	if _, err := os.Stat(dbPath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("open journal %s: %w", dbPath, ErrNoDatabase)
		}
		return fmt.Errorf("open journal %s: %w", dbPath, err)
	}
	d, err := dsn(dbPath, "mode=ro&_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		return fmt.Errorf("open journal %s: %w", dbPath, err)
	}
	db, err := sql.Open("sqlite", d)
	if err != nil {
		return fmt.Errorf("open journal %s: %w", dbPath, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("query journal %s: %w", dbPath, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("read journal %s: %w", dbPath, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read journal %s: %w", dbPath, err)
	}
	return nil
}

// WriteCDRTable prints cdrs as an aligned table, one line each. Durations
// are seconds; a leg shows as transport/encryption, where encryption is
// "none", "sig" (signalling only), "media" (media only) or "full".
// Control characters in the parties are replaced and long values cut, so
// that a hostile From cannot garble the operator's terminal.
func WriteCDRTable(w io.Writer, cdrs []core.CDR) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tSESSION\tFROM\tTO\tDURATION\tSTATUS\tEND REASON\tENDED BY\tCALLER\tCALLEE")
	for i := range cdrs {
		c := &cdrs[i]
		caller, callee := legsOf(c)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.3f\t%d\t%s\t%s\t%s\t%s\n",
			c.Start.Format("2006-01-02 15:04:05.000Z07:00"), cell(string(c.Session)),
			cell(c.From), cell(c.To), c.Duration.Seconds(), c.Status,
			cell(c.EndReason), cell(c.EndedBy), legCell(caller), legCell(callee))
	}
	return tw.Flush()
}

func legCell(l core.Leg) string {
	if l.Transport == "" {
		return "-"
	}
	enc := "none"
	switch {
	case l.Encrypted && l.MediaEncrypted:
		enc = "full"
	case l.Encrypted:
		enc = "sig"
	case l.MediaEncrypted:
		enc = "media"
	}
	if l.MediaCrypto != "" {
		enc += "(" + l.MediaCrypto + ")" // "wss/full(dtls-srtp)"
	}
	return cell(l.Transport) + "/" + enc
}

// maxCell is the most runes a table cell shows.
const maxCell = 40

// cell makes s safe and short for a terminal table: "-" when empty, no
// control characters, no tabs, at most maxCell runes.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxCell {
			b.WriteRune('…')
			break
		}
		if !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
