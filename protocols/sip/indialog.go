package sip

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
)

// dialogOf finds the call and side an in-dialog request belongs to.
func (a *Adapter) dialogOf(req *sip.Request) (dialogRef, bool) {
	to, cid := req.To(), req.CallID()
	if to == nil || cid == nil {
		return dialogRef{}, false
	}
	tag, ok := to.Params.Get("tag")
	if !ok {
		return dialogRef{}, false
	}
	return a.dialogs.get(cid.Value(), tag)
}

// onAck handles an ACK outside a transaction: the ACK for a 2xx.
func (a *Adapter) onAck(req *sip.Request, tx sip.ServerTransaction) {
	ref, ok := a.dialogOf(req)
	if !ok {
		// An ACK cannot be answered; journal it as dropped.
		in := a.inboundOf(req, tx)
		in.rec.Action, in.rec.Rule, in.rec.Reason = core.Drop.String(), "sip/no_dialog", core.ReasonNoDialog.String()
		a.finish(in, 0)
		return
	}
	if ref.bc != nil {
		return // the gateway is the UAC of a bridged call: no ACK is due to it
	}
	if ref.side == sideA {
		ref.call.ackFromA(req)
	}
	// An ACK from leg B would be for a 2xx the gateway sent to the callee
	// (a re-INVITE from the callee): it is absorbed the same way.
	if ref.side == sideB {
		ref.call.ackFromB(req)
	}
}

// onCancel answers a CANCEL that matched no INVITE transaction.
func (a *Adapter) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	in := a.inboundOf(req, tx)
	in.rec.Action = core.Refuse.String()
	in.rec.Rule, in.rec.Reason = "sip/no_transaction", core.ReasonNoDialog.String()
	a.respond(in, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
}

// onOther handles BYE, re-INVITE, UPDATE, INFO, PRACK, NOTIFY, REFER,
// SUBSCRIBE and PUBLISH: inside a dialog they are forwarded to the other
// leg; outside one, PUBLISH is relayed and the rest are refused.
func (a *Adapter) onOther(req *sip.Request, tx sip.ServerTransaction) {
	in := a.inboundOf(req, tx)
	kind := core.KindInDialog
	switch req.Method {
	case sip.BYE:
		kind = core.KindSessionEnd
	case sip.INVITE, sip.UPDATE:
		kind = core.KindSessionUpdate
	case sip.SUBSCRIBE, sip.NOTIFY, sip.PUBLISH:
		kind = core.KindPresence
	case sip.MESSAGE:
		kind = core.KindMessage
	}
	ev := a.event(in, kind)
	ref, known := a.dialogOf(req)
	ev.DialogKnown = known
	if known && ref.bc != nil {
		ev.Session, in.rec.Session = ref.bc.sess.ID, ref.bc.sess.ID
		ev.DialogSameSource, ev.DialogSeqOK = ref.bc.facts(req, in.src)
	} else if known {
		ev.Session = ref.call.sess.ID
		in.rec.Session = ref.call.sess.ID
		ev.DialogSameSource, ev.DialogSeqOK = ref.call.facts(req, ref.side, in.src)
	}
	var sub *subscription // a presence subscription across the bridge
	if !known {
		sub = a.subscriptionOf(in, ev)
	}
	if !a.run(in, ev) {
		return
	}
	if sub != nil {
		sub.onRequest(in)
		return
	}
	if !ev.InDialog {
		if req.Method == sip.SUBSCRIBE && a.subscribeToBridge(in, ev) {
			return
		}
		switch req.Method {
		case sip.PUBLISH:
			a.relay(in)
		case sip.BYE, sip.UPDATE, sip.INFO, sip.PRACK, sip.NOTIFY:
			a.refuse(in, core.RefuseWith(core.ReasonNoDialog, "sip/no_dialog", ""), "sip")
		default:
			a.refuse(in, core.RefuseWith(core.ReasonUnsupported, "sip/method", ""), "sip")
		}
		return
	}
	if !known {
		a.refuse(in, core.RefuseWith(core.ReasonNoDialog, "sip/no_dialog", ""), "sip")
		return
	}
	if ref.bc != nil {
		ref.bc.onRequest(in)
		return
	}
	ref.call.forward(in, ref.side)
}

