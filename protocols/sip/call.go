package sip

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/media"
)

// call is one B2BUA call: two dialogs and the session that joins them.
type call struct {
	a    *Adapter
	sess *core.Session
	// pipe is the pipeline the call was admitted by; its stages are told
	// when the call ends even if a reload swapped the pipeline meanwhile.
	pipe *core.Pipeline

	mu   sync.Mutex
	legs [2]*leg
	// inviteSeqB is the CSeq of the last INVITE sent on leg B (initial or
	// re-INVITE); ackBodyB the body of the ACK that answered its 2xx (late
	// offer), kept to answer retransmissions. A held call keeps no message.
	inviteSeqB uint32
	ackedB     bool
	ackBodyB   []byte
	ackTypeB   string
	// pendingAck is set while a 2xx to A waits for A's ACK; closing it stops
	// the 2xx retransmissions. ackWaitB says leg B's ACK waits for A's ACK
	// (late offer: the ACK carries the answer).
	pendingAck chan struct{}
	ackSeqA    uint32
	ackWaitB   bool
	answered   bool
	ended      bool
	maxTimer   *time.Timer

	// media relays the call's RTP when the gateway anchors media (nil
	// otherwise); offerFrom is the side whose SDP offer awaits its answer
	// (noOffer if none); mediaEnc says each side's media is encrypted.
	media      *media.Call
	offerFrom  int
	mediaEnc   [2]bool
	offerBodyB []byte
	offerTypeB string
	// rtc is the WebRTC side of a leg whose media is ICE and DTLS-SRTP
	// (a browser); nil for a SIP leg.
	rtc [2]WebRTCLeg
	// tc is the call's video transcoding (transcode.go); nil until a
	// description with a browser on one side passes.
	tc *tcState
	// far is the callee's side of a call to a user of another adapter
	// (bridgecallin.go): then there is no leg B; bridgedIn is set once
	// such a call is bound to the pipeline.
	far       core.CallLeg
	bridgedIn bool
}

// target is where a new call or request goes.
type target struct {
	ruri      sip.Uri
	to        sip.Uri
	upstreams []*upstream // candidates in order, or
	binding   *binding    // a user registered through the gateway
}

// onInvite handles every INVITE: a new call, or a re-INVITE in a dialog.
func (a *Adapter) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		a.onOther(req, tx)
		return
	}
	in := a.inboundOf(req, tx)
	ev := a.event(in, core.KindSessionOffer)
	t, routed := a.resolve(in)
	if routed && t.binding == nil {
		ev.Route = t.upstreams[0].name
	}
	// An INVITE for a call that exists is a retransmission that outlived
	// its transaction (the gateway ends an INVITE transaction as soon as
	// the 2xx is out; the 2xx itself is retransmitted until the ACK).
	if from, cid := req.From(), req.CallID(); from != nil && cid != nil {
		if tag, ok := from.Params.Get("tag"); ok {
			if _, dup := a.dialogs.get(cid.Value(), remoteKey(tag)); dup {
				return
			}
		}
	}
	if !a.run(in, ev) {
		return
	}
	if a.inviteToBridge(in, ev) {
		return
	}
	if !routed {
		a.refuse(in, core.RefuseWith(core.ReasonNoRoute, "sip/no_route", ""), "sip")
		return
	}
	a.calls.Add(1)
	defer a.calls.Done()
	c := a.newCall(in, t)
	c.setup(in, t)
}

// resolve finds where a request goes: a user registered through the
// gateway, or the upstreams of the first matching route.
func (a *Adapter) resolve(in *inbound) (target, bool) {
	ru := in.req.Recipient
	// A registered user is reached by the token its registrar holds, from
	// anywhere; by its user name only from an upstream. Everyone else's
	// calls go through the routes, to the PBX that decides.
	if b := a.bindings.lookup(ru.User, in.up != nil); b != nil {
		return target{ruri: b.contact, to: b.aor, binding: b}, true
	}
	user, ups, ok := matchRoute(a.routes, ru.User, trimBrackets(ru.Host))
	if !ok || len(ups) == 0 {
		return target{}, false
	}
	up := ups[0]
	host, port := splitHostPort(up.addr)
	ruri := sip.Uri{Scheme: "sip", User: user, Host: host, Port: port}
	to := sip.Uri{Scheme: "sip", User: user, Host: up.domain}
	if up.cfg.Domain != "" {
		ruri.Host, ruri.Port = up.domain, 0
	}
	return target{ruri: ruri, to: to, upstreams: ups}, true
}

