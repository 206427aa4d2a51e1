package component

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	mcomp "mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/protocols/xmpp/condition"
)

// Component is the gateway's external component on the XMPP server.
type Component struct {
	cfg    Config
	deps   core.Deps
	log    *slog.Logger
	domain jid.JID
	server netip.AddrPort
	secret []byte
	peers  map[string]bool

	pipeline atomic.Pointer[core.Pipeline]
	sess     atomic.Pointer[xmpp.Session]
	ready    chan struct{} // closed at the first successful connection
	once     sync.Once

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{}
	mu     sync.Mutex
	lanes  map[string][]func() // the work waiting, per pair, behind the one running
}

// New validates cfg and prepares the component; Start connects it.
func New(cfg Config, deps core.Deps) (*Component, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	secret, err := cfg.secret()
	if err != nil {
		return nil, err
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if deps.Journal == nil {
		deps.Journal = core.DiscardJournal{}
	}
	d, err := jid.Parse(cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("xmpp component: domain: %w", err)
	}
	c := &Component{cfg: cfg, deps: deps, log: log.With("component", "xmpp-component"), domain: d,
		server: netip.MustParseAddrPort(cfg.Server), secret: secret, peers: map[string]bool{},
		ready: make(chan struct{}), sem: make(chan struct{}, cfg.MaxInFlight), lanes: map[string][]func(){}}
	for _, p := range cfg.PeerDomains {
		c.peers[strings.ToLower(p)] = true
	}
	return c, nil
}

// Protocol names the adapter on the bridge.
func (c *Component) Protocol() string { return "xmpp" }

// SetPipeline makes p the pipeline of new events (a reload swaps it).
func (c *Component) SetPipeline(p *core.Pipeline) { c.pipeline.Store(p) }

// Start registers the component on the bridge for its peer domains and
// connects it to the server, again and again while the gateway runs.
func (c *Component) Start(ctx context.Context) error {
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if c.deps.Bridge != nil {
		for _, p := range c.cfg.PeerDomains {
			c.deps.Bridge.Serve(p, c)
		}
	}
	c.wg.Add(1)
	go c.run()
	return nil
}

// Ready is closed once the component has been accepted by the server.
func (c *Component) Ready() <-chan struct{} { return c.ready }

// Connected reports whether the component is connected now.
func (c *Component) Connected() bool { return c.sess.Load() != nil }

// Close disconnects the component.
func (c *Component) Close() error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	if s := c.sess.Load(); s != nil {
		s.Close()
		s.Conn().Close()
	}
	c.wg.Wait()
	return nil
}

