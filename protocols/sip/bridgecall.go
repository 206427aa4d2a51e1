package sip

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/media"
)

// Calls across the bridge (core.CallDeliverer): another adapter's user (a
// protocol plugin's) calls a SIP user of the bridged domain. The gateway
// is the SIP user's UAC on one leg; the other side is neutral
// (core.CallOffer in, core.CallPeer told the answer and the end):
//
//   - the INVITE goes to the user's binding, else the first upstream of
//     her route (targetFor, bridgeLeg), from the caller's address as a SIP
//     URI, with the gateway's Via, Contact, Call-ID and tags;
//   - its SDP is written from the neutral offer; with media anchored the
//     offer goes through a core/media call first, so the SIP user sees the
//     gateway's relay and the caller is given the relay's address in the
//     answer;
//   - the SIP user's 2xx is acknowledged and its SDP becomes the neutral
//     answer; a final error is the neutral reason (reasonOfStatus);
//   - ringing beyond sip.ring_timeout, or the caller ending first, sends
//     CANCEL; the caller ending an answered call sends BYE; a BYE from the
//     SIP user ends the call and tells the caller;
//   - the call has its own session and CDR (both identities; the caller's
//     session named as PeerCall of the caller leg).

// bridgeCall is the SIP leg of a call from the other side of the bridge.
type bridgeCall struct {
	a     *Adapter
	sess  *core.Session
	pipe  *core.Pipeline
	peer  core.CallPeer
	media *media.Call // nil: media end to end
	proto string

	mu        sync.Mutex
	lg        *leg
	inviteSeq uint32
	answered  bool
	ended     bool
	stop      chan struct{} // closed when the caller ends the call before the answer
	stopWhy   string
	maxTimer  *time.Timer
}

