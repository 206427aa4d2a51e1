// Package journal owns ucgate's journal: the core.Journal that every
// protocol adapter writes its transactions and CDRs to, the core.Alerter
// that records the security events the stages raise (blocks, lockouts,
// floods, probes, injection attempts), and the sinks that keep them.
//
// Transactions are queued in a bounded channel (a full queue blocks the
// caller, nothing is dropped); CDRs wait in a second one. Security events
// are best effort: Alert never waits, and what does not fit in its queue
// (a flood outrunning the journal) is dropped, counted and reported in the
// log at most once a minute. One writer goroutine takes from all three and
// commits them together: concurrent CDR calls share one SQLite transaction
// (group commit) and each caller returns once it is committed, so a call
// is reported ended only when its CDR is durable; queued transactions and
// security events ride along with the CDRs, or are written on their own
// after at most 100 ms.
//
// The sinks are SQLite (database/sql over modernc.org/sqlite, WAL mode,
// tables transactions, security and cdrs, multi-row inserts; a second
// goroutine checkpoints the WAL from a connection of its own, so that the
// writer never does), a JSON Lines file (one object per line, its "type"
// transaction, security or cdr), and RFC 5424 syslog over UDP or TCP (RFC
// 6587 octet counting; MSGID TX, SEC or CDR). SQLite is the durable sink;
// when it is disabled the JSON Lines file, synced on every CDR batch,
// takes its place. Syslog is best effort: it never blocks the journal, and
// what it cannot send while its collector is away is counted and reported
// in the log.
//
// SQLite keeps records for Config.Retention (90 days by default): a third
// goroutine deletes older rows at start and every 10 minutes, through the
// writer's connection, in chunks of a few milliseconds between the
// writer's commits. Transactions and security events age by their time,
// CDRs by the end of their session. The database file does not shrink:
// later rows reuse the pages freed, so it stops growing once it holds a
// retention's worth. The JSON Lines file is never pruned or rotated by
// ucgate: rotate it with logrotate's copytruncate.
//
// QueryCDRs, QueryTransactions, QuerySecurity and WriteCDRTable read the
// SQLite file read-only, for the `ucgate cdr` subcommand and the admin
// console.
//
// journal imports core and core/config only; it never imports protocols,
// policies or plugins. It runs beside the pipeline, in no layer.
package journal
