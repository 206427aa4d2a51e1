package sip

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/policies/dialog"
)

// presenceUA is a SIP user agent for the presence tests: it answers the
// SUBSCRIBEs it gets as told (a status and an Expires), and takes every
// NOTIFY with 200.
type presenceUA struct {
	*peer
	subs    chan *sip.Request
	notifys chan *sip.Request
	answers chan [2]int // status, Expires; 200 and the asked Expires when empty
	// minExpires, when set, answers 423 with this Min-Expires to a
	// SUBSCRIBE that asks for less (as baresip does below 600).
	minExpires atomic.Int32
}

func newPresenceUA(t *testing.T) *presenceUA {
	u := &presenceUA{subs: make(chan *sip.Request, 16), notifys: make(chan *sip.Request, 16), answers: make(chan [2]int, 16)}
	u.peer = newPeer(t, func(srv *sipgo.Server) {
		srv.OnSubscribe(func(req *sip.Request, tx sip.ServerTransaction) {
			u.subs <- req
			code, exp := 200, -1
			select {
			case a := <-u.answers:
				code, exp = a[0], a[1]
			default:
			}
			asked, _ := strconv.Atoi(req.GetHeader("Expires").Value())
			if m := int(u.minExpires.Load()); m > 0 && asked > 0 && asked < m {
				code = 423
			}
			res := sip.NewResponseFromRequest(req, code, "Answer", nil)
			if code == 423 {
				res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(int(u.minExpires.Load()))))
			}
			if tag, ok := req.To().Params.Get("tag"); ok {
				res.To().Params.Add("tag", tag)
			} else {
				res.To().Params.Add("tag", "ua-tag")
			}
			if code < 300 {
				// A Record-Route the gateway must not follow (a user agent
				// may name any address).
				res.AppendHeader(&sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", Host: "192.0.2.1", Port: 5060, UriParams: sip.HeaderParams{{K: "lr", V: ""}}}})
				res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: req.Recipient.Host, Port: req.Recipient.Port}})
				if exp < 0 {
					exp, _ = strconv.Atoi(req.GetHeader("Expires").Value())
				}
				res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(exp)))
			}
			tx.Respond(res)
		})
		srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
			u.notifys <- req
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	return u
}

// notifierSide is the user agent's end of the dialog a SUBSCRIBE from the
// gateway made: it sends the NOTIFYs.
func (u *presenceUA) notifierSide(sub *sip.Request, gw string) *side {
	tag, _ := sub.To().Params.Get("tag")
	if tag == "" {
		tag = "ua-tag"
	}
	return &side{callID: sub.CallID().Value(), localURI: sub.To().Address, remote: sub.From().Address,
		localTag: tag, remTag: sub.From().Params.GetOr("tag", ""), target: sub.Contact().Address, dest: gw, self: u.addr, seq: 10}
}

func notify(d *side, state, pidf string) *sip.Request {
	r := d.request(sip.NOTIFY, "")
	r.AppendHeader(sip.NewHeader("Event", "presence"))
	r.AppendHeader(sip.NewHeader("Subscription-State", state))
	if pidf != "" {
		r.AppendHeader(sip.NewHeader("Content-Type", "application/pidf+xml"))
		r.SetBody([]byte(pidf))
	}
	return r
}

func pidfDoc(basic, extra string) string {
	return `<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="pres:alice@example.com">` +
		`<tuple id="t1"><status><basic>` + basic + `</basic></status></tuple>` + extra + `</presence>`
}

func expectPresence(t *testing.T, ch <-chan core.Presence, kind core.PresenceKind) core.Presence {
	t.Helper()
	p := recv(t, ch, "presence "+kind.String())
	if p.Kind != kind {
		t.Fatalf("got presence %v %+v, want %v", p.Kind, p, kind)
	}
	return p
}

