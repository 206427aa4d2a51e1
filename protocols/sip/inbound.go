package sip

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
)

// inbound is what the adapter knows about a request as it arrives.
type inbound struct {
	req   *sip.Request
	tx    sip.ServerTransaction
	l     *listener
	src   netip.AddrPort
	zone  string
	up    *upstream // the upstream it came from, if any
	start time.Time
	rec   core.Transaction
	media *core.MediaDesc // the request's SDP in neutral form, once parsed
}

// inboundOf builds the arrival facts and the journal record of a request.
func (a *Adapter) inboundOf(req *sip.Request, tx sip.ServerTransaction) *inbound {
	in := &inbound{req: req, tx: tx, start: time.Now()}
	in.l = a.listenerOf(req, tx)
	src, _ := netip.ParseAddrPort(req.Source())
	in.src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if in.l != nil {
		in.zone = in.l.zone
	}
	if up := a.upstreamOf(in.src, req.Transport()); up != nil {
		in.up = up
		if up.zone != "" {
			in.zone = up.zone
		}
	}
	in.rec = core.Transaction{
		Time:      in.start,
		Protocol:  "sip",
		Zone:      in.zone,
		Src:       in.src.String(),
		Transport: strings.ToLower(req.Transport()),
		Method:    string(req.Method),
	}
	if in.l != nil {
		in.rec.Dst = in.l.addr.String()
		in.rec.Encrypted = in.l.encrypted
	}
	if h := req.CallID(); h != nil {
		in.rec.CallID = h.Value()
	}
	if h := req.From(); h != nil {
		in.rec.From = identity(h.DisplayName, &h.Address).String()
	}
	if h := req.To(); h != nil {
		in.rec.To = identity(h.DisplayName, &h.Address).String()
	}
	return in
}

// upstreamOf finds the upstream a request comes from: its address, or
// (over a connection, whose source port is ephemeral) its IP, or one of
// its configured source networks.
func (a *Adapter) upstreamOf(src netip.AddrPort, transport string) *upstream {
	for _, up := range a.upList {
		if up.ip == src.Addr() && (up.port == src.Port() || !strings.EqualFold(transport, "udp") && strings.EqualFold(transport, up.transport)) {
			return up
		}
		for _, p := range up.sources {
			if p.Contains(src.Addr()) {
				return up
			}
		}
	}
	return nil
}

// event builds the core event for a request.
func (a *Adapter) event(in *inbound, kind core.Kind) *core.Event {
	req := in.req
	ev := &core.Event{
		Kind:     kind,
		Protocol: "sip",
		Method:   string(req.Method),
		Time:     in.start,
		Src: core.Source{
			Addr:      in.src,
			Transport: in.rec.Transport,
			Encrypted: in.rec.Encrypted,
			Zone:      in.zone,
		},
		Target: req.Recipient.String(),
		Orig:   req,
	}
	if in.l != nil {
		ev.Src.Local = in.l.addr
	}
	if h := req.From(); h != nil {
		ev.From = identity(h.DisplayName, &h.Address)
	}
	if h := req.To(); h != nil {
		ev.To = identity(h.DisplayName, &h.Address)
		ev.InDialog = h.Params.Has("tag")
	}
	if h := req.GetHeader("User-Agent"); h != nil {
		ev.Agent = h.Value()
	}
	ev.Credentials = credentials(req)
	ev.Shape = shape(req)
	ev.Size = ev.Shape.Size
	return ev
}

func identity(display string, u *sip.Uri) core.Identity {
	return core.Identity{Display: display, User: u.User, Domain: u.Host}
}

// check applies what SIP itself requires of a request before the gateway
// can process it. It returns a refusing verdict, or the zero verdict.
func check(req *sip.Request) core.Verdict {
	bad := func(detail string) core.Verdict {
		return core.RefuseWith(core.ReasonMalformed, "sip/malformed", detail)
	}
	if req.SipVersion != "SIP/2.0" {
		return core.RefuseWith(core.ReasonVersion, "sip/version", "")
	}
	switch {
	case req.From() == nil:
		return bad("Missing From")
	case req.To() == nil:
		return bad("Missing To")
	case req.CallID() == nil || req.CallID().Value() == "":
		return bad("Missing Call-ID")
	case req.CSeq() == nil:
		return bad("Missing CSeq")
	case req.Via() == nil:
		return bad("Missing Via")
	}
	if cs := req.CSeq(); cs.MethodName != req.Method && !(req.IsAck() && cs.MethodName == sip.INVITE) {
		return bad("CSeq Method Mismatch")
	}
	if !req.From().Params.Has("tag") {
		return bad("Missing From Tag")
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return core.RefuseWith(core.ReasonLoop, "sip/max_forwards", "Too Many Hops")
	}
	if req.Recipient.Scheme != "sip" && req.Recipient.Scheme != "sips" {
		return core.RefuseWith(core.ReasonUnsupported, "sip/uri_scheme", "Unsupported URI Scheme")
	}
	return core.Verdict{}
}