// OfferCall implements core.CallDeliverer: it calls a SIP user of the
// bridged domain for a party of the other side. It returns once the
// INVITE is on its way; the answer and the end reach peer.
func (a *Adapter) OfferCall(ctx context.Context, o *core.CallOffer, peer core.CallPeer) (core.CallLeg, error) {
	if o == nil || peer == nil {
		return nil, &core.DeliveryError{Reason: core.ReasonMalformed}
	}
	if a.ctx == nil || a.ctx.Err() != nil {
		return nil, &core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "sip adapter not running"}
	}
	proto := a.peerProtocol(o.From.Domain)
	rec := bridgeRecord("INVITE", o.Src, o.From, o.To, proto)
	rec.PeerCall = clip(string(o.Session))
	refuse := func(r core.Reason, rule, detail string) error { return a.refuseOut(&rec, r, rule, detail) }
	local, ok := peerURI(o.From)
	if !ok {
		return nil, refuse(core.ReasonMalformed, "sip/bridge_address", "caller not addressable in SIP")
	}
	if !strings.EqualFold(o.To.Domain, a.bridgeDomain) || !validLocal(o.To.User) {
		return nil, refuse(core.ReasonNotFound, "sip/bridge_address", "no such SIP user")
	}
	if err := checkNeutral(o.Media); err != nil {
		return nil, refuse(core.ReasonNotAcceptable, "sip/bridge_media", err.Error())
	}
	t, routed := a.targetFor(sipUser(o.To.User))
	if !routed {
		if err := a.runBridged(ctx, o.Judged, bridgeEvent(core.KindSessionOffer, proto, "INVITE", o.Src, o.From, o.To, nil), &rec); err != nil {
			return nil, err
		}
		return nil, refuse(core.ReasonNotFound, "sip/no_route", "no such SIP user")
	}
	var up *upstream
	if t.binding == nil {
		up = t.upstreams[0]
	}
	lg := a.bridgeLeg(t, up, local, o.From.Display)
	if lg == nil {
		return nil, refuse(core.ReasonUnavailable, "sip/no_listener", "")
	}
	lg.cseq.Store(uint32(time.Now().UnixNano()>>10) & 0xffff)
	if up != nil {
		lg.srtp = srtpMode(up.cfg.SRTP)
	} else {
		lg.natted = t.binding.natted
	}
	recordLeg(&rec, lg)
	out := lg.request(sip.INVITE, 0)
	out.AppendHeader(sip.NewHeader("User-Agent", a.cfg.UserAgent))
	ev := bridgeEvent(core.KindSessionOffer, proto, "INVITE", o.Src, o.From, o.To, out)
	ev.Media = o.Media
	if up != nil {
		ev.Route = up.name
	}
	if err := a.runBridged(ctx, o.Judged, ev, &rec); err != nil {
		return nil, err
	}

	now := time.Now()
	caller := core.Leg{Protocol: proto, Transport: "bridge", Zone: o.Src.Zone, Remote: o.Src.Addr,
		Encrypted: o.Src.Encrypted, CallID: clip(string(o.Session)), Party: o.From}
	sess := core.NewSession("call", o.From, o.To, caller, now)
	sess.SetCallee(core.Leg{Protocol: "sip", Transport: strings.ToLower(lg.transport), Encrypted: lg.secure,
		Zone: lg.zone, Remote: lg.src, Local: lg.l.addr, CallID: lg.callID, Party: identity("", &lg.remote), Upstream: upName(up)})
	c := &bridgeCall{a: a, sess: sess, pipe: a.pipeline.Load(), peer: peer, proto: proto, lg: lg, stop: make(chan struct{})}
	if a.media != nil {
		c.media = a.media.NewCall(sess.ID, c.pipe, func(reason string) { go c.terminate(core.RoleGateway, reason) })
	}
	body, err := c.offerSDP(o.Media)
	if err != nil {
		if c.media != nil {
			c.media.Close()
		}
		var me *errMedia
		r := core.ReasonNotAcceptable
		if errors.As(err, &me) && me.status == 503 {
			r = core.ReasonUnavailable
		}
		return nil, refuse(r, "sip/bridge_media", err.Error())
	}
	out.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	out.SetBody(body)
	if lg.transport == "UDP" && len(out.String()) > sip.UDPMTUSize-200 {
		if c.media != nil {
			c.media.Close()
		}
		return nil, refuse(core.ReasonTooLarge, "sip/udp_size", "too large for udp")
	}
	c.inviteSeq = out.CSeq().SeqNo
	rec.Session = sess.ID
	a.sessions.Add(sess)
	c.pipe.Bind(sess)
	a.metrics.active.Inc()
	a.dialogs.put(lg.callID, lg.localTag, dialogRef{bc: c, side: sideB})
	a.calls.Add(1)
	go func() {
		defer a.calls.Done()
		c.run(out, &rec)
	}()
	return c, nil
}

// checkNeutral refuses a neutral description SDP cannot carry safely: it
// comes from another adapter (a plugin) and is written into SDP text.
func checkNeutral(md *core.MediaDesc) error {
	if md == nil || len(md.Streams) == 0 {
		return errors.New("no media")
	}
	active := 0
	for _, s := range md.Streams {
		switch s.Type {
		case "audio", "video", "text":
		default:
			return errors.New("media type not carried")
		}
		switch s.Protocol {
		case "", "RTP/AVP", "RTP/AVPF":
		default:
			return errors.New("transport not carried: plain RTP only")
		}
		switch s.Direction {
		case "", "sendrecv", "sendonly", "recvonly", "inactive":
		default:
			return errors.New("bad direction")
		}
		if s.Disabled {
			continue
		}
		if s.Fingerprint != "" || len(s.Crypto) > 0 || s.ICE {
			// The other side's own protection is not carried across:
			// plain RTP to and from the relay only.
			return errors.New("protected media not carried")
		}
		if !s.Addr.IsValid() || s.Addr.Port() == 0 || len(s.Codecs) == 0 {
			return errors.New("stream without address or codec")
		}
		for _, c := range s.Codecs {
			if c.PT > 127 || !token(c.Name) || strings.ContainsAny(c.Params, "\r\n") {
				return errors.New("bad codec")
			}
		}
		active++
	}
	if active == 0 {
		return errors.New("no active stream")
	}
	return nil
}

