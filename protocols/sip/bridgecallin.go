package sip

import (
	"errors"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/media"
)

// Calls to the other side of the bridge: a SIP user's INVITE whose
// Request-URI names a domain served by an adapter that takes calls
// (core.CallDeliverer: a protocol plugin's domain). The gateway is the
// caller's UAS, as for any call (leg A); instead of a leg B the call has
// a far leg on the other adapter:
//
//   - the caller's SDP offer (an INVITE without one is 488) goes through
//     the relay when media is anchored and is offered in neutral form,
//     from the caller's address on the bridge (sipParty), judged once here;
//   - the far side's answer becomes the 200's SDP (the relay's ports), its
//     refusal the SIP status of its reason (bridgeStatusFor);
//   - the caller's CANCEL, or ringing beyond ring_timeout, ends the far
//     leg; the caller's BYE ends it; the far side's end sends the caller a
//     BYE; re-INVITE and UPDATE are answered 488.

// inPeer receives what the far side says of a call to it.
type inPeer struct {
	answered chan *core.MediaDesc
	ended    chan string
}

func (p *inPeer) Answered(md *core.MediaDesc) {
	select {
	case p.answered <- md:
	default:
	}
}

func (p *inPeer) Ended(reason string) {
	select {
	case p.ended <- reason:
	default:
	}
}

// inviteToBridge handles an INVITE (allowed by the stages) to a domain an
// adapter that takes calls serves. It reports false, having done nothing,
// when the Request-URI is not such a domain.
func (a *Adapter) inviteToBridge(in *inbound, ev *core.Event) bool {
	req := in.req
	d := a.bridged(req.Recipient.Host)
	cd, ok := d.(core.CallDeliverer)
	if d == nil || !ok {
		return false
	}
	from := req.From()
	sender, errFrom := a.sipParty(from.DisplayName, &from.Address)
	to, okTo := peerParty(&req.Recipient)
	proto := protocolOf(d)
	in.rec.Detail = bridgeDetail(proto, sender, to)
	switch {
	case errFrom != nil:
		a.refuseSender(in, errFrom)
		return true
	case !okTo:
		a.refuse(in, core.RefuseWith(core.ReasonNotFound, "sip/bridge_address", ""), "sip")
		return true
	case in.media == nil || dtlsKeyed(in.media):
		// No offer (late offer), or a browser's (ICE and DTLS-SRTP, which
		// no WebRTC leg terminates on a bridged call).
		a.refuseBridged(in, 488, "Not Acceptable Here", "sip/bridge_media", core.ReasonNotAcceptable)
		return true
	}
	a.calls.Add(1)
	defer a.calls.Done()
	c := a.newCall(in, target{})
	la := c.legs[sideA]
	c.sess.SetCallee(core.Leg{Protocol: proto, Transport: "bridge", Party: to})
	c.mu.Lock()
	c.bridgedIn = true
	c.mu.Unlock()
	c.pipe.Bind(c.sess)
	canceled := make(chan struct{})
	var once bool
	in.tx.OnCancel(func(*sip.Request) {
		c.mu.Lock()
		first := !once
		once = true
		c.mu.Unlock()
		if first {
			close(canceled)
		}
	})

	offer := in.media
	if c.media != nil {
		// The far leg gets plain RTP: keys do not cross the bridge.
		peer := media.PeerInfo{Addr: in.src, Zone: in.zone, BehindNAT: la.natted, SRTP: media.SRTPNone}
		if in.src.Addr().Is4() {
			peer.Family = media.FamilyIPv4
		} else {
			peer.Family = media.FamilyIPv6
		}
		out, err := c.media.Offer(core.RoleCaller, in.media, peer)
		if err != nil {
			var me *errMedia
			errors.As(mediaError(err), &me)
			c.respondA(in, me.status, me.phrase)
			c.end(me.status, "media", core.RoleGateway)
			return true
		}
		offer = out
	}
	neutral := *offer
	neutral.Origin = ""
	neutral.Streams = append([]core.Stream(nil), offer.Streams...)
	for i := range neutral.Streams {
		neutral.Streams[i].Crypto = nil
	}
	peer := &inPeer{answered: make(chan *core.MediaDesc, 1), ended: make(chan string, 1)}
	ctx, cancel := a.bounded(a.ctx)
	leg, err := cd.OfferCall(ctx, &core.CallOffer{Session: c.sess.ID, From: sender, To: to, Media: &neutral, Src: ev.Src, Judged: true}, peer)
	cancel()
	if err != nil {
		r, detail := deliveryFailure(err)
		code, phrase := bridgeStatusFor(r)
		in.rec.Reason = r.String()
		if detail != "" {
			in.rec.Detail += ": " + clip(detail)
		}
		c.respondA(in, code, phrase)
		c.end(code, "rejected", core.RoleCallee)
		return true
	}
	c.mu.Lock()
	c.far = leg
	c.mu.Unlock()
	ringing := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
	ringing.To().Params.Add("tag", la.localTag)
	a.decorate(ringing)
	_ = in.tx.Respond(ringing)
	c.sess.Early()

	ring := time.NewTimer(a.cfg.RingTimeout)
	defer ring.Stop()
	select {
	case md := <-peer.answered:
		c.answerFromFar(in, md, peer)
	case reason := <-peer.ended:
		code, phrase := bridgeStatusFor(reasonNamed(reason))
		in.rec.Reason = reasonNamed(reason).String()
		c.respondA(in, code, phrase)
		c.end(code, "rejected", core.RoleCallee)
	case <-canceled:
		c.respondA(in, 487, "")
		c.end(487, "canceled", core.RoleCaller)
	case <-ring.C:
		c.respondA(in, 408, "")
		c.end(408, "no_answer", core.RoleGateway)
	case <-a.ctx.Done():
		c.respondA(in, 503, "")
		c.end(503, "shutdown", core.RoleGateway)
	}
	return true
}