func (c *Component) run() {
	defer c.wg.Done()
	wait := c.cfg.Reconnect
	for c.ctx.Err() == nil {
		t0 := time.Now()
		err := c.session()
		if c.ctx.Err() != nil {
			return
		}
		c.log.Warn("component connection ended", "error", err, "server", c.cfg.Server, "retry_in", wait)
		if time.Since(t0) > time.Minute {
			wait = c.cfg.Reconnect
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// session connects once and serves until the connection ends.
func (c *Component) session() error {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.cfg.Server)
	if err != nil {
		return err
	}
	// Close may come between the handshake and Serve, before the session
	// is stored for it to close: the connection is closed with the
	// component's context whatever the state.
	stop := context.AfterFunc(c.ctx, func() { conn.Close() })
	defer stop()
	s, err := mcomp.NewSession(ctx, c.domain, c.secret, conn)
	if err != nil {
		conn.Close()
		return fmt.Errorf("component handshake: %w", err)
	}
	c.sess.Store(s)
	defer c.sess.Store(nil)
	c.log.Info("component connected", "server", c.cfg.Server, "domain", c.cfg.Domain)
	c.once.Do(func() { close(c.ready) })
	err = s.Serve(xmpp.HandlerFunc(c.handle))
	conn.Close()
	if err == nil {
		err = errors.New("stream closed")
	}
	return err
}

// inMessage and inPresence are what the component reads of a stanza.
type inMessage struct {
	ID     string   `xml:"id,attr"`
	From   string   `xml:"from,attr"`
	To     string   `xml:"to,attr"`
	Type   string   `xml:"type,attr"`
	Bodies []inText `xml:"body"`
}

type inText struct {
	Lang string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
	Text string `xml:",chardata"`
}

type inPresence struct {
	ID       string   `xml:"id,attr"`
	From     string   `xml:"from,attr"`
	To       string   `xml:"to,attr"`
	Type     string   `xml:"type,attr"`
	Show     string   `xml:"show"`
	Statuses []inText `xml:"status"`
}

// handle decodes a stanza and hands it to a goroutine (see dispatch), so
// that a slow delivery never holds the stream (and never holds the output
// lock a delivery the other way needs). MaxInFlight bounds them.
func (c *Component) handle(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), t))
	var work func()
	size := 0
	switch start.Name.Local {
	case "message":
		var m inMessage
		if err := d.Decode(&m); err != nil {
			return nil
		}
		for _, b := range m.Bodies {
			size += len(b.Text)
		}
		work = func() { c.onMessage(&m, size) }
	case "presence":
		var p inPresence
		if err := d.Decode(&p); err != nil {
			return nil
		}
		work = func() { c.onPresence(&p) }
	case "iq":
		var q inIQ
		if err := d.Decode(&q); err != nil {
			return nil
		}
		return c.onIQ(t, &q)
	default:
		return nil
	}
	c.dispatch(pairOf(start), work)
	return nil
}

// pairOf names the sender and recipient of a stanza, as bare JIDs
// written as the server wrote them: the stanzas between two parties are
// handled in the order they came.
func pairOf(start *xml.StartElement) string {
	var from, to string
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "from":
			from = a.Value
		case "to":
			to = a.Value
		}
	}
	from, _, _ = strings.Cut(from, "/")
	to, _, _ = strings.Cut(to, "/")
	return strings.ToLower(from) + "\x00" + strings.ToLower(to)
}

// dispatch runs work in the background after the work queued before it
// for the same pair (RFC 6120 section 10.1: stanzas are processed in
// order; Prosody acknowledges a subscription with an unavailable that
// must not overtake the contact's available presence that follows), and
// concurrently with the other pairs'. MaxInFlight bounds the work queued
// and running: beyond it dispatch waits, and so does the stream.
func (c *Component) dispatch(pair string, work func()) {
	select {
	case c.sem <- struct{}{}:
	case <-c.ctx.Done():
		return
	}
	c.mu.Lock()
	if q, ok := c.lanes[pair]; ok {
		c.lanes[pair] = append(q, work)
		c.mu.Unlock()
		return
	}
	c.lanes[pair] = nil
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		for {
			work()
			<-c.sem
			c.mu.Lock()
			q := c.lanes[pair]
			if len(q) == 0 {
				delete(c.lanes, pair)
				c.mu.Unlock()
				return
			}
			work, q[0] = q[0], nil
			c.lanes[pair] = q[1:]
			c.mu.Unlock()
		}
	}()
}

// inIQ is what the component reads of an iq: its payload's name.
type inIQ struct {
	ID      string `xml:"id,attr"`
	From    string `xml:"from,attr"`
	To      string `xml:"to,attr"`
	Type    string `xml:"type,attr"`
	Payload struct {
		XMLName xml.Name
		Node    string `xml:"node,attr"`
	} `xml:",any"`
}

// Namespaces of the queries the component answers.
const (
	nsDiscoInfo  = "http://jabber.org/protocol/disco#info"
	nsDiscoItems = "http://jabber.org/protocol/disco#items"
	nsPing       = "urn:xmpp:ping"
)

