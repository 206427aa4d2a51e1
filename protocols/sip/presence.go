package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
)

// Presence across the bridge (RFC 7248 on RFC 6665 and RFC 3856): each
// subscription is a SIP dialog the gateway holds on the SIP side and a
// pair of parties on the other.
//
//   - A SIP user watches a party of the other side (the gateway is the
//     notifier): her SUBSCRIBE (Event: presence) to juliet@example.test is
//     answered 200 with Expires once the other side took the
//     core.PresenceSubscribe, followed by a NOTIFY pending (closed) until
//     juliet approves (core.PresenceSubscribed, or available presence to
//     her), then active with the last known state (closed if none); each
//     core.PresenceUpdate from juliet to her becomes a NOTIFY with PIDF;
//     her refresh gets a NOTIFY, her
//     un-SUBSCRIBE a terminating NOTIFY and a core.PresenceUnsubscribe to
//     the other side; a lapsed subscription a NOTIFY terminated with
//     reason timeout; juliet's core.PresenceUnsubscribed one with reason
//     rejected.
//   - A party of the other side watches a SIP user (the gateway is the
//     subscriber): core.PresenceSubscribe becomes a SUBSCRIBE to her
//     binding or along the routes; a 2xx gives core.PresenceSubscribed
//     back, a refusal core.PresenceUnsubscribed; each NOTIFY with PIDF
//     becomes a core.PresenceUpdate; the gateway refreshes the
//     subscription before it lapses and makes a new one when the SIP side
//     ends it for a reason that allows it (deactivated, timeout,
//     probation, or no answer: then the other side sees her unavailable
//     until it comes back); core.PresenceUnsubscribe sends Expires: 0.
//     A core.PresenceProbe is answered with the last known state, or
//     makes the subscription if there is none (a restarted gateway).

// subscription is one presence subscription across the bridge.
type subscription struct {
	a *Adapter
	// notifier says the gateway notifies (a SIP user watches a party of
	// the other side); otherwise it subscribes (a party of the other side
	// watches a SIP user).
	notifier bool
	sipUser  core.Identity // the SIP user, in the bridged domain
	peer     core.Identity // the party of the other side
	proto    string        // the other side's protocol, for the journal
	eventID  string        // the id parameter of the subscriber's Event
	quiet    bool          // made for a probe: no subscribed or unsubscribed is reported

	mu      sync.Mutex
	lg      *leg
	expires time.Time
	timer   *time.Timer
	ended   bool

	// The notifier's side: state is what the next NOTIFY carries, src
	// where it came from; ready says the SUBSCRIBE has its 2xx; dirty that
	// a NOTIFY is due and sending that a sender runs; final is the
	// reason of the terminating NOTIFY once the subscription ends;
	// approved says the party of the other side allowed it (subscribed,
	// or available presence sent to the SIP user): until then the
	// subscription is pending and its NOTIFYs show nothing of her.
	state    presenceInfo
	src      core.Source
	ready    bool
	dirty    bool
	sending  bool
	final    string
	approved bool

	// The subscriber's side: answered says the current SUBSCRIBE had its
	// 2xx; held keeps the outbox until the first one (the subscribed goes
	// before any update); outbox holds what goes to the other side, in
	// order, and flushing says a sender runs; last is the SIP user's last
	// known state.
	answered  bool
	held      bool
	outbox    []core.Presence
	flushing  bool
	last      presenceInfo
	lastKnown bool
	// confirmed says the other side was told subscribed; since is when the
	// current SUBSCRIBE had its 2xx; retries counts the new subscriptions
	// made since the last one that held (see lost).
	confirmed bool
	since     time.Time
	retries   int
	// dead is the leg whose dialog the SIP side ended: a 2xx that comes
	// for it after its terminating NOTIFY (they may cross) changes nothing.
	dead *leg
	// ask is the Expires the gateway's SUBSCRIBEs ask for: bridge.expires,
	// or more when the user agent said 423 with a Min-Expires.
	ask int
}

const (
	// maxRetries is how many new subscriptions the gateway makes in a row
	// for a pair whose SIP side keeps ending or failing them before it
	// gives up (the other side's next probe starts again).
	maxRetries = 8
	// stableAfter is how long a subscription must have held for the next
	// loss to start a new count of retries.
	stableAfter = 10 * time.Minute
	// maxAsk bounds the Min-Expires the gateway agrees to ask for, in
	// seconds.
	maxAsk = 86400
)

// pairKey names the subscriptions between two parties, one way.
type pairKey struct {
	sip, peer string
	notifier  bool
}

func keyOf(sipUser, peer core.Identity, notifier bool) pairKey {
	return pairKey{strings.ToLower(sipUser.String()), strings.ToLower(peer.String()), notifier}
}

// subTable holds the subscriptions by dialog and by pair, and the last
// state each party of the other side sent to each SIP user (for the
// first NOTIFY of a new subscription). Both are bounded.
type subTable struct {
	mu      sync.Mutex
	max     int
	maxUser int
	log     *slog.Logger
	byKey   map[dialogKey]*subscription
	perUser map[string]int // subscriptions by SIP user (lower case), both ways
	keys    map[*subscription]dialogKey
	byPair  map[pairKey][]*subscription
	last    map[pairKey]presenceInfo
	closed  bool
	wg      sync.WaitGroup
}

func newSubTable(max, maxUser int) *subTable {
	return &subTable{max: max, maxUser: maxUser, log: slog.New(slog.DiscardHandler),
		byKey: map[dialogKey]*subscription{}, keys: map[*subscription]dialogKey{}, perUser: map[string]int{},
		byPair: map[pairKey][]*subscription{}, last: map[pairKey]presenceInfo{}}
}

// errSubsFull and errUserFull say why add refused a subscription.
var (
	errSubsFull = errors.New("sip: too many presence subscriptions across the bridge")
	errUserFull = errors.New("sip: too many presence subscriptions for one SIP user")
)

func (s *subscription) pairKey() pairKey { return keyOf(s.sipUser, s.peer, s.notifier) }

