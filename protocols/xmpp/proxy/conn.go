package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/protocols/xmpp/condition"
	"github.com/ucgate/ucgate/protocols/xmpp/wire"
)

// Namespaces the proxy reads.
const (
	nsClient  = "jabber:client"
	nsTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsStreams = "urn:ietf:params:xml:ns:xmpp-streams"
	nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsSM3     = "urn:xmpp:sm:3"
	nsCSI     = "urn:xmpp:csi:0"
	nsSASL2   = "urn:xmpp:sasl:2" // XEP-0388, hidden: the proxy observes RFC 6120 SASL only
)

// writeTimeout bounds every write to a client or the server: a peer that
// stops reading loses its stream instead of holding a goroutine.
const writeTimeout = 10 * time.Second

// serverLimits bound what the protected server sends: it is trusted more
// than a client (rosters and archives are large) but still bounded.
var serverLimits = wire.Limits{MaxSize: 8 << 20, MaxDepth: 64, MaxAttrs: 256}

// conn is one client connection and the stream it is relayed over.
type conn struct {
	p    *Proxy
	l    *listener
	raw  net.Conn // the TCP connection
	src  netip.AddrPort
	meta core.PacketMeta
	r    *wire.Reader
	t0   time.Time

	// Written by the client goroutine only, before the server goroutine
	// that reads them starts (or under wmu).
	nc          net.Conn // raw, or TLS over raw
	encrypted   bool
	tlsInfo     string
	tlsRequired bool
	local       bool // the proxy answered the header itself; STARTTLS must come next
	checked     bool // the stream event passed the pipeline
	domain      string
	bucket      bucket
	// saslWait is the mechanism of an <auth/> that came without its
	// initial response: the proxy answered the empty challenge itself and
	// judges the client's next <response/> as that initial response.
	saslWait string

	wmu        sync.Mutex // client writes
	headerSent bool       // under wmu: the client has a stream header (ours or the server's)

	umu sync.Mutex // guards up and upstream writes
	up  *upstream

	authed  atomic.Bool
	restart atomic.Bool             // the server said <success/>: the client restarts its stream
	offer   atomic.Pointer[offer]   // the client's last <auth/>
	acct    atomic.Pointer[jid.JID] // the authenticated account
	stanzas atomic.Int64
	ended   atomic.Bool
	endOnce sync.Once
}

// offer is what a client's <auth/> offered.
type offer struct{ user, mech string }

// account is the authenticated account's bare JID, or the zero JID.
func (c *conn) account() jid.JID {
	if a := c.acct.Load(); a != nil {
		return *a
	}
	return jid.JID{}
}

// offered is the client's last SASL offer.
func (c *conn) offered() offer {
	if o := c.offer.Load(); o != nil {
		return *o
	}
	return offer{}
}

// upstream is the proxy's stream to the protected server.
type upstream struct {
	c     net.Conn
	r     *wire.Reader
	done  chan struct{}
	quiet atomic.Bool // closed by the proxy: its end is not the client's
}

func newConn(p *Proxy, l *listener, nc net.Conn, src netip.AddrPort, _ *core.Pipeline, meta core.PacketMeta) *conn {
	c := &conn{p: p, l: l, raw: nc, nc: nc, src: src, meta: meta, t0: time.Now()}
	c.bucket.init(p.cfg.Limits.StanzaRate, p.cfg.Limits.StanzaBurst)
	return c
}

func (c *conn) transport() string {
	if c.encrypted {
		return "tls"
	}
	return "tcp"
}

// serve runs the client's side of the stream until it ends.
func (c *conn) serve() {
	defer c.finish()
	lim := c.p.cfg.Limits
	_ = c.raw.SetReadDeadline(c.t0.Add(lim.HandshakeTimeout))
	if c.l.cfg.Mode == "direct_tls" {
		if !c.handshake() {
			return
		}
	}
	c.r = wire.NewReader(c.nc, c.p.lim)
	for {
		it, err := c.r.Next()
		if err != nil {
			c.readFailed(err)
			return
		}
		if c.authed.Load() {
			_ = c.raw.SetReadDeadline(time.Now().Add(lim.IdleTimeout))
		}
		switch it.Kind {
		case wire.KindHeader:
			if !c.onHeader(it) {
				return
			}
		case wire.KindSpace:
			if !c.local {
				c.toServer(it.Raw)
			}
		case wire.KindClose:
			c.closeFromClient(it.Raw)
			return
		case wire.KindElement:
			if !c.onElement(it) {
				return
			}
		}
	}
}

