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
var StageOrder = []string{}