// onIQ answers what servers and clients ask the component's domain
// itself: service discovery (XEP-0030: a gateway to SIP, XEP-0100
// identity gateway/simple, no items) and ping (XEP-0199). Every other get
// or set, and any to a user of the domain, is answered
// service-unavailable (RFC 6120 section 8.2.3: an iq must be answered;
// mellium's Serve answers only on client and server streams, not on a
// component's).
func (c *Component) onIQ(w xmlstream.TokenWriter, q *inIQ) error {
	if q.Type != "get" && q.Type != "set" {
		return nil // results and errors are never answered
	}
	from, errF := jid.Parse(q.From)
	to, errT := jid.Parse(q.To)
	iq := stanza.IQ{XMLName: xml.Name{Local: "iq"}, ID: q.ID, Type: stanza.ResultIQ, From: c.own(to, errT)}
	if errF == nil {
		iq.To = from
	}
	var payload xml.TokenReader
	domain := errT == nil && to.Localpart() == "" && to.Resourcepart() == "" && strings.EqualFold(to.Domainpart(), c.cfg.Domain)
	switch {
	case !domain || q.Type != "get" || q.Payload.Node != "":
		iq.Type, payload = stanza.ErrorIQ, stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable}.TokenReader()
	case q.Payload.XMLName == xml.Name{Space: nsDiscoInfo, Local: "query"}:
		feature := func(v string) xml.TokenReader {
			return xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Local: "feature"}, Attr: []xml.Attr{{Name: xml.Name{Local: "var"}, Value: v}}})
		}
		payload = xmlstream.Wrap(xmlstream.MultiReader(
			xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Local: "identity"}, Attr: []xml.Attr{
				{Name: xml.Name{Local: "category"}, Value: "gateway"}, {Name: xml.Name{Local: "type"}, Value: "simple"},
				{Name: xml.Name{Local: "name"}, Value: "SIP"}}}),
			feature(nsDiscoInfo), feature(nsDiscoItems), feature(nsPing),
		), xml.StartElement{Name: xml.Name{Space: nsDiscoInfo, Local: "query"}})
	case q.Payload.XMLName == xml.Name{Space: nsDiscoItems, Local: "query"}:
		payload = xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: nsDiscoItems, Local: "query"}})
	case q.Payload.XMLName == xml.Name{Space: nsPing, Local: "ping"}:
	default:
		iq.Type, payload = stanza.ErrorIQ, stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable}.TokenReader()
	}
	_, err := xmlstream.Copy(w, iq.Wrap(payload))
	return err
}

// source is where interworked stanzas come from: the server.
func (c *Component) source() core.Source {
	return core.Source{Addr: c.server, Transport: "tcp", Zone: c.cfg.Zone}
}

func identity(j jid.JID) core.Identity {
	return core.Identity{User: j.Localpart(), Domain: j.Domainpart()}
}

// onMessage carries a message from XMPP to the adapter serving its
// domain (RFC 7572).
func (c *Component) onMessage(m *inMessage, size int) {
	from, errF := jid.Parse(m.From)
	to, errT := jid.Parse(m.To)
	rec := c.record("message", m.From, m.To, m.ID)
	if errF != nil {
		c.journal(rec, core.Verdict{Action: core.Drop, Reason: core.ReasonMalformed, Rule: RuleJID, Detail: "malformed from"})
		return
	}
	reply := func(v core.Verdict) {
		c.journal(rec, v)
		if m.Type == "error" {
			return
		}
		typ, cond := condition.Stanza(v.Reason)
		msg := stanza.Message{XMLName: xml.Name{Space: mcomp.NSAccept, Local: "message"}, ID: m.ID, From: from, To: c.own(to, errT)} // Error swaps them
		c.send(msg.Error(stanza.Error{Type: stanza.ErrorType(typ), Condition: stanza.Condition(cond)}))
	}
	switch {
	case m.Type == "error":
		c.journal(rec, core.Verdict{Action: core.Drop, Rule: RuleError, Detail: "error stanza not carried across"})
		return
	case errT != nil:
		reply(core.Verdict{Action: core.Refuse, Reason: core.ReasonMalformed, Rule: RuleJID, Detail: "malformed to"})
		return
	case !strings.EqualFold(to.Domainpart(), c.cfg.Domain) || to.Localpart() == "":
		reply(core.Verdict{Action: core.Refuse, Reason: core.ReasonNotFound, Rule: RuleAddress, Detail: "no user of this domain"})
		return
	case m.Type == "groupchat":
		reply(core.Verdict{Action: core.Refuse, Reason: core.ReasonUnsupported, Rule: RuleType, Detail: "groupchat not interworked"})
		return
	}
	body, ok := pickText(m.Bodies)
	if !ok {
		return // chat states, receipts: nothing to carry
	}
	if len(body) > c.cfg.MaxBody {
		reply(core.Verdict{Action: core.Refuse, Reason: core.ReasonTooLarge, Rule: RuleSize, Detail: "body too large"})
		return
	}
	ev := c.event(core.KindMessage, "message", from, to, size)
	dl, ok := c.judge(&ev, to, &rec, reply)
	if !ok {
		return
	}
	id := m.ID
	msg := &core.Message{ID: id, Judged: true, From: identity(from), To: identity(to), Body: body, ContentType: "text/plain",
		Src: c.source(), Time: time.Now()}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DeliveryTimeout)
	defer cancel()
	t0 := time.Now()
	if err := dl.DeliverMessage(ctx, msg); err != nil {
		reply(deliveryVerdict(err))
		return
	}
	rec.Elapsed = time.Since(t0)
	c.journal(rec, core.Verdict{})
	c.capture(rec.From, rec.To, m.ID, m.Type, body)
}