// handshake does the client's TLS handshake on the raw connection.
func (c *conn) handshake() bool {
	tc := tls.Server(c.raw, c.p.serverTL)
	ctx, cancel := context.WithTimeout(context.Background(), c.p.cfg.Limits.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.journal("tls", core.Verdict{Action: core.Drop, Reason: core.ReasonMalformed, Rule: "xmpp/tls-handshake",
			Detail: "TLS handshake failed"}, "")
		return false
	}
	st := tc.ConnectionState()
	c.wmu.Lock() // Close (shutdown) may be writing to the client now
	c.nc, c.encrypted = tc, true
	c.tlsInfo = tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
	c.wmu.Unlock()
	return true
}

// readFailed ends the stream after the client's input failed.
func (c *conn) readFailed(err error) {
	if c.ended.Load() {
		return
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrUnexpectedEOF):
		return
	case errors.As(err, &ne) && ne.Timeout():
		c.refuseStream("connection-timeout", RuleTimeout, core.ReasonTimeout, "timeout", "stream")
	case errors.Is(err, wire.ErrRestricted):
		c.refuseStream("restricted-xml", RuleRestricted, core.ReasonMalformed, detailOf(err), "stream")
	case errors.Is(err, wire.ErrTooLarge):
		c.refuseStream("policy-violation", RuleSize, core.ReasonTooLarge, "stanza too large", "stream")
	case errors.Is(err, wire.ErrTooDeep):
		c.refuseStream("policy-violation", RuleDepth, core.ReasonMalformed, "elements nested too deep", "stream")
	case errors.Is(err, wire.ErrAttributes):
		c.refuseStream("policy-violation", RuleAttributes, core.ReasonMalformed, "too many attributes", "stream")
	case errors.Is(err, wire.ErrSyntax), errors.Is(err, wire.ErrNamespace), errors.Is(err, wire.ErrText):
		var se *net.OpError
		if errors.As(err, &se) {
			return // the connection failed under the parser
		}
		c.refuseStream("not-well-formed", RuleNotWellFormed, core.ReasonMalformed, detailOf(err), "stream")
	}
}

// detailOf is a wire error's text without the package prefix; it never
// quotes the input.
func detailOf(err error) string {
	s := err.Error()
	if i := strings.Index(s, ": "); i >= 0 && strings.HasPrefix(s, "wire:") {
		return s[i+2:]
	}
	return s
}

// onHeader checks a stream header and opens, restarts or answers the
// stream.
func (c *conn) onHeader(it wire.Item) bool {
	h := it.El
	ns := ""
	for _, d := range h.Decls {
		if d.Name.Local == "" {
			ns = d.Value
		}
	}
	switch {
	case !h.Is(wire.NSStream, "stream") || ns != nsClient:
		return c.refuseStream("invalid-namespace", RuleNamespace, core.ReasonMalformed, "not a client stream", "stream")
	case !strings.HasPrefix(h.Get("version"), "1."):
		return c.refuseStream("unsupported-version", RuleVersion, core.ReasonVersion, "version 1.0 required", "stream")
	}
	dom, ok := c.p.served(h.Get("to"))
	if !ok || c.domain != "" && dom != c.domain {
		return c.refuseStream("host-unknown", RuleHost, core.ReasonNotFound, "domain not served", "stream")
	}
	c.domain = dom
	if !c.checked {
		ev := c.event(core.KindOther, "stream", len(it.Raw))
		d := c.p.pipeline.Load().Run(context.Background(), &ev)
		switch {
		case d.Action == core.Allow:
		case d.Reason == core.ReasonEncryptionRequired && !c.encrypted:
			c.tlsRequired = true
		default:
			return c.refuseVerdict(d, "stream")
		}
		c.checked = true
	}
	if !c.encrypted && (c.tlsRequired || c.l.cfg.tlsRequired()) {
		c.tlsRequired = true
		c.local = true
		return c.writeHeader(localHeader(c.domain) + "<stream:features><starttls xmlns='" + nsTLS + "'><required/></starttls></stream:features>")
	}
	c.umu.Lock()
	up := c.up
	c.umu.Unlock()
	if up != nil {
		if !c.restart.Swap(false) {
			return c.refuseStream("invalid-xml", RuleSequence, core.ReasonMalformed, "unexpected stream restart", "stream")
		}
		return c.toServer(it.Raw)
	}
	if err := c.openUpstream(it.Raw); err != nil {
		c.p.log.Warn("upstream unreachable", "error", err, "src", c.src)
		return c.refuseStream("remote-connection-failed", RuleUpstream, core.ReasonUnavailable, "server unreachable", "stream")
	}
	return true
}

