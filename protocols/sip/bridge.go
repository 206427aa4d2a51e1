package sip

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
)

// The SIP side of the core bridge (SIP <-> XMPP interworking):
//
//   - addresses (RFC 7247): a SIP user alice is alice@<bridge.domain> on
//     the other side, whatever host her From names; a user of another
//     domain, juliet@example.test, is sip:juliet@example.test here, her
//     localpart percent-encoded where SIP requires it;
//   - one-to-one messages (RFC 7572): a SIP MESSAGE to a domain another
//     adapter serves becomes a core.Message; a core.Message to
//     alice@<bridge.domain> becomes a SIP MESSAGE to alice (her binding,
//     else the routes);
//   - errors both ways (RFC 7247 section 7): a SIP status becomes a core
//     reason (reasonOfStatus), a core reason a SIP status (bridgeStatusFor,
//     sipStatus with the few codes interworking answers differently).
//
// Presence (RFC 7248) is in presence.go, PIDF in pidf.go.

// protocolNamer is what an adapter on the bridge may offer to name its
// protocol in the journal ("xmpp"); the journal says "bridge" otherwise.
type protocolNamer interface{ Protocol() string }

// bridged returns the adapter that serves host on the other side of the
// bridge, or nil when host is not bridged (the adapter serves no bridged
// domain, no adapter serves host, or the SIP adapter serves it itself).
func (a *Adapter) bridged(host string) core.Deliverer {
	if a.bridgeDomain == "" || a.bridge == nil {
		return nil
	}
	d, ok := a.bridge.For(trimBrackets(host))
	if !ok || d == nil || d == core.Deliverer(a) {
		return nil
	}
	return d
}

// peerProtocol names the protocol of the adapter that serves domain, for
// the journal.
func (a *Adapter) peerProtocol(domain string) string {
	d, ok := a.bridge.For(domain)
	if !ok {
		return "bridge"
	}
	return protocolOf(d)
}

func protocolOf(d core.Deliverer) string {
	if pn, ok := d.(protocolNamer); ok {
		if p := pn.Protocol(); p != "" && len(p) <= 16 && token(p) {
			return p
		}
	}
	return "bridge"
}

// token reports whether s is a SIP token (RFC 3261 section 25.1).
func token(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// validDomain reports whether d is a domain name the gateway writes into
// a SIP URI: dot-separated labels of letters, digits and hyphens.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validLocal reports whether s can be the localpart of an address on the
// other side (RFC 7622 section 3.3: no space, no control, none of
// " & ' / : < > @), at most 1023 bytes of UTF-8.
func validLocal(s string) bool {
	if s == "" || len(s) > 1023 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r <= 0x20 || r == 0x7f || strings.ContainsRune("\"&'/:<>@", r) || r >= 0x80 && r <= 0x9f {
			return false
		}
	}
	return true
}