// own is the address an error answer to a stanza sent to `to` comes
// from: to itself when it is of the component's domain, else the domain.
// A component that sends from another domain has its stream closed by
// the server (Prosody's invalid-from), which would cut interworking for
// everyone.
func (c *Component) own(to jid.JID, err error) jid.JID {
	if err != nil || !strings.EqualFold(to.Domainpart(), c.cfg.Domain) {
		return c.domain
	}
	return to
}

// onPresence carries presence from XMPP to the adapter serving its
// domain (RFC 7248).
func (c *Component) onPresence(p *inPresence) {
	from, errF := jid.Parse(p.From)
	to, errT := jid.Parse(p.To)
	rec := c.record("presence", p.From, p.To, p.ID)
	if p.Type != "" {
		rec.Method = "presence/" + p.Type
	}
	if errF != nil || p.Type == "error" {
		c.journal(rec, core.Verdict{Action: core.Drop, Reason: core.ReasonMalformed, Rule: RuleJID, Detail: "not carried across"})
		return
	}
	reply := func(v core.Verdict) {
		c.journal(rec, v)
		typ, cond := condition.Stanza(v.Reason)
		pr := stanza.Presence{XMLName: xml.Name{Space: mcomp.NSAccept, Local: "presence"}, ID: p.ID, From: from, To: c.own(to, errT)} // Error swaps them
		c.send(pr.Error(stanza.Error{Type: stanza.ErrorType(typ), Condition: stanza.Condition(cond)}))
	}
	if errT != nil {
		reply(core.Verdict{Action: core.Refuse, Reason: core.ReasonMalformed, Rule: RuleJID, Detail: "malformed to"})
		return
	}
	if !strings.EqualFold(to.Domainpart(), c.cfg.Domain) || to.Localpart() == "" {
		reply(core.Verdict{Action: core.Refuse, Reason: core.ReasonNotFound, Rule: RuleAddress, Detail: "no user of this domain"})
		return
	}
	pres := &core.Presence{From: identity(from), To: identity(to), Src: c.source(), Time: time.Now()}
	switch p.Type {
	case "":
		pres.Kind, pres.Available = core.PresenceUpdate, true
		pres.Show = p.Show
		pres.Status, _ = pickText(p.Statuses)
	case "unavailable":
		pres.Kind = core.PresenceUpdate
		pres.Status, _ = pickText(p.Statuses)
	case "subscribe":
		pres.Kind = core.PresenceSubscribe
	case "subscribed":
		pres.Kind = core.PresenceSubscribed
	case "unsubscribe":
		pres.Kind = core.PresenceUnsubscribe
	case "unsubscribed":
		pres.Kind = core.PresenceUnsubscribed
	case "probe":
		pres.Kind = core.PresenceProbe
	default:
		reply(core.Verdict{Action: core.Refuse, Reason: core.ReasonMalformed, Rule: RuleType, Detail: "unknown presence type"})
		return
	}
	switch pres.Show {
	case "", "away", "chat", "dnd", "xa":
	default:
		pres.Show = ""
	}
	if len(pres.Status) > 1024 {
		pres.Status = truncate(pres.Status, 1024)
	}
	ev := c.event(core.KindPresence, rec.Method, from, to, len(pres.Status))
	dl, ok := c.judge(&ev, to, &rec, reply)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DeliveryTimeout)
	defer cancel()
	pres.Judged = true // the pipeline allowed it above
	if err := dl.DeliverPresence(ctx, pres); err != nil {
		v := deliveryVerdict(err)
		if pres.Kind == core.PresenceUpdate {
			c.journal(rec, v) // an update is not answered with an error
			return
		}
		reply(v)
		return
	}
	c.journal(rec, core.Verdict{})
}