// served reports whether to names a domain of the protected server, and
// returns it in its normalised form.
func (p *Proxy) served(to string) (string, bool) {
	j, err := jid.Parse(to)
	if err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
		return "", false
	}
	d := j.Domainpart()
	for _, s := range p.cfg.Domains {
		if strings.EqualFold(s, d) {
			return d, true
		}
	}
	return "", false
}

func localHeader(domain string) string {
	var id [12]byte
	_, _ = rand.Read(id[:])
	from := ""
	if domain != "" {
		from = " from='" + wire.Escape(domain) + "'"
	}
	return "<?xml version='1.0'?><stream:stream xmlns='" + nsClient + "' xmlns:stream='" + wire.NSStream +
		"' id='" + hex.EncodeToString(id[:]) + "'" + from + " version='1.0' xml:lang='en'>"
}

// onElement judges one top-level element from the client.
func (c *conn) onElement(it wire.Item) bool {
	el := it.El
	if !c.bucket.take(time.Now().UnixNano()) {
		return c.refuseStream("policy-violation", RuleFlood, core.ReasonRateLimited, "stanza rate exceeded", el.Name.Local)
	}
	if !c.encrypted && el.Is(nsTLS, "starttls") {
		return c.startTLS()
	}
	if c.local {
		return c.refuseStream("policy-violation", RuleTLSRequired, core.ReasonEncryptionRequired, "TLS required", el.Name.Local)
	}
	if !c.authed.Load() {
		if el.Name.Space == nsSASL {
			switch {
			case el.Name.Local == "auth":
				return c.onAuth(it.El, it.Raw)
			case c.saslWait != "" && el.Name.Local == "response":
				// The initial response the <auth/> lacked: judged and
				// relayed as the <auth/> it completes.
				mech := c.saslWait
				c.saslWait = ""
				auth := &wire.Element{Name: xml.Name{Space: nsSASL, Local: "auth"},
					Attr: []xml.Attr{{Name: xml.Name{Local: "mechanism"}, Value: mech}}, Text: el.Text}
				return c.onAuth(auth, auth.Append(nil, nsClient))
			case c.saslWait != "" && el.Name.Local == "abort":
				c.saslWait = ""
				return c.write("<failure xmlns='" + nsSASL + "'><aborted/></failure>")
			case c.saslWait != "":
				return c.refuseStream("invalid-xml", RuleSequence, core.ReasonMalformed, "SASL element out of sequence", el.Name.Local)
			}
			return c.toServer(it.Raw)
		}
		return c.refuseStream("not-authorized", RuleUnauthenticated, core.ReasonUnauthorized, "stanza before authentication", el.Name.Local)
	}
	switch {
	case el.Name.Space == nsClient && (el.Name.Local == "message" || el.Name.Local == "presence" || el.Name.Local == "iq"):
		return c.onStanza(it)
	case el.Name.Space == nsSM3, el.Name.Space == nsCSI:
		return c.toServer(it.Raw)
	}
	return c.refuseStream("unsupported-stanza-type", RuleUnsupported, core.ReasonUnsupported, "element not relayed", el.Name.Local)
}