func dialogStage(t *testing.T) core.Stage {
	s, err := dialog.New(dialog.Defaults(), core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPresenceOfSIPUser: a party of the other side subscribes to a SIP
// user (the gateway subscribes to her with SUBSCRIBE Event: presence), her
// NOTIFYs with PIDF become updates, the gateway refreshes before the
// subscription lapses and ends it on an unsubscribe. The dialog stage
// judges her NOTIFYs like any in-dialog request.
func TestPresenceOfSIPUser(t *testing.T) {
	ua := newPresenceUA(t)
	e := startBridge(t, ua.addr, nil, dialogStage(t))
	ctx := context.Background()

	ua.answers <- [2]int{202, 3} // she grants 3 s: the refresh comes after 2
	if err := e.a.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceSubscribe, From: juliet, To: alice, Src: xmppSrc}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	sub := recv(t, ua.subs, "the SUBSCRIBE")
	if ev := sub.GetHeader("Event"); ev == nil || ev.Value() != "presence" || sub.Recipient.User != "alice" ||
		sub.From().Address.String() != "sip:juliet@"+xmppDomain || sub.GetHeader("Accept").Value() != "application/pidf+xml" ||
		sub.GetHeader("Expires").Value() != "3600" || sub.Contact() == nil {
		t.Fatalf("SUBSCRIBE:\n%s", sub)
	}
	p := expectPresence(t, e.other.pres, core.PresenceSubscribed)
	if p.From != alice || p.To.User != "juliet" || p.To.Domain != xmppDomain {
		t.Fatalf("subscribed: %+v", p)
	}
	rec := e.j.find(t, "SUBSCRIBE", func(r core.Transaction) bool { return r.Status == 202 })
	if rec.Src != xmppSrc.Addr.String() || rec.From != "juliet@"+xmppDomain || !strings.HasPrefix(rec.To, "alice@") ||
		!strings.Contains(rec.Detail, "peer xmpp from juliet@"+xmppDomain+" to alice@"+bridgeDomain) {
		t.Fatalf("journal of the SUBSCRIBE: %+v", rec)
	}

	// Her NOTIFYs become updates.
	d := ua.notifierSide(sub, e.gw)
	res := do(t, ua.peer, notify(d, "active;expires=3", pidfDoc("open", `<rpid:activities><rpid:away/></rpid:activities><note>back soon</note>`)))
	if res.StatusCode != 200 {
		t.Fatalf("NOTIFY: %d", res.StatusCode)
	}
	p = expectPresence(t, e.other.pres, core.PresenceUpdate)
	if !p.Available || p.Show != "away" || p.Status != "back soon" || p.From != alice || p.To.User != "juliet" {
		t.Fatalf("update: %+v", p)
	}
	rec = e.j.find(t, "NOTIFY", func(r core.Transaction) bool { return r.Status == 200 && r.CallID == sub.CallID().Value() })
	if !strings.Contains(rec.Detail, "peer xmpp from alice@"+bridgeDomain+" to juliet@"+xmppDomain) {
		t.Fatalf("journal of the NOTIFY: %+v", rec)
	}

	// What does not fit is refused and changes nothing: a body that is not
	// PIDF, a hostile PIDF, a CSeq going backwards, a stranger's tag.
	bad := notify(d, "active", "")
	bad.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	bad.SetBody([]byte("online"))
	if res := do(t, ua.peer, bad); res.StatusCode != 415 {
		t.Fatalf("NOTIFY with text/plain: %d", res.StatusCode)
	}
	laughs := `<!DOCTYPE presence [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>` + pidfDoc("open", "<note>&b;</note>")
	if res := do(t, ua.peer, notify(d, "active", laughs)); res.StatusCode != 400 {
		t.Fatalf("NOTIFY with entities: %d", res.StatusCode)
	}
	old := *d
	old.seq = 1
	if res := do(t, ua.peer, notify(&old, "active", pidfDoc("closed", ""))); res.StatusCode < 400 {
		t.Fatalf("NOTIFY with an old CSeq: %d", res.StatusCode)
	}
	stranger := *d
	stranger.localTag = "not-hers"
	if res := do(t, ua.peer, notify(&stranger, "active", pidfDoc("closed", ""))); res.StatusCode < 400 {
		t.Fatalf("NOTIFY with another From tag: %d", res.StatusCode)
	}
	stranger = *d
	stranger.remTag = "not-ours"
	if res := do(t, ua.peer, notify(&stranger, "active", pidfDoc("closed", ""))); res.StatusCode != 481 {
		t.Fatalf("NOTIFY for another dialog: %d", res.StatusCode)
	}
	none(t, e.other.pres, "a refused NOTIFY")

	// The refresh, in the same dialog, before the 3 s lapse.
	ref := recv(t, ua.subs, "the refresh")
	if ref.CallID().Value() != sub.CallID().Value() || ref.To().Params.GetOr("tag", "") != "ua-tag" ||
		ref.CSeq().SeqNo <= sub.CSeq().SeqNo {
		t.Fatalf("refresh not in the dialog:\n%s", ref)
	}

	// Closed.
	if res := do(t, ua.peer, notify(d, "active", pidfDoc("closed", ""))); res.StatusCode != 200 {
		t.Fatalf("NOTIFY closed: %d", res.StatusCode)
	}
	if p := expectPresence(t, e.other.pres, core.PresenceUpdate); p.Available || p.Show != "" {
		t.Fatalf("closed: %+v", p)
	}

	// A second subscribe for the pair makes no second SUBSCRIBE: it is
	// confirmed with the state known.
	if err := e.a.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceSubscribe, From: juliet, To: alice, Src: xmppSrc}); err != nil {
		t.Fatal(err)
	}
	expectPresence(t, e.other.pres, core.PresenceSubscribed)
	expectPresence(t, e.other.pres, core.PresenceUpdate)
	none(t, ua.subs, "a second subscription for the same pair")

	// The other side unsubscribes: Expires 0 in the dialog.
	if err := e.a.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceUnsubscribe, From: juliet, To: alice, Src: xmppSrc}); err != nil {
		t.Fatal(err)
	}
	un := recv(t, ua.subs, "the un-SUBSCRIBE")
	if un.CallID().Value() != sub.CallID().Value() || un.GetHeader("Expires").Value() != "0" {
		t.Fatalf("un-SUBSCRIBE:\n%s", un)
	}
	if res := do(t, ua.peer, notify(d, "terminated;reason=timeout", pidfDoc("closed", ""))); res.StatusCode != 200 {
		t.Fatalf("the last NOTIFY: %d", res.StatusCode)
	}
	none(t, e.other.pres, "presence after the unsubscribe")
	none(t, ua.subs, "a SUBSCRIBE after the unsubscribe")
}