// DeliverMessage implements core.Deliverer: a message from the bridge to
// a user of a peer domain, sent from <user>@<component domain>.
func (c *Component) DeliverMessage(ctx context.Context, m *core.Message) error {
	from, to, err := c.addresses(m.From, m.To)
	rec := c.record("message", "", "", m.ID)
	rec.From, rec.To, rec.Src = c.peerOf(m.From.Domain)+":"+m.From.String(), "xmpp:"+m.To.String(), m.Src.Addr.String()
	if err != nil {
		c.journal(rec, verdictOf(err))
		return err
	}
	// The sender as the other side names her (sip:alice@sip.example.com),
	// the recipient as XMPP does.
	rec.From, rec.To = c.peerOf(m.From.Domain)+":"+from.String(), "xmpp:"+to.String()
	if len(m.Body) > c.cfg.MaxBody {
		err := &core.DeliveryError{Reason: core.ReasonTooLarge, Detail: "body too large"}
		c.journal(rec, verdictOf(err))
		return err
	}
	id := m.ID
	if id == "" || len(id) > 128 {
		id = newID()
	}
	msg := stanza.Message{XMLName: xml.Name{Space: mcomp.NSAccept, Local: "message"}, ID: id, From: from, To: to, Type: stanza.ChatMessage}
	body := xmlstream.Wrap(xmlstream.Token(xml.CharData(m.Body)), xml.StartElement{Name: xml.Name{Local: "body"}})
	if err := c.sendCtx(ctx, msg.Wrap(body)); err != nil {
		c.journal(rec, verdictOf(err))
		return err
	}
	c.journal(rec, core.Verdict{})
	c.capture(rec.From, rec.To, id, string(stanza.ChatMessage), m.Body)
	return nil
}

// peerOf names the protocol of the adapter that serves domain on the
// bridge ("sip"), for the records of what comes from it.
func (c *Component) peerOf(domain string) string {
	if d, ok := c.deps.Bridge.For(domain); ok && d != nil {
		return protocolOf(d)
	}
	return "bridge"
}

// capture keeps an interworked message the component carried, as the
// capture policy says, when the journal can keep messages.
func (c *Component) capture(from, to, id, typ, body string) {
	if !c.cfg.Capture.Enabled {
		return
	}
	mj, ok := c.deps.Journal.(core.MessageJournal)
	if !ok {
		return
	}
	m := &core.CapturedMessage{Time: time.Now(), Protocol: "xmpp", Src: c.server.String(), From: from, To: to,
		ID: truncate(id, 128), Type: truncate(typ, 16), Size: len(body)}
	if c.cfg.Capture.Body {
		m.Body = body
	}
	mj.Message(m)
}