// add puts s in the table under its dialog. It refuses when the table is
// closed or full, or when s's SIP user holds maxUser subscriptions.
func (t *subTable) add(s *subscription, k dialogKey) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := strings.ToLower(s.sipUser.String())
	switch {
	case t.closed || len(t.keys) >= t.max:
		return errSubsFull
	case t.perUser[u] >= t.maxUser:
		return errUserFull
	}
	t.byKey[k] = s
	t.keys[s] = k
	t.perUser[u]++
	pk := s.pairKey()
	t.byPair[pk] = append(t.byPair[pk], s)
	return nil
}

// rekey moves s to another dialog (a new SUBSCRIBE after the old one
// failed).
func (t *subTable) rekey(s *subscription, k dialogKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.keys[s]
	if !ok {
		return
	}
	delete(t.byKey, old)
	t.byKey[k] = s
	t.keys[s] = k
}

// detach takes s out of its pair: the pair's next subscription is a new
// one. Its dialog stays in the table until del.
func (t *subTable) detach(s *subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.detachLocked(s)
}

func (t *subTable) detachLocked(s *subscription) {
	pk := s.pairKey()
	list := t.byPair[pk]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.byPair, pk)
	} else {
		t.byPair[pk] = list
	}
}

// del removes s from the table.
func (t *subTable) del(s *subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if k, ok := t.keys[s]; ok {
		delete(t.byKey, k)
		delete(t.keys, s)
		u := strings.ToLower(s.sipUser.String())
		if t.perUser[u]--; t.perUser[u] <= 0 {
			delete(t.perUser, u)
		}
	}
	t.detachLocked(s)
}

func (t *subTable) get(callID, tag string) *subscription {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byKey[dialogKey{callID, tag}]
}

func (t *subTable) pair(k pairKey) []*subscription {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*subscription(nil), t.byPair[k]...)
}

func (t *subTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}

// remember keeps the last state a party of the other side sent a SIP
// user; when full, an arbitrary older entry makes room.
func (t *subTable) remember(k pairKey, p presenceInfo) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.last[k]; !ok && len(t.last) >= t.max {
		for old := range t.last {
			delete(t.last, old)
			break
		}
	}
	t.last[k] = p
}

func (t *subTable) forget(k pairKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.last, k)
}

func (t *subTable) recall(k pairKey) presenceInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last[k]
}

// goAsync runs f on a goroutine of its own unless the table is closed. A
// panic in f (a bug met on hostile input) costs that work, never the
// gateway.
func (t *subTable) goAsync(f func()) bool {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return false
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		defer func() {
			if r := recover(); r != nil {
				t.log.Error("presence work panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
		}()
		f()
	}()
	return true
}

// close refuses new subscriptions and work, and returns every
// subscription held.
func (t *subTable) close() []*subscription {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	out := make([]*subscription, 0, len(t.keys))
	for s := range t.keys {
		out = append(out, s)
	}
	return out
}

// headerGetter is what requests and responses offer to read a header.
type headerGetter interface{ GetHeader(name string) sip.Header }

// eventOf reads the Event header: the package, lower case, and its id.
func eventOf(m headerGetter) (pkg, id string) {
	h := m.GetHeader("Event")
	if h == nil {
		h = m.GetHeader("o")
	}
	if h == nil {
		return "", ""
	}
	parts := strings.Split(h.Value(), ";")
	pkg = strings.ToLower(strings.TrimSpace(parts[0]))
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "id") {
			if v = strings.TrimSpace(v); len(v) <= 64 && token(v) {
				id = v
			}
		}
	}
	return pkg, id
}

// expiresOf reads a SUBSCRIBE's Expires: absent, the presence default
// (3600 s, RFC 3856 section 6.4); never above limit. False if it is not
// a number of seconds.
func expiresOf(m headerGetter, limit int) (int, bool) {
	h := m.GetHeader("Expires")
	if h == nil {
		return min(3600, limit), true
	}
	v, err := strconv.Atoi(strings.TrimSpace(h.Value()))
	if err != nil || v < 0 {
		return 0, false
	}
	return min(v, limit), true
}

// acceptsPIDF reports whether a SUBSCRIBE accepts PIDF bodies (no Accept
// header means it does, RFC 3856 section 6.7).
func acceptsPIDF(req *sip.Request) bool {
	hs := req.GetHeaders("Accept")
	if len(hs) == 0 {
		return true
	}
	for _, h := range hs {
		for _, item := range strings.Split(h.Value(), ",") {
			media, _, _ := strings.Cut(item, ";")
			switch strings.ToLower(strings.TrimSpace(media)) {
			case "application/pidf+xml", "application/*", "*/*":
				return true
			}
		}
	}
	return false
}

// subState reads Subscription-State: the state, the reason of a
// termination, and the expires and retry-after parameters (-1 if absent).
func subState(m headerGetter) (state, reason string, expires, retryAfter int) {
	expires, retryAfter = -1, -1
	h := m.GetHeader("Subscription-State")
	if h == nil {
		return "", "", expires, retryAfter
	}
	parts := strings.Split(h.Value(), ";")
	state = strings.ToLower(strings.TrimSpace(parts[0]))
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch k {
		case "reason":
			reason = strings.ToLower(v)
		case "expires":
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				expires = n
			}
		case "retry-after":
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				retryAfter = n
			}
		}
	}
	return state, reason, expires, retryAfter
}