// sipUser writes a localpart of the other side as the user part of a SIP
// URI (RFC 3261 section 25.1): unreserved characters and the user marks
// pass, every other byte is percent-encoded.
func sipUser(local string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*()=+$,", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// localOf reads the user part of a SIP URI as a localpart of the other
// side: percent-decoded, and only if the other side allows it.
func localOf(user string) (string, bool) {
	if !strings.Contains(user, "%") {
		return user, validLocal(user)
	}
	b := make([]byte, 0, len(user))
	for i := 0; i < len(user); i++ {
		c := user[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(user) {
			return "", false
		}
		hi, ok1 := unhex(user[i+1])
		lo, ok2 := unhex(user[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	s := string(b)
	return s, validLocal(s)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// cleanDisplay keeps what a SIP display name can carry of a name from the
// other side: printable, no quote or backslash, at most 64 characters.
func cleanDisplay(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' || r == utf8.RuneError || r >= 0x80 && r <= 0x9f {
			continue
		}
		if n++; n > 64 {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// sipParty is a SIP user's address on the other side: the user part of
// u, in the bridged domain. errForeign when u's host is not one of the
// gateway's domains (see ownHost): bob@elsewhere.example must not speak as
// bob@<bridge domain>; errUnaddressable when the user part cannot be a
// localpart there.
func (a *Adapter) sipParty(display string, u *sip.Uri) (core.Identity, error) {
	local, ok := localOf(u.User)
	id := core.Identity{Display: cleanDisplay(display), User: local, Domain: a.bridgeDomain}
	switch {
	case !ok:
		return id, errUnaddressable
	case !a.ownHost(u.Host):
		return id, errForeign
	}
	return id, nil
}

var (
	errUnaddressable = errors.New("sip: user part not addressable on the other side")
	errForeign       = errors.New("sip: sender of a domain the gateway does not serve")
)

// ownHost reports whether a SIP user of host is one of the gateway's: host
// is the bridged domain, the gateway itself, or an upstream (its domain or
// address: the PBX the users register with).
func (a *Adapter) ownHost(host string) bool {
	host = trimBrackets(host)
	if strings.EqualFold(host, a.bridgeDomain) || a.isLocal(host) {
		return true
	}
	for _, up := range a.upList {
		if strings.EqualFold(host, up.domain) || host == up.ip.String() {
			return true
		}
	}
	return false
}

// peerParty is the party a Request-URI names on the other side.
func peerParty(u *sip.Uri) (core.Identity, bool) {
	local, ok := localOf(u.User)
	host := strings.ToLower(trimBrackets(u.Host))
	return core.Identity{User: local, Domain: host}, ok && validDomain(host)
}

// peerURI is the SIP URI of a party of the other side.
func peerURI(id core.Identity) (sip.Uri, bool) {
	if !validLocal(id.User) || !validDomain(id.Domain) {
		return sip.Uri{}, false
	}
	return sip.Uri{Scheme: "sip", User: sipUser(id.User), Host: strings.ToLower(id.Domain)}, true
}

// bridgeStatus are the SIP answers to a refusal from the other side that
// differ from the gateway's own (sipStatus): a recipient who is offline
// is 480, not the 503 of an overloaded gateway (RFC 7247 section 7).
var bridgeStatus = map[core.Reason]struct {
	code   int
	phrase string
}{
	core.ReasonUnavailable: {480, "Temporarily Unavailable"},
}

// bridgeStatusFor returns the SIP status for a refusal from the other side.
func bridgeStatusFor(r core.Reason) (int, string) {
	if s, ok := bridgeStatus[r]; ok {
		return s.code, s.phrase
	}
	return statusFor(core.Verdict{Reason: r})
}

// deliveryFailure maps what a Deliver call returned to a core reason: the
// other side's refusal, or the gateway's failure to hand it on.
func deliveryFailure(err error) (core.Reason, string) {
	var de *core.DeliveryError
	switch {
	case errors.As(err, &de):
		r := de.Reason
		if r == core.ReasonNone {
			r = core.ReasonInternal
		}
		return r, de.Detail
	case errors.Is(err, context.DeadlineExceeded):
		return core.ReasonTimeout, ""
	}
	return core.ReasonUnavailable, ""
}

// reasonOfStatus maps a SIP final status from a SIP user to a core reason
// for the other side (RFC 7247 section 7). A status the table does not
// name is read as the x00 of its class (RFC 3261 section 8.1.3.2); a
// redirect, which the gateway does not follow, as not found.
func reasonOfStatus(code int) core.Reason {
	switch code {
	case 400, 414, 416, 423, 493:
		return core.ReasonMalformed
	case 401, 407:
		return core.ReasonUnauthorized
	case 402, 403, 494, 603:
		return core.ReasonForbidden
	case 404, 410, 484, 485, 604:
		return core.ReasonNotFound
	case 405, 420, 421, 489, 501:
		return core.ReasonUnsupported
	case 406, 415, 488, 606:
		return core.ReasonNotAcceptable
	case 408, 504:
		return core.ReasonTimeout
	case 413, 513:
		return core.ReasonTooLarge
	case 429:
		return core.ReasonRateLimited
	case 480, 487, 502, 503:
		return core.ReasonUnavailable
	case 481:
		return core.ReasonNoDialog
	case 482, 483:
		return core.ReasonLoop
	case 486, 600:
		return core.ReasonBusy
	case 500:
		return core.ReasonInternal
	case 505:
		return core.ReasonVersion
	}
	switch {
	case code >= 300 && code < 400:
		return core.ReasonNotFound
	case code >= 400 && code < 500:
		return core.ReasonMalformed
	case code >= 500 && code < 600:
		return core.ReasonInternal
	case code >= 600 && code < 700:
		return core.ReasonBusy
	}
	return core.ReasonNone
}

// maxDetail bounds text from the other side that the journal keeps.
const maxDetail = 128

func clip(s string) string {
	if len(s) <= maxDetail {
		return s
	}
	cut := maxDetail
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// messageToBridge delivers an out-of-dialog MESSAGE whose Request-URI
// names a domain another adapter serves (RFC 7572), and answers it: 200
// once delivered, the SIP status of the other side's refusal otherwise.
// It reports false, having done nothing, for a MESSAGE that is not bridged.
func (a *Adapter) messageToBridge(in *inbound, ev *core.Event) bool {
	req := in.req
	d := a.bridged(req.Recipient.Host)
	if d == nil {
		return false
	}
	from := req.From()
	sender, errFrom := a.sipParty(from.DisplayName, &from.Address)
	to, okTo := peerParty(&req.Recipient)
	// The record keeps the SIP identities (From, To) and names the other
	// side's in Detail.
	in.rec.Detail = bridgeDetail(protocolOf(d), sender, to)
	switch {
	case errFrom != nil:
		a.refuseSender(in, errFrom)
		return true
	case !okTo:
		a.refuse(in, core.RefuseWith(core.ReasonNotFound, "sip/bridge_address", ""), "sip")
		return true
	}
	ctype, ok := plainText(req)
	if !ok {
		a.refuseBridged(in, 415, "Unsupported Media Type", "sip/bridge_content", core.ReasonNotAcceptable,
			sip.NewHeader("Accept", "text/plain"))
		return true
	}
	m := &core.Message{
		ID: randomToken("m", 8), From: sender, To: to,
		Body: string(req.Body()), ContentType: ctype, Src: ev.Src, Time: in.start,
	}
	in.rec.PeerCall = m.ID
	ctx, cancel := context.WithTimeout(a.ctx, 64*sip.T1)
	defer cancel()
	err := d.DeliverMessage(ctx, m)
	code, phrase := 200, "OK"
	if err != nil {
		r, detail := deliveryFailure(err)
		code, phrase = bridgeStatusFor(r)
		in.rec.Reason = r.String()
		if detail != "" {
			in.rec.Detail += ": " + clip(detail)
		}
	}
	res := sip.NewResponseFromRequest(req, code, phrase, nil)
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", sip.GenerateTagN(12))
	}
	a.respond(in, res)
	return true
}

// refuseSender refuses a bridged request whose sender has no address on
// the other side: 400 for a user part it cannot carry, 403 for a user of
// another domain.
func (a *Adapter) refuseSender(in *inbound, err error) {
	if errors.Is(err, errForeign) {
		a.refuse(in, core.RefuseWith(core.ReasonForbidden, "sip/bridge_sender", err.Error()), "sip")
		return
	}
	a.refuse(in, core.RefuseWith(core.ReasonMalformed, "sip/bridge_address", "Sender Not Addressable"), "sip")
}

// refuseBridged answers a bridged request the gateway refuses for what
// the other side cannot carry, with extra headers (an Accept), and
// journals it.
func (a *Adapter) refuseBridged(in *inbound, code int, phrase, rule string, r core.Reason, extra ...sip.Header) {
	in.rec.Action, in.rec.Rule, in.rec.Reason = core.Refuse.String(), rule, r.String()
	a.metrics.refusal("sip", rule)
	res := sip.NewResponseFromRequest(in.req, code, phrase, nil)
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", sip.GenerateTagN(12))
	}
	for _, h := range extra {
		res.AppendHeader(h)
	}
	a.respond(in, res)
}

// plainText reports whether a MESSAGE carries what an XMPP <body/> can:
// text/plain in UTF-8 (or no body at all). It returns the content type
// for the other side.
func plainText(req *sip.Request) (string, bool) {
	if len(req.Body()) > 0 && !utf8.Valid(req.Body()) {
		return "", false
	}
	ct := req.ContentType()
	if ct == nil {
		return "text/plain", len(req.Body()) == 0
	}
	parts := strings.Split(ct.Value(), ";")
	if !strings.EqualFold(strings.TrimSpace(parts[0]), "text/plain") {
		return "", false
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "charset") {
			v = strings.Trim(strings.TrimSpace(v), `"`)
			if !strings.EqualFold(v, "utf-8") && !strings.EqualFold(v, "us-ascii") {
				return "", false
			}
		}
	}
	return "text/plain", true
}

// targetFor finds where a request for a SIP user of the bridged domain
// goes: her binding (by address of record), else the upstreams of the
// first route that matches her user part and the bridged domain.
func (a *Adapter) targetFor(user string) (target, bool) {
	if b := a.bindings.lookup(user, true); b != nil {
		return target{ruri: b.contact, to: b.aor, binding: b}, true
	}
	u, ups, ok := matchRoute(a.routes, user, a.bridgeDomain)
	if !ok || len(ups) == 0 {
		return target{}, false
	}
	return target{ruri: sip.Uri{Scheme: "sip", User: u}, to: sip.Uri{Scheme: "sip", User: u}, upstreams: ups}, true
}

// bridgeLeg builds the gateway's leg toward a SIP user for a party of the
// other side: her binding, or upstream up. It is nil when no listener can
// reach her.
func (a *Adapter) bridgeLeg(t target, up *upstream, local sip.Uri, localName string) *leg {
	lg := &leg{
		callID:    newCallID(),
		localTag:  sip.GenerateTagN(16),
		local:     local,
		localName: cleanDisplay(localName),
	}
	if b := t.binding; b != nil {
		lg.remote, lg.target = b.aor, b.contact
		lg.transport, lg.dest, lg.l, lg.src, lg.natted = b.transport, b.src.String(), b.l, b.src, b.natted
	} else {
		lg.remote, lg.target = t.to, t.ruri
		lg.target.Host, lg.target.Port = splitHostPort(up.addr)
		if up.cfg.Domain != "" {
			lg.target.Host, lg.target.Port = up.domain, 0
		}
		lg.remote.Host = up.domain
		lg.transport, lg.dest, lg.l = up.transport, up.addr, a.listenerFor(up)
		lg.src = netip.AddrPortFrom(up.ip, up.port)
		lg.zone = up.zone
	}
	if lg.l == nil {
		t := strings.ToLower(lg.transport)
		for _, l := range a.listeners {
			if l.transport == t {
				lg.l = l
				break
			}
		}
	}
	if lg.l == nil {
		return nil
	}
	if lg.zone == "" {
		lg.zone = lg.l.zone
	}
	lg.secure = lg.transport == "TLS" || lg.transport == "WSS"
	return lg
}

// bridgeDetail names the other side of an interworked transaction for the
// journal: its protocol and the two parties as it knows them.
func bridgeDetail(proto string, from, to core.Identity) string {
	return "peer " + proto + " from " + clip(from.String()) + " to " + clip(to.String())
}

// bridgeRecord starts the journal record of a transaction the gateway
// sends for the other side: From and To as the other side names the
// parties, until recordLeg puts the SIP identities in.
func bridgeRecord(method string, src core.Source, from, to core.Identity, proto string) core.Transaction {
	rec := core.Transaction{Time: time.Now(), Protocol: "sip", Zone: src.Zone, Method: method,
		From: clip(from.String()), To: clip(to.String()), Encrypted: src.Encrypted, Detail: bridgeDetail(proto, from, to)}
	if src.Addr.IsValid() {
		rec.Src = src.Addr.String()
	}
	return rec
}

// recordLeg fills in what a record says of the leg its transaction went on:
// the SIP identities (From and To as the SIP side sees them), where it
// went and how.
func recordLeg(rec *core.Transaction, lg *leg) {
	rec.Transport = strings.ToLower(lg.transport)
	rec.Dst = lg.dest
	rec.CallID = lg.callID
	rec.From = clip(identity(lg.localName, &lg.local).String())
	rec.To = clip(identity(lg.remoteNm, &lg.remote).String())
	if rec.Src == "" {
		// Sent on the gateway's own account (a refresh): from the listener.
		rec.Src = lg.l.addr.String()
		rec.Encrypted = lg.secure
		return
	}
	// Forwarded: encrypted only if both hops were.
	rec.Encrypted = rec.Encrypted && lg.secure
}

// refuseOut refuses something the other side of the bridge asked the
// gateway to send (a message, a subscription, a call) before it is sent:
// rec is journaled with the rule and the SIP status the reason maps to,
// and the refusal is returned in neutral terms.
func (a *Adapter) refuseOut(rec *core.Transaction, r core.Reason, rule, detail string) error {
	rec.Action, rec.Rule, rec.Reason = core.Refuse.String(), rule, r.String()
	code, _ := bridgeStatusFor(r)
	a.metrics.refusal("sip", rule)
	a.journalOut(rec, code)
	return &core.DeliveryError{Reason: r, Detail: detail}
}

// journalOut journals a transaction the gateway sent with its final status
// (0: none came).
func (a *Adapter) journalOut(rec *core.Transaction, status int) {
	rec.Status = status
	if rec.Action == "" {
		rec.Action = core.Allow.String()
	}
	rec.Elapsed = time.Since(rec.Time)
	r := *rec
	a.journal.Transaction(&r)
}

// bridgeEvent is the core event of a request the gateway sends for the
// other side: the same stages judge interworked traffic as any other. Its
// protocol is the other side's (proto, "xmpp"), where the sender is and
// authenticated: a stage that only knows SIP's own credentials (auth)
// leaves it alone, the others (acl, blacklist, scan, validate, ...) judge
// it with the sender's source and identity.
func bridgeEvent(kind core.Kind, proto, method string, src core.Source, from, to core.Identity, out *sip.Request) *core.Event {
	ev := &core.Event{Kind: kind, Protocol: proto, Method: method, Time: time.Now(), Src: src, From: from, To: to}
	if out != nil {
		ev.Target = out.Recipient.String()
		ev.Shape = shape(out)
		ev.Size = ev.Shape.Size
		ev.Orig = out
	}
	return ev
}

// runBridged runs the pipeline on an event from the other side. A verdict
// that does not allow is journaled and returned as the refusal the other
// side answers with.
func (a *Adapter) runBridged(ctx context.Context, judged bool, ev *core.Event, rec *core.Transaction) error {
	if judged {
		return nil // the adapter it entered by judged it (core.Message.Judged)
	}
	d := a.pipeline.Load().Run(ctx, ev)
	if d.Action == core.Allow {
		return nil
	}
	if d.Err != nil {
		a.log.Error("stage failed", "stage", d.Stage, "error", d.Err)
	}
	v := d.Verdict
	if v.Delay > 0 {
		t := time.NewTimer(min(v.Delay, maxDelay))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	reason := v.Reason
	switch {
	case v.Action == core.Challenge:
		// The other side cannot answer a SIP challenge.
		reason = core.ReasonUnauthorized
	case reason == core.ReasonNone:
		reason = core.ReasonForbidden
	}
	a.metrics.refusal(d.Stage, v.Rule)
	rec.Action, rec.Rule, rec.Reason = v.Action.String(), v.Rule, reason.String()
	if v.Detail != "" {
		rec.Detail += ": " + clip(v.Detail)
	}
	code, _ := bridgeStatusFor(reason)
	if v.Action == core.Drop {
		code = 0
	}
	a.journalOut(rec, code)
	return &core.DeliveryError{Reason: reason, Detail: v.Detail}
}

// bounded returns ctx bounded by a non-INVITE transaction's lifetime and
// by the adapter's own.
func (a *Adapter) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, 64*sip.T1)
	stop := context.AfterFunc(a.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// maxBridgedBody bounds the text of a message from the other side, in
// bytes: SIP carries it in one request (and over UDP in one datagram,
// about 1300 bytes: see errUDPTooLarge).
const maxBridgedBody = 32 << 10

// errUDPTooLarge reports a request too large for a datagram (RFC 3261
// section 18.1.1, RFC 3428 section 9): sipgo refuses to send it.
var errUDPTooLarge = errors.New("sip: request too large for udp")

// across sends a request the gateway originates for the other side to a
// SIP user: to her binding, or to each upstream of her route in turn while
// they fail (no answer, a transport error, 503 or 408). build makes the
// request on a leg; before, if not nil, sees each request before it goes
// (the first one runs the pipeline) and may stop the attempt. It returns
// the final response and the leg it came on; a nil response with the
// error of the last attempt when none came.
func (a *Adapter) across(ctx context.Context, t target, local sip.Uri, localName string,
	build func(*leg) *sip.Request, before func(i int, lg *leg, out *sip.Request) error) (*sip.Response, *leg, error) {
	candidates := t.upstreams
	if t.binding != nil {
		candidates = []*upstream{nil}
	}
	var lastErr error
	var lastLeg *leg
	for i, up := range candidates {
		lg := a.bridgeLeg(t, up, local, localName)
		if lg == nil {
			lastErr = ErrNoListener
			continue
		}
		lastLeg = lg
		out := build(lg)
		if before != nil {
			if err := before(i, lg, out); err != nil {
				return nil, lg, err
			}
		}
		if lg.transport == "UDP" && len(out.String()) > sip.UDPMTUSize-200 {
			return nil, lg, errUDPTooLarge
		}
		res, err := a.cli.Do(ctx, out, noBuild)
		switch {
		case err == nil && res.StatusCode != 503 && res.StatusCode != 408:
			return res, lg, nil
		case err == nil:
			lastErr = nil
			if i == len(candidates)-1 {
				return res, lg, nil
			}
		default:
			lastErr = err
			if ctx.Err() != nil {
				return nil, lg, err
			}
		}
	}
	if lastErr == nil {
		lastErr = ErrNoListener
	}
	return nil, lastLeg, lastErr
}

// DeliverMessage sends m to a SIP user of the bridged domain as a SIP
// MESSAGE (RFC 7572): to the user registered through the gateway under
// m.To's user, else along the routes. The MESSAGE is from the sender's
// address as a SIP URI (sip:juliet@example.test, display name kept), to
// the SIP user; the gateway's own Via, Contact, Call-ID and tags hide
// both sides. The pipeline judges it first, and the journal records it
// with both identities. It returns nil on a 2xx, and a
// *core.DeliveryError with the neutral reason of a refusal, of a SIP
// error status or of a timeout.
func (a *Adapter) DeliverMessage(ctx context.Context, m *core.Message) error {
	if m == nil {
		return &core.DeliveryError{Reason: core.ReasonMalformed}
	}
	if a.ctx == nil || a.ctx.Err() != nil {
		return &core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "sip adapter not running"}
	}
	proto := a.peerProtocol(m.From.Domain)
	rec := bridgeRecord("MESSAGE", m.Src, m.From, m.To, proto)
	rec.PeerCall = clip(m.ID)
	refuse := func(r core.Reason, rule, detail string) error { return a.refuseOut(&rec, r, rule, detail) }
	local, ok := peerURI(m.From)
	if !ok {
		return refuse(core.ReasonMalformed, "sip/bridge_address", "sender not addressable in SIP")
	}
	if !strings.EqualFold(m.To.Domain, a.bridgeDomain) || !validLocal(m.To.User) {
		return refuse(core.ReasonNotFound, "sip/bridge_address", "no such SIP user")
	}
	// What crosses is text (an XMPP <body/>): text/plain in UTF-8, bounded.
	if ct, _, _ := strings.Cut(m.ContentType, ";"); ct != "" && !strings.EqualFold(strings.TrimSpace(ct), "text/plain") {
		return refuse(core.ReasonNotAcceptable, "sip/bridge_content", "only text/plain crosses")
	}
	if len(m.Body) > maxBridgedBody {
		return refuse(core.ReasonTooLarge, "sip/bridge_size", "body above "+strconv.Itoa(maxBridgedBody)+" bytes")
	}
	if !utf8.ValidString(m.Body) {
		return refuse(core.ReasonMalformed, "sip/bridge_content", "body not UTF-8")
	}
	const ctype = "text/plain;charset=UTF-8"
	user := sipUser(m.To.User)
	t, routed := a.targetFor(user)
	ctx, cancel := a.bounded(ctx)
	defer cancel()
	if !routed {
		if err := a.runBridged(ctx, m.Judged, bridgeEvent(core.KindMessage, proto, "MESSAGE", m.Src, m.From, m.To, nil), &rec); err != nil {
			return err
		}
		return refuse(core.ReasonNotFound, "sip/no_route", "no such SIP user")
	}
	build := func(lg *leg) *sip.Request {
		out := lg.request(sip.MESSAGE, 0)
		out.AppendHeader(sip.NewHeader("User-Agent", a.cfg.UserAgent))
		out.AppendHeader(sip.NewHeader("Content-Type", ctype))
		out.SetBody([]byte(m.Body))
		return out
	}
	before := func(i int, lg *leg, out *sip.Request) error {
		recordLeg(&rec, lg)
		if i > 0 {
			return nil
		}
		ev := bridgeEvent(core.KindMessage, proto, "MESSAGE", m.Src, m.From, m.To, out)
		if t.binding == nil {
			ev.Route = t.upstreams[0].name
		}
		return a.runBridged(ctx, m.Judged, ev, &rec)
	}
	res, _, err := a.across(ctx, t, local, m.From.Display, build, before)
	var de *core.DeliveryError
	switch {
	case errors.As(err, &de):
		return err // refused by the pipeline, journaled
	case errors.Is(err, errUDPTooLarge):
		return refuse(core.ReasonTooLarge, "sip/udp_size", "too large for udp")
	case err != nil:
		r := core.ReasonUnavailable
		if errors.Is(err, sip.ErrTransactionTimeout) || errors.Is(err, context.DeadlineExceeded) {
			r = core.ReasonTimeout
		}
		rec.Reason = r.String()
		a.journalOut(&rec, 408)
		// The error names addresses of the SIP side: the log has it, the
		// other side does not.
		a.log.Debug("bridged MESSAGE not answered", "error", err)
		return &core.DeliveryError{Reason: r, Detail: "no answer from the SIP user"}
	}
	if res.StatusCode < 300 {
		a.journalOut(&rec, res.StatusCode)
		return nil
	}
	r := reasonOfStatus(res.StatusCode)
	rec.Reason = r.String()
	a.journalOut(&rec, res.StatusCode)
	return &core.DeliveryError{Reason: r, Detail: "SIP " + strconv.Itoa(res.StatusCode) + " " + cleanDisplay(res.Reason)}
}

// Protocol names the adapter on the bridge, for the other adapters'
// journals ("sip:alice@sip.example.com").
func (a *Adapter) Protocol() string { return "sip" }

// enforce the contract at build time.
var (
	_ core.Deliverer = (*Adapter)(nil)
	_ protocolNamer  = (*Adapter)(nil)
)