// TestPresenceOfSIPUserEnds: the SIP user's refusal is final and comes
// back as unsubscribed; a subscription she ends for a passing reason is
// made again; one she rejects ends.
func TestPresenceOfSIPUserEnds(t *testing.T) {
	ua := newPresenceUA(t)
	e := startBridge(t, ua.addr, nil)
	ctx := context.Background()

	ua.answers <- [2]int{403, 0}
	if err := e.a.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceSubscribe, From: juliet, To: alice, Src: xmppSrc}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	recv(t, ua.subs, "the refused SUBSCRIBE")
	expectPresence(t, e.other.pres, core.PresenceUnsubscribed)
	if n := e.a.subs.count(); n != 0 {
		t.Fatalf("%d subscriptions after a refusal", n)
	}

	// Accepted; she ends it (deactivated): a new subscription at once.
	if err := e.a.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceSubscribe, From: juliet, To: alice, Src: xmppSrc}); err != nil {
		t.Fatal(err)
	}
	sub := recv(t, ua.subs, "the SUBSCRIBE")
	expectPresence(t, e.other.pres, core.PresenceSubscribed)
	d := ua.notifierSide(sub, e.gw)
	do(t, ua.peer, notify(d, "active", pidfDoc("open", "")))
	if p := expectPresence(t, e.other.pres, core.PresenceUpdate); !p.Available {
		t.Fatalf("open: %+v", p)
	}
	do(t, ua.peer, notify(d, "terminated;reason=deactivated", ""))
	// Unavailable meanwhile, then a new dialog.
	if p := expectPresence(t, e.other.pres, core.PresenceUpdate); p.Available {
		t.Fatalf("while resubscribing: %+v", p)
	}
	again := recv(t, ua.subs, "the new SUBSCRIBE")
	if again.CallID().Value() == sub.CallID().Value() || again.To().Params.Has("tag") {
		t.Fatalf("not a new subscription:\n%s", again)
	}
	none(t, e.other.pres, "a second subscribed")

	// She rejects it: unsubscribed, and no new one.
	d = ua.notifierSide(again, e.gw)
	do(t, ua.peer, notify(d, "terminated;reason=rejected", ""))
	expectPresence(t, e.other.pres, core.PresenceUnsubscribed)
	none(t, ua.subs, "a SUBSCRIBE after a rejection")
	if n := e.a.subs.count(); n != 0 {
		t.Fatalf("%d subscriptions after a rejection", n)
	}
}