// isLocal reports whether host names the gateway itself.
func (a *Adapter) isLocal(host string) bool {
	host = trimBrackets(host)
	for _, l := range a.listeners {
		if strings.EqualFold(host, l.host) || host == l.addr.Addr().String() {
			return true
		}
	}
	return false
}

func trimBrackets(h string) string {
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

func splitHostPort(hp string) (string, int) {
	ap, err := netip.ParseAddrPort(hp)
	if err != nil {
		return hp, 0
	}
	return ap.Addr().String(), int(ap.Port())
}

// newCall builds the call and its A leg from the INVITE, and registers
// leg A in the dialog table.
func (a *Adapter) newCall(in *inbound, t target) *call {
	req := in.req
	from, to := req.From(), req.To()
	la := &leg{
		callID:    req.CallID().Value(),
		localTag:  sip.GenerateTagN(16),
		remoteTag: from.Params.GetOr("tag", ""),
		local:     *to.Address.Clone(),
		localName: to.DisplayName,
		remote:    *from.Address.Clone(),
		remoteNm:  from.DisplayName,
		routes:    routeSet(req, false),
		remoteSeq: req.CSeq().SeqNo,
		transport: strings.ToUpper(req.Transport()),
		l:         in.l,
		src:       in.src,
		secure:    in.rec.Encrypted,
		zone:      in.zone,
	}
	la.local.UriParams, la.remote.UriParams = nil, nil
	if ct := req.Contact(); ct != nil {
		la.target = *ct.Address.Clone()
	} else {
		la.target = *from.Address.Clone()
	}
	// Requests to the caller go back where it sent from: this is what lets
	// a phone behind NAT (or a browser on a WebSocket) receive them.
	la.dest = in.src.String()
	la.cseq.Store(1)
	caller := core.Leg{Protocol: "sip", Transport: in.rec.Transport, Encrypted: la.secure,
		Zone: in.zone, Remote: in.src, CallID: la.callID,
		Party: identity(from.DisplayName, &from.Address)}
	if in.l != nil {
		caller.Local = in.l.addr
	}
	if in.up != nil {
		caller.Upstream = in.up.name
	}
	sess := core.NewSession("call", identity(from.DisplayName, &from.Address),
		identity(to.DisplayName, &to.Address), caller, in.start)
	la.natted = behindNAT(req, in.src, in.media)
	c := &call{a: a, sess: sess, offerFrom: noOffer}
	c.legs[sideA] = la
	a.sessions.Add(sess)
	c.pipe = a.pipeline.Load()
	if a.media != nil {
		c.media = a.media.NewCall(sess.ID, c.pipe, func(reason string) {
			go c.terminate(core.RoleGateway, reason)
		})
	}
	a.metrics.active.Inc()
	a.dialogs.put(la.callID, la.localTag, dialogRef{call: c, side: sideA})
	a.dialogs.put(la.callID, remoteKey(la.remoteTag), dialogRef{call: c, side: sideA})
	in.rec.Session = sess.ID
	return c
}

// legB builds the callee's leg toward an upstream or a registered user.
func (c *call) legB(in *inbound, t target, up *upstream) *leg {
	a := c.a
	from := in.req.From()
	lb := &leg{
		callID:    newCallID(),
		localTag:  sip.GenerateTagN(16),
		localName: from.DisplayName,
		remote:    t.to,
		target:    t.ruri,
	}
	lb.cseq.Store(uint32(time.Now().UnixNano()>>10) & 0xffff)
	switch {
	case t.binding != nil:
		b := t.binding
		lb.transport, lb.dest, lb.l, lb.src, lb.zone = b.transport, b.src.String(), b.l, b.src, b.l.zone
		lb.natted = b.natted
	default:
		lb.srtp = srtpMode(up.cfg.SRTP)
		lb.transport = up.transport
		lb.dest = up.addr
		lb.l = a.listenerFor(up)
		lb.src = netip.MustParseAddrPort(up.addr)
		lb.zone = up.zone
	}
	if lb.l == nil {
		lb.l = in.l
	}
	lb.secure = lb.transport == "TLS" || lb.transport == "WSS"
	lb.local = sip.Uri{Scheme: "sip", User: from.Address.User, Host: lb.l.host}
	return lb
}

// outcome is how one INVITE attempt on leg B ended.
type outcome struct {
	answered  bool
	responded bool          // the caller already has its final response
	res       *sip.Response // a final non-2xx response to relay to the caller
	status    int
	reason    string // the CDR's end reason when not answered
	phrase    string // the reason phrase of status, when the gateway says why
	by        string // who ended it
	retry     bool   // the next upstream may be tried
}

// setup sends the INVITE to each candidate in turn until one answers,
// relays what comes back to the caller, and returns when the caller has a
// final response. An answered call lives on in the dialog table.
func (c *call) setup(in *inbound, t target) {
	a := c.a
	canceled := make(chan struct{})
	var once sync.Once
	in.tx.OnCancel(func(*sip.Request) { once.Do(func() { close(canceled) }) })

	candidates := t.upstreams
	if t.binding != nil {
		candidates = []*upstream{nil}
	}
	var o outcome
	for i, up := range candidates {
		if i > 0 {
			a.dialogs.del(c.legs[sideB].callID, c.legs[sideB].localTag)
			t.ruri.Host, t.ruri.Port = splitHostPort(up.addr)
			if up.cfg.Domain != "" {
				t.ruri.Host, t.ruri.Port = up.domain, 0
			}
			t.to.Host = up.domain
		}
		lb := c.legB(in, t, up)
		c.mu.Lock()
		c.legs[sideB] = lb
		if t.binding != nil && isWebSocket(lb.transport) && a.rtc != nil && c.media != nil && c.rtc[sideB] == nil {
			c.newRTCLocked(sideB) // a browser registered over a WebSocket
		}
		c.mu.Unlock()
		a.dialogs.put(lb.callID, lb.localTag, dialogRef{call: c, side: sideB})
		c.sess.SetCallee(core.Leg{Protocol: "sip", Transport: strings.ToLower(lb.transport),
			Encrypted: lb.secure, Zone: lb.zone, Remote: lb.src, Local: lb.l.addr,
			CallID: lb.callID, Party: identity("", &t.to), Upstream: upName(up)})
		if i == 0 {
			c.pipe.Bind(c.sess)
		}
		in.rec.PeerCall = lb.callID
		o = c.attempt(in, lb, canceled)
		if !o.retry || i == len(candidates)-1 {
			break
		}
	}
	if !o.responded {
		if o.res != nil {
			c.relayFinal(in, o.res)
		} else {
			c.respondA(in, o.status, o.phrase)
		}
	}
	if !o.answered {
		c.end(o.status, o.reason, o.by)
	}
}

// remoteKey is the dialog-table key under which leg A is found by the
// caller's own tag, to recognise a retransmitted INVITE.
func remoteKey(tag string) string { return "\x00" + tag }

func upName(up *upstream) string {
	if up == nil {
		return ""
	}
	return up.name
}

// attempt sends the INVITE on leg B and relays provisional responses
// until a final one, a CANCEL from the caller, or a timeout.
func (c *call) attempt(in *inbound, lb *leg, canceled <-chan struct{}) outcome {
	a := c.a
	reqA := in.req
	reqB := lb.request(sip.INVITE, 0)
	if mf := reqA.MaxForwards(); mf != nil {
		v := sip.MaxForwardsHeader(min(mf.Val()-1, 70))
		reqB.ReplaceHeader(&v)
	}
	c.a.copyRequest(reqA, reqB)
	reqB.AppendHeader(sip.NewHeader("User-Agent", a.cfg.UserAgent))
	if err := c.offerB(reqA, reqB); err != nil {
		var me *errMedia
		errors.As(err, &me)
		a.log.Debug("offer not relayed", "session", c.sess.ID, "error", err)
		return outcome{status: me.status, phrase: me.phrase, reason: "media", by: core.RoleGateway}
	}
	c.mu.Lock()
	c.inviteSeqB = reqB.CSeq().SeqNo
	c.ackWaitB = len(reqB.Body()) == 0
	c.mu.Unlock()

	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	txB, err := a.cli.TransactionRequest(ctx, reqB, noBuild)
	if err != nil {
		a.log.Debug("invite not sent", "session", c.sess.ID, "error", err)
		return outcome{status: 503, reason: "unreachable", by: core.RoleGateway, retry: true}
	}
	defer txB.Terminate()
	ring := time.NewTimer(a.cfg.RingTimeout)
	defer ring.Stop()
	provisional := false
	for {
		select {
		case res := <-txB.Responses():
			switch {
			case res.StatusCode < 200:
				provisional = true
				if res.StatusCode > 100 {
					c.learnB(res, false)
					c.relayProvisional(in, res)
				}
			case res.StatusCode < 300:
				c.learnB(res, true)
				if !c.answer(in, res, txB) {
					return outcome{responded: true, status: 488, reason: "media", by: core.RoleGateway}
				}
				return outcome{answered: true, responded: true, status: res.StatusCode}
			default:
				return outcome{res: res, status: res.StatusCode, reason: "rejected", by: core.RoleCallee,
					retry: res.StatusCode == 503 || res.StatusCode == 408}
			}
		case <-canceled:
			c.cancelB(reqB, txB, provisional)
			return outcome{responded: true, status: 487, reason: "canceled", by: core.RoleCaller}
		case <-ring.C:
			c.cancelB(reqB, txB, provisional)
			return outcome{status: 408, reason: "no_answer", by: core.RoleGateway}
		case <-txB.Done():
			st := 408
			if errors.Is(txB.Err(), sip.ErrTransactionTransport) {
				st = 503
			}
			return outcome{status: st, reason: "unreachable", by: core.RoleGateway, retry: true}
		case <-a.ctx.Done():
			return outcome{status: 503, reason: "shutdown", by: core.RoleGateway}
		}
	}
}

// learnB records what a response on leg B says about its dialog: the
// callee's tag, and for a 2xx its target and route set.
func (c *call) learnB(res *sip.Response, final bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lb := c.legs[sideB]
	if to := res.To(); to != nil {
		if tag, ok := to.Params.Get("tag"); ok {
			lb.remoteTag = tag
		}
	}
	if ct := res.Contact(); ct != nil && (final || res.StatusCode > 100) {
		lb.target = *ct.Address.Clone()
	}
	if final || res.StatusCode > 100 {
		lb.routes = routeSet(res, true)
	}
}

// responseA builds a response to the caller's INVITE that carries the
// gateway's tag and Contact and the safe parts of the callee's response;
// its SDP, if any, goes through the relay.
func (c *call) responseA(in *inbound, from *sip.Response) (*sip.Response, error) {
	la := c.legs[sideA]
	res := sip.NewResponseFromRequest(in.req, from.StatusCode, from.Reason, nil)
	if to := res.To(); to != nil {
		to.Params.Add("tag", la.localTag)
	}
	if from.StatusCode < 300 {
		res.AppendHeader(la.contact())
	}
	copySafe(from, res, safeResponseHeaders)
	if from.StatusCode < 300 {
		if err := c.sdpBody(sideB, c.isOffer(sideB), from, res); err != nil {
			return res, err
		}
	} else {
		res.SetBody(nil)
	}
	return res, nil
}

// offerB writes the INVITE's body for leg B. The relay makes the offer
// once: a second upstream tried after the first failed gets the same.
func (c *call) offerB(reqA, reqB *sip.Request) error {
	c.mu.Lock()
	body, ctype := c.offerBodyB, c.offerTypeB
	c.mu.Unlock()
	if body == nil {
		if err := c.sdpBody(sideA, true, reqA, reqB); err != nil {
			return err
		}
		body = reqB.Body()
		if ct := reqB.ContentType(); ct != nil {
			ctype = ct.Value()
		}
		c.mu.Lock()
		c.offerBodyB, c.offerTypeB = body, ctype
		c.mu.Unlock()
		return nil
	}
	reqB.AppendHeader(sip.NewHeader("Content-Type", ctype))
	reqB.SetBody(body)
	return nil
}

func (c *call) relayProvisional(in *inbound, res *sip.Response) {
	c.sess.Early()
	r, err := c.responseA(in, res)
	if err != nil {
		// An early answer the relay refuses: the caller hears the
		// progress without it; the final answer decides.
		r.SetBody(nil)
	}
	c.a.decorate(r)
	if err := in.tx.Respond(r); err != nil {
		c.a.log.Debug("provisional not relayed", "session", c.sess.ID, "error", err)
	}
}

func (c *call) relayFinal(in *inbound, res *sip.Response) {
	r, _ := c.responseA(in, res)
	c.a.respond(in, r)
}

// respondA answers the caller with a status of the gateway's own.
func (c *call) respondA(in *inbound, status int, phrase string) {
	if phrase == "" {
		phrase = phraseOf(status)
	}
	res := sip.NewResponseFromRequest(in.req, status, phrase, nil)
	if to := res.To(); to != nil {
		to.Params.Add("tag", c.legs[sideA].localTag)
	}
	c.a.respond(in, res)
}

func phraseOf(status int) string {
	switch status {
	case 408:
		return "Request Timeout"
	case 480:
		return "Temporarily Unavailable"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 500:
		return "Server Internal Error"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}

// setBody copies a body from one leg's message to the other's, hiding the
// SDP origin behind the gateway's address.
func setBody(from message, to sip.Message, host string) {
	body := from.Body()
	if len(body) == 0 {
		to.SetBody(nil)
		return
	}
	if ct := from.ContentType(); ct != nil {
		to.AppendHeader(sip.HeaderClone(ct))
	}
	to.SetBody(hideSDPIf(from, host))
}

// answer relays the callee's 2xx to the caller, acknowledges it on leg B
// (at once, or with the caller's ACK when the ACK carries the answer) and
// retransmits the 2xx until the caller's ACK arrives.
func (c *call) answer(in *inbound, res *sip.Response, txB sip.ClientTransaction) bool {
	a := c.a
	r, err := c.responseA(in, res)
	c.mu.Lock()
	wait := c.ackWaitB
	c.mu.Unlock()
	if err != nil {
		// The callee's answer cannot be relayed (no usable crypto, no
		// port): acknowledge and hang up the callee, refuse the caller.
		var me *errMedia
		errors.As(err, &me)
		a.log.Debug("answer not relayed", "session", c.sess.ID, "error", err)
		c.sendAckB(nil)
		c.bye(sideB)
		c.respondA(in, me.status, me.phrase)
		return false
	}
	now := time.Now()
	c.sess.Answer(now)
	c.mu.Lock()
	c.answered = true
	c.mu.Unlock()
	if c.media != nil {
		c.media.Answered()
	}
	if !wait {
		c.sendAckB(nil)
	}
	txB.OnRetransmission(func(*sip.Response) { c.resendAckB() })
	done := c.expectAck(in.req.CSeq().SeqNo)
	c.a.respond(in, r)
	// The call now retransmits the 2xx and catches the ACK itself; the
	// INVITE transaction would only hold the messages for 32 s more.
	in.tx.Terminate()
	c.retransmit2xx(r, done)
	if d := a.cfg.MaxCallDuration; d > 0 {
		c.mu.Lock()
		c.maxTimer = time.AfterFunc(d, func() { c.terminate(core.RoleGateway, "max_duration") })
		c.mu.Unlock()
	}
	return true
}

// sendAckB acknowledges the 2xx of the last INVITE on leg B, with the
// caller's ACK body when the ACK carries the answer (late offer).
func (c *call) sendAckB(from *sip.Request) {
	var body []byte
	var ctype string
	if from != nil && len(from.Body()) > 0 {
		// The caller's answer to the callee's late offer.
		scratch := sip.NewRequest(sip.ACK, sip.Uri{})
		if err := c.sdpBody(sideA, false, from, scratch); err != nil {
			c.a.log.Debug("late answer not relayed", "session", c.sess.ID, "error", err)
		} else {
			body = scratch.Body()
			if ct := scratch.ContentType(); ct != nil {
				ctype = ct.Value()
			}
		}
	}
	c.mu.Lock()
	c.ackedB, c.ackWaitB = true, false
	c.ackBodyB, c.ackTypeB = body, ctype
	c.mu.Unlock()
	c.resendAckB()
}

// resendAckB sends (again) the ACK for the last 2xx on leg B; it is built
// from the dialog, so a held call keeps no message around for it.
func (c *call) resendAckB() {
	c.mu.Lock()
	if !c.ackedB {
		c.mu.Unlock()
		return
	}
	lb := c.legs[sideB]
	ack := lb.request(sip.ACK, c.inviteSeqB)
	if len(c.ackBodyB) > 0 {
		ack.AppendHeader(sip.NewHeader("Content-Type", c.ackTypeB))
		ack.SetBody(c.ackBodyB)
	}
	c.mu.Unlock()
	if err := c.a.cli.WriteRequest(ack, noBuild); err != nil {
		c.a.log.Debug("ack not sent", "session", c.sess.ID, "error", err)
	}
}

// hideSDPIf returns a message's body, with the SDP origin hidden if it is
// a session description.
func hideSDPIf(m message, host string) []byte {
	if isSDP(m) {
		return hideSDP(m.Body(), host)
	}
	return m.Body()
}

// expectAck arms the wait for the caller's ACK of a 2xx with CSeq seq,
// before the 2xx is sent (the ACK may come back at once). It returns the
// channel that closes when the ACK arrives or the call ends, or nil if the
// call has already ended.
func (c *call) expectAck(seq uint32) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return nil
	}
	if c.pendingAck != nil {
		close(c.pendingAck)
	}
	c.pendingAck = make(chan struct{})
	c.ackSeqA = seq
	return c.pendingAck
}

