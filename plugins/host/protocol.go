package host

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/plugins/sdk"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// maxInFlight bounds the events of one protocol plugin being decided at
// once; beyond it events are refused as a flood.
const maxInFlight = 64

// deliverTimeout bounds a delivery through the bridge (SIP's 64*T1).
const deliverTimeout = 32 * time.Second

// protoConn is the host's end of a protocol plugin's event stream.
type protoConn struct {
	p      *Plugin
	st     pb.Protocol_ConnectClient
	ctx    context.Context
	cancel context.CancelFunc
	sendMu sync.Mutex
	next   atomic.Uint64
	sem    chan struct{}

	mu       sync.Mutex
	pending  map[uint64]chan *pb.DeliveryResult
	sessions map[core.SessionID]*core.Session
	// calls are the plugin's sessions bridged to another adapter's call
	// (a SIP INVITE): their far leg, and the peer the far side tells.
	calls map[core.SessionID]*bridgedCall
	// untold are the bridged calls whose id the plugin has not had yet.
	untold map[core.SessionID]*bridgedCall
	closed bool
}

func (p *Plugin) connect(c *sdk.ProtocolClient) (*protoConn, error) {
	ctx, cancel := context.WithCancel(p.h.ctx)
	st, err := c.Connect(ctx, &pb.Welcome{Domain: p.cfg.Domain, Name: p.cfg.Name})
	if err != nil {
		cancel()
		return nil, err
	}
	pc := &protoConn{p: p, st: st, ctx: ctx, cancel: cancel, sem: make(chan struct{}, maxInFlight),
		pending: map[uint64]chan *pb.DeliveryResult{}, sessions: map[core.SessionID]*core.Session{},
		calls: map[core.SessionID]*bridgedCall{}, untold: map[core.SessionID]*bridgedCall{}}
	go pc.recv()
	return pc, nil
}

func (pc *protoConn) send(m *pb.HostToPlugin) error {
	pc.sendMu.Lock()
	defer pc.sendMu.Unlock()
	return pc.st.Send(m)
}

func (pc *protoConn) recv() {
	p := pc.p
	for {
		m, err := pc.st.Recv()
		if err != nil {
			if pc.ctx.Err() != nil {
				return
			}
			if status.Code(err) == codes.ResourceExhausted {
				p.refuse(nil, core.ReasonTooLarge, "plugin/too_large")
				p.signal(whyMalformed)
				return
			}
			// The process died, or the plugin ended its stream: either way
			// it no longer serves its users; it is restarted.
			p.log.Warn("plugin event stream ended", "error", err)
			p.signal(whyCrashed)
			return
		}
		switch x := m.Msg.(type) {
		case *pb.PluginToHost_Event:
			ev := x.Event
			if ev == nil {
				p.refuse(nil, core.ReasonMalformed, "plugin/malformed")
				continue
			}
			if !p.limiter.Allow() {
				pc.answer(ev.GetId(), p.refuse(ev, core.ReasonRateLimited, "plugin/flood"), "")
				continue
			}
			select {
			case pc.sem <- struct{}{}:
			default:
				pc.answer(ev.GetId(), p.refuse(ev, core.ReasonRateLimited, "plugin/flood"), "")
				continue
			}
			go func() {
				defer func() { <-pc.sem }()
				v, sid := pc.onEvent(ev)
				pc.answer(ev.GetId(), v, sid)
				pc.told(core.SessionID(sid))
			}()
		case *pb.PluginToHost_Delivered:
			r := x.Delivered
			pc.mu.Lock()
			ch := pc.pending[r.GetId()]
			pc.mu.Unlock()
			if ch == nil {
				p.refuse(nil, core.ReasonMalformed, "plugin/unknown_delivery")
				continue
			}
			select {
			case ch <- r:
			default:
			}
		default:
			p.refuse(nil, core.ReasonMalformed, "plugin/malformed")
		}
	}
}

func (pc *protoConn) answer(id uint64, v *pb.Verdict, session string) {
	_ = pc.send(&pb.HostToPlugin{Msg: &pb.HostToPlugin_Result{Result: &pb.EventResult{Id: id, Verdict: v, Session: session}}})
}

