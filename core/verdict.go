package core

import (
	"fmt"
	"time"
)

// Layer is where a stage runs: on packets before parsing, on parsed requests,
// or on media.
type Layer uint8

// The three layers, in the order traffic meets them.
const (
	Network Layer = iota + 1
	Application
	Content
)

func (l Layer) String() string {
	switch l {
	case Network:
		return "network"
	case Application:
		return "application"
	case Content:
		return "content"
	}
	return fmt.Sprintf("layer(%d)", uint8(l))
}

// Action is what a verdict tells the adapter to do.
type Action uint8

// Actions. The zero value allows.
const (
	Allow     Action = iota // pass the event on
	Refuse                  // answer with a refusal in the protocol's own terms
	Drop                    // send nothing back
	Challenge               // ask for credentials
	Tarpit                  // hold the answer, then refuse
)

var actionNames = [...]string{"allow", "refuse", "drop", "challenge", "tarpit"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Reason is a protocol-neutral refusal reason. Each adapter maps every
// Reason to its own code (a SIP status, an XMPP error condition); a test in
// each adapter walks AllReasons and fails on a missing mapping.
type Reason uint8

// Reasons.
const (
	ReasonNone               Reason = iota
	ReasonMalformed                 // the message is not well formed
	ReasonForbidden                 // policy forbids it
	ReasonUnauthorized              // credentials are missing or wrong
	ReasonRateLimited               // too many, too fast
	ReasonNotFound                  // no such user or destination
	ReasonNoRoute                   // nowhere to send it
	ReasonNoDialog                  // an in-dialog request for a dialog that does not exist
	ReasonBusy                      // the callee or a limit says busy
	ReasonUnavailable               // temporarily unable (admission control, upstream down)
	ReasonTooLarge                  // a size limit was exceeded
	ReasonLoop                      // Max-Forwards or loop detection
	ReasonNotAcceptable             // media or security requirements not met (e.g. SRTP required)
	ReasonEncryptionRequired        // the zone requires an encrypted transport
	ReasonUnsupported               // method or extension not supported
	ReasonTimeout                   // the far side did not answer in time
	ReasonInternal                  // we failed: a backend is down, a stage erred
	ReasonVersion                   // the peer speaks a protocol version we do not
	reasonCount
)

var reasonNames = [...]string{
	ReasonNone:               "none",
	ReasonMalformed:          "malformed",
	ReasonForbidden:          "forbidden",
	ReasonUnauthorized:       "unauthorized",
	ReasonRateLimited:        "rate_limited",
	ReasonNotFound:           "not_found",
	ReasonNoRoute:            "no_route",
	ReasonNoDialog:           "no_dialog",
	ReasonBusy:               "busy",
	ReasonUnavailable:        "unavailable",
	ReasonTooLarge:           "too_large",
	ReasonLoop:               "loop",
	ReasonNotAcceptable:      "not_acceptable",
	ReasonEncryptionRequired: "encryption_required",
	ReasonUnsupported:        "unsupported",
	ReasonTimeout:            "timeout",
	ReasonInternal:           "internal",
	ReasonVersion:            "version",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// AllReasons lists every reason an adapter must map.
func AllReasons() []Reason {
	rs := make([]Reason, 0, reasonCount-1)
	for r := ReasonMalformed; r < reasonCount; r++ {
		rs = append(rs, r)
	}
	return rs
}

// Verdict is a stage's answer. The zero value allows.
type Verdict struct {
	Action Action
	Reason Reason
	// Rule is the rule that decided, as the journal shows it: "stage/rule".
	Rule string
	// Detail is a short, operator-facing explanation (a SIP reason phrase
	// for a 400, say). It may quote attacker-controlled text only after the
	// stage has bounded and sanitised it.
	Detail string
	// RetryAfter, when set, is offered to the peer (SIP Retry-After).
	RetryAfter time.Duration
	// Delay holds the answer this long before it is sent (Tarpit, or a
	// uniform delay that hides which check failed).
	Delay time.Duration
	// Challenge is what a Challenge verdict asks the peer to answer.
	Challenge *AuthChallenge
	// CDR asks for a call detail record of the refused session offer (an
	// admission refusal is a call attempt the operator must account for).
	CDR bool
}

// AuthChallenge is a request for credentials (SIP WWW-Authenticate or
// Proxy-Authenticate).
type AuthChallenge struct {
	Proxy  bool // ask as a proxy (407) rather than as the server (401)
	Realm  string
	Nonce  string
	Opaque string
	// Algorithms are offered in order of preference, one challenge each
	// (RFC 8760: SHA-256 first, MD5 for older clients).
	Algorithms []string
	QOP        string // "auth"
	Stale      bool   // the nonce was ours but expired: retry without asking the user
}

// Allowed reports whether the verdict lets the event through.
func (v Verdict) Allowed() bool { return v.Action == Allow }

// RefuseWith is a shorthand for a refusing verdict.
func RefuseWith(reason Reason, rule, detail string) Verdict {
	return Verdict{Action: Refuse, Reason: reason, Rule: rule, Detail: detail}
}