// isPIDF reports whether a message's body is a PIDF document.
func isPIDF(m message) bool {
	ct := m.ContentType()
	if ct == nil {
		return false
	}
	media, _, _ := strings.Cut(ct.Value(), ";")
	return strings.EqualFold(strings.TrimSpace(media), "application/pidf+xml")
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// refreshAfter is when a subscription granted for d is refreshed: a
// third of it early, at most a minute early (more than a transaction
// lasts).
func refreshAfter(d time.Duration) time.Duration { return d - min(d/3, time.Minute) }

// retryAfter is how long the gateway waits before it subscribes again
// after the SIP side ended or refused a subscription for a passing
// reason: half the subscription's lifetime, between 1 s and 5 min.
func (a *Adapter) retryDelay() time.Duration {
	return min(max(seconds(a.cfg.Bridge.Expires)/2, time.Second), 5*time.Minute)
}

// subscriptionOf finds the bridge subscription an in-dialog SUBSCRIBE
// (the gateway notifies) or NOTIFY (the gateway subscribes) belongs to,
// and puts what the dialog stage judges on the event.
func (a *Adapter) subscriptionOf(in *inbound, ev *core.Event) *subscription {
	req := in.req
	if !ev.InDialog || req.Method != sip.SUBSCRIBE && req.Method != sip.NOTIFY {
		return nil
	}
	tag, _ := req.To().Params.Get("tag")
	cid := req.CallID()
	if cid == nil || req.From() == nil || req.CSeq() == nil {
		return nil // malformed: check refuses it
	}
	s := a.subs.get(cid.Value(), tag)
	if s == nil || s.notifier != (req.Method == sip.SUBSCRIBE) {
		return nil
	}
	ev.DialogKnown = true
	ev.DialogSameSource, ev.DialogSeqOK = s.facts(req, in)
	return s
}

// facts tells whether an in-dialog request comes from the peer's address
// and moves the dialog forward (see call.facts).
func (s *subscription) facts(req *sip.Request, in *inbound) (sameSource, seqOK bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lg := s.lg
	sameSource = lg.src.Addr() == in.src.Addr() || in.up != nil && lg.src == netip.AddrPortFrom(in.up.ip, in.up.port)
	seqOK = req.CSeq().SeqNo > lg.remoteSeq
	if tag, _ := req.From().Params.Get("tag"); lg.remoteTag != "" && tag != lg.remoteTag {
		seqOK = false
	}
	return sameSource, seqOK
}

// inDialog checks an in-dialog request against the dialog and moves it
// forward; it answers and returns false when the request does not fit.
// The caller holds s.mu.
func (s *subscription) inDialog(in *inbound) bool {
	req := in.req
	lg := s.lg
	if tag, _ := req.From().Params.Get("tag"); lg.remoteTag != "" && tag != lg.remoteTag {
		s.mu.Unlock()
		s.a.refuse(in, core.RefuseWith(core.ReasonNoDialog, "sip/no_dialog", ""), "sip")
		s.mu.Lock()
		return false
	}
	if seq := req.CSeq().SeqNo; seq <= lg.remoteSeq {
		s.mu.Unlock()
		in.rec.Action, in.rec.Rule, in.rec.Reason = core.Refuse.String(), "sip/cseq", core.ReasonMalformed.String()
		s.a.respond(in, sip.NewResponseFromRequest(req, 500, "CSeq Out Of Order", nil))
		s.mu.Lock()
		return false
	}
	lg.remoteSeq = req.CSeq().SeqNo
	if lg.remoteTag == "" {
		lg.remoteTag = req.From().Params.GetOr("tag", "")
	}
	if ct := req.Contact(); ct != nil {
		lg.target = *ct.Address.Clone()
	}
	return true
}

// onRequest handles an in-dialog SUBSCRIBE or NOTIFY of a subscription,
// once the pipeline allowed it.
func (s *subscription) onRequest(in *inbound) {
	// Both ways, what comes in a dialog comes from the SIP user: her
	// refresh, or her NOTIFY.
	in.rec.Detail = bridgeDetail(s.proto, s.sipUser, s.peer)
	if s.notifier {
		s.onSubscribe(in)
		return
	}
	s.onNotify(in)
}

// subscribeToBridge handles an out-of-dialog SUBSCRIBE (Event: presence)
// whose Request-URI names a domain another adapter serves: the gateway
// becomes the notifier of a new subscription. It reports false, having
// done nothing, for any other SUBSCRIBE.
func (a *Adapter) subscribeToBridge(in *inbound, ev *core.Event) bool {
	req := in.req
	d := a.bridged(req.Recipient.Host)
	if d == nil {
		return false
	}
	proto := protocolOf(d)
	if pkg, _ := eventOf(req); pkg != "presence" {
		// The other side has presence only (RFC 7248).
		a.refuseBridged(in, 489, "Bad Event", "sip/bridge_event", core.ReasonUnsupported, sip.NewHeader("Allow-Events", "presence"))
		return true
	}
	from := req.From()
	watcher, errFrom := a.sipParty(from.DisplayName, &from.Address)
	peer, okTo := peerParty(&req.Recipient)
	in.rec.Detail = bridgeDetail(proto, watcher, peer)
	expires, okExp := expiresOf(req, a.cfg.Bridge.Expires)
	switch {
	case errFrom != nil:
		a.refuseSender(in, errFrom)
		return true
	case !okTo:
		a.refuse(in, core.RefuseWith(core.ReasonNotFound, "sip/bridge_address", ""), "sip")
		return true
	case !okExp:
		a.refuse(in, core.RefuseWith(core.ReasonMalformed, "sip/malformed", "Bad Expires"), "sip")
		return true
	case req.Contact() == nil || req.Contact().Address.Wildcard:
		a.refuse(in, core.RefuseWith(core.ReasonMalformed, "sip/malformed", "Missing Contact"), "sip")
		return true
	case !acceptsPIDF(req):
		a.refuseBridged(in, 406, "Not Acceptable", "sip/bridge_content", core.ReasonNotAcceptable,
			sip.NewHeader("Accept", "application/pidf+xml"))
		return true
	}
	_, id := eventOf(req)
	s := &subscription{a: a, notifier: true, sipUser: watcher, peer: peer, proto: proto, eventID: id, src: ev.Src}
	local, _ := peerURI(peer)
	lg := &leg{
		callID:    req.CallID().Value(),
		localTag:  sip.GenerateTagN(16),
		remoteTag: from.Params.GetOr("tag", ""),
		local:     local,
		remote:    *from.Address.Clone(),
		remoteNm:  cleanDisplay(from.DisplayName),
		target:    *req.Contact().Address.Clone(),
		// No route set: requests to the subscriber go back to where it
		// sent from (its NAT binding, or the proxy before it), never to an
		// address a Record-Route names.
		remoteSeq: req.CSeq().SeqNo,
		transport: strings.ToUpper(req.Transport()),
		dest:      in.src.String(),
		l:         in.l,
		src:       in.src,
		secure:    in.rec.Encrypted,
		zone:      in.zone,
	}
	lg.remote.UriParams, lg.remote.Headers = nil, nil
	s.lg = lg
	s.state = a.subs.recall(s.pairKey())
	// Another of her devices already watches with the party's approval.
	for _, o := range a.subs.pair(s.pairKey()) {
		o.mu.Lock()
		s.approved = s.approved || o.approved
		o.mu.Unlock()
	}
	ok200 := func() {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.To().Params.Add("tag", lg.localTag)
		res.AppendHeader(lg.contact())
		res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
		a.respond(in, res)
	}
	if expires == 0 {
		// A fetch (RFC 6665 section 4.4.3): the state now, in a NOTIFY
		// that ends the subscription at once.
		ok200()
		s.mu.Lock()
		s.ready, s.final = true, "timeout"
		s.mu.Unlock()
		s.changed()
		return true
	}
	if err := a.subs.add(s, dialogKey{lg.callID, lg.localTag}); err != nil {
		a.refuse(in, core.RefuseWith(core.ReasonUnavailable, "sip/bridge_subscriptions", err.Error()), "sip")
		return true
	}
	// The other side hears of the subscription first: it may refuse it.
	ctx, cancel := context.WithTimeout(a.ctx, 64*sip.T1)
	defer cancel()
	err := d.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceSubscribe, From: watcher, To: peer, Src: ev.Src, Time: in.start})
	if err != nil {
		a.subs.del(s)
		r, detail := deliveryFailure(err)
		code, phrase := bridgeStatusFor(r)
		in.rec.Reason = r.String()
		if detail != "" {
			in.rec.Detail += ": " + clip(detail)
		}
		res := sip.NewResponseFromRequest(req, code, phrase, nil)
		res.To().Params.Add("tag", lg.localTag)
		a.respond(in, res)
		return true
	}
	s.mu.Lock()
	s.arm(seconds(expires), s.expire)
	s.mu.Unlock()
	ok200()
	s.mu.Lock()
	s.ready = true
	s.mu.Unlock()
	s.changed()
	return true
}