func verdictTo(v core.Verdict) *pb.Verdict {
	if v.Action == core.Allow {
		return &pb.Verdict{}
	}
	return &pb.Verdict{Action: pb.Action(v.Action), Reason: v.Reason.String(), Rule: v.Rule, Detail: v.Detail}
}

// onEvent decides on one event from the plugin and carries it out.
func (pc *protoConn) onEvent(ev *pb.Event) (*pb.Verdict, string) {
	p := pc.p
	start := time.Now()
	p.calls.Add(1)
	p.mCalls.Inc()
	ce, err := EventFrom(ev, p.cfg.Protocol, start)
	if err != nil {
		return p.refuse(ev, core.ReasonMalformed, "plugin/malformed"), ""
	}
	// A plugin speaks for the users of its own domain only.
	if ce.From.Domain != strings.ToLower(p.cfg.Domain) {
		return p.refuse(ev, core.ReasonForbidden, "plugin/foreign_sender"), ""
	}
	// The relay sends media where the plugin says: only to its networks.
	if !p.mediaAllowed(ce.Media) {
		return p.refuse(ev, core.ReasonForbidden, "plugin/media_address"), ""
	}
	var owned *core.Session
	if ce.Kind == core.KindSessionAnswer || ce.Kind == core.KindSessionUpdate || ce.Kind == core.KindSessionEnd {
		pc.mu.Lock()
		owned = pc.sessions[ce.Session]
		pc.mu.Unlock()
		if owned == nil {
			return p.refuse(ev, core.ReasonNoDialog, "plugin/not_owner"), ""
		}
		ce.InDialog, ce.DialogKnown, ce.DialogSameSource, ce.DialogSeqOK = true, true, true, true
	}
	rec := &core.Transaction{Time: start, Protocol: p.cfg.Protocol, Zone: ce.Src.Zone, Src: "plugin:" + p.cfg.Name,
		Transport: ce.Src.Transport, Encrypted: ce.Src.Encrypted, Method: ce.Method, From: ce.From.String(),
		To: ce.To.String(), CallID: clip(ev.GetSession(), 64), Session: ce.Session}
	if ce.Src.Addr.IsValid() {
		rec.Src = ce.Src.Addr.String()
	}
	if rec.Transport == "" {
		rec.Transport = "plugin"
	}
	done := func(v core.Verdict, status int, sid string) (*pb.Verdict, string) {
		rec.Action, rec.Rule, rec.Status, rec.Elapsed = v.Action.String(), v.Rule, status, time.Since(start)
		if v.Action != core.Allow {
			rec.Reason, rec.Detail = v.Reason.String(), v.Detail
		}
		if p.h.deps.Journal != nil {
			p.h.deps.Journal.Transaction(rec)
		}
		return verdictTo(v), sid
	}
	if d := p.h.pipe.Load().Run(pc.ctx, ce); d.Action != core.Allow {
		return done(d.Verdict, 0, "")
	}
	switch ce.Kind {
	case core.KindMessage, core.KindPresence:
		target, ok := p.h.deps.Bridge.For(ce.To.Domain)
		if !ok || target == core.Deliverer(p) {
			return done(core.RefuseWith(core.ReasonNotFound, "plugin/no_route", ""), 0, "")
		}
		ctx, cancel := context.WithTimeout(pc.ctx, deliverTimeout)
		defer cancel()
		// The pipeline allowed it above: the delivering adapter does not
		// judge it again.
		if ce.Kind == core.KindMessage {
			m := MessageFrom(ev, ce)
			m.Judged = true
			err = target.DeliverMessage(ctx, m)
		} else {
			pr := PresenceFrom(ev, ce)
			pr.Judged = true
			err = target.DeliverPresence(ctx, pr)
		}
		if err != nil {
			var de *core.DeliveryError
			r := core.ReasonUnavailable
			detail := ""
			if errors.As(err, &de) {
				r, detail = de.Reason, clip(de.Detail, maxShort)
			}
			return done(core.RefuseWith(r, "bridge/delivery", detail), 0, "")
		}
		return done(core.Verdict{}, 200, "")
	case core.KindSessionOffer:
		leg := core.Leg{Protocol: p.cfg.Protocol, Transport: rec.Transport, Encrypted: ce.Src.Encrypted, Zone: ce.Src.Zone,
			Remote: ce.Src.Addr, CallID: clip(ev.GetSession(), 64), Party: ce.From}
		s := core.NewSession("call", ce.From, ce.To, leg, start)
		s.SetCallee(core.Leg{Protocol: p.cfg.Protocol, Transport: rec.Transport, Party: ce.To})
		// Checked and added at once: close (the plugin stopped) ends every
		// session it finds, and one added after it would stay in the
		// session table without a CDR.
		pc.mu.Lock()
		n, closed := len(pc.sessions), pc.closed
		if !closed && n < p.cfg.Limits.MaxSessions {
			pc.sessions[s.ID] = s
			if p.h.deps.Sessions != nil {
				p.h.deps.Sessions.Add(s)
			}
			p.h.pipe.Load().Bind(s)
		}
		pc.mu.Unlock()
		if closed {
			return done(core.RefuseWith(core.ReasonUnavailable, "plugin/closing", ""), 0, "")
		}
		if n >= p.cfg.Limits.MaxSessions {
			return done(core.RefuseWith(core.ReasonBusy, "plugin/max_sessions", ""), 0, "")
		}
		rec.Session = s.ID
		if v, bridged := pc.offerCall(s, ce); bridged {
			return done(v, 100, string(s.ID))
		}
		return done(core.Verdict{}, 100, string(s.ID))
	case core.KindSessionAnswer:
		owned.Answer(start)
		owned.SetStatus(200)
		pc.answered(owned, ce.Media)
		return done(core.Verdict{}, 200, string(owned.ID))
	case core.KindSessionEnd:
		reason := ev.GetReason()
		if reason == "" {
			reason = "normal"
		}
		pc.end(owned, clip(reason, 64), pc.roleOf(owned.ID))
		return done(core.Verdict{}, 200, string(owned.ID))
	}
	return done(core.Verdict{}, 200, string(ce.Session))
}

