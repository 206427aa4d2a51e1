// Package admission is call admission control, an application-layer stage:
// it limits concurrent calls and calls per second per source address, per
// calling user, per trunk (the upstream a call goes to) and for the whole
// gateway, and refuses a new session offer that would exceed a limit with
// "unavailable" (SIP 503 and Retry-After) or "busy" (SIP 486).
//
// Only core.KindSessionOffer events are judged. Concurrency is counted in
// two steps: Decide reserves a slot for every limit the offer falls under,
// atomically against all of them, so that a burst of offers arriving
// together cannot overshoot a limit; Bind (core.SessionBinder) turns the
// reservation into a running call, and Unbind releases it. A reservation
// that no session claims within reserve_timeout (a later stage refused the
// offer, the adapter found no route) is released by a janitor, which also
// releases sessions that ended without an Unbind (a pipeline swapped by a
// configuration reload). A session bound without a reservation is counted
// anyway, above the limit if need be; ucgate_admission_unreserved_binds_total
// measures how often that happens.
//
// Rates are token buckets (GCRA: one timestamp per key, no timer), kept in
// sharded tables whose idle entries are evicted, bounded by max_keys.
//
// The package imports core and core/config only; it sees events and
// sessions, never a protocol message.
package admission