// TestPresenceRetriesBounded: a user agent that ends every subscription at
// once cannot make the gateway loop: the new subscriptions back off.
func TestPresenceRetriesBounded(t *testing.T) {
	ua := newPresenceUA(t)
	e := startBridge(t, ua.addr, nil)
	if err := e.a.DeliverPresence(context.Background(), &core.Presence{Kind: core.PresenceSubscribe, From: juliet, To: alice, Src: xmppSrc}); err != nil {
		t.Fatal(err)
	}
	var lost time.Time
	for i := 0; i < 2; i++ {
		sub := recv(t, ua.subs, "a SUBSCRIBE")
		if i == 1 && time.Since(lost) > time.Second {
			t.Fatalf("the first loss (deactivated) was not followed by a new subscription at once")
		}
		do(t, ua.peer, notify(ua.notifierSide(sub, e.gw), "terminated;reason=deactivated", ""))
		lost = time.Now()
	}
	// The second loss in a row: the next one waits 2 s.
	recv(t, ua.subs, "the third SUBSCRIBE")
	if el := time.Since(lost); el < 1900*time.Millisecond {
		t.Fatalf("two losses in a row, resubscribed within %v", el)
	}
}

// TestPresenceSIPWatcher: a SIP user subscribes to a party of the other
// side (the gateway notifies): her SUBSCRIBE becomes a subscribe there,
// the answer a NOTIFY, each update a NOTIFY with PIDF; refresh, expiry,
// unsubscribe and the other side's rejection end it as RFC 6665 says.
func TestPresenceSIPWatcher(t *testing.T) {
	pbx := newPeer(t)
	e := startBridge(t, pbx.addr, nil, dialogStage(t))
	phone := newPresenceUA(t)
	ctx := context.Background()

	subscribe := func(expires string) (*sip.Request, *sip.Response) {
		r := outOfDialog(phone.peer, e.gw, sip.SUBSCRIBE, "alice", "juliet", xmppDomain)
		r.AppendHeader(sip.NewHeader("Event", "presence;id=7"))
		r.AppendHeader(sip.NewHeader("Accept", "application/pidf+xml"))
		// NOTIFYs go back where the SUBSCRIBE came from, not here.
		r.AppendHeader(&sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", Host: "192.0.2.1", Port: 5060, UriParams: sip.HeaderParams{{K: "lr", V: ""}}}})
		r.AppendHeader(sip.NewHeader("Expires", expires))
		return r, do(t, phone.peer, r)
	}
	req, res := subscribe("60")
	if res.StatusCode != 200 || res.GetHeader("Expires").Value() != "60" || res.Contact() == nil || !res.To().Params.Has("tag") {
		t.Fatalf("SUBSCRIBE to the bridge: %v", res)
	}
	p := expectPresence(t, e.other.pres, core.PresenceSubscribe)
	if p.From.User != "alice" || p.From.Domain != bridgeDomain || p.To.User != "juliet" || p.To.Domain != xmppDomain || p.Src.Zone != "internet" {
		t.Fatalf("subscribe: %+v", p)
	}
	// Pending until juliet approves.
	n := recv(t, phone.notifys, "the first NOTIFY")
	if st := n.GetHeader("Subscription-State").Value(); !strings.HasPrefix(st, "pending;expires=") ||
		n.GetHeader("Event").Value() != "presence;id=7" || n.CallID().Value() != req.CallID().Value() {
		t.Fatalf("first NOTIFY:\n%s", n)
	}
	if info, err := parsePIDF(n.Body()); err != nil || info.Available || !strings.Contains(string(n.Body()), `entity="pres:juliet@`+xmppDomain+`"`) {
		t.Fatalf("first NOTIFY's PIDF (%v): %s", err, n.Body())
	}

	// Prosody acknowledges the request with unavailable: still pending.
	if err := e.a.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceUpdate, From: juliet, To: alice, Src: xmppSrc}); err != nil {
		t.Fatal(err)
	}
	if n := recv(t, phone.notifys, "the NOTIFY of the acknowledgement"); !strings.HasPrefix(n.GetHeader("Subscription-State").Value(), "pending") {
		t.Fatalf("unavailable approved the subscription:\n%s", n)
	}

	// Juliet's updates become NOTIFYs with PIDF; her available presence
	// to alice approves the subscription.
	err := e.a.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceUpdate, From: juliet, To: alice, Available: true, Show: "dnd",
		Status: "in a <meeting>", Src: xmppSrc})
	if err != nil {
		t.Fatal(err)
	}
	n = recv(t, phone.notifys, "the update's NOTIFY")
	info, err := parsePIDF(n.Body())
	if err != nil || info != (presenceInfo{Available: true, Show: "dnd", Status: "in a <meeting>"}) ||
		n.ContentType().Value() != "application/pidf+xml" || !strings.HasPrefix(n.GetHeader("Subscription-State").Value(), "active;expires=") {
		t.Fatalf("update NOTIFY (%v) %+v:\n%s", err, info, n)
	}
	rec := e.j.find(t, "NOTIFY", func(r core.Transaction) bool {
		return r.CallID == req.CallID().Value() && r.Src == xmppSrc.Addr.String()
	})
	if rec.Status != 200 || !strings.HasPrefix(rec.From, "juliet@") || !strings.Contains(rec.Detail, "peer xmpp") {
		t.Fatalf("journal of the NOTIFY: %+v", rec)
	}

	// Her refresh: 200 and a NOTIFY with the state.
	to := res.To().Params.GetOr("tag", "")
	d := &side{callID: req.CallID().Value(), localURI: req.From().Address, remote: req.To().Address,
		localTag: req.From().Params.GetOr("tag", ""), remTag: to, target: res.Contact().Address, dest: e.gw, self: phone.addr, seq: 1}
	refresh := func(expires string) *sip.Response {
		r := d.request(sip.SUBSCRIBE, "")
		r.AppendHeader(sip.NewHeader("Event", "presence;id=7"))
		r.AppendHeader(sip.NewHeader("Expires", expires))
		return do(t, phone.peer, r)
	}
	if res := refresh("30"); res.StatusCode != 200 || res.GetHeader("Expires").Value() != "30" {
		t.Fatalf("refresh: %v", res)
	}
	if info, _ := parsePIDF(recv(t, phone.notifys, "the refresh's NOTIFY").Body()); info.Show != "dnd" {
		t.Fatalf("refresh NOTIFY: %+v", info)
	}
	// A SUBSCRIBE for another event package in the dialog.
	r := d.request(sip.SUBSCRIBE, "")
	r.AppendHeader(sip.NewHeader("Event", "dialog"))
	if res := do(t, phone.peer, r); res.StatusCode != 489 {
		t.Fatalf("Event: dialog in the dialog: %d", res.StatusCode)
	}

	// She unsubscribes: a terminating NOTIFY, and an unsubscribe there.
	if res := refresh("0"); res.StatusCode != 200 {
		t.Fatalf("un-SUBSCRIBE: %d", res.StatusCode)
	}
	if st := recv(t, phone.notifys, "the last NOTIFY").GetHeader("Subscription-State").Value(); st != "terminated;reason=timeout" {
		t.Fatalf("last NOTIFY: %s", st)
	}
	expectPresence(t, e.other.pres, core.PresenceUnsubscribe)
	if res := refresh("60"); res.StatusCode != 481 {
		t.Fatalf("refresh of an ended subscription: %d", res.StatusCode)
	}

	// A subscription she does not refresh lapses.
	_, res = subscribe("1")
	if res.StatusCode != 200 {
		t.Fatalf("short SUBSCRIBE: %d", res.StatusCode)
	}
	expectPresence(t, e.other.pres, core.PresenceSubscribe)
	if info, _ := parsePIDF(recv(t, phone.notifys, "the first NOTIFY").Body()); info.Available {
		t.Fatalf("a pending NOTIFY shows juliet: %+v", info)
	}
	// Juliet approves again (an XMPP server answers subscribed at once to
	// a subscription it approved before).
	if err := e.a.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceSubscribed, From: juliet, To: alice, Src: xmppSrc}); err != nil {
		t.Fatal(err)
	}
	n = recv(t, phone.notifys, "the NOTIFY of the approval")
	if info, _ := parsePIDF(n.Body()); !info.Available || !strings.HasPrefix(n.GetHeader("Subscription-State").Value(), "active") {
		// The last state juliet sent alice is what a new subscription starts with.
		t.Fatalf("NOTIFY of the approval: %+v\n%s", info, n)
	}
	if st := recv(t, phone.notifys, "the NOTIFY of the lapse").GetHeader("Subscription-State").Value(); st != "terminated;reason=timeout" {
		t.Fatalf("lapse: %s", st)
	}

	// Juliet refuses: the other side's refusal is the SIP answer.
	e.other.answer(nil, &core.DeliveryError{Reason: core.ReasonForbidden})
	if _, res = subscribe("60"); res.StatusCode != 403 {
		t.Fatalf("refused subscription: %d", res.StatusCode)
	}
	expectPresence(t, e.other.pres, core.PresenceSubscribe)
	e.other.answer(nil, nil)
	none(t, phone.notifys, "a NOTIFY for a refused subscription")

	// Juliet ends an accepted one: terminated, reason rejected.
	if _, res = subscribe("60"); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	expectPresence(t, e.other.pres, core.PresenceSubscribe)
	recv(t, phone.notifys, "the first NOTIFY")
	if err := e.a.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceUnsubscribed, From: juliet, To: alice, Src: xmppSrc}); err != nil {
		t.Fatal(err)
	}
	if st := recv(t, phone.notifys, "the rejection").GetHeader("Subscription-State").Value(); st != "terminated;reason=rejected" {
		t.Fatalf("rejection: %s", st)
	}
	if n := e.a.subs.count(); n != 0 {
		t.Fatalf("%d subscriptions left", n)
	}
}