// run runs the pipeline on ev, and answers and journals a refusal. It
// reports whether the request may go on.
func (a *Adapter) run(in *inbound, ev *core.Event) bool {
	v := check(in.req)
	stage := "sip"
	if v.Action == core.Allow && ev.Media == nil && isSDP(in.req) && len(in.req.Body()) > 0 {
		md, err := mediaFromSDP(in.req.Body())
		if err != nil {
			v = core.RefuseWith(core.ReasonMalformed, "sip/sdp", "Malformed SDP")
		}
		ev.Media, in.media = md, md
	}
	if v.Action == core.Allow {
		d := a.pipeline.Load().Run(context.Background(), ev)
		if d.Action == core.Allow {
			return true
		}
		v, stage = d.Verdict, d.Stage
		if d.Err != nil {
			a.log.Error("stage failed", "stage", d.Stage, "error", d.Err)
		}
	}
	if v.CDR && ev.Kind == core.KindSessionOffer {
		a.refusedCDR(in, ev, v)
	}
	a.refuse(in, v, stage)
	return false
}

// maxDelay bounds how long a verdict may hold an answer.
const maxDelay = 10 * time.Second

// refusedCDR writes the CDR of a call attempt a stage refused and asked to
// account for (admission control).
func (a *Adapter) refusedCDR(in *inbound, ev *core.Event, v core.Verdict) {
	code, _ := statusFor(v)
	now := time.Now()
	caller := core.Leg{Role: core.RoleCaller, Protocol: "sip", Transport: in.rec.Transport,
		Encrypted: in.rec.Encrypted, Zone: in.zone, Remote: in.src, CallID: in.rec.CallID, Party: ev.From}
	if in.l != nil {
		caller.Local = in.l.addr
	}
	cdr := &core.CDR{Session: core.NewSessionID(), Kind: "call", From: ev.From.String(), To: ev.To.String(),
		Start: in.start, End: now, Status: code, EndReason: v.Rule, EndedBy: core.RoleGateway,
		Legs: []core.Leg{caller, {Role: core.RoleCallee, Protocol: "sip", Upstream: ev.Route}}}
	in.rec.Session = cdr.Session
	a.metrics.calls.WithLabelValues("refused").Inc()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.journal.CDR(ctx, cdr); err != nil {
		a.log.Error("cdr not written", "session", cdr.Session, "error", err)
	}
}

// refuse answers a refused request in SIP terms (or not at all, for a
// drop) and journals it.
func (a *Adapter) refuse(in *inbound, v core.Verdict, stage string) {
	in.rec.Action = v.Action.String()
	in.rec.Rule = v.Rule
	in.rec.Reason = v.Reason.String()
	in.rec.Detail = v.Detail
	a.metrics.refusals.WithLabelValues(stage, v.Rule).Inc()
	if v.Action == core.Drop || in.req.IsAck() {
		a.finish(in, 0)
		return
	}
	if v.Delay > 0 {
		// The handler's goroutine holds the answer; the transaction
		// absorbs the peer's retransmissions meanwhile.
		time.Sleep(min(v.Delay, maxDelay))
	}
	code, phrase := statusFor(v)
	var extra []sip.Header
	if v.Action == core.Challenge && v.Challenge != nil {
		code, phrase = 401, "Unauthorized"
		if v.Challenge.Proxy {
			code, phrase = 407, "Proxy Authentication Required"
		}
		extra = challengeHeaders(v.Challenge)
	}
	res := sip.NewResponseFromRequest(in.req, code, phrase, nil)
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", sip.GenerateTagN(12))
	}
	for _, h := range extra {
		res.AppendHeader(h)
	}
	if v.RetryAfter > 0 {
		res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(max(1, int(v.RetryAfter/time.Second)))))
	}
	a.respond(in, res)
}

// respond sends a final response on the request's transaction and
// journals the transaction.
func (a *Adapter) respond(in *inbound, res *sip.Response) {
	a.decorate(res)
	if err := in.tx.Respond(res); err != nil {
		a.log.Debug("respond failed", "method", string(in.req.Method), "status", res.StatusCode, "error", err)
	}
	if res.StatusCode >= 200 {
		a.finish(in, res.StatusCode)
	}
}

// decorate adds what every response of the gateway carries.
func (a *Adapter) decorate(res *sip.Response) {
	res.AppendHeader(sip.NewHeader("Server", a.cfg.UserAgent))
}

// finish journals a transaction with its final status.
func (a *Adapter) finish(in *inbound, status int) {
	in.rec.Status = status
	if in.rec.Action == "" {
		in.rec.Action = core.Allow.String()
	}
	in.rec.Elapsed = time.Since(in.start)
	a.metrics.transaction(in.rec.Method, status)
	rec := in.rec
	a.journal.Transaction(&rec)
}