// end ends a session of the plugin and writes its CDR.
func (pc *protoConn) end(s *core.Session, reason, by string) {
	p := pc.p
	pc.mu.Lock()
	delete(pc.sessions, s.ID)
	bc := pc.calls[s.ID]
	delete(pc.calls, s.ID)
	pc.mu.Unlock()
	if bc != nil && !bc.farDone.Swap(true) {
		// The plugin's side ended (or the plugin stopped): the far side
		// ends too (a SIP BYE or CANCEL), with the same reason.
		if bc.leg != nil {
			bc.leg.End(reason)
		}
		if bc.far != nil {
			bc.far.Ended(reason)
		}
	}
	cdr := s.End(time.Now(), 503, reason, by)
	if p.h.deps.Sessions != nil {
		p.h.deps.Sessions.Remove(s.ID)
	}
	if bc == nil || bc.far == nil {
		p.h.pipe.Load().Unbind(s) // a call from the far side is bound there
	}
	if cdr == nil || p.h.deps.Journal == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.h.deps.Journal.CDR(ctx, cdr); err != nil {
		p.log.Error("cdr not written", "session", s.ID, "error", err)
	}
}

func (pc *protoConn) sessionCount() int {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return len(pc.sessions)
}

// close ends the stream and every session the plugin held, with reason
// in their CDRs.
func (pc *protoConn) close(reason string) {
	pc.mu.Lock()
	pc.closed = true
	list := make([]*core.Session, 0, len(pc.sessions))
	for _, s := range pc.sessions {
		list = append(list, s)
	}
	pc.mu.Unlock()
	for _, s := range list {
		pc.end(s, reason, core.RoleGateway)
	}
	if len(list) > 0 {
		pc.p.log.Warn("plugin sessions ended", "sessions", len(list), "reason", reason)
	}
	pc.cancel()
}