// facts tells whether an in-dialog request comes from the address the
// side's peer was established with (its IP: a phone's port may change over
// a new TCP connection), and whether its CSeq moves forward and its From
// tag is the peer's.
func (c *call) facts(req *sip.Request, side int, src netip.AddrPort) (sameSource, seqOK bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lg := c.legs[side]
	if lg == nil {
		return false, false
	}
	sameSource = lg.src.Addr() == src.Addr()
	seqOK = true
	switch req.Method {
	case sip.ACK, sip.CANCEL, sip.PRACK:
	default:
		seqOK = req.CSeq().SeqNo > lg.remoteSeq
	}
	if tag, _ := req.From().Params.Get("tag"); lg.remoteTag != "" && tag != lg.remoteTag {
		seqOK = false
	}
	return sameSource, seqOK
}

// forward relays an in-dialog request to the other leg and its answer
// back.
func (c *call) forward(in *inbound, side int) {
	a := c.a
	req := in.req
	other := 1 - side
	c.mu.Lock()
	if far := c.far; far != nil {
		c.mu.Unlock()
		c.farRequest(in)
		return
	}
	from, to := c.legs[side], c.legs[other]
	if from == nil || to == nil || c.ended && req.Method != sip.BYE {
		c.mu.Unlock()
		a.refuse(in, core.RefuseWith(core.ReasonNoDialog, "sip/no_dialog", ""), "sip")
		return
	}
	in.rec.PeerCall = to.callID
	seq := req.CSeq().SeqNo
	if seq <= from.remoteSeq && req.Method != sip.PRACK {
		c.mu.Unlock()
		in.rec.Action, in.rec.Rule, in.rec.Reason = core.Refuse.String(), "sip/cseq", core.ReasonMalformed.String()
		a.respond(in, sip.NewResponseFromRequest(req, 500, "CSeq Out Of Order", nil))
		return
	}
	from.remoteSeq = seq
	// A target refresh updates where the sender wants its requests.
	if req.Method == sip.INVITE || req.Method == sip.UPDATE {
		if ct := req.Contact(); ct != nil {
			from.target = *ct.Address.Clone()
		}
	}
	if from.remoteTag == "" {
		from.remoteTag = req.From().Params.GetOr("tag", "")
	}
	out := to.request(req.Method, 0)
	if req.Method == sip.PRACK {
		// RAck names the INVITE's CSeq on the other leg.
		if h := req.GetHeader("RAck"); h != nil {
			if f := strings.Fields(h.Value()); len(f) == 3 && c.inviteSeqB != 0 {
				out.AppendHeader(sip.NewHeader("RAck", f[0]+" "+strconv.FormatUint(uint64(c.inviteSeqB), 10)+" "+f[2]))
			}
		}
	}
	if req.Method == sip.INVITE && other == sideB {
		c.inviteSeqB = out.CSeq().SeqNo
		c.ackedB = false
	}
	c.mu.Unlock()
	c.a.copyRequest(req, out)
	if err := c.sdpBody(side, c.isOffer(side), req, out); err != nil {
		var me *errMedia
		errors.As(err, &me)
		in.rec.Detail = "media: " + me.phrase
		a.respond(in, sip.NewResponseFromRequest(req, me.status, me.phrase, nil))
		return
	}

	if req.Method == sip.BYE {
		c.byeFrom(in, side, out)
		return
	}
	c.relayInDialog(in, side, out)
}