// TestPresenceSIPWatcherRefusals: what the gateway cannot or will not
// hold is refused in SIP's terms before the other side hears of it.
func TestPresenceSIPWatcherRefusals(t *testing.T) {
	pbx := newPeer(t)
	e := startBridge(t, pbx.addr, func(c *Config) { c.Bridge.MaxSubscriptionsPerUser = 2; c.Bridge.MaxSubscriptions = 3 })
	phone := newPresenceUA(t)
	subscribe := func(user, to string, headers ...string) *sip.Response {
		r := outOfDialog(phone.peer, e.gw, sip.SUBSCRIBE, user, to, xmppDomain)
		for i := 0; i+1 < len(headers); i += 2 {
			r.AppendHeader(sip.NewHeader(headers[i], headers[i+1]))
		}
		return do(t, phone.peer, r)
	}
	for _, tt := range []struct {
		name    string
		headers []string
		code    int
	}{
		{"other event", []string{"Event", "dialog"}, 489},
		{"no event", nil, 489},
		{"no pidf", []string{"Event", "presence", "Accept", "application/xpidf+xml"}, 406},
		{"bad expires", []string{"Event", "presence", "Expires", "soon"}, 400},
	} {
		if res := subscribe("alice", "juliet", tt.headers...); res.StatusCode != tt.code {
			t.Errorf("%s: %d, want %d", tt.name, res.StatusCode, tt.code)
		}
	}
	if res := subscribe("alice", "a%2Fb", "Event", "presence"); res.StatusCode != 404 {
		t.Errorf("impossible address: %d", res.StatusCode)
	}
	foreign := outOfDialog(phone.peer, e.gw, sip.SUBSCRIBE, "alice", "juliet", xmppDomain)
	foreign.AppendHeader(sip.NewHeader("Event", "presence"))
	foreign.From().Address.Host = "elsewhere.example"
	if res := do(t, phone.peer, foreign); res.StatusCode != 403 {
		t.Errorf("a watcher of another domain: %d", res.StatusCode)
	}
	none(t, e.other.pres, "a refused SUBSCRIBE")

	// Limits: two per SIP user, three in all.
	for i, want := range []int{200, 200, 503} {
		if res := subscribe("alice", "juliet"+strconv.Itoa(i), "Event", "presence"); res.StatusCode != want {
			t.Fatalf("alice's subscription %d: %d, want %d", i, res.StatusCode, want)
		}
	}
	if res := subscribe("bob", "juliet", "Event", "presence"); res.StatusCode != 200 {
		t.Fatalf("bob's subscription: %d", res.StatusCode)
	}
	if res := subscribe("carol", "juliet", "Event", "presence"); res.StatusCode != 503 {
		t.Fatalf("beyond the table: %d", res.StatusCode)
	}
	rec := e.j.find(t, "SUBSCRIBE", func(r core.Transaction) bool { return r.Status == 503 })
	if rec.Rule != "sip/bridge_subscriptions" {
		t.Fatalf("journal of the limit: %+v", rec)
	}
	// The same limits hold for the other side's subscriptions.
	err := e.a.DeliverPresence(context.Background(), &core.Presence{Kind: core.PresenceSubscribe, From: juliet, To: alice, Src: xmppSrc})
	if de := (*core.DeliveryError)(nil); !errors.As(err, &de) || de.Reason != core.ReasonUnavailable {
		t.Fatalf("a subscription beyond the limits: %v", err)
	}

	// A fetch (Expires: 0) is answered with the state and ends at once.
	if res := subscribe("dave", "juliet", "Event", "presence", "Expires", "0"); res.StatusCode != 200 {
		t.Fatalf("fetch: %d", res.StatusCode)
	}
	// (the NOTIFYs of the subscriptions above arrive first)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case n := <-phone.notifys:
			if n.To().Address.User == "dave" {
				if st := n.GetHeader("Subscription-State").Value(); st != "terminated;reason=timeout" {
					t.Fatalf("fetch NOTIFY: %s", st)
				}
				return
			}
		case <-deadline:
			t.Fatal("no NOTIFY for the fetch")
		}
	}
}