// DeliverPresence implements core.Deliverer: presence from the bridge
// (RFC 7248) to a user of a peer domain.
func (c *Component) DeliverPresence(ctx context.Context, p *core.Presence) error {
	from, to, err := c.addresses(p.From, p.To)
	rec := c.record("presence", "", "", "")
	rec.From, rec.To, rec.Src = c.peerOf(p.From.Domain)+":"+p.From.String(), "xmpp:"+p.To.String(), p.Src.Addr.String()
	if err != nil {
		c.journal(rec, verdictOf(err))
		return err
	}
	rec.From, rec.To = c.peerOf(p.From.Domain)+":"+from.String(), "xmpp:"+to.String()
	pr := stanza.Presence{XMLName: xml.Name{Space: mcomp.NSAccept, Local: "presence"}, ID: newID(), From: from, To: to}
	var payload []xml.TokenReader
	switch p.Kind {
	case core.PresenceUpdate:
		if !p.Available {
			pr.Type = stanza.UnavailablePresence
		}
		switch p.Show {
		case "away", "chat", "dnd", "xa":
			if p.Available {
				payload = append(payload, xmlstream.Wrap(xmlstream.Token(xml.CharData(p.Show)), xml.StartElement{Name: xml.Name{Local: "show"}}))
			}
		}
		if p.Status != "" {
			payload = append(payload, xmlstream.Wrap(xmlstream.Token(xml.CharData(truncate(p.Status, 1024))), xml.StartElement{Name: xml.Name{Local: "status"}}))
		}
	case core.PresenceSubscribe:
		pr.Type = stanza.SubscribePresence
	case core.PresenceSubscribed:
		pr.Type = stanza.SubscribedPresence
	case core.PresenceUnsubscribe:
		pr.Type = stanza.UnsubscribePresence
	case core.PresenceUnsubscribed:
		pr.Type = stanza.UnsubscribedPresence
	case core.PresenceProbe:
		pr.Type = stanza.ProbePresence
	default:
		err := &core.DeliveryError{Reason: core.ReasonMalformed, Detail: "unknown presence kind"}
		c.journal(rec, verdictOf(err))
		return err
	}
	if pr.Type != "" {
		rec.Method = "presence/" + string(pr.Type)
	}
	if err := c.sendCtx(ctx, pr.Wrap(xmlstream.MultiReader(payload...))); err != nil {
		c.journal(rec, verdictOf(err))
		return err
	}
	c.journal(rec, core.Verdict{})
	return nil
}

// addresses maps the bridge's identities to JIDs: the sender is a user
// of the component's domain, the recipient a user of a peer domain.
func (c *Component) addresses(f, t core.Identity) (from, to jid.JID, err error) {
	if !strings.EqualFold(f.Domain, c.cfg.Domain) {
		return from, to, &core.DeliveryError{Reason: core.ReasonForbidden, Detail: "sender not of the component's domain"}
	}
	if !c.peers[strings.ToLower(t.Domain)] {
		return from, to, &core.DeliveryError{Reason: core.ReasonNoRoute, Detail: "domain not reached"}
	}
	if from, err = jid.New(f.User, c.cfg.Domain, ""); err != nil || f.User == "" {
		return from, to, &core.DeliveryError{Reason: core.ReasonMalformed, Detail: "sender is not a valid JID"}
	}
	if to, err = jid.New(t.User, t.Domain, ""); err != nil || t.User == "" {
		return from, to, &core.DeliveryError{Reason: core.ReasonNotFound, Detail: "recipient is not a valid JID"}
	}
	return from, to, nil
}

// sendCtx sends a stanza through the component connection.
func (c *Component) sendCtx(ctx context.Context, r xml.TokenReader) error {
	s := c.sess.Load()
	if s == nil {
		return &core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "component not connected"}
	}
	if err := s.Send(ctx, r); err != nil {
		return &core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "component connection failed"}
	}
	return nil
}

// send sends an answer, bounded in time.
func (c *Component) send(r xml.TokenReader) {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	_ = c.sendCtx(ctx, r)
}

func (c *Component) event(kind core.Kind, method string, from, to jid.JID, size int) core.Event {
	return core.Event{Kind: kind, Protocol: "xmpp", Method: method, Time: time.Now(), Src: c.source(),
		From: identity(from), To: identity(to), Target: to.Bare().String(), Size: size,
		Shape: core.Shape{Size: size, DeclaredLength: -1, MaxForwards: -1}}
}

