// Package dialog is the in-dialog validation stage: a request that claims
// to belong to a session (a SIP request with a To tag) is refused when the
// session does not exist, when it comes from another address than the
// peer the session was established with, or when its sequence number does
// not move forward.
//
// It runs in the application layer on facts the adapter establishes from
// its session table (core.Event.InDialog, DialogKnown, DialogSameSource,
// DialogSeqOK). A BYE for a dialog that never existed is a known probe,
// and a BYE for a live call from another address is an attempt to end
// someone else's call: both raise a security event, at most one per
// source per event_interval so that a flood of them cannot flood the
// journal.
//
// dialog imports core and core/config only; it never imports protocols,
// another policy or plugins.
package dialog