// TestPresenceShutdown: closing the adapter ends what it holds: a
// terminating NOTIFY (deactivated) to SIP watchers.
func TestPresenceShutdown(t *testing.T) {
	pbx := newPeer(t)
	e := startBridge(t, pbx.addr, nil)
	phone := newPresenceUA(t)
	r := outOfDialog(phone.peer, e.gw, sip.SUBSCRIBE, "alice", "juliet", xmppDomain)
	r.AppendHeader(sip.NewHeader("Event", "presence"))
	if res := do(t, phone.peer, r); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	recv(t, phone.notifys, "the first NOTIFY")
	e.a.Close()
	if st := recv(t, phone.notifys, "the NOTIFY at shutdown").GetHeader("Subscription-State").Value(); st != "terminated;reason=deactivated" {
		t.Fatalf("shutdown: %s", st)
	}
	err := e.a.DeliverPresence(context.Background(), &core.Presence{Kind: core.PresenceUpdate, From: juliet, To: alice})
	if de := (*core.DeliveryError)(nil); !errors.As(err, &de) || de.Reason != core.ReasonUnavailable {
		t.Fatalf("presence to a closed adapter: %v", err)
	}
}

// TestPresenceOfSIPUserGoneAWhile: once her subscription held, a 404 (many
// registrars say so for a user not registered now) is a passing failure:
// the gateway subscribes again later and the other side keeps its
// subscription.
func TestPresenceOfSIPUserGoneAWhile(t *testing.T) {
	ua := newPresenceUA(t)
	e := startBridge(t, ua.addr, func(c *Config) { c.Bridge.Expires = 2 }) // retries after 1 s
	if err := e.a.DeliverPresence(context.Background(), &core.Presence{Kind: core.PresenceSubscribe, From: juliet, To: alice, Src: xmppSrc}); err != nil {
		t.Fatal(err)
	}
	sub := recv(t, ua.subs, "the SUBSCRIBE")
	expectPresence(t, e.other.pres, core.PresenceSubscribed)
	ua.answers <- [2]int{404, 0}
	do(t, ua.peer, notify(ua.notifierSide(sub, e.gw), "terminated;reason=deactivated", ""))
	if again := recv(t, ua.subs, "the new SUBSCRIBE"); again.CallID().Value() == sub.CallID().Value() {
		t.Fatal("not a new subscription")
	}
	// 404: not the end; the next one comes, and is accepted.
	next := recv(t, ua.subs, "the SUBSCRIBE after the 404")
	if next.To().Params.Has("tag") {
		t.Fatalf("not a new subscription:\n%s", next)
	}
	do(t, ua.peer, notify(ua.notifierSide(next, e.gw), "active", pidfDoc("open", "")))
	if p := expectPresence(t, e.other.pres, core.PresenceUpdate); !p.Available {
		t.Fatalf("after the 404: %+v", p)
	}
	if n := e.a.subs.count(); n != 1 {
		t.Fatalf("%d subscriptions", n)
	}
}