// relayInDialog sends out on the other leg and relays its responses to in.
func (c *call) relayInDialog(in *inbound, side int, out *sip.Request) {
	a := c.a
	ctx, cancel := context.WithTimeout(a.ctx, 64*sip.T1)
	defer cancel()
	tx, err := a.cli.TransactionRequest(ctx, out, noBuild)
	if err != nil {
		c.respondIn(in, side, 503, "Service Unavailable", nil)
		return
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode == 100 {
				continue
			}
			if res.StatusCode < 200 {
				c.respondIn(in, side, res.StatusCode, res.Reason, res)
				continue
			}
			if res.StatusCode < 300 && (out.Method == sip.INVITE || out.Method == sip.UPDATE) {
				c.mu.Lock()
				if ct := res.Contact(); ct != nil {
					c.legs[1-side].target = *ct.Address.Clone()
				}
				c.mu.Unlock()
			}
			if out.Method == sip.INVITE && res.StatusCode < 300 {
				c.reinviteAnswered(in, side, out, res, tx)
				return
			}
			c.respondIn(in, side, res.StatusCode, res.Reason, res)
			return
		case <-tx.Done():
			c.respondIn(in, side, 408, "Request Timeout", nil)
			return
		case <-ctx.Done():
			c.respondIn(in, side, 408, "Request Timeout", nil)
			return
		}
	}
}

// respondIn answers an in-dialog request with a status and the safe parts
// of the other leg's response.
func (c *call) respondIn(in *inbound, side, status int, phrase string, from *sip.Response) {
	res := sip.NewResponseFromRequest(in.req, status, phrase, nil)
	if from != nil {
		if status < 300 && (in.req.Method == sip.INVITE || in.req.Method == sip.UPDATE) {
			res.AppendHeader(c.legs[side].contact())
		}
		copySafe(from, res, safeResponseHeaders)
		if status < 300 {
			if err := c.sdpBody(1-side, c.isOffer(1-side), from, res); err != nil {
				c.a.log.Debug("answer not relayed", "session", c.sess.ID, "error", err)
				res.SetBody(nil)
			}
		}
	}
	if status < 200 {
		c.a.decorate(res)
		_ = in.tx.Respond(res)
		return
	}
	c.a.respond(in, res)
}

// reinviteAnswered completes a re-INVITE: the 2xx goes back to the sender,
// the other leg gets its ACK at once or with the sender's ACK.
func (c *call) reinviteAnswered(in *inbound, side int, out *sip.Request, res *sip.Response, tx sip.ClientTransaction) {
	if side == sideA {
		c.mu.Lock()
		c.ackWaitB = len(out.Body()) == 0
		wait := c.ackWaitB
		c.mu.Unlock()
		if !wait {
			c.sendAckB(nil)
		}
		tx.OnRetransmission(func(*sip.Response) { c.resendAckB() })
		r := sip.NewResponseFromRequest(in.req, res.StatusCode, res.Reason, nil)
		r.AppendHeader(c.legs[sideA].contact())
		copySafe(res, r, safeResponseHeaders)
		if err := c.sdpBody(sideB, c.isOffer(sideB), res, r); err != nil {
			c.a.log.Debug("re-INVITE answer not relayed", "session", c.sess.ID, "error", err)
			r.SetBody(nil)
		}
		done := c.expectAck(in.req.CSeq().SeqNo)
		c.a.respond(in, r)
		c.retransmit2xx(r, done)
		return
	}
	// A re-INVITE from the callee: ACK the caller's 2xx at once (the
	// offer was in the re-INVITE, or the callee's ACK is not awaited) and
	// answer the callee; its ACK is absorbed.
	c.mu.Lock()
	la := c.legs[sideA]
	ack := la.request(sip.ACK, out.CSeq().SeqNo)
	c.mu.Unlock()
	_ = c.a.cli.WriteRequest(ack, noBuild)
	r := sip.NewResponseFromRequest(in.req, res.StatusCode, res.Reason, nil)
	r.AppendHeader(c.legs[sideB].contact())
	copySafe(res, r, safeResponseHeaders)
	if err := c.sdpBody(sideA, c.isOffer(sideA), res, r); err != nil {
		c.a.log.Debug("re-INVITE answer not relayed", "session", c.sess.ID, "error", err)
		r.SetBody(nil)
	}
	c.a.respond(in, r)
}

// ackFromB absorbs the callee's ACK for a 2xx the gateway relayed.
func (c *call) ackFromB(*sip.Request) {}