// startTLS answers <starttls/>: the stream starts again over TLS, and
// with it the server's stream.
func (c *conn) startTLS() bool {
	if c.r.Buffered() > 0 {
		return c.refuseStream("policy-violation", RuleSequence, core.ReasonMalformed, "data after starttls", "starttls")
	}
	c.dropUpstream()
	if !c.write("<proceed xmlns='" + nsTLS + "'/>") {
		return false
	}
	if !c.handshake() {
		return false
	}
	c.wmu.Lock()
	c.headerSent = false
	c.wmu.Unlock()
	c.local = false
	c.r.Reset(c.nc)
	return true
}

// onAuth judges a SASL <auth/>: the username it offers goes through the
// pipeline (a locked-out user or source ends here), then to the server.
// Only mechanisms whose username the proxy reads are relayed (PLAIN,
// SCRAM-*, and ANONYMOUS, which has none): with any other, failures could
// not be counted per account. An <auth/> without its initial response is
// answered with the empty challenge here, and the response that follows
// is judged as its initial response (RFC 6120 section 6.4.2), so that a
// client cannot hide the username from the proxy by sending it later.
func (c *conn) onAuth(el *wire.Element, raw []byte) bool {
	mech := el.Get("mechanism")
	if !observable(mech) {
		c.journal("auth", core.Verdict{Action: core.Refuse, Reason: core.ReasonUnsupported, Rule: RuleSASLMechanism,
			Detail: "mechanism not relayed"}, "")
		return c.write("<failure xmlns='" + nsSASL + "'><invalid-mechanism/></failure>")
	}
	if text := strings.TrimSpace(el.Text); text == "" && mech != "ANONYMOUS" {
		c.saslWait = mech
		return c.write("<challenge xmlns='" + nsSASL + "'>=</challenge>")
	}
	user := saslUser(mech, el.Text)
	c.offer.Store(&offer{user, mech})
	ev := c.event(core.KindRegister, "auth", len(raw))
	ev.Credentials = &core.Credentials{Scheme: "sasl", Username: user, Method: mech}
	ev.From = core.Identity{User: user, Domain: c.domain}
	d := c.p.pipeline.Load().Run(context.Background(), &ev)
	if d.Action != core.Allow {
		if d.Action == core.Drop {
			return c.refuseVerdict(d, "auth")
		}
		if d.Delay > 0 {
			time.Sleep(min(d.Delay, 5*time.Second)) // as the auth stage's uniform delay: the lockout looks like a wrong password
		}
		c.journal("auth", d.Verdict, "") // from the offer: user@domain, as the failures
		return c.write("<failure xmlns='" + nsSASL + "'><not-authorized/></failure>")
	}
	return c.toServer(raw)
}

// onStanza checks a stanza's addresses, runs the pipeline on it and
// relays it.
func (c *conn) onStanza(it wire.Item) bool {
	el := it.El
	c.stanzas.Add(1)
	var to jid.JID
	if s, ok := el.Lookup("to"); ok {
		var err error
		if to, err = jid.Parse(s); err != nil {
			return c.stanzaError(el, "modify", "jid-malformed", core.Verdict{Action: core.Refuse, Reason: core.ReasonMalformed,
				Rule: RuleJID, Detail: "malformed to address"})
		}
	}
	if s, ok := el.Lookup("from"); ok {
		f, err := jid.Parse(s)
		if err != nil || !f.Bare().Equal(c.account().Bare()) {
			return c.refuseStream("invalid-from", RuleInvalidFrom, core.ReasonForbidden, "from is not the account", el.Name.Local)
		}
	}
	kind := core.KindOther
	switch el.Name.Local {
	case "message":
		kind = core.KindMessage
	case "presence":
		kind = core.KindPresence
	}
	ev := c.event(kind, el.Name.Local, len(it.Raw))
	ev.From = identity(c.account())
	ev.To = identity(to)
	ev.Target = to.String()
	d := c.p.pipeline.Load().Run(context.Background(), &ev)
	if d.Action != core.Allow {
		if d.Action == core.Drop {
			if d.Stage == "blacklist" || d.Stage == "acl" {
				return c.refuseVerdict(d, el.Name.Local)
			}
			c.journal(el.Name.Local, d.Verdict, c.account().String())
			return true
		}
		typ, cond := condition.Stanza(d.Reason)
		return c.stanzaError(el, typ, cond, d.Verdict)
	}
	if kind == core.KindMessage {
		c.capture(el, to)
	}
	return c.toServer(it.Raw)
}

