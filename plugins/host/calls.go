package host

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// Sessions of a protocol plugin bridged to calls of another adapter
// (core.CallDeliverer: the SIP adapter for users of its bridged domain).
//
// An allowed SESSION_OFFER whose callee's domain is served on the bridge
// by an adapter that places calls is offered to it (judged once, here).
// The far side's answer reaches the plugin as a Deliver of a
// SESSION_ANSWER event (session: the host's id, media: where to send),
// its end or refusal as a Deliver of a SESSION_END (reason: a core reason
// name); the session ends with it. The plugin's SESSION_END ends the far
// leg; a plugin that stops (crash, hang, restart) ends every far leg with
// the reason of its sessions' CDRs (plugin_crashed, ...).

// bridgedCall is one plugin session bridged to a far call leg.
type bridgedCall struct {
	pc  *protoConn
	s   *core.Session
	leg core.CallLeg // a call the plugin placed: the far leg
	// far is the caller of a call the plugin's user receives.
	far core.CallPeer
	// farDone says the far side knows the call ended (or ended it).
	farDone atomic.Bool
	once    sync.Once
	// ready is closed once the plugin has the session's id (its
	// EventResult went out): nothing about the session is sent before.
	ready chan struct{}
}

// offerCall offers the plugin's new session s to the adapter serving its
// callee's domain. It reports false for a session between the plugin's
// own users (it stays the plugin's own); otherwise the verdict for the
// plugin: allowed (ringing), or the refusal (no adapter takes calls for
// that domain, or the far side's), the session ended.
func (pc *protoConn) offerCall(s *core.Session, ce *core.Event) (core.Verdict, bool) {
	p := pc.p
	if strings.EqualFold(ce.To.Domain, p.cfg.Domain) {
		return core.Verdict{}, false // between the plugin's own users
	}
	target, ok := p.h.deps.Bridge.CallsFor(ce.To.Domain)
	if !ok || target == nil || any(target) == any(p) {
		// Nobody places calls to that domain (yet: an adapter serves its
		// domain once it is ready).
		pc.end(s, core.ReasonNotFound.String(), core.RoleGateway)
		return core.RefuseWith(core.ReasonNotFound, "plugin/no_route", "no adapter takes calls for that domain"), true
	}
	bc := &bridgedCall{pc: pc, s: s, ready: make(chan struct{})}
	pc.mu.Lock()
	pc.calls[s.ID] = bc
	pc.untold[s.ID] = bc
	pc.mu.Unlock()
	offer := &core.CallOffer{Session: s.ID, From: ce.From, To: ce.To, Media: ce.Media, Src: ce.Src, Judged: true}
	ctx, cancel := context.WithTimeout(pc.ctx, deliverTimeout)
	defer cancel()
	leg, err := target.OfferCall(ctx, offer, bc)
	if err != nil {
		r, detail := core.ReasonUnavailable, ""
		var de *core.DeliveryError
		if errors.As(err, &de) {
			r, detail = de.Reason, clip(de.Detail, maxShort)
		}
		pc.mu.Lock()
		delete(pc.calls, s.ID)
		delete(pc.untold, s.ID)
		pc.mu.Unlock()
		pc.end(s, r.String(), core.RoleCallee)
		return core.RefuseWith(r, "bridge/call", detail), true
	}
	pc.mu.Lock()
	bc.leg = leg
	_, alive := pc.calls[s.ID]
	pc.mu.Unlock()
	if !alive {
		// Ended meanwhile (the plugin stopped before the leg was known).
		leg.End("plugin_closing")
	}
	return core.Verdict{}, true
}

// told releases what waits for the plugin to know session sid.
func (pc *protoConn) told(sid core.SessionID) {
	if sid == "" {
		return
	}
	pc.mu.Lock()
	bc := pc.untold[sid]
	delete(pc.untold, sid)
	pc.mu.Unlock()
	if bc != nil {
		bc.once.Do(func() { close(bc.ready) })
	}
}

// Answered implements core.CallPeer: the far side answered; the plugin
// is told where to send its media.
func (bc *bridgedCall) Answered(md *core.MediaDesc) {
	bc.s.Answer(time.Now())
	bc.s.SetStatus(200)
	go bc.tell(&pb.Event{Kind: pb.Kind_SESSION_ANSWER, Method: "ANSWER", Session: string(bc.s.ID), Media: mediaTo(md)})
}

// Ended implements core.CallPeer: the far side ended or refused the call.
func (bc *bridgedCall) Ended(reason string) {
	bc.farDone.Store(true)
	bc.pc.end(bc.s, reason, core.RoleCallee)
	go bc.tell(&pb.Event{Kind: pb.Kind_SESSION_END, Method: "END", Session: string(bc.s.ID), Reason: reason})
}

// tell delivers a session event to the plugin once it knows the session.
func (bc *bridgedCall) tell(ev *pb.Event) {
	pc := bc.pc
	select {
	case <-bc.ready:
	case <-pc.ctx.Done():
		return
	case <-time.After(deliverTimeout):
		return
	}
	ctx, cancel := context.WithTimeout(pc.ctx, deliverTimeout)
	defer cancel()
	if err := pc.deliver(ctx, ev); err != nil {
		pc.p.log.Debug("session event not delivered", "session", bc.s.ID, "kind", ev.Kind.String(), "error", err)
	}
}