// byeFrom ends the call on a BYE from one side: the other leg gets its
// BYE, the CDR is made durable, then the sender gets its 200.
func (c *call) byeFrom(in *inbound, side int, out *sip.Request) {
	by := core.RoleCaller
	if side == sideB {
		by = core.RoleCallee
	}
	c.mu.Lock()
	first := !c.ended
	c.mu.Unlock()
	if first {
		c.a.calls.Add(1)
		go func() {
			defer c.a.calls.Done()
			c.a.sendAndWait(out)
		}()
	}
	c.end(200, "normal", by)
	c.a.respond(in, sip.NewResponseFromRequest(in.req, 200, "OK", nil))
	// A retransmitted BYE finds no dialog and gets 481, which ends the
	// call for its sender as well; keeping the transaction would hold
	// the messages for 32 s.
	in.tx.Terminate()
}

// sendAndWait sends a request of the gateway's own (a BYE) and waits,
// bounded, for its final response, which nobody needs.
func (a *Adapter) sendAndWait(out *sip.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	tx, err := a.cli.TransactionRequest(ctx, out, noBuild)
	if err != nil {
		return
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 200 {
				return
			}
		case <-tx.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

// bye sends a BYE on one leg (in the background).
func (c *call) bye(side int) {
	c.mu.Lock()
	lg := c.legs[side]
	if lg == nil {
		c.mu.Unlock()
		return
	}
	out := lg.request(sip.BYE, 0)
	c.mu.Unlock()
	out.AppendHeader(sip.NewHeader("User-Agent", c.a.cfg.UserAgent))
	out.SetBody(nil)
	c.a.calls.Add(1)
	go func() {
		defer c.a.calls.Done()
		c.a.sendAndWait(out)
	}()
}

// terminate ends an answered call from the gateway's side: both legs get
// a BYE. A call still ringing is left to its setup, which ends it.
func (c *call) terminate(by, reason string) {
	c.mu.Lock()
	answered, ended := c.answered, c.ended
	c.mu.Unlock()
	if !answered || ended {
		return
	}
	c.bye(sideA)
	c.bye(sideB)
	c.end(200, reason, by)
}

// end ends the session once: the dialogs leave the table, the CDR is
// written (durably, before anyone is told the call ended), the metrics
// move.
func (c *call) end(status int, reason, by string) {
	a := c.a
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	if c.maxTimer != nil {
		c.maxTimer.Stop()
	}
	if c.pendingAck != nil {
		close(c.pendingAck)
		c.pendingAck = nil
	}
	legs, enc, far, bridgedIn := c.legs, c.mediaEnc, c.far, c.bridgedIn
	c.mu.Unlock()
	if far != nil {
		far.End(reason) // idempotent: nothing more when the far side ended it
	}
	for _, lg := range legs {
		if lg != nil {
			a.dialogs.del(lg.callID, lg.localTag)
		}
	}
	if la := legs[sideA]; la != nil {
		a.dialogs.del(la.callID, remoteKey(la.remoteTag))
	}
	c.sess.UpdateLeg(core.RoleCaller, func(l *core.Leg) { l.MediaEncrypted = enc[sideA] })
	if legs[sideB] != nil {
		c.sess.UpdateLeg(core.RoleCallee, func(l *core.Leg) { l.MediaEncrypted = enc[sideB] })
	}
	var stats []core.MediaStats
	c.stopTranscode()
	if c.media != nil {
		c.media.Close()
		stats = c.media.Stats()
	}
	cdr := c.sess.End(time.Now(), status, reason, by)
	if cdr != nil {
		cdr.Media = stats
	}
	a.sessions.Remove(c.sess.ID)
	if cdr != nil && (legs[sideB] != nil || bridgedIn) {
		c.pipe.Unbind(c.sess)
	}
	a.metrics.active.Dec()
	if cdr == nil {
		return
	}
	result := reason
	if result == "" || cdr.Answer.IsZero() && reason == "normal" {
		result = "normal"
	}
	a.metrics.calls.WithLabelValues(result).Inc()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.journal.CDR(ctx, cdr); err != nil {
		a.log.Error("cdr not written", "session", cdr.Session, "error", err)
	}
}