// TestPresenceSIPWatcherTwoDevices: the other side's subscription is the
// pair's: alice's second device ending its subscription leaves it, the
// last one ends it.
func TestPresenceSIPWatcherTwoDevices(t *testing.T) {
	pbx := newPeer(t)
	e := startBridge(t, pbx.addr, nil)
	phone := newPresenceUA(t)
	var ends []func() *sip.Response
	for range 2 {
		req := outOfDialog(phone.peer, e.gw, sip.SUBSCRIBE, "alice", "juliet", xmppDomain)
		req.AppendHeader(sip.NewHeader("Event", "presence"))
		res := do(t, phone.peer, req)
		if res.StatusCode != 200 {
			t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
		}
		expectPresence(t, e.other.pres, core.PresenceSubscribe)
		recv(t, phone.notifys, "the first NOTIFY")
		d := &side{callID: req.CallID().Value(), localURI: req.From().Address, remote: req.To().Address,
			localTag: req.From().Params.GetOr("tag", ""), remTag: res.To().Params.GetOr("tag", ""), target: res.Contact().Address,
			dest: e.gw, self: phone.addr, seq: 1}
		ends = append(ends, func() *sip.Response {
			r := d.request(sip.SUBSCRIBE, "")
			r.AppendHeader(sip.NewHeader("Event", "presence"))
			r.AppendHeader(sip.NewHeader("Expires", "0"))
			return do(t, phone.peer, r)
		})
	}
	if res := ends[0](); res.StatusCode != 200 {
		t.Fatalf("first un-SUBSCRIBE: %d", res.StatusCode)
	}
	recv(t, phone.notifys, "the first device's last NOTIFY")
	none(t, e.other.pres, "an unsubscribe while another device watches")
	if res := ends[1](); res.StatusCode != 200 {
		t.Fatalf("second un-SUBSCRIBE: %d", res.StatusCode)
	}
	expectPresence(t, e.other.pres, core.PresenceUnsubscribe)
}