// offerSDP writes the INVITE's SDP from the caller's neutral offer,
// through the relay when the gateway anchors media.
func (c *bridgeCall) offerSDP(md *core.MediaDesc) ([]byte, error) {
	lg := c.lg
	out := md
	if c.media != nil {
		caller, _ := c.sess.Legs()
		peer := media.PeerInfo{Zone: caller.Zone}
		for _, s := range md.Streams {
			if !s.Disabled {
				peer.Addr = s.Addr
				break
			}
		}
		peer.SRTP = lg.srtp
		if lg.src.Addr().Is4() {
			peer.Family = media.FamilyIPv4
		} else if lg.src.IsValid() {
			peer.Family = media.FamilyIPv6
		}
		var err error
		if out, err = c.media.Offer(core.RoleCaller, md, peer); err != nil {
			return nil, mediaError(err)
		}
	}
	return sdpFromMedia(md, out, lg.l.host)
}

// sdpFromMedia writes an SDP offer: the streams and codecs of md, at the
// addresses and with the keys of at (the relay's description, or md).
func sdpFromMedia(md, at *core.MediaDesc, origin string) ([]byte, error) {
	if len(md.Streams) != len(at.Streams) {
		return nil, errStreams
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	s := sdp.SessionDescription{
		Origin: sdp.Origin{Username: "-", SessionID: binary.BigEndian.Uint64(idb[:]) >> 2, SessionVersion: 1,
			NetworkType: "IN", AddressType: addrType(origin), UnicastAddress: origin},
		SessionName:      "ucgate",
		TimeDescriptions: []sdp.TimeDescription{{}},
	}
	for i, st := range md.Streams {
		a := at.Streams[i]
		proto := a.Protocol
		if proto == "" {
			proto = st.Protocol
		}
		if proto == "" {
			proto = "RTP/AVP"
		}
		m := &sdp.MediaDescription{MediaName: sdp.MediaName{Media: st.Type, Protos: splitProto(proto)}}
		for _, cd := range st.Codecs {
			m.MediaName.Formats = append(m.MediaName.Formats, strconv.Itoa(int(cd.PT)))
		}
		if len(m.MediaName.Formats) == 0 {
			m.MediaName.Formats = []string{"0"}
		}
		if st.Disabled || a.Disabled || !a.Addr.IsValid() {
			m.MediaName.Port = sdp.RangedPort{Value: 0}
			s.MediaDescriptions = append(s.MediaDescriptions, m)
			continue
		}
		ip := a.Addr.Addr().Unmap().String()
		m.MediaName.Port = sdp.RangedPort{Value: int(a.Addr.Port())}
		m.ConnectionInformation = &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType(ip), Address: &sdp.Address{Address: ip}}
		for _, cd := range st.Codecs {
			if cd.Name != "" && cd.Rate > 0 {
				v := strconv.Itoa(int(cd.PT)) + " " + cd.Name + "/" + strconv.Itoa(int(cd.Rate))
				if cd.Channels > 1 {
					v += "/" + strconv.Itoa(int(cd.Channels))
				}
				m.Attributes = append(m.Attributes, sdp.NewAttribute("rtpmap", v))
			}
			if cd.Params != "" {
				m.Attributes = append(m.Attributes, sdp.NewAttribute("fmtp", strconv.Itoa(int(cd.PT))+" "+cd.Params))
			}
		}
		if a.RTCPMux {
			m.Attributes = append(m.Attributes, sdp.NewPropertyAttribute("rtcp-mux"))
		} else if a.RTCP.IsValid() && a.RTCP.Port() != a.Addr.Port()+1 {
			m.Attributes = append(m.Attributes, sdp.NewAttribute("rtcp", strconv.Itoa(int(a.RTCP.Port()))))
		}
		for _, k := range a.Crypto {
			m.Attributes = append(m.Attributes, sdp.NewAttribute("crypto", strconv.Itoa(k.Tag)+" "+k.Suite+" "+k.Key))
		}
		dir := st.Direction
		if dir == "" {
			dir = "sendrecv"
		}
		m.Attributes = append(m.Attributes, sdp.NewPropertyAttribute(dir))
		if s.ConnectionInformation == nil {
			ci := *m.ConnectionInformation
			s.ConnectionInformation = &ci
		}
		s.MediaDescriptions = append(s.MediaDescriptions, m)
	}
	return s.Marshal()
}