// arm (re)sets the subscription's timer. The caller holds s.mu.
func (s *subscription) arm(d time.Duration, f func()) {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.expires = time.Now().Add(d)
	s.timer = time.AfterFunc(d, func() { s.a.subs.goAsync(f) })
}

func (s *subscription) stopTimer() {
	if s.timer != nil {
		s.timer.Stop()
	}
}

// expire ends a subscription its subscriber did not refresh.
func (s *subscription) expire() {
	s.mu.Lock()
	if s.ended || s.final != "" {
		s.mu.Unlock()
		return
	}
	s.final = "timeout"
	s.mu.Unlock()
	s.changed()
}

// onSubscribe handles the subscriber's refresh or un-SUBSCRIBE.
func (s *subscription) onSubscribe(in *inbound) {
	a, req := s.a, in.req
	if pkg, _ := eventOf(req); pkg != "presence" {
		a.refuseBridged(in, 489, "Bad Event", "sip/bridge_event", core.ReasonUnsupported, sip.NewHeader("Allow-Events", "presence"))
		return
	}
	expires, ok := expiresOf(req, a.cfg.Bridge.Expires)
	if !ok {
		a.refuse(in, core.RefuseWith(core.ReasonMalformed, "sip/malformed", "Bad Expires"), "sip")
		return
	}
	s.mu.Lock()
	if s.ended || s.final != "" {
		s.mu.Unlock()
		a.refuse(in, core.RefuseWith(core.ReasonNoDialog, "sip/no_dialog", ""), "sip")
		return
	}
	if !s.inDialog(in) {
		s.mu.Unlock()
		return
	}
	if expires == 0 {
		s.final = "timeout"
		s.stopTimer()
	} else {
		s.arm(seconds(expires), s.expire)
	}
	s.mu.Unlock()
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(s.lg.contact())
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	a.respond(in, res)
	s.changed()
	if expires == 0 {
		a.subs.detach(s)
		// The other side's subscription is the pair's: it ends with the
		// last of her subscriptions (another of her devices may watch).
		if len(a.subs.pair(s.pairKey())) == 0 {
			a.tell(core.Presence{Kind: core.PresenceUnsubscribe, From: s.sipUser, To: s.peer, Src: s.src, Time: time.Now()})
		}
	}
}

// update sets the state the next NOTIFY carries. Available presence sent
// to the SIP user is an approval (XMPP sends it to subscribers, or to whom
// the party chose); unavailable is not (Prosody acknowledges every
// subscription request with one).
func (s *subscription) update(p presenceInfo, src core.Source) {
	s.mu.Lock()
	s.state, s.src = p, src
	s.approved = s.approved || p.Available
	s.mu.Unlock()
	s.changed()
}

// approve: the party of the other side allowed the subscription; it is
// active from the next NOTIFY on.
func (s *subscription) approve() {
	s.mu.Lock()
	s.approved = true
	s.mu.Unlock()
	s.changed()
}

// end ends a subscription the gateway notifies, with the reason its last
// NOTIFY gives.
func (s *subscription) end(reason string) {
	s.mu.Lock()
	if s.ended || s.final != "" {
		s.mu.Unlock()
		return
	}
	s.final = reason
	s.stopTimer()
	s.mu.Unlock()
	s.a.subs.detach(s)
	s.changed()
}

// changed says a NOTIFY is due and starts the sender if none runs. NOTIFYs
// of one subscription go one at a time, each with the latest state.
func (s *subscription) changed() {
	s.mu.Lock()
	s.dirty = true
	if s.sending || !s.ready || s.ended {
		s.mu.Unlock()
		return
	}
	s.sending = true
	s.mu.Unlock()
	if !s.a.subs.goAsync(s.notifyLoop) {
		s.mu.Lock()
		s.sending = false
		s.mu.Unlock()
	}
}

