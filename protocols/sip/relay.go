package sip

import (
	"context"

	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
)

// onOutOfDialog handles OPTIONS and MESSAGE. OPTIONS for the gateway
// itself is answered here; the rest is relayed like any non-INVITE.
func (a *Adapter) onOutOfDialog(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		a.onOther(req, tx)
		return
	}
	in := a.inboundOf(req, tx)
	kind := core.KindMessage
	if req.Method == sip.OPTIONS {
		kind = core.KindProbe
	}
	ev := a.event(in, kind)
	if !a.run(in, ev) {
		return
	}
	if req.Method == sip.MESSAGE && a.messageToBridge(in, ev) {
		return
	}
	if req.Method == sip.OPTIONS && (req.Recipient.User == "" || a.bindings.lookup(req.Recipient.User, false) == nil && !a.routable(req)) {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, PRACK, UPDATE, REGISTER, NOTIFY, REFER"))
		res.AppendHeader(sip.NewHeader("Accept", "application/sdp, text/plain"))
		res.AppendHeader(sip.NewHeader("Supported", "100rel, timer"))
		a.respond(in, res)
		return
	}
	a.relay(in)
}

// routable reports whether an out-of-dialog request has somewhere to go
// other than the gateway itself.
func (a *Adapter) routable(req *sip.Request) bool {
	if a.isLocal(req.Recipient.Host) && req.Method == sip.OPTIONS {
		return false
	}
	_, ups, ok := matchRoute(a.routes, req.Recipient.User, trimBrackets(req.Recipient.Host))
	return ok && len(ups) > 0
}

// relay sends an out-of-dialog non-INVITE request (MESSAGE, OPTIONS,
// PUBLISH) to its target with a fresh Call-ID and tags, and relays the
// final response.
func (a *Adapter) relay(in *inbound) {
	req := in.req
	t, ok := a.resolve(in)
	if !ok {
		a.refuse(in, core.RefuseWith(core.ReasonNoRoute, "sip/no_route", ""), "sip")
		return
	}
	var up *upstream
	if t.binding == nil {
		up = t.upstreams[0]
	}
	from := req.From()
	lg := &leg{
		callID:    newCallID(),
		localTag:  sip.GenerateTagN(16),
		localName: from.DisplayName,
		remote:    t.to,
		target:    t.ruri,
	}
	if b := t.binding; b != nil {
		lg.transport, lg.dest, lg.l = b.transport, b.src.String(), b.l
	} else {
		lg.transport, lg.dest, lg.l = up.transport, up.addr, a.listenerFor(up)
	}
	if lg.l == nil {
		lg.l = in.l
	}
	lg.local = sip.Uri{Scheme: "sip", User: from.Address.User, Host: lg.l.host}
	out := lg.request(req.Method, 1)
	if mf := req.MaxForwards(); mf != nil {
		v := sip.MaxForwardsHeader(min(mf.Val()-1, 70))
		out.ReplaceHeader(&v)
	}
	a.copyRequest(req, out)
	out.AppendHeader(sip.NewHeader("User-Agent", a.cfg.UserAgent))
	setBody(req, out, lg.l.host)
	in.rec.PeerCall = lg.callID

	ctx, cancel := context.WithTimeout(a.ctx, 64*sip.T1)
	defer cancel()
	res, err := a.cli.Do(ctx, out, noBuild)
	if err != nil {
		a.respond(in, sip.NewResponseFromRequest(req, 408, "Request Timeout", nil))
		return
	}
	resA := sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, nil)
	copySafe(res, resA, safeResponseHeaders)
	setBody(res, resA, in.l.host)
	a.respond(in, resA)
}
