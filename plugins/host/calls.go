package host

import (
	"context"
	"errors"
	"sync"
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
	pc   *protoConn
	s    *core.Session
	leg  core.CallLeg
	once sync.Once
	// ready is closed once the plugin has the session's id (its
	// EventResult went out): nothing about the session is sent before.
	ready chan struct{}
}

// offerCall offers the plugin's new session s to the adapter serving its
// callee's domain. It reports false when no such adapter places calls
// (the session stays the plugin's own); otherwise the verdict for the
// plugin: allowed (ringing), or the far side's refusal, the session
// ended.
func (pc *protoConn) offerCall(s *core.Session, ce *core.Event) (core.Verdict, bool) {
	p := pc.p
	target, ok := p.h.deps.Bridge.CallsFor(ce.To.Domain)
	if !ok || target == nil || any(target) == any(p) {
		return core.Verdict{}, false
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