// retransmit2xx resends a 2xx to the caller over UDP until its ACK
// arrives (RFC 3261 13.3.1.4): T1 doubling up to T2, for 64*T1. A caller
// that never ACKs gets its call ended.
func (c *call) retransmit2xx(res *sip.Response, done chan struct{}) {
	if done == nil {
		return
	}
	c.mu.Lock()
	udp := c.legs[sideA].transport == "UDP"
	c.mu.Unlock()
	c.a.calls.Add(1)
	go func() {
		defer c.a.calls.Done()
		interval := sip.T1
		deadline := time.NewTimer(64 * sip.T1)
		defer deadline.Stop()
		tick := time.NewTimer(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-c.a.ctx.Done():
				return
			case <-deadline.C:
				c.a.log.Debug("no ACK for 2xx", "session", c.sess.ID)
				c.terminate(core.RoleGateway, "no_ack")
				return
			case <-tick.C:
				if udp {
					_ = c.a.ua.TransportLayer().WriteMsg(res)
				}
				interval = min(interval*2, sip.T2)
				tick.Reset(interval)
			}
		}
	}()
}

// ackFromA handles the caller's ACK for a 2xx.
func (c *call) ackFromA(req *sip.Request) {
	c.mu.Lock()
	if c.pendingAck != nil && req.CSeq().SeqNo == c.ackSeqA {
		close(c.pendingAck)
		c.pendingAck = nil
	}
	wait := c.ackWaitB
	c.mu.Unlock()
	if wait {
		c.sendAckB(req)
	}
}