// run waits for the SIP user's answer to the INVITE: provisional
// responses name her tag; a 2xx is acknowledged and its SDP given to the
// caller; ringing too long, the caller's end or shutdown cancel it.
func (c *bridgeCall) run(out *sip.Request, rec *core.Transaction) {
	a := c.a
	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	tx, err := a.cli.TransactionRequest(ctx, out, noBuild)
	if err != nil {
		a.log.Debug("bridged invite not sent", "session", c.sess.ID, "error", err)
		c.fail(rec, 503, core.ReasonUnavailable, "unreachable", core.RoleGateway)
		return
	}
	defer tx.Terminate()
	ring := time.NewTimer(a.cfg.RingTimeout)
	defer ring.Stop()
	provisional := false
	for {
		select {
		case res := <-tx.Responses():
			switch {
			case res.StatusCode < 200:
				provisional = true
				if res.StatusCode > 100 {
					c.learn(res, false)
					c.sess.Early()
				}
			case res.StatusCode < 300:
				c.learn(res, true)
				c.answer(res, rec)
				tx.OnRetransmission(func(*sip.Response) { c.resendAck() })
				return
			default:
				r := reasonOfStatus(res.StatusCode)
				c.fail(rec, res.StatusCode, r, "rejected", core.RoleCallee)
				return
			}
		case <-c.stop:
			c.mu.Lock()
			why := c.stopWhy
			c.mu.Unlock()
			c.cancelInvite(out, tx, provisional)
			c.fail(rec, 487, core.ReasonNone, why, core.RoleCaller)
			return
		case <-ring.C:
			c.cancelInvite(out, tx, provisional)
			c.fail(rec, 408, core.ReasonTimeout, "no_answer", core.RoleGateway)
			return
		case <-tx.Done():
			st, r := 408, core.ReasonTimeout
			if errors.Is(tx.Err(), sip.ErrTransactionTransport) {
				st, r = 503, core.ReasonUnavailable
			}
			c.fail(rec, st, r, "unreachable", core.RoleGateway)
			return
		case <-a.ctx.Done():
			c.fail(rec, 503, core.ReasonUnavailable, "shutdown", core.RoleGateway)
			return
		}
	}
}

// learn records the SIP user's tag, and for a 2xx her target and route set.
func (c *bridgeCall) learn(res *sip.Response, final bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lg := c.lg
	if to := res.To(); to != nil {
		if tag, ok := to.Params.Get("tag"); ok {
			lg.remoteTag = tag
		}
	}
	if ct := res.Contact(); ct != nil {
		lg.target = *ct.Address.Clone()
	}
	if final {
		lg.routes = routeSet(res, true)
	}
}

// fail ends a call that was not answered: journaled, CDR, the caller told
// (unless the caller ended it: reason None).
func (c *bridgeCall) fail(rec *core.Transaction, status int, r core.Reason, why, by string) {
	if r != core.ReasonNone {
		rec.Reason = r.String()
	}
	c.a.journalOut(rec, status)
	if !c.end(status, why, by) {
		return
	}
	if by != core.RoleCaller {
		name := r.String()
		if r == core.ReasonNone {
			name = why
		}
		c.peer.Ended(name)
	}
}

// answer completes the INVITE: ACK, the answer converted for the caller
// (through the relay), and the caller told. An answer the gateway cannot
// use (no SDP, no common stream) is acknowledged and hung up.
func (c *bridgeCall) answer(res *sip.Response, rec *core.Transaction) {
	c.mu.Lock()
	c.answered = true
	c.mu.Unlock()
	c.resendAck()
	md, err := c.answerMedia(res)
	if err != nil {
		c.a.log.Debug("bridged answer not usable", "session", c.sess.ID, "error", err)
		rec.Reason = core.ReasonNotAcceptable.String()
		rec.Detail += ": answer: " + clip(err.Error())
		c.a.journalOut(rec, res.StatusCode)
		c.bye()
		if c.end(488, "media", core.RoleGateway) {
			c.peer.Ended(core.ReasonNotAcceptable.String())
		}
		return
	}
	c.a.journalOut(rec, res.StatusCode)
	c.sess.Answer(time.Now())
	c.sess.SetStatus(res.StatusCode)
	if c.media != nil {
		c.media.Answered()
	}
	c.mu.Lock()
	ended := c.ended
	if d := c.a.cfg.MaxCallDuration; d > 0 && !ended {
		c.maxTimer = time.AfterFunc(d, func() { c.terminate(core.RoleGateway, "max_duration") })
	}
	c.mu.Unlock()
	if ended {
		return
	}
	c.peer.Answered(md)
}