func (s *subscription) notifyLoop() {
	a := s.a
	for {
		s.mu.Lock()
		if !s.dirty || s.ended {
			s.sending = false
			s.mu.Unlock()
			return
		}
		s.dirty = false
		out := s.notifyLocked()
		final := s.final != ""
		if final {
			s.ended = true
			s.stopTimer()
		}
		lg, src := s.lg, s.src
		s.mu.Unlock()
		if final {
			// Gone from the table before its last NOTIFY goes: a refresh
			// crossing it finds no subscription.
			a.subs.del(s)
		}
		res, err := a.send(out, lg, "NOTIFY", src, s.peer, s.sipUser, s.proto)
		if final {
			return
		}
		if err != nil || res.StatusCode >= 300 {
			// RFC 6665 section 4.2.2: a NOTIFY that fails ends the
			// subscription.
			s.mu.Lock()
			s.ended, s.sending = true, false
			s.stopTimer()
			s.mu.Unlock()
			a.subs.del(s)
			return
		}
	}
}

// notifyLocked builds the next NOTIFY. The caller holds s.mu.
func (s *subscription) notifyLocked() *sip.Request {
	a, lg := s.a, s.lg
	out := lg.request(sip.NOTIFY, 0)
	ev := "presence"
	if s.eventID != "" {
		ev += ";id=" + s.eventID
	}
	out.AppendHeader(sip.NewHeader("Event", ev))
	state := "terminated;reason=" + s.final
	info := s.state
	switch {
	case s.final == "" && s.approved:
		left := int(math.Ceil(time.Until(s.expires).Seconds()))
		state = "active;expires=" + strconv.Itoa(max(left, 0))
	case s.final == "":
		// RFC 6665 section 4.2.1.1, RFC 7248 section 6: pending until the
		// other side approves; the PIDF shows her closed meanwhile.
		left := int(math.Ceil(time.Until(s.expires).Seconds()))
		state = "pending;expires=" + strconv.Itoa(max(left, 0))
		info = presenceInfo{}
	case !s.approved:
		info = presenceInfo{}
	}
	out.AppendHeader(sip.NewHeader("Subscription-State", state))
	out.AppendHeader(sip.NewHeader("User-Agent", a.cfg.UserAgent))
	out.AppendHeader(sip.NewHeader("Content-Type", "application/pidf+xml"))
	entity := "pres:" + sipUser(s.peer.User) + "@" + s.peer.Domain
	body := buildPIDF(entity, info)
	// A datagram holds about 1300 bytes: over UDP a long status is cut
	// (escaped, it may have grown five times) until the body fits in 600.
	for st := info; lg.transport == "UDP" && len(body) > 600 && st.Status != ""; {
		st.Status = cleanStatus(st.Status[:len(st.Status)/2])
		body = buildPIDF(entity, st)
	}
	out.SetBody(body)
	return out
}

// send sends a request the gateway originates on a subscription's leg,
// waits for its final response and journals it.
func (a *Adapter) send(out *sip.Request, lg *leg, method string, src core.Source, from, to core.Identity, proto string) (*sip.Response, error) {
	rec := bridgeRecord(method, src, from, to, proto)
	recordLeg(&rec, lg)
	ctx, cancel := context.WithTimeout(a.ctx, 64*sip.T1)
	defer cancel()
	res, err := a.cli.Do(ctx, out, noBuild)
	if err != nil {
		rec.Reason = core.ReasonTimeout.String()
		a.journalOut(&rec, 408)
		return nil, err
	}
	a.journalOut(&rec, res.StatusCode)
	return res, nil
}

// tell delivers p to the other side in the background.
func (a *Adapter) tell(p core.Presence) {
	a.subs.goAsync(func() { a.tellNow(p) })
}

// tellNow delivers p to the adapter that serves its recipient's domain.
func (a *Adapter) tellNow(p core.Presence) {
	d, ok := a.bridge.For(p.To.Domain)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	if err := d.DeliverPresence(ctx, &p); err != nil {
		a.log.Debug("presence not delivered across the bridge", "kind", p.Kind.String(), "error", err)
	}
}

// DeliverPresence carries presence from the other side to SIP users of
// the bridged domain (RFC 7248): a subscribe, unsubscribe or probe to a
// SIP user works her subscription (SUBSCRIBE; see presence.go); an
// update, subscribed or unsubscribed from a party a SIP user watches
// becomes a NOTIFY in each of her subscriptions. The pipeline judges it
// first; a refusal is a *core.DeliveryError. A SIP user's refusal of a
// subscription is not an error: it comes back as PresenceUnsubscribed.
func (a *Adapter) DeliverPresence(ctx context.Context, p *core.Presence) error {
	if p == nil {
		return &core.DeliveryError{Reason: core.ReasonMalformed}
	}
	if a.ctx == nil || a.ctx.Err() != nil {
		return &core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "sip adapter not running"}
	}
	if !strings.EqualFold(p.To.Domain, a.bridgeDomain) || !validLocal(p.To.User) {
		return &core.DeliveryError{Reason: core.ReasonNotFound, Detail: "no such SIP user"}
	}
	if _, ok := peerURI(p.From); !ok {
		return &core.DeliveryError{Reason: core.ReasonMalformed, Detail: "sender not addressable in SIP"}
	}
	q := *p
	q.To.Domain, q.From.Domain = a.bridgeDomain, strings.ToLower(p.From.Domain)
	switch p.Kind {
	case core.PresenceSubscribe:
		return a.subscribeSIP(ctx, &q, false)
	case core.PresenceProbe:
		return a.subscribeSIP(ctx, &q, true)
	case core.PresenceUnsubscribe:
		a.unsubscribeSIP(&q)
		return nil
	case core.PresenceUpdate, core.PresenceSubscribed, core.PresenceUnsubscribed:
		return a.notifySIP(ctx, &q)
	}
	return &core.DeliveryError{Reason: core.ReasonUnsupported, Detail: "presence kind " + p.Kind.String()}
}