func identity(j jid.JID) core.Identity {
	return core.Identity{User: j.Localpart(), Domain: j.Domainpart()}
}

// stanzaError answers a stanza the proxy refused, unless it is an error
// itself (errors are never answered: that could loop).
func (c *conn) stanzaError(el *wire.Element, typ, cond string, v core.Verdict) bool {
	c.journal(el.Name.Local, v, c.account().String())
	if el.Get("type") == "error" {
		return true
	}
	b := make([]byte, 0, 256)
	b = append(b, '<')
	b = append(b, el.Name.Local...)
	b = append(b, " type='error'"...)
	if id, ok := el.Lookup("id"); ok {
		b = append(b, " id='"...)
		b = wire.AppendEscaped(b, id)
		b = append(b, '\'')
	}
	b = append(b, "><error type='"...)
	b = append(b, typ...)
	b = append(b, "'><"...)
	b = append(b, cond...)
	b = append(b, " xmlns='"+nsStanzas+"'/></error></"...)
	b = append(b, el.Name.Local...)
	b = append(b, '>')
	return c.write(string(b))
}

// event builds the core event of something the client sent.
func (c *conn) event(kind core.Kind, method string, size int) core.Event {
	return core.Event{Kind: kind, Protocol: "xmpp", Method: method, Time: time.Now(),
		Src:  core.Source{Addr: c.src, Local: c.l.addr, Transport: c.transport(), Encrypted: c.encrypted, Zone: c.l.cfg.Zone},
		Size: size, Shape: core.Shape{Size: size, DeclaredLength: -1, MaxForwards: -1}}
}

// refuseVerdict ends the stream for a pipeline verdict: a drop closes it
// silently, a refusal with the stream error of its reason.
func (c *conn) refuseVerdict(d core.Decision, method string) bool {
	v := d.Verdict
	if v.Rule == "" {
		v.Rule = d.Stage
	}
	if v.Action == core.Drop {
		c.journal(method, v, c.account().String())
		c.end()
		return false
	}
	return c.refuseStream(condition.Stream(v.Reason), v.Rule, v.Reason, v.Detail, method)
}

// refuseStream ends the stream with a stream error, journals the rule,
// raises a security event and, for the rules configured, blocks the
// source. It returns false, for the caller to stop.
func (c *conn) refuseStream(cond, rule string, reason core.Reason, detail, method string) bool {
	if c.ended.Load() {
		return false
	}
	v := core.Verdict{Action: core.Refuse, Reason: reason, Rule: rule, Detail: detail}
	c.journal(method, v, c.account().String())
	if hostile(rule) {
		action := "refuse"
		if c.p.block[rule] {
			action = "block"
			if b := c.p.blocker.Load(); b != nil {
				b.Block(c.src.Addr(), rule, detail)
			}
		}
		c.p.deps.Alerts.Alert(&core.SecurityEvent{Time: time.Now(), Rule: rule, Action: action, Src: c.src.Addr().String(),
			Zone: c.l.cfg.Zone, User: c.account().String(), Protocol: "xmpp", Detail: rule + ": " + detail})
	}
	c.wmu.Lock()
	var b strings.Builder
	if !c.headerSent {
		b.WriteString(localHeader(c.domain))
		c.headerSent = true
	}
	b.WriteString("<stream:error><" + cond + " xmlns='" + nsStreams + "'/><text xmlns='" + nsStreams + "'>")
	b.WriteString(wire.Escape(detail))
	b.WriteString("</text></stream:error></stream:stream>")
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, _ = io.WriteString(c.nc, b.String())
	c.wmu.Unlock()
	c.end()
	return false
}