// mediaTo converts a neutral media description for a plugin.
func mediaTo(md *core.MediaDesc) *pb.MediaDesc {
	if md == nil {
		return nil
	}
	out := &pb.MediaDesc{Streams: make([]*pb.Stream, 0, len(md.Streams))}
	for _, s := range md.Streams {
		st := &pb.Stream{Type: s.Type, Protocol: s.Protocol, Direction: s.Direction, Disabled: s.Disabled,
			Encrypted: len(s.Crypto) > 0 || s.Fingerprint != ""}
		if s.Addr.IsValid() {
			st.Addr = s.Addr.String()
		}
		for _, c := range s.Codecs {
			st.Codecs = append(st.Codecs, &pb.Codec{Pt: uint32(c.PT), Name: c.Name, Rate: c.Rate,
				Channels: uint32(c.Channels), Params: c.Params})
		}
		out.Streams = append(out.Streams, st)
	}
	return out
}

var _ core.CallPeer = (*bridgedCall)(nil)

// roleOf is the plugin's role in its session sid: the callee of a call
// from the far side, the caller otherwise.
func (pc *protoConn) roleOf(sid core.SessionID) string {
	pc.mu.Lock()
	bc := pc.calls[sid]
	pc.mu.Unlock()
	if bc != nil && bc.far != nil {
		return core.RoleCallee
	}
	return core.RoleCaller
}

// answered passes the plugin's answer to a call from the far side.
func (pc *protoConn) answered(s *core.Session, md *core.MediaDesc) {
	pc.mu.Lock()
	bc := pc.calls[s.ID]
	pc.mu.Unlock()
	if bc != nil && bc.far != nil && !bc.farDone.Load() {
		bc.far.Answered(md)
	}
}

// OfferCall implements core.CallDeliverer: a call from another adapter's
// user (a SIP INVITE) to a user of the plugin's domain. The plugin gets a
// Deliver of a SESSION_OFFER (session: the host's id, media: where to
// send); its DeliveryResult accepts (it rings) or refuses; it then sends
// SESSION_ANSWER (media: where it receives) or SESSION_END for that
// session.
func (p *Plugin) OfferCall(ctx context.Context, o *core.CallOffer, peer core.CallPeer) (core.CallLeg, error) {
	start := time.Now()
	rec := &core.Transaction{Time: start, Protocol: p.cfg.Protocol, Src: "bridge", Dst: "plugin:" + p.cfg.Name,
		Transport: "plugin", Method: "SESSION_OFFER", From: o.From.String(), To: o.To.String(), CallID: clip(string(o.Session), 64)}
	if o.Src.Addr.IsValid() {
		rec.Src = o.Src.Addr.String()
	}
	p.calls.Add(1)
	p.mCalls.Inc()
	journal := func(err error) error {
		rec.Elapsed, rec.Action, rec.Status = time.Since(start), core.Allow.String(), 180
		var de *core.DeliveryError
		if errors.As(err, &de) {
			rec.Action, rec.Status, rec.Rule, rec.Reason, rec.Detail = core.Refuse.String(), 0, "plugin/call", de.Reason.String(), clip(de.Detail, maxShort)
		}
		if p.h.deps.Journal != nil {
			p.h.deps.Journal.Transaction(rec)
		}
		return err
	}
	pc := p.proto.Load()
	switch {
	case !strings.EqualFold(o.To.Domain, p.cfg.Domain):
		return nil, journal(&core.DeliveryError{Reason: core.ReasonNotFound, Detail: "not a user of this plugin"})
	case pc == nil:
		return nil, journal(&core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "plugin not running"})
	}
	s := core.NewSession("call", o.From, o.To, core.Leg{Protocol: "bridge", Transport: "bridge", Zone: o.Src.Zone,
		Remote: o.Src.Addr, CallID: clip(string(o.Session), 64), Party: o.From}, start)
	s.SetCallee(core.Leg{Protocol: p.cfg.Protocol, Transport: "plugin", Party: o.To})
	bc := &bridgedCall{pc: pc, s: s, far: peer, ready: make(chan struct{})}
	close(bc.ready)
	pc.mu.Lock()
	closed, n := pc.closed, len(pc.sessions)
	if !closed && n < p.cfg.Limits.MaxSessions {
		pc.sessions[s.ID] = s
		pc.calls[s.ID] = bc
		if p.h.deps.Sessions != nil {
			p.h.deps.Sessions.Add(s)
		}
	}
	pc.mu.Unlock()
	switch {
	case closed:
		return nil, journal(&core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "plugin stopping"})
	case n >= p.cfg.Limits.MaxSessions:
		return nil, journal(&core.DeliveryError{Reason: core.ReasonBusy, Detail: "plugin at max_sessions"})
	}
	rec.Session = s.ID
	ev := &pb.Event{Kind: pb.Kind_SESSION_OFFER, Method: "CALL", Session: string(s.ID),
		From: &pb.Identity{Display: o.From.Display, User: o.From.User, Domain: o.From.Domain},
		To:   &pb.Identity{Display: o.To.Display, User: o.To.User, Domain: o.To.Domain}, Media: mediaTo(o.Media)}
	if err := pc.deliver(ctx, ev); err != nil {
		var de *core.DeliveryError
		r := core.ReasonUnavailable
		if errors.As(err, &de) {
			r = de.Reason
		}
		bc.farDone.Store(true)
		pc.end(s, r.String(), core.RoleCallee)
		return nil, journal(err)
	}
	return hostLeg{bc}, journal(nil)
}

// hostLeg is the plugin's side of a call from the far side.
type hostLeg struct{ bc *bridgedCall }

// End implements core.CallLeg: the far caller ended the call; the plugin
// is told with a SESSION_END.
func (l hostLeg) End(reason string) {
	bc := l.bc
	if bc.farDone.Swap(true) {
		return
	}
	bc.pc.end(bc.s, reason, core.RoleCaller)
	go bc.tell(&pb.Event{Kind: pb.Kind_SESSION_END, Method: "END", Session: string(bc.s.ID), Reason: reason})
}

var _ core.CallDeliverer = (*Plugin)(nil)