// answerMedia reads the SIP user's SDP answer as the caller's neutral
// answer: the relay's side of it when media is anchored, her own
// otherwise.
func (c *bridgeCall) answerMedia(res *sip.Response) (*core.MediaDesc, error) {
	if len(res.Body()) == 0 || !isSDP(res) {
		return nil, errors.New("no sdp answer")
	}
	md, err := mediaFromSDP(res.Body())
	if err != nil {
		return nil, err
	}
	out := md
	if c.media != nil {
		c.mu.Lock()
		lg := c.lg
		peer := media.PeerInfo{Addr: lg.src, Zone: lg.zone, BehindNAT: lg.natted}
		c.mu.Unlock()
		if out, err = c.media.Answer(core.RoleCallee, md, peer); err != nil {
			return nil, err
		}
	}
	cp := *out
	cp.Origin = ""
	cp.Streams = append([]core.Stream(nil), out.Streams...)
	for i := range cp.Streams {
		cp.Streams[i].Crypto = nil // keys stay between the relay and the SIP user
	}
	return &cp, nil
}

// resendAck sends (again) the ACK for the 2xx of the INVITE.
func (c *bridgeCall) resendAck() {
	c.mu.Lock()
	if !c.answered {
		c.mu.Unlock()
		return
	}
	ack := c.lg.request(sip.ACK, c.inviteSeq)
	c.mu.Unlock()
	if err := c.a.cli.WriteRequest(ack, noBuild); err != nil {
		c.a.log.Debug("ack not sent", "session", c.sess.ID, "error", err)
	}
}

// cancelInvite cancels the INVITE (RFC 3261 section 9.1: after a
// provisional response) and waits, bounded, for its final response; a 2xx
// that crossed the CANCEL is acknowledged and hung up.
func (c *bridgeCall) cancelInvite(out *sip.Request, tx sip.ClientTransaction, provisional bool) {
	c.a.cancelInvite(out, tx, provisional, func(res *sip.Response) {
		if res.StatusCode < 300 {
			c.learn(res, true)
			c.mu.Lock()
			c.answered = true
			c.mu.Unlock()
			c.resendAck()
			c.bye()
		}
	})
}

// bye sends a BYE to the SIP user (in the background).
func (c *bridgeCall) bye() {
	c.mu.Lock()
	out := c.lg.request(sip.BYE, 0)
	c.mu.Unlock()
	out.AppendHeader(sip.NewHeader("User-Agent", c.a.cfg.UserAgent))
	out.SetBody(nil)
	c.a.calls.Add(1)
	go func() {
		defer c.a.calls.Done()
		c.a.sendAndWait(out)
	}()
}

// End implements core.CallLeg: the caller ends the call (reason goes
// into the CDR). Ringing, the INVITE is canceled; answered, the SIP user
// gets a BYE.
func (c *bridgeCall) End(reason string) {
	if reason == "" {
		reason = "normal"
	}
	c.mu.Lock()
	answered, ended := c.answered, c.ended
	if !answered && !ended && c.stopWhy == "" {
		c.stopWhy = reason
		close(c.stop)
	}
	c.mu.Unlock()
	if !answered || ended {
		return
	}
	c.bye()
	c.end(200, reason, core.RoleCaller)
}