// notifySIP carries an update, a subscribed or an unsubscribed from a
// party of the other side to the subscriptions SIP users hold on it. The
// pipeline judges it first when a SIP user will hear of it; an update
// nobody watches yet is kept (bounded) for the first NOTIFY of a
// subscription to come.
func (a *Adapter) notifySIP(ctx context.Context, p *core.Presence) error {
	k := keyOf(p.To, p.From, true)
	info := presenceInfo{Available: p.Available, Show: p.Show, Status: p.Status}.normalize()
	subs := a.subs.pair(k)
	if len(subs) > 0 {
		proto := a.peerProtocol(p.From.Domain)
		rec := bridgeRecord("NOTIFY", p.Src, p.From, p.To, proto)
		if err := a.runBridged(ctx, p.Judged, bridgeEvent(core.KindPresence, proto, "NOTIFY", p.Src, p.From, p.To, nil), &rec); err != nil {
			return err
		}
	}
	switch p.Kind {
	case core.PresenceUpdate:
		a.subs.remember(k, info)
	case core.PresenceUnsubscribed:
		a.subs.forget(k)
	}
	for _, s := range subs {
		switch p.Kind {
		case core.PresenceUpdate:
			s.update(info, p.Src)
		case core.PresenceSubscribed:
			s.approve()
		case core.PresenceUnsubscribed:
			s.end("rejected")
		}
	}
	return nil
}

// subscribeRequest builds a SUBSCRIBE for the gateway's subscription on
// lg. The caller holds s.mu, if s is shared.
func (a *Adapter) subscribeRequest(lg *leg, expires int) *sip.Request {
	out := lg.request(sip.SUBSCRIBE, 0)
	out.AppendHeader(sip.NewHeader("Event", "presence"))
	out.AppendHeader(sip.NewHeader("Accept", "application/pidf+xml"))
	out.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	out.AppendHeader(sip.NewHeader("User-Agent", a.cfg.UserAgent))
	return out
}

// subscribeSIP subscribes a party of the other side to a SIP user's
// presence. A probe (quiet) reports no subscribed or unsubscribed. A SIP
// refusal is no error: it comes back as unsubscribed when it is final,
// and a passing failure (no answer, 480, 503) is tried again later (see
// lost).
func (a *Adapter) subscribeSIP(ctx context.Context, p *core.Presence, quiet bool) error {
	if subs := a.subs.pair(keyOf(p.To, p.From, false)); len(subs) > 0 {
		// Already subscribed: say so again, with the state known.
		s := subs[0]
		s.mu.Lock()
		if !quiet {
			if s.confirmed {
				s.queueLocked(core.Presence{Kind: core.PresenceSubscribed, From: s.sipUser, To: s.peer, Time: time.Now()})
			}
			s.quiet = false // a subscribe after a probe: confirmed once established
		}
		if s.lastKnown {
			s.queueLocked(s.lastUpdate(core.Source{}))
		}
		s.mu.Unlock()
		s.flush()
		return nil
	}
	proto := a.peerProtocol(p.From.Domain)
	rec := bridgeRecord("SUBSCRIBE", p.Src, p.From, p.To, proto)
	refuse := func(r core.Reason, rule, detail string) error { return a.refuseOut(&rec, r, rule, detail) }
	local, _ := peerURI(p.From)
	t, routed := a.targetFor(sipUser(p.To.User))
	ctx, cancel := a.bounded(ctx)
	defer cancel()
	if !routed {
		if err := a.runBridged(ctx, p.Judged, bridgeEvent(core.KindPresence, proto, "SUBSCRIBE", p.Src, p.From, p.To, nil), &rec); err != nil {
			return err
		}
		if quiet {
			// A probe for a SIP user the gateway cannot reach now: nothing
			// to say (the other side keeps her unavailable).
			return nil
		}
		return refuse(core.ReasonNotFound, "sip/no_route", "no such SIP user")
	}
	s := &subscription{a: a, sipUser: p.To, peer: p.From, proto: proto, quiet: quiet, held: true, ask: a.cfg.Bridge.Expires}
	expires := s.ask
	added := false
	before := func(i int, lg *leg, out *sip.Request) error {
		recordLeg(&rec, lg)
		if i == 0 {
			ev := bridgeEvent(core.KindPresence, proto, "SUBSCRIBE", p.Src, p.From, p.To, out)
			if t.binding == nil {
				ev.Route = t.upstreams[0].name
			}
			if err := a.runBridged(ctx, p.Judged, ev, &rec); err != nil {
				return err
			}
		}
		s.mu.Lock()
		s.lg = lg
		s.mu.Unlock()
		// In the table before the SUBSCRIBE goes: its first NOTIFY may
		// come before its 2xx.
		k := dialogKey{lg.callID, lg.localTag}
		if added {
			a.subs.rekey(s, k)
			return nil
		}
		if err := a.subs.add(s, k); err != nil {
			return refuse(core.ReasonUnavailable, "sip/bridge_subscriptions", err.Error())
		}
		added = true
		return nil
	}
	build := func(lg *leg) *sip.Request { return a.subscribeRequest(lg, expires) }
	res, _, err := a.across(ctx, t, local, p.From.Display, build, before)
	var de *core.DeliveryError
	if errors.As(err, &de) {
		if added {
			a.subs.del(s)
		}
		return err
	}
	status := 408
	if err == nil {
		status = res.StatusCode
	} else {
		rec.Reason = core.ReasonTimeout.String()
	}
	if status >= 300 && err == nil {
		rec.Reason = reasonOfStatus(status).String()
	}
	a.journalOut(&rec, status)
	if !added {
		// Nothing went (no listener reaches her, or too large).
		return &core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "SIP user not reachable"}
	}
	if status >= 300 {
		s.tooBrief(res)
		s.lost(status, "", 0)
		return nil
	}
	s.established(res, expires)
	return nil
}

// tooBrief reads the Min-Expires of a 423 (Interval Too Brief, RFC 6665
// section 4.1.2.1): the next SUBSCRIBE asks for it, up to maxAsk.
func (s *subscription) tooBrief(res *sip.Response) {
	if res == nil || res.StatusCode != 423 {
		return
	}
	h := res.GetHeader("Min-Expires")
	if h == nil {
		return
	}
	v, err := strconv.Atoi(strings.TrimSpace(h.Value()))
	s.mu.Lock()
	if err == nil && v > s.ask && v <= maxAsk {
		s.ask = v
	}
	s.mu.Unlock()
}

