package core

// StageOrder is the only place that decides which stage runs first. A
// stage may rely on the event, never on what an earlier stage did.
//
// Network stages come first, cheapest and most decisive first: a flood
// must be dropped before it costs anything. Application stages follow on
// the parsed event: validation before authentication (never challenge a
// message we cannot read), authentication before anything that needs the
// user's identity. Content stages run per media packet.
//
// Every package under policies/ appears here exactly once and has a
// constructor in cmd/ucgate; a test in cmd/ucgate checks both.
var StageOrder = []string{
	// network: before anything is parsed; cheapest and most decisive first.
	"acl",       // a source that may never talk to us
	"blacklist", // a source that may not talk to us now
	"ratelimit", // per-source budgets; a flood ends on the blacklist
	"conncap",   // connections per source and in total
	// application: on the parsed request.
	"scan",        // first, so that a scanner gets silence before any 4xx tells it something is here
	"tlsrequired", // a zone's transport rule, before reading anything else
	"validate",    // never judge further what we cannot read
	"dialog",      // in-dialog requests for dialogs that do not exist or from the wrong peer
	"bruteforce",  // a locked-out source or user, before auth looks at credentials
	"auth",        // digest authentication
	"srtp",        // a zone's media-encryption rule (488), once the caller is known
	"plugins",     // external checks (stage plugins: fraud scores, reputation feeds), once the caller is known, before admission takes a slot
	"admission",   // last: only calls that would otherwise proceed take a slot
	// content: per media packet, in the relay.
	"rtpguard", // RTP validation: source, SSRC, payload types, sequence and timestamp windows, rates
}