// reasonNamed reads a core reason by its name (the far side's end).
func reasonNamed(name string) core.Reason {
	for r := core.ReasonNone + 1; r < 64; r++ {
		if r.String() == name {
			return r
		}
	}
	return core.ReasonUnavailable
}

// answerFromFar answers the caller with the far side's answer (through
// the relay), and ends the call when the far side ends it later.
func (c *call) answerFromFar(in *inbound, md *core.MediaDesc, peer *inPeer) {
	a := c.a
	la := c.legs[sideA]
	fail := func(err error) {
		a.log.Debug("far answer not usable", "session", c.sess.ID, "error", err)
		c.respondA(in, 488, "")
		c.end(488, "media", core.RoleGateway)
	}
	if err := checkNeutral(md); err != nil {
		fail(err)
		return
	}
	at := md
	if c.media != nil {
		var p media.PeerInfo
		for _, s := range md.Streams {
			if !s.Disabled {
				p.Addr = s.Addr
				break
			}
		}
		out, err := c.media.Answer(core.RoleCallee, md, p)
		if err != nil {
			fail(err)
			return
		}
		at = out
	}
	body, err := sdpFromMedia(md, at, la.l.host)
	if err != nil {
		fail(err)
		return
	}
	res := sip.NewResponseFromRequest(in.req, 200, "OK", nil)
	res.To().Params.Add("tag", la.localTag)
	res.AppendHeader(la.contact())
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res.SetBody(body)
	c.sess.Answer(time.Now())
	c.mu.Lock()
	c.answered = true
	c.offerFrom = noOffer
	c.mu.Unlock()
	if c.media != nil {
		c.media.Answered()
	}
	done := c.expectAck(in.req.CSeq().SeqNo)
	a.respond(in, res)
	in.tx.Terminate()
	c.retransmit2xx(res, done)
	if d := a.cfg.MaxCallDuration; d > 0 {
		c.mu.Lock()
		c.maxTimer = time.AfterFunc(d, func() { c.terminate(core.RoleGateway, "max_duration") })
		c.mu.Unlock()
	}
	a.calls.Add(1)
	go func() {
		defer a.calls.Done()
		select {
		case reason := <-peer.ended:
			if reason == "" {
				reason = "normal"
			}
			c.terminate(core.RoleCallee, endReason(reason))
		case <-a.ctx.Done():
		}
	}()
}

// endReason bounds the far side's end reason to the names the CDR and
// the metrics take from it.
func endReason(r string) string {
	switch r {
	case "normal", "no_answer", "media", "max_duration", "shutdown",
		"plugin_crashed", "plugin_hung", "plugin_malformed", "plugin_stopped":
		return r
	}
	return "normal"
}

// farRequest handles an in-dialog request from the caller of a call to
// the other side: BYE ends it; a new offer is refused; INFO is answered.
func (c *call) farRequest(in *inbound) {
	req := in.req
	c.mu.Lock()
	la := c.legs[sideA]
	ended := c.ended
	seqOK := req.CSeq().SeqNo > la.remoteSeq
	if seqOK {
		la.remoteSeq = req.CSeq().SeqNo
	}
	c.mu.Unlock()
	switch {
	case ended && req.Method != sip.BYE:
		c.a.refuse(in, core.RefuseWith(core.ReasonNoDialog, "sip/no_dialog", ""), "sip")
	case !seqOK:
		in.rec.Action, in.rec.Rule, in.rec.Reason = core.Refuse.String(), "sip/cseq", core.ReasonMalformed.String()
		c.a.respond(in, sip.NewResponseFromRequest(req, 500, "CSeq Out Of Order", nil))
	case req.Method == sip.BYE:
		c.end(200, "normal", core.RoleCaller)
		c.a.respond(in, sip.NewResponseFromRequest(req, 200, "OK", nil))
		in.tx.Terminate()
	case req.Method == sip.INVITE || req.Method == sip.UPDATE:
		c.a.respond(in, sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
	case req.Method == sip.INFO:
		c.a.respond(in, sip.NewResponseFromRequest(req, 200, "OK", nil))
	default:
		c.a.refuse(in, core.RefuseWith(core.ReasonUnsupported, "sip/method", ""), "sip")
	}
}

// dtlsKeyed reports an offer keyed by DTLS or using ICE.
func dtlsKeyed(md *core.MediaDesc) bool {
	for _, s := range md.Streams {
		if !s.Disabled && (s.Fingerprint != "" || s.ICE) {
			return true
		}
	}
	return false
}
