// Package scan is the scanner detection stage. It recognises the tools
// that sweep the internet for SIP servers (SIPVicious, sipcli, SIPPTS and
// their kind) by the User-Agent and From names they announce, and
// recognises the rest by what they do: many distinct extensions asked for
// from one address in a short window (extension enumeration), OPTIONS to
// many distinct targets (a sweep), REGISTER for many distinct users.
//
// On detection it blocks the source through core.Blocker (the blacklist
// then drops its packets at the network layer), raises a security event,
// and answers the request and the source's next ones for refuse_for: with
// silence (drop) in the zone facing the internet, so that a sweep learns
// nothing, and with 403 elsewhere.
//
// It runs in the application layer. Per-source state is bounded (a fixed
// number of sources in sharded tables, idle ones evicted) and a request
// costs a case-insensitive scan of a short signature list and one map
// look-up under a shard lock, without allocating.
//
// scan imports core and core/config only; it never imports protocols,
// another policy or plugins.
package scan
