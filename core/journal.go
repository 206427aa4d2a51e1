package core

import (
	"context"
	"time"
)

// Transaction is the journal record of one protocol transaction, accepted
// or refused.
type Transaction struct {
	Time      time.Time     `json:"time"`
	Protocol  string        `json:"protocol"`
	Zone      string        `json:"zone,omitempty"`
	Src       string        `json:"src"`
	Dst       string        `json:"dst,omitempty"`
	Transport string        `json:"transport"`
	Encrypted bool          `json:"encrypted"`
	Method    string        `json:"method"`
	From      string        `json:"from,omitempty"`
	To        string        `json:"to,omitempty"`
	CallID    string        `json:"call_id,omitempty"`      // the leg it arrived on
	PeerCall  string        `json:"peer_call_id,omitempty"` // the other leg
	Session   SessionID     `json:"session,omitempty"`      // empty outside sessions
	Status    int           `json:"status"`                 // final status sent back; 0 if dropped
	Action    string        `json:"action"`                 // allow, refuse, drop, challenge, tarpit
	Rule      string        `json:"rule,omitempty"`         // the rule that decided a refusal
	Reason    string        `json:"reason,omitempty"`       // neutral reason of a refusal
	Detail    string        `json:"detail,omitempty"`       // operator-facing explanation
	Elapsed   time.Duration `json:"elapsed_ns,omitempty"`   // from request to final answer
}

// CDR is the call detail record of one session, written when it ends.
type CDR struct {
	Session   SessionID     `json:"session"`
	Kind      string        `json:"kind"`
	From      string        `json:"from"`
	To        string        `json:"to"`
	Start     time.Time     `json:"start"`
	Answer    time.Time     `json:"answer,omitzero"`
	End       time.Time     `json:"end"`
	Duration  time.Duration `json:"duration_ns"` // answer to end; 0 if never answered
	Status    int           `json:"status"`      // final status of the setup
	EndReason string        `json:"end_reason"`
	EndedBy   string        `json:"ended_by"` // caller, callee or gateway
	Legs      []Leg         `json:"legs"`
	// Media has the figures of each relayed stream direction; empty when
	// the media did not go through the gateway.
	Media []MediaStats `json:"media,omitempty"`
}

// MediaStats are the figures of one direction of one relayed stream.
type MediaStats struct {
	Index int    `json:"index"` // the m= line
	Type  string `json:"type"`  // "audio", "video", ...
	From  string `json:"from"`  // the role of the sending leg
	// Packets and Bytes were relayed; Dropped counts the packets refused,
	// by the rule that refused them ("rtpguard/ssrc", "media/source", ...).
	Packets uint64            `json:"packets"`
	Bytes   uint64            `json:"bytes"`
	Dropped map[string]uint64 `json:"dropped,omitempty"`
	// Lost and JitterMs are the relay's own view (sequence gaps, RFC 3550
	// interarrival jitter); ReportedLost and ReportedJitterMs what the
	// receiver said in its RTCP reports, if it sent any.
	Lost             uint64  `json:"lost"`
	JitterMs         float64 `json:"jitter_ms"`
	ReportedLost     uint64  `json:"reported_lost,omitempty"`
	ReportedJitterMs float64 `json:"reported_jitter_ms,omitempty"`
	// Encrypted says the sending leg's media was SRTP or DTLS-SRTP.
	Encrypted bool `json:"encrypted"`
}

// Journal receives every decision and every finished session.
type Journal interface {
	// Transaction records one transaction. It does not wait for the sinks
	// and never drops a record silently: under sustained overload it blocks
	// the caller rather than lose what was accepted.
	Transaction(t *Transaction)
	// CDR records a finished session and returns once the durable sinks
	// hold it. A call is reported ended only after CDR returns.
	CDR(ctx context.Context, c *CDR) error
}

// CapturedMessage is an instant message kept for compliance by a capture
// policy (the XMPP proxy's xmpp.proxy.capture): who sent it to whom,
// when, and its text if the policy keeps bodies.
type CapturedMessage struct {
	Time      time.Time `json:"time"`
	Protocol  string    `json:"protocol"`
	Src       string    `json:"src"`
	Encrypted bool      `json:"encrypted"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	ID        string    `json:"id,omitempty"`
	Type      string    `json:"type,omitempty"` // chat, normal, groupchat, headline
	Size      int       `json:"size"`           // bytes of the body
	Body      string    `json:"body,omitempty"` // empty unless the policy keeps bodies
}

// MessageJournal is the optional ability of a Journal to keep captured
// messages. Message does not wait for the sinks, like Transaction.
type MessageJournal interface {
	Message(m *CapturedMessage)
}

// DiscardJournal is a Journal that keeps nothing, for tests and tools.
type DiscardJournal struct{}

// Transaction implements Journal.
func (DiscardJournal) Transaction(*Transaction) {}

// CDR implements Journal.
func (DiscardJournal) CDR(context.Context, *CDR) error { return nil }