// cancelB cancels the INVITE on leg B and waits (bounded) for its final
// response; a 2xx that crossed the CANCEL is acknowledged and hung up.
func (c *call) cancelB(reqB *sip.Request, txB sip.ClientTransaction, provisional bool) {
	c.a.cancelInvite(reqB, txB, provisional, c.afterCancel)
}

// cancelInvite cancels the INVITE inv the gateway sent (RFC 3261 section
// 9.1: not before a provisional response, so without one it waits briefly
// for it) and waits, bounded, for its final response, which it hands to
// final (a 2xx that crossed the CANCEL: final acknowledges and hangs up).
func (a *Adapter) cancelInvite(inv *sip.Request, tx sip.ClientTransaction, provisional bool, final func(*sip.Response)) {
	if !provisional {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 200 {
				final(res)
				return
			}
		case <-tx.Done():
			return
		case <-time.After(4 * time.Second):
			return
		}
	}
	cancel := sip.NewRequest(sip.CANCEL, inv.Recipient)
	cancel.AppendHeader(sip.HeaderClone(inv.Via()))
	for _, h := range inv.GetHeaders("Route") {
		cancel.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	cancel.AppendHeader(&mf)
	cancel.AppendHeader(sip.HeaderClone(inv.From()))
	cancel.AppendHeader(sip.HeaderClone(inv.To()))
	cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	cancel.SetBody(nil)
	cancel.SetTransport(inv.Transport())
	cancel.SetDestination(inv.Destination())
	cancel.Laddr = inv.Laddr
	ctx, done := context.WithTimeout(a.ctx, 32*time.Second)
	defer done()
	if ctxTx, err := a.cli.TransactionRequest(ctx, cancel, noBuild); err == nil {
		defer ctxTx.Terminate()
	}
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 200 {
				final(res)
				return
			}
		case <-tx.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

// afterCancel deals with a final response to a canceled INVITE: a 2xx
// that crossed the CANCEL gets its ACK and a BYE.
func (c *call) afterCancel(res *sip.Response) {
	if res.StatusCode >= 300 {
		return
	}
	c.learnB(res, true)
	c.sendAckB(nil)
	c.bye(sideB)
}