// deliver hands the plugin an event for one of its users and waits for
// its result.
func (pc *protoConn) deliver(ctx context.Context, ev *pb.Event) error {
	id := pc.next.Add(1)
	ev.Id = id
	ch := make(chan *pb.DeliveryResult, 1)
	pc.mu.Lock()
	pc.pending[id] = ch
	pc.mu.Unlock()
	defer func() {
		pc.mu.Lock()
		delete(pc.pending, id)
		pc.mu.Unlock()
	}()
	if err := pc.send(&pb.HostToPlugin{Msg: &pb.HostToPlugin_Deliver{Deliver: &pb.Deliver{Event: ev}}}); err != nil {
		return &core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "plugin not reachable"}
	}
	select {
	case r := <-ch:
		if r.GetVerdict().GetAction() == pb.Action_ALLOW {
			return nil
		}
		d := r.GetVerdict().GetDetail()
		if !printable(d, maxShort) {
			d = ""
		}
		return &core.DeliveryError{Reason: reasonFrom(r.GetVerdict().GetReason()), Detail: d}
	case <-ctx.Done():
		return &core.DeliveryError{Reason: core.ReasonTimeout, Detail: "plugin did not answer"}
	case <-pc.ctx.Done():
		return &core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "plugin stopped"}
	}
}

// Protocol names the plugin's protocol for the other adapters' journal.
func (p *Plugin) Protocol() string { return p.cfg.Protocol }

// DeliverMessage implements core.Deliverer: a message from another
// adapter for a user of the plugin's domain.
func (p *Plugin) DeliverMessage(ctx context.Context, m *core.Message) error {
	return p.deliverEvent(ctx, messageTo(m), "MESSAGE", m.From, m.To, m.Src)
}

// DeliverPresence implements core.Deliverer.
func (p *Plugin) DeliverPresence(ctx context.Context, pr *core.Presence) error {
	return p.deliverEvent(ctx, presenceTo(pr), "PRESENCE", pr.From, pr.To, pr.Src)
}

func (p *Plugin) deliverEvent(ctx context.Context, ev *pb.Event, method string, from, to core.Identity, src core.Source) error {
	start := time.Now()
	rec := &core.Transaction{Time: start, Protocol: p.cfg.Protocol, Src: "bridge", Dst: "plugin:" + p.cfg.Name,
		Transport: "plugin", Method: method, From: from.String(), To: to.String()}
	if src.Addr.IsValid() {
		rec.Src = src.Addr.String()
	}
	p.calls.Add(1)
	p.mCalls.Inc()
	var err error
	pc := p.proto.Load()
	switch {
	case !strings.EqualFold(to.Domain, p.cfg.Domain):
		err = &core.DeliveryError{Reason: core.ReasonNotFound, Detail: "not a user of this plugin"}
	case pc == nil:
		err = &core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "plugin not running"}
	default:
		err = pc.deliver(ctx, ev)
	}
	p.mLatency.Observe(time.Since(start).Seconds())
	rec.Elapsed, rec.Action, rec.Status = time.Since(start), core.Allow.String(), 200
	var de *core.DeliveryError
	if errors.As(err, &de) {
		rec.Action, rec.Status, rec.Rule, rec.Reason, rec.Detail = core.Refuse.String(), 0, "plugin/delivery", de.Reason.String(), clip(de.Detail, maxShort)
		if de.Reason != core.ReasonNotFound {
			p.errs.Add(1)
			p.mErrs.Inc()
		}
	}
	if p.h.deps.Journal != nil {
		p.h.deps.Journal.Transaction(rec)
	}
	return err
}

var _ core.Deliverer = (*Plugin)(nil)

// mediaAllowed reports whether every address of md the relay would send
// to is in the plugin's media networks.
func (p *Plugin) mediaAllowed(md *core.MediaDesc) bool {
	if md == nil {
		return true
	}
	for _, st := range md.Streams {
		if st.Disabled || !st.Addr.IsValid() || st.Addr.Addr().IsUnspecified() {
			continue // nothing is sent there (refused stream, hold)
		}
		a := st.Addr.Addr().Unmap()
		ok := false
		for _, n := range p.mediaNets {
			if n.Contains(a) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