// hostile reports whether a rule is about an attack rather than a
// mistake: those are security events.
func hostile(rule string) bool {
	switch rule {
	case RuleRestricted, RuleNotWellFormed, RuleSize, RuleDepth, RuleAttributes, RuleFlood, RuleUnauthenticated, RuleInvalidFrom:
		return true
	}
	return false
}

// end closes the server's stream and the client's connection; the client
// goroutine's read then fails and it finishes.
func (c *conn) end() {
	c.ended.Store(true)
	c.endOnce.Do(func() {
		c.umu.Lock()
		if u := c.up; u != nil {
			u.quiet.Store(true)
			_ = u.c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(u.c, "</stream:stream>")
			u.c.Close()
		}
		c.umu.Unlock()
		c.wmu.Lock()
		nc := c.nc
		c.wmu.Unlock()
		nc.Close()
		c.raw.Close()
	})
}

// shutdown ends the stream because the gateway stops.
func (c *conn) shutdown() {
	c.refuseStream("system-shutdown", "xmpp/shutdown", core.ReasonUnavailable, "gateway stopping", "stream")
}

// closeFromClient relays the client's </stream:stream> and waits briefly
// for the server's.
func (c *conn) closeFromClient(raw []byte) {
	c.umu.Lock()
	u := c.up
	c.umu.Unlock()
	if u == nil || c.local {
		c.write("</stream:stream>")
		return
	}
	c.toServer(raw)
	select {
	case <-u.done:
	case <-time.After(2 * time.Second):
	}
}

// finish releases the connection and journals the stream.
func (c *conn) finish() {
	c.end()
	c.umu.Lock()
	u := c.up
	c.umu.Unlock()
	if u != nil {
		<-u.done
	}
	detail := fmt.Sprintf("stanzas=%d", c.stanzas.Load())
	if c.tlsInfo != "" {
		detail = c.tlsInfo + " " + detail
	}
	c.p.deps.Journal.Transaction(&core.Transaction{Time: c.t0, Protocol: "xmpp", Zone: c.l.cfg.Zone, Src: c.src.String(),
		Dst: c.p.cfg.Upstream.Address, Transport: c.transport(), Encrypted: c.encrypted, Method: "stream",
		From: c.account().String(), To: c.domain, Action: core.Allow.String(), Detail: detail, Elapsed: time.Since(c.t0)})
}

// journal records a decision about something the client sent.
func (c *conn) journal(method string, v core.Verdict, from string) {
	if from == "" {
		if o := c.offered(); o.user != "" {
			from = o.user + "@" + c.domain
		}
	}
	c.p.deps.Journal.Transaction(&core.Transaction{Time: time.Now(), Protocol: "xmpp", Zone: c.l.cfg.Zone, Src: c.src.String(),
		Dst: c.l.addr.String(), Transport: c.transport(), Encrypted: c.encrypted, Method: method, From: from, To: c.domain,
		Action: v.Action.String(), Rule: v.Rule, Reason: v.Reason.String(), Detail: v.Detail})
}

// write sends s to the client.
func (c *conn) write(s string) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := io.WriteString(c.nc, s)
	return err == nil
}

// writeRaw sends what the server sent, as it sent it.
func (c *conn) writeRaw(b []byte, header bool) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if header {
		c.headerSent = true
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.nc.Write(b)
	return err == nil
}

func (c *conn) writeHeader(s string) bool {
	c.wmu.Lock()
	c.headerSent = true
	c.wmu.Unlock()
	return c.write(s)
}

// toServer relays b to the server.
func (c *conn) toServer(b []byte) bool {
	c.umu.Lock()
	defer c.umu.Unlock()
	if c.up == nil {
		return true
	}
	_ = c.up.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.up.c.Write(b); err != nil {
		return false
	}
	return true
}

// dropUpstream closes the server's stream quietly (before STARTTLS, which
// starts it again).
func (c *conn) dropUpstream() {
	c.umu.Lock()
	u := c.up
	c.up = nil
	c.umu.Unlock()
	if u == nil {
		return
	}
	u.quiet.Store(true)
	u.c.Close()
	<-u.done
}