// established records a 2xx to the gateway's SUBSCRIBE: the dialog, the
// refresh, and the subscribed that goes to the other side before any
// update (once per subscription, never for a probe's).
func (s *subscription) established(res *sip.Response, asked int) {
	s.mu.Lock()
	lg := s.lg
	if to := res.To(); to != nil {
		if tag, ok := to.Params.Get("tag"); ok {
			lg.remoteTag = tag
		}
	}
	if ct := res.Contact(); ct != nil {
		lg.target = *ct.Address.Clone()
	}
	// No route set either: the gateway's requests in the dialog go where
	// the first went (her registration's source, or the upstream), never
	// to an address a Record-Route in her answer names.
	granted := asked
	if h := res.GetHeader("Expires"); h != nil {
		if v, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && v > 0 && v < asked {
			granted = v
		}
	}
	if s.ended && s.dead != lg {
		// Unsubscribed while the SUBSCRIBE was on its way.
		out := s.a.subscribeRequest(lg, 0)
		s.mu.Unlock()
		s.a.subs.goAsync(func() { _, _ = s.a.send(out, lg, "SUBSCRIBE", core.Source{}, s.peer, s.sipUser, s.proto) })
		return
	}
	if s.ended || s.dead == lg {
		// Its dialog ended before its 2xx came: lost took care of it.
		s.mu.Unlock()
		return
	}
	s.arm(refreshAfter(seconds(granted)), s.refresh)
	s.answered, s.held, s.since = true, false, time.Now()
	if !s.quiet && !s.confirmed {
		s.confirmed = true
		s.outbox = append([]core.Presence{{Kind: core.PresenceSubscribed, From: s.sipUser, To: s.peer, Time: time.Now()}}, s.outbox...)
	}
	s.mu.Unlock()
	s.flush()
}

// lastUpdate is the SIP user's last known state as an update for the
// other side. The caller holds s.mu.
func (s *subscription) lastUpdate(src core.Source) core.Presence {
	return core.Presence{Kind: core.PresenceUpdate, From: s.sipUser, To: s.peer, Available: s.last.Available,
		Show: s.last.Show, Status: s.last.Status, Src: src, Time: time.Now()}
}

// queueLocked puts p in the outbox; an update replaces an update that
// has not gone yet. The caller holds s.mu.
func (s *subscription) queueLocked(p core.Presence) {
	if n := len(s.outbox); n > 0 && p.Kind == core.PresenceUpdate && s.outbox[n-1].Kind == core.PresenceUpdate {
		s.outbox[n-1] = p
		return
	}
	if len(s.outbox) < 8 {
		s.outbox = append(s.outbox, p)
	}
}

// flush starts the sender of the outbox once the SUBSCRIBE has its 2xx.
func (s *subscription) flush() {
	s.mu.Lock()
	if s.flushing || s.held || len(s.outbox) == 0 {
		s.mu.Unlock()
		return
	}
	s.flushing = true
	s.mu.Unlock()
	ok := s.a.subs.goAsync(func() {
		for {
			s.mu.Lock()
			if len(s.outbox) == 0 {
				s.flushing = false
				s.mu.Unlock()
				return
			}
			p := s.outbox[0]
			s.outbox = s.outbox[1:]
			s.mu.Unlock()
			s.a.tellNow(p)
		}
	})
	if !ok {
		s.mu.Lock()
		s.flushing = false
		s.mu.Unlock()
	}
}

// onNotify handles a NOTIFY in a subscription the gateway holds for the
// other side: its PIDF becomes an update, its end a new subscription or
// an unsubscribed.
func (s *subscription) onNotify(in *inbound) {
	a, req := s.a, in.req
	if pkg, _ := eventOf(req); pkg != "presence" {
		a.refuseBridged(in, 489, "Bad Event", "sip/bridge_event", core.ReasonUnsupported, sip.NewHeader("Allow-Events", "presence"))
		return
	}
	state, reason, expires, retry := subState(req)
	if state == "" {
		a.refuse(in, core.RefuseWith(core.ReasonMalformed, "sip/malformed", "Missing Subscription-State"), "sip")
		return
	}
	var info presenceInfo
	hasBody := len(req.Body()) > 0
	if hasBody {
		if !isPIDF(req) {
			a.refuseBridged(in, 415, "Unsupported Media Type", "sip/bridge_content", core.ReasonNotAcceptable,
				sip.NewHeader("Accept", "application/pidf+xml"))
			return
		}
		var err error
		if info, err = parsePIDF(req.Body()); err != nil {
			a.refuse(in, core.RefuseWith(core.ReasonMalformed, "sip/pidf", "Malformed PIDF"), "sip")
			return
		}
	}
	s.mu.Lock()
	if !s.inDialog(in) {
		s.mu.Unlock()
		return
	}
	ended := s.ended
	if !ended && state == "active" && expires > 0 && s.answered {
		if d := seconds(expires); time.Until(s.expires) > d {
			s.arm(refreshAfter(d), s.refresh)
		}
	}
	if hasBody && !ended {
		s.last, s.lastKnown = info, true
		s.queueLocked(s.lastUpdate(core.Source{Addr: in.src, Transport: in.rec.Transport, Encrypted: in.rec.Encrypted, Zone: in.zone}))
	}
	s.mu.Unlock()
	a.respond(in, sip.NewResponseFromRequest(req, 200, "OK", nil))
	s.flush()
	if state == "terminated" && !ended {
		var after time.Duration
		if retry > 0 {
			after = min(seconds(retry), time.Hour)
		}
		s.lost(0, reason, after)
	}
}

