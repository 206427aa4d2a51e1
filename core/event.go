package core

import (
	"net/netip"
	"time"
)

// Kind is what happened, in protocol-neutral terms.
type Kind uint8

// Event kinds.
const (
	KindOther         Kind = iota
	KindSessionOffer       // a new call or chat is offered (SIP INVITE)
	KindSessionAnswer      // the offer was answered (SIP 2xx to INVITE)
	KindSessionUpdate      // an established session changes (re-INVITE, UPDATE)
	KindSessionEnd         // a session ends (BYE, CANCEL)
	KindInDialog           // any other request inside a session (INFO, PRACK, ACK)
	KindMessage            // an instant message (SIP MESSAGE, XMPP <message/>)
	KindPresence           // presence or a subscription to it
	KindRegister           // a registration or login
	KindProbe              // a keep-alive or capability probe (SIP OPTIONS)
	// KindResponse is a response arriving from a peer, offered to the
	// stages that judge a message's form (validate). Stages that judge
	// requests ignore it.
	KindResponse
)

var kindNames = [...]string{"other", "session_offer", "session_answer", "session_update",
	"session_end", "in_dialog", "message", "presence", "register", "probe", "response"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind?"
}

// Source is where an event came from.
type Source struct {
	Addr      netip.AddrPort
	Local     netip.AddrPort // the listener it arrived on
	Transport string         // "udp", "tcp", "tls", "ws", "wss", ...
	Encrypted bool           // TLS, WSS, DTLS
	Zone      string         // the zone of the listener or upstream
}

// Identity is a party as the protocol names it.
type Identity struct {
	Display string `json:"display,omitempty"`
	User    string `json:"user,omitempty"`
	Domain  string `json:"domain,omitempty"`
}

// String renders the identity as user@domain (or domain alone).
func (id Identity) String() string {
	if id.User == "" {
		return id.Domain
	}
	return id.User + "@" + id.Domain
}

// Event is one protocol-neutral thing that happened. Adapters build it from
// their message, run the pipeline on it and map the verdict back; stages
// read it and never write to it.
type Event struct {
	Kind     Kind
	Protocol string // "sip", "xmpp", "webrtc", or a plugin's protocol name
	Method   string // the protocol's own verb, for the journal ("INVITE")
	Time     time.Time

	Src    Source
	From   Identity
	To     Identity
	Target string // where it is addressed (a request URI, a JID)
	Agent  string // the peer's software as it announces it (User-Agent)
	Size   int    // bytes on the wire

	// InDialog says the request claims to belong to an existing session;
	// DialogKnown says whether the adapter found that session.
	InDialog    bool
	DialogKnown bool
	Session     SessionID

	// Route is the upstream a new session or message will go to ("" for a
	// user registered through the gateway, or when nothing routes it).
	Route string

	// DialogSameSource says an in-dialog request came from the address the
	// dialog's peer was established with (meaningful when DialogKnown).
	DialogSameSource bool
	// DialogSeqOK says the request's sequence number moves forward and its
	// tags match the dialog (meaningful when DialogKnown).
	DialogSeqOK bool

	// Credentials are the credentials the request carries, if any.
	Credentials *Credentials
	// Shape describes the message's form, for strict validation.
	Shape Shape

	// Media is the offered or answered media in neutral form, if any.
	Media *MediaDesc

	// Orig is the adapter's handle to the original message. Stages must
	// not use it.
	Orig any
}

// Credentials are what a request offers to authenticate: a SIP
// Authorization or Proxy-Authorization header, parsed (RFC 3261, RFC 7616,
// RFC 8760), or a SASL exchange's outcome.
type Credentials struct {
	Scheme    string // "digest"
	Proxy     bool   // from Proxy-Authorization
	Username  string
	Realm     string
	Nonce     string
	URI       string
	Response  string
	Algorithm string // "MD5", "SHA-256", "MD5-sess", ... (empty means MD5)
	QOP       string
	NC        string // nonce count, 8 hex digits
	CNonce    string
	Opaque    string
	// Method is the request method the response was computed over.
	Method string
}

// Shape is what the adapter measured of a message's form. Validation
// stages compare it with their limits; the adapter itself decides nothing.
type Shape struct {
	Size          int // bytes on the wire
	Headers       int // header fields
	LongestHeader int // bytes of the longest header field line
	Hops          int // Via header field values
	// DeclaredLength is the Content-Length the message states; -1 if none.
	DeclaredLength int
	BodyLength     int
	// MaxForwards is the Max-Forwards value; -1 if absent.
	MaxForwards int
	// Problems are the protocol's own rules the message breaks, found by
	// the adapter (a CSeq naming another method, a malformed URI), each a
	// short reason phrase such as "CSeq Method Mismatch".
	Problems []string
}