// openUpstream connects to the server, negotiates TLS with it as
// configured, sends the client's stream header and starts relaying the
// server's side.
func (c *conn) openUpstream(header []byte) error {
	cfg := c.p.cfg.Upstream
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", cfg.Address)
	if err != nil {
		return err
	}
	_ = nc.SetDeadline(time.Now().Add(cfg.DialTimeout))
	switch cfg.TLS {
	case "direct_tls":
		tc := tls.Client(nc, c.p.upTLSFor(c.domain))
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return fmt.Errorf("upstream tls: %w", err)
		}
		nc = tc
	case "starttls":
		tc, err := upstreamStartTLS(ctx, nc, c.domain, c.p.upTLSFor(c.domain))
		if err != nil {
			nc.Close()
			return err
		}
		nc = tc
	}
	_ = nc.SetDeadline(time.Time{})
	u := &upstream{c: nc, r: wire.NewReader(nc, serverLimits), done: make(chan struct{})}
	if _, err := nc.Write(header); err != nil {
		nc.Close()
		return err
	}
	c.umu.Lock()
	c.up = u
	c.umu.Unlock()
	go c.fromServer(u)
	return nil
}

func (p *Proxy) upTLSFor(domain string) *tls.Config {
	t := p.upTLS.Clone()
	if t.ServerName == "" {
		t.ServerName = domain
	}
	return t
}

// upstreamStartTLS negotiates STARTTLS with the server on a stream of the
// proxy's own; the client's stream then starts over TLS.
func upstreamStartTLS(ctx context.Context, nc net.Conn, domain string, conf *tls.Config) (net.Conn, error) {
	if _, err := io.WriteString(nc, "<?xml version='1.0'?><stream:stream xmlns='"+nsClient+"' xmlns:stream='"+wire.NSStream+
		"' to='"+wire.Escape(domain)+"' version='1.0'>"); err != nil {
		return nil, err
	}
	r := wire.NewReader(nc, serverLimits)
	var offered bool
	for !offered {
		it, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("upstream starttls: %w", err)
		}
		if it.Kind == wire.KindElement {
			if !it.El.Is(wire.NSStream, "features") || it.El.Child(nsTLS, "starttls") == nil {
				return nil, errors.New("upstream starttls: not offered")
			}
			offered = true
		}
	}
	if _, err := io.WriteString(nc, "<starttls xmlns='"+nsTLS+"'/>"); err != nil {
		return nil, err
	}
	it, err := r.Next()
	for err == nil && it.Kind == wire.KindSpace {
		it, err = r.Next()
	}
	if err != nil || it.Kind != wire.KindElement || !it.El.Is(nsTLS, "proceed") || r.Buffered() > 0 {
		return nil, fmt.Errorf("upstream starttls: no proceed (%v)", err)
	}
	tc := tls.Client(nc, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("upstream tls: %w", err)
	}
	return tc, nil
}

// fromServer relays the server's side of the stream to the client,
// observing features and SASL outcomes.
func (c *conn) fromServer(u *upstream) {
	defer close(u.done)
	for {
		it, err := u.r.Next()
		if err != nil {
			if u.quiet.Load() || c.ended.Load() {
				return
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				c.end()
				return
			}
			c.refuseStream("remote-connection-failed", RuleUpstream, core.ReasonUnavailable, "server stream failed", "stream")
			return
		}
		ok := true
		switch it.Kind {
		case wire.KindHeader:
			ok = c.writeRaw(it.Raw, true)
		case wire.KindSpace:
			ok = c.writeRaw(it.Raw, false)
		case wire.KindClose:
			c.writeRaw(it.Raw, false)
			c.end()
			return
		case wire.KindElement:
			el := it.El
			switch {
			case el.Is(wire.NSStream, "features"):
				ok = c.writeRaw(c.features(el, it.Raw), false)
			case el.Is(nsSASL, "success"):
				c.onSuccess()
				ok = c.writeRaw(it.Raw, false)
			case el.Is(nsSASL, "failure"):
				c.onFailure(el)
				ok = c.writeRaw(it.Raw, false)
			default:
				ok = c.writeRaw(it.Raw, false)
			}
		}
		if !ok {
			c.end()
			return
		}
	}
}