// refresh renews the gateway's subscription before it lapses.
func (s *subscription) refresh() {
	a := s.a
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	lg, asked := s.lg, s.ask
	out := a.subscribeRequest(lg, asked)
	s.mu.Unlock()
	res, err := a.send(out, lg, "SUBSCRIBE", core.Source{}, s.peer, s.sipUser, s.proto)
	if err == nil && res.StatusCode < 300 {
		s.mu.Lock()
		if !s.ended {
			granted := asked
			if h := res.GetHeader("Expires"); h != nil {
				if v, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && v > 0 && v < granted {
					granted = v
				}
			}
			s.arm(refreshAfter(seconds(granted)), s.refresh)
		}
		s.mu.Unlock()
		return
	}
	status := 408
	if err == nil {
		status = res.StatusCode
	}
	s.tooBrief(res)
	s.lost(status, "", 0)
}

// lost deals with a subscription the SIP side ended (a NOTIFY with
// terminated, reason given) or refused (a SUBSCRIBE answered status, 0 for
// none). A final refusal (rejected, noresource, 403, 404 before it was
// ever established, ...) ends it and tells the other side unsubscribed; a
// passing one makes a new subscription after a while, the SIP user
// unavailable meanwhile. New subscriptions made in a row back off, and
// after maxRetries the gateway gives up quietly: a SIP side that ends
// every subscription at once cannot make it loop.
func (s *subscription) lost(status int, reason string, after time.Duration) {
	a := s.a
	final := false
	switch reason {
	case "rejected", "noresource", "invariant":
		final = true
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	switch reasonOfStatus(status) {
	case core.ReasonForbidden, core.ReasonUnauthorized, core.ReasonUnsupported, core.ReasonNotAcceptable, core.ReasonMalformed:
		final = true
	case core.ReasonNotFound:
		// No such user, unless she was there before: many registrars say
		// 404 for a user who is not registered now.
		final = s.since.IsZero()
	}
	if status == 423 {
		// Interval Too Brief: again at once, asking for her Min-Expires
		// (tooBrief).
		final = false
	}
	s.dead = s.lg
	if s.answered && time.Since(s.since) >= stableAfter {
		s.retries = 0
	}
	s.retries++
	giveUp := !final && s.retries > maxRetries
	if final || giveUp {
		s.ended = true
		s.stopTimer()
		tell := final && !(s.quiet && !s.confirmed)
		if giveUp && s.lastKnown && s.last.Available && !s.held {
			s.last = presenceInfo{}
			s.queueLocked(s.lastUpdate(core.Source{}))
		}
		s.mu.Unlock()
		a.subs.del(s)
		s.flush()
		if tell {
			a.tell(core.Presence{Kind: core.PresenceUnsubscribed, From: s.sipUser, To: s.peer, Time: time.Now()})
		}
		return
	}
	s.answered = false
	if s.lastKnown && s.last.Available {
		s.last = presenceInfo{}
		s.queueLocked(s.lastUpdate(core.Source{}))
	}
	if after == 0 && status != 423 && (status != 0 || reason == "probation" || reason == "giveup") {
		after = a.retryDelay()
	}
	if s.retries > 1 {
		after = max(after, min(time.Second<<(s.retries-1), 5*time.Minute))
	}
	s.arm(after, s.resubscribe)
	s.mu.Unlock()
	s.flush()
}

// resubscribe makes a new subscription for a pair whose SIP dialog ended.
func (s *subscription) resubscribe() {
	a := s.a
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	t, routed := a.targetFor(sipUser(s.sipUser.User))
	if !routed {
		s.lost(480, "", 0)
		return
	}
	local, _ := peerURI(s.peer)
	s.mu.Lock()
	expires := s.ask
	s.mu.Unlock()
	before := func(_ int, lg *leg, _ *sip.Request) error {
		s.mu.Lock()
		s.lg = lg
		s.mu.Unlock()
		a.subs.rekey(s, dialogKey{lg.callID, lg.localTag})
		return nil
	}
	ctx, cancel := a.bounded(context.Background())
	defer cancel()
	res, lg, err := a.across(ctx, t, local, s.peer.Display, func(lg *leg) *sip.Request { return a.subscribeRequest(lg, expires) }, before)
	status := 408
	if err == nil {
		status = res.StatusCode
	}
	if lg != nil {
		rec := bridgeRecord("SUBSCRIBE", core.Source{}, s.peer, s.sipUser, s.proto)
		recordLeg(&rec, lg)
		a.journalOut(&rec, status)
	}
	if status >= 300 {
		s.tooBrief(res)
		s.lost(status, "", 0)
		return
	}
	s.established(res, expires)
}

// unsubscribeSIP ends the subscriptions a party of the other side holds
// on a SIP user: SUBSCRIBE with Expires: 0. The dialog stays a while to
// take the last NOTIFY.
func (a *Adapter) unsubscribeSIP(p *core.Presence) {
	for _, s := range a.subs.pair(keyOf(p.To, p.From, false)) {
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			continue
		}
		s.ended = true
		s.stopTimer()
		lg := s.lg
		var out *sip.Request
		if s.answered {
			out = a.subscribeRequest(lg, 0)
		}
		s.mu.Unlock()
		if out == nil {
			// Nothing to end on the SIP side, or a SUBSCRIBE under way
			// (established ends it when its 2xx comes).
			a.subs.del(s)
			continue
		}
		a.subs.detach(s)
		a.subs.goAsync(func() {
			_, _ = a.send(out, lg, "SUBSCRIBE", p.Src, s.peer, s.sipUser, s.proto)
			time.AfterFunc(64*sip.T1, func() { a.subs.del(s) })
		})
	}
}

// endSubscriptions ends every subscription at shutdown: a terminating
// NOTIFY (reason deactivated: subscribe again, elsewhere) to SIP users
// who watch, an un-SUBSCRIBE where the gateway watches. It waits a
// little for them and for deliveries under way.
func (a *Adapter) endSubscriptions() {
	subs := a.subs.close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range subs {
		s.mu.Lock()
		var out *sip.Request
		if !s.ended {
			s.stopTimer()
			switch {
			case s.notifier && s.ready:
				s.final = "deactivated"
				out = s.notifyLocked()
			case !s.notifier && s.answered:
				out = a.subscribeRequest(s.lg, 0)
			}
			s.ended = true
		}
		s.mu.Unlock()
		if out == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = a.cli.Do(ctx, out, noBuild)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); a.subs.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
