// Package journal owns ucgate's journal: the core.Journal that every
// protocol adapter writes its transactions and CDRs to, and the sinks that
// keep them.
//
// Transactions are queued in a bounded channel (a full queue blocks the
// caller, nothing is dropped); CDRs wait in a second one. One writer
// goroutine takes from both and commits them together: concurrent CDR calls
// share one SQLite transaction (group commit) and each caller returns once
// it is committed, so a call is reported ended only when its CDR is
// durable; queued transactions ride along with the CDRs, or are written on
// their own after at most 100 ms.
//
// The sinks are SQLite (database/sql over modernc.org/sqlite, WAL mode,
// tables transactions and cdrs, multi-row inserts; a second goroutine
// checkpoints the WAL from a connection of its own, so that the writer never
// does), a JSON Lines file, and RFC 5424 syslog over UDP or TCP (RFC 6587
// octet counting). SQLite is the durable sink; when it is disabled the JSON
// Lines file, synced on every CDR batch, takes its place. Syslog is best
// effort: it never blocks the journal, and what it cannot send while its
// collector is away is counted and reported in the log.
//
// QueryCDRs, QueryTransactions and WriteCDRTable read the SQLite file
// read-only, for the `ucgate cdr` subcommand and the admin console.
//
// journal imports core and core/config only; it never imports protocols,
// policies or plugins. It runs beside the pipeline, in no layer.
package journal
