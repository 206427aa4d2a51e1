// Package core is the protocol-neutral heart of ucgate.
//
// It owns the event model (Event), the session table (Sessions, Session,
// Leg), the security stage contract (Stage, Verdict) and the pipeline that
// runs stages in the one order declared in order.go, and the journal contract
// (Journal, Transaction, CDR) that every decision and every call ends in.
//
// core imports no protocol library (sipgo, mellium, pion/webrtc) and nothing
// else from this module: adapters under protocols/ translate their messages
// into Events, policies under policies/ implement Stages, and both depend on
// core, never the other way round.
package core
