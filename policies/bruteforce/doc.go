// Package bruteforce is the "bruteforce" stage: lockout after repeated
// authentication failures, in the application layer, before auth.
//
// It learns failures from security events: Stage.Alert (a core.Alerter,
// subscribed to core.Deps.Alerts by the gateway) counts the events whose
// rule is listed in rules (by default auth/failure, auth/nonce and
// auth/replay) per source address (an IPv6 source by its /64), per
// username, and the distinct usernames each source tried. When a count
// crosses its limit inside its window:
//
//   - a source that failed too often is blocked through core.Blocker (the
//     blacklist, so the network layer drops it from then on) and dropped by
//     this stage until its lockout ends ("bruteforce/source");
//   - a source that tried too many usernames likewise ("bruteforce/harvest");
//   - a username that failed too often, from anywhere, is refused for
//     user_lockout with the same 403, delay and detail as an auth failure,
//     so the lockout itself reveals nothing ("bruteforce/user").
//
// Every lockout raises a "bruteforce/lockout" security event and is listed
// by Lockouts, for the admin API. Memory is bounded: each table has a
// maximum, and a spray from many sources evicts the records that have been
// quiet longest.
//
// bruteforce imports core and the standard library only: never protocols/
// nor another policy.
package bruteforce