// TestPresenceNotifyFitsUDP: a status that escapes to five times its size
// is cut until the NOTIFY fits a datagram; the subscription goes on.
func TestPresenceNotifyFitsUDP(t *testing.T) {
	pbx := newPeer(t)
	e := startBridge(t, pbx.addr, nil)
	phone := newPresenceUA(t)
	req := outOfDialog(phone.peer, e.gw, sip.SUBSCRIBE, "alice", "juliet", xmppDomain)
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	if res := do(t, phone.peer, req); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	recv(t, phone.notifys, "the first NOTIFY")
	for _, status := range []string{strings.Repeat("&", maxStatus), strings.Repeat("é&", 300)} {
		err := e.a.DeliverPresence(context.Background(), &core.Presence{Kind: core.PresenceUpdate, From: juliet, To: alice, Available: true, Status: status, Src: xmppSrc})
		if err != nil {
			t.Fatal(err)
		}
		n := recv(t, phone.notifys, "the NOTIFY of a long status")
		info, err := parsePIDF(n.Body())
		if err != nil || !info.Available || len(n.Body()) > 600 || info.Status == "" || !strings.HasPrefix(status, info.Status) {
			t.Fatalf("NOTIFY of %d bytes (%v): %+v", len(n.Body()), err, info)
		}
	}
}

// TestPresenceOfSIPUserMinExpires: a user agent that finds the interval
// too brief (423) gets a new SUBSCRIBE asking for its Min-Expires.
func TestPresenceOfSIPUserMinExpires(t *testing.T) {
	ua := newPresenceUA(t)
	ua.minExpires.Store(7200)
	e := startBridge(t, ua.addr, nil)
	if err := e.a.DeliverPresence(context.Background(), &core.Presence{Kind: core.PresenceSubscribe, From: juliet, To: alice, Src: xmppSrc}); err != nil {
		t.Fatal(err)
	}
	if sub := recv(t, ua.subs, "the SUBSCRIBE"); sub.GetHeader("Expires").Value() != "3600" {
		t.Fatalf("first SUBSCRIBE:\n%s", sub)
	}
	if sub := recv(t, ua.subs, "the SUBSCRIBE after the 423"); sub.GetHeader("Expires").Value() != "7200" {
		t.Fatalf("SUBSCRIBE after the 423:\n%s", sub)
	}
	expectPresence(t, e.other.pres, core.PresenceSubscribed)
}