// terminate ends an answered call from the gateway's side (media timeout,
// maximum duration, shutdown): BYE to the SIP user, the caller told.
func (c *bridgeCall) terminate(by, reason string) {
	c.mu.Lock()
	answered, ended := c.answered, c.ended
	if !answered && !ended && c.stopWhy == "" {
		c.stopWhy = reason
		close(c.stop)
	}
	c.mu.Unlock()
	if !answered || ended {
		return
	}
	c.bye()
	if c.end(200, reason, by) {
		c.peer.Ended(reason)
	}
}

// onRequest handles an in-dialog request from the SIP user, after the
// stages allowed it: a BYE ends the call; a new offer is refused (the
// media of a bridged call does not change); anything else is answered.
func (c *bridgeCall) onRequest(in *inbound) {
	req := in.req
	c.mu.Lock()
	ended := c.ended
	seqOK := req.CSeq().SeqNo > c.lg.remoteSeq
	if seqOK {
		c.lg.remoteSeq = req.CSeq().SeqNo
	}
	c.mu.Unlock()
	switch {
	case ended && req.Method != sip.BYE:
		c.a.refuse(in, core.RefuseWith(core.ReasonNoDialog, "sip/no_dialog", ""), "sip")
	case !seqOK:
		in.rec.Action, in.rec.Rule, in.rec.Reason = core.Refuse.String(), "sip/cseq", core.ReasonMalformed.String()
		c.a.respond(in, sip.NewResponseFromRequest(req, 500, "CSeq Out Of Order", nil))
	case req.Method == sip.BYE:
		first := c.end(200, "normal", core.RoleCallee)
		c.a.respond(in, sip.NewResponseFromRequest(req, 200, "OK", nil))
		in.tx.Terminate()
		if first {
			c.peer.Ended("normal")
		}
	case req.Method == sip.INVITE || req.Method == sip.UPDATE:
		c.a.respond(in, sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
	case req.Method == sip.INFO || req.Method == sip.NOTIFY:
		c.a.respond(in, sip.NewResponseFromRequest(req, 200, "OK", nil))
	default:
		c.a.refuse(in, core.RefuseWith(core.ReasonUnsupported, "sip/method", ""), "sip")
	}
}

// facts tells whether an in-dialog request comes from where the SIP user
// was reached and follows her CSeq and tag.
func (c *bridgeCall) facts(req *sip.Request, src netip.AddrPort) (sameSource, seqOK bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sameSource = c.lg.src.Addr() == src.Addr()
	seqOK = req.Method == sip.ACK || req.CSeq().SeqNo > c.lg.remoteSeq
	if tag, _ := req.From().Params.Get("tag"); c.lg.remoteTag != "" && tag != c.lg.remoteTag {
		seqOK = false
	}
	return sameSource, seqOK
}

// end ends the call once (true the first time): the dialog leaves the
// table, the relay stops, the CDR is written durably.
func (c *bridgeCall) end(status int, reason, by string) bool {
	a := c.a
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return false
	}
	c.ended = true
	if c.maxTimer != nil {
		c.maxTimer.Stop()
	}
	lg := c.lg
	c.mu.Unlock()
	a.dialogs.del(lg.callID, lg.localTag)
	var stats []core.MediaStats
	if c.media != nil {
		c.media.Close()
		stats = c.media.Stats()
	}
	cdr := c.sess.End(time.Now(), status, reason, by)
	a.sessions.Remove(c.sess.ID)
	c.pipe.Unbind(c.sess)
	a.metrics.active.Dec()
	if cdr == nil {
		return true
	}
	cdr.Media = stats
	result := reason
	switch reason {
	case "normal", "rejected", "no_answer", "unreachable", "shutdown", "media", "max_duration",
		"plugin_crashed", "plugin_hung", "plugin_malformed", "plugin_stopped":
	default:
		result = "other" // the caller's reason is not a label: bounded
	}
	a.metrics.calls.WithLabelValues(result).Inc()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.journal.CDR(ctx, cdr); err != nil {
		a.log.Error("cdr not written", "session", cdr.Session, "error", err)
	}
	return true
}

// enforce the contract at build time.
var (
	_ core.CallDeliverer = (*Adapter)(nil)
	_ core.CallLeg       = (*bridgeCall)(nil)
)