// features rewrites the server's features for the client: the server's
// STARTTLS (between proxy and server) is hidden, the proxy's own offered
// on a client stream that is not encrypted yet, SASL2 (XEP-0388) is hidden
// so that clients authenticate with RFC 6120 SASL, which the proxy
// observes, and only the SASL mechanisms the proxy reads usernames of are
// offered (see observable): not those with channel binding (-PLUS), since
// the client's TLS channel ends at the proxy, nor EXTERNAL, DIGEST-MD5,
// OAuth and the like.
func (c *conn) features(el *wire.Element, raw []byte) []byte {
	starttls := el.Child(nsTLS, "starttls") != nil || el.Child(nsSASL2, "authentication") != nil
	hidden := false
	if m := el.Child(nsSASL, "mechanisms"); m != nil {
		for _, x := range m.Children {
			if !observable(strings.TrimSpace(x.Text)) {
				hidden = true
			}
		}
	}
	if !starttls && !hidden && c.encrypted {
		return raw
	}
	out := &wire.Element{Name: el.Name, Attr: el.Attr}
	if !c.encrypted {
		out.Children = append(out.Children, &wire.Element{Name: xml.Name{Space: nsTLS, Local: "starttls"}})
	}
	for _, ch := range el.Children {
		switch {
		case ch.Is(nsTLS, "starttls"), ch.Is(nsSASL2, "authentication"):
			continue
		case ch.Is(nsSASL, "mechanisms"):
			m := &wire.Element{Name: ch.Name, Attr: ch.Attr, Text: ch.Text}
			for _, x := range ch.Children {
				if observable(strings.TrimSpace(x.Text)) {
					m.Children = append(m.Children, x)
				}
			}
			ch = m
		}
		out.Children = append(out.Children, ch)
	}
	return out.Append(nil, nsClient)
}

// onSuccess: the server accepted the client's credentials.
func (c *conn) onSuccess() {
	o := c.offered()
	if j, err := jid.New(o.user, c.domain, ""); err == nil {
		c.acct.Store(&j)
	} else if d, err := jid.New("", c.domain, ""); err == nil {
		c.acct.Store(&d)
	}
	c.restart.Store(true)
	c.authed.Store(true)
	_ = c.raw.SetReadDeadline(time.Now().Add(c.p.cfg.Limits.IdleTimeout))
	detail := "mechanism=" + o.mech
	if c.tlsInfo != "" {
		detail = c.tlsInfo + " " + detail
	}
	c.p.deps.Journal.Transaction(&core.Transaction{Time: time.Now(), Protocol: "xmpp", Zone: c.l.cfg.Zone, Src: c.src.String(),
		Dst: c.p.cfg.Upstream.Address, Transport: c.transport(), Encrypted: c.encrypted, Method: "login",
		From: c.account().String(), To: c.domain, Action: core.Allow.String(), Detail: detail, Elapsed: time.Since(c.t0)})
}

// onFailure: the server refused the client's credentials. The failure is
// a security event with the rule the bruteforce stage counts by default
// (auth/failure), so that a source or an account is locked out after
// repeated failures and a source trying many accounts is blocked.
func (c *conn) onFailure(el *wire.Element) {
	cond := "failure"
	if len(el.Children) > 0 {
		cond = el.Children[0].Name.Local
	}
	o := c.offered()
	c.journal("auth", core.Verdict{Action: core.Refuse, Reason: core.ReasonUnauthorized, Rule: RuleSASLFailure, Detail: cond}, "")
	c.p.deps.Alerts.Alert(&core.SecurityEvent{Time: time.Now(), Rule: AuthFailureRule, Action: "refuse",
		Src: c.src.Addr().String(), Zone: c.l.cfg.Zone, User: o.user, Protocol: "xmpp", Detail: "SASL " + o.mech + ": " + cond})
}

// AuthFailureRule is the rule of the security event raised for each SASL
// failure the server answers: the one the bruteforce stage counts by
// default.
const AuthFailureRule = "auth/failure"