// record starts the journal record of an interworked stanza.
func (c *Component) record(method, from, to, id string) core.Transaction {
	return core.Transaction{Time: time.Now(), Protocol: "xmpp", Zone: c.cfg.Zone, Src: c.server.String(), Transport: "component",
		Method: method, From: "xmpp:" + truncate(from, 256), To: "xmpp:" + truncate(to, 256), CallID: truncate(id, 128)}
}

// judge runs the stages on the event of an interworked stanza and finds
// the adapter that serves its addressee's domain, naming it in rec. A
// refusal is answered with reply (a drop is only journaled); ok is false
// then.
func (c *Component) judge(ev *core.Event, to jid.JID, rec *core.Transaction, reply func(core.Verdict)) (dl core.Deliverer, ok bool) {
	if d := c.pipeline.Load().Run(c.ctx, ev); d.Action != core.Allow {
		v := d.Verdict
		if v.Rule == "" {
			v.Rule = d.Stage
		}
		if v.Action == core.Drop {
			c.journal(*rec, v)
		} else {
			reply(v)
		}
		return nil, false
	}
	dl, ok = c.deps.Bridge.For(to.Domainpart())
	if !ok || dl == nil || dl == core.Deliverer(c) {
		reply(core.Verdict{Action: core.Refuse, Reason: core.ReasonUnavailable, Rule: RuleNoBridge, Detail: "no adapter serves the domain"})
		return nil, false
	}
	rec.To = protocolOf(dl) + ":" + to.Bare().String()
	return dl, true
}

func (c *Component) journal(t core.Transaction, v core.Verdict) {
	t.Action, t.Rule, t.Detail = v.Action.String(), v.Rule, v.Detail
	if v.Action != core.Allow {
		t.Reason = v.Reason.String()
	}
	c.deps.Journal.Transaction(&t)
}

// protocolOf names the protocol of an adapter on the bridge.
func protocolOf(d core.Deliverer) string {
	if pn, ok := d.(interface{ Protocol() string }); ok {
		if p := pn.Protocol(); p != "" && len(p) <= 16 {
			return p
		}
	}
	return "bridge"
}

// pickText picks the text without xml:lang, else the first.
func pickText(ts []inText) (string, bool) {
	for _, t := range ts {
		if t.Lang == "" {
			return t.Text, true
		}
	}
	if len(ts) > 0 {
		return ts[0].Text, true
	}
	return "", false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

func newID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Rules this package writes.
const (
	RuleJID      = "xmpp/jid-malformed"
	RuleAddress  = "xmpp/address"
	RuleType     = "xmpp/type"
	RuleSize     = "xmpp/size"
	RuleNoBridge = "xmpp/no-bridge"
	RuleError    = "xmpp/error-stanza"
	RuleDelivery = "xmpp/delivery"
)

// deliveryVerdict turns the other adapter's refusal into a verdict.
func deliveryVerdict(err error) core.Verdict {
	var de *core.DeliveryError
	if errors.As(err, &de) {
		return core.Verdict{Action: core.Refuse, Reason: de.Reason, Rule: RuleDelivery, Detail: de.Detail}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return core.Verdict{Action: core.Refuse, Reason: core.ReasonTimeout, Rule: RuleDelivery, Detail: "no answer"}
	}
	return core.Verdict{Action: core.Refuse, Reason: core.ReasonUnavailable, Rule: RuleDelivery, Detail: "delivery failed"}
}

// verdictOf is the journal's view of this adapter's own refusal.
func verdictOf(err error) core.Verdict {
	var de *core.DeliveryError
	if errors.As(err, &de) {
		return core.Verdict{Action: core.Refuse, Reason: de.Reason, Rule: RuleDelivery, Detail: de.Detail}
	}
	return core.Verdict{Action: core.Refuse, Reason: core.ReasonInternal, Rule: RuleDelivery, Detail: "send failed"}
}

var _ core.Deliverer = (*Component)(nil)
