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
)

var kindNames = [...]string{"other", "session_offer", "session_answer", "session_update",
	"session_end", "in_dialog", "message", "presence", "register", "probe"}

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

	// Media is the offered or answered media in neutral form, if any.
	Media *MediaDesc

	// Orig is the adapter's handle to the original message. Stages must
	// not use it.
	Orig any
}
