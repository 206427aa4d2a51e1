package core

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Message is an instant message in neutral form, crossing from one
// adapter to another (an XMPP <message/> to a SIP MESSAGE, RFC 7572).
type Message struct {
	// ID is the sender's message id, if it gave one.
	ID   string
	From Identity
	To   Identity
	// Body is the text; ContentType its type ("text/plain" when empty).
	Body        string
	ContentType string
	// Src is where the message entered the gateway.
	Src  Source
	Time time.Time
	// Session ties the message to a session, if any.
	Session SessionID
	// Judged says the stages already judged the message where it entered
	// the gateway: the adapter that received it ran the pipeline and the
	// message was allowed. The delivering adapter then does not judge it
	// again, so that a source is charged once by the rate limits and a
	// stage plugin is asked once. False (the zero value) has it judged.
	Judged bool
}

// PresenceKind says what a presence exchange is (RFC 7248).
type PresenceKind uint8

// Presence kinds.
const (
	PresenceUpdate       PresenceKind = iota // availability changed (XMPP presence, SIP NOTIFY with PIDF)
	PresenceSubscribe                        // ask to receive From's updates of To
	PresenceSubscribed                       // To allowed From's subscription
	PresenceUnsubscribe                      // stop receiving updates
	PresenceUnsubscribed                     // a subscription was refused or ended
	PresenceProbe                            // ask for the current state
)

var presenceNames = [...]string{"update", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"}

func (k PresenceKind) String() string {
	if int(k) < len(presenceNames) {
		return presenceNames[k]
	}
	return "presence?"
}

// Presence is a presence update or a subscription change in neutral form.
type Presence struct {
	Kind PresenceKind
	From Identity
	To   Identity
	// Available, Show ("", "away", "chat", "dnd", "xa") and Status describe
	// an update.
	Available bool
	Show      string
	Status    string
	Src       Source
	Time      time.Time
	// Judged: as Message.Judged.
	Judged bool
}

// Deliverer is an adapter's ability to deliver messages and presence to
// the addresses of the domains it serves. Deliver returns once the
// adapter has handed the message on (a SIP MESSAGE answered, an XMPP
// stanza written); a refusal is a *DeliveryError.
type Deliverer interface {
	DeliverMessage(ctx context.Context, m *Message) error
	DeliverPresence(ctx context.Context, p *Presence) error
}

// DeliveryError is a refusal by the adapter that delivers, in neutral
// terms, so that the sender's adapter can answer in its own (SIP 404,
// XMPP item-not-found, RFC 7247 section 7).
type DeliveryError struct {
	Reason Reason
	Detail string
}

func (e *DeliveryError) Error() string {
	if e.Detail == "" {
		return "delivery refused: " + e.Reason.String()
	}
	return fmt.Sprintf("delivery refused: %s: %s", e.Reason, e.Detail)
}

// Bridge carries messages and presence between adapters: each adapter
// registers the domains it serves; one that receives a message for a
// domain it does not serve asks the bridge for the adapter that does.
type Bridge struct {
	mu      sync.RWMutex
	domains map[string]Deliverer
}

// NewBridge returns an empty bridge.
func NewBridge() *Bridge { return &Bridge{domains: map[string]Deliverer{}} }

// Serve registers d for domain (case-insensitive), replacing any earlier.
func (b *Bridge) Serve(domain string, d Deliverer) {
	b.mu.Lock()
	b.domains[strings.ToLower(domain)] = d
	b.mu.Unlock()
}

// For finds the adapter that serves domain. A nil bridge serves nothing.
func (b *Bridge) For(domain string) (Deliverer, bool) {
	if b == nil {
		return nil, false
	}
	b.mu.RLock()
	d, ok := b.domains[strings.ToLower(domain)]
	b.mu.RUnlock()
	return d, ok
}

// CallOffer is a call from one adapter's user to another adapter's user,
// in neutral form: a protocol plugin's session offer to a SIP user, say.
type CallOffer struct {
	// Session is the caller's session; the delivering adapter writes the
	// CDR of its own leg under its own session and names this one.
	Session SessionID
	From    Identity
	To      Identity
	// Media is the caller's offer: where it receives and what it carries.
	Media *MediaDesc
	// Src is where the offer entered the gateway.
	Src Source
	// Judged: as Message.Judged.
	Judged bool
}

// CallPeer is the calling adapter's side of a bridged call: the
// delivering adapter tells it how the call goes. Answered comes at most
// once, before any Ended; Ended comes exactly once, unless the caller
// ended the call itself (CallLeg.End).
type CallPeer interface {
	// Answered gives the callee's answer, in neutral form: where the
	// caller sends its media (the gateway's relay when it anchors media).
	Answered(media *MediaDesc)
	// Ended says the call ended on the delivering side or was refused:
	// a core reason name ("normal", "busy", "not_found", "no_answer").
	Ended(reason string)
}

// CallLeg is the delivering adapter's side of a bridged call.
type CallLeg interface {
	// End ends the call from the caller's side (reason goes into the
	// CDR): a BYE once answered, a CANCEL while ringing. Idempotent.
	End(reason string)
}

// CallDeliverer is an adapter (on the Bridge, for its domains) that can
// place a call to one of its users. OfferCall starts the call and returns
// at once; a refusal known at once (no such user, the stages refused) is
// a *DeliveryError and peer is then not told anything.
type CallDeliverer interface {
	OfferCall(ctx context.Context, offer *CallOffer, peer CallPeer) (CallLeg, error)
}

// CallsFor finds the adapter that serves domain on the bridge and can
// place calls, or false.
func (b *Bridge) CallsFor(domain string) (CallDeliverer, bool) {
	d, ok := b.For(domain)
	if !ok {
		return nil, false
	}
	cd, ok := d.(CallDeliverer)
	return cd, ok
}
