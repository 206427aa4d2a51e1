package sip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/policies/acl"
	"github.com/ucgate/ucgate/policies/auth"
)

const (
	bridgeDomain = "sip.example.test" // what SIP users are on the other side
	xmppDomain   = "xmpp.example"     // what the other side serves
)

// otherSide is the other adapter on the bridge in these tests: it records
// what the SIP adapter hands it and answers as told.
type otherSide struct {
	msgs chan core.Message
	pres chan core.Presence

	mu      sync.Mutex
	msgErr  error
	presErr error
}

func newOtherSide() *otherSide {
	return &otherSide{msgs: make(chan core.Message, 16), pres: make(chan core.Presence, 64)}
}

func (o *otherSide) DeliverMessage(_ context.Context, m *core.Message) error {
	o.msgs <- *m
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.msgErr
}

func (o *otherSide) DeliverPresence(_ context.Context, p *core.Presence) error {
	o.pres <- *p
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.presErr
}

func (o *otherSide) Protocol() string { return "xmpp" }

func (o *otherSide) answer(msgErr, presErr error) {
	o.mu.Lock()
	o.msgErr, o.presErr = msgErr, presErr
	o.mu.Unlock()
}

// memJournal keeps the transactions the adapter journals.
type memJournal struct {
	mu   sync.Mutex
	recs []core.Transaction
}

func (j *memJournal) Transaction(t *core.Transaction) {
	j.mu.Lock()
	j.recs = append(j.recs, *t)
	j.mu.Unlock()
}

func (j *memJournal) CDR(context.Context, *core.CDR) error { return nil }

// find returns the last record of method that f accepts, waiting a little
// for it (a handler journals after it answers).
func (j *memJournal) find(t *testing.T, method string, f func(core.Transaction) bool) core.Transaction {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		j.mu.Lock()
		for i := len(j.recs) - 1; i >= 0; i-- {
			if r := j.recs[i]; r.Method == method && f(r) {
				j.mu.Unlock()
				return r
			}
		}
		j.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s record as expected in the journal", method)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type bridgeEnv struct {
	a     *Adapter
	gw    string // the gateway's UDP listener
	other *otherSide
	j     *memJournal
}

// startBridge starts an adapter that serves bridgeDomain on a bridge where
// otherSide serves xmppDomain; everything else routes to pbx. tune changes
// the configuration first; stages make the pipeline.
func startBridge(t testing.TB, pbx string, tune func(*Config), stages ...core.Stage) *bridgeEnv {
	t.Helper()
	cfg := Defaults()
	cfg.Listeners = []Listener{{Zone: "internet", Transport: "udp", Listen: "127.0.0.1:0"}}
	cfg.Upstreams = []Upstream{{Name: "pbx", Address: pbx, Zone: "trunk"}}
	cfg.Routes = []Route{{Default: true, Upstreams: []string{"pbx"}}}
	cfg.Registrar = "pbx"
	cfg.Bridge.Domain = bridgeDomain
	if tune != nil {
		tune(&cfg)
	}
	b := core.NewBridge()
	e := &bridgeEnv{other: newOtherSide(), j: &memJournal{}}
	b.Serve(xmppDomain, e.other)
	a, err := New(cfg, core.Deps{Bridge: b, Journal: e.j}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := core.NewPipeline(core.StageOrder, stages...)
	if err != nil {
		t.Fatal(err)
	}
	a.SetPipeline(p)
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if d, ok := b.For(bridgeDomain); !ok || d != core.Deliverer(a) {
		t.Fatal("the adapter does not serve its bridged domain")
	}
	e.a, e.gw = a, strings.TrimPrefix(a.Listeners()[0], "udp/")
	// The listener serves once it answers (sipgo sends from a UDP
	// listener only once it serves).
	ping := newBenchPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := ping.cli.Do(ctx, outOfDialog(ping, e.gw, sip.OPTIONS, "ping", "", "127.0.0.1"), noBuild); err != nil || res.StatusCode != 200 {
		t.Fatalf("OPTIONS: %v %v", res, err)
	}
	return e
}

// xmppSrc is where the other side's traffic entered the gateway.
var xmppSrc = core.Source{Addr: netip.MustParseAddrPort("192.0.2.66:5269"), Transport: "tcp", Zone: "xmpp"}

var (
	juliet = core.Identity{Display: "Juliet", User: "juliet", Domain: xmppDomain}
	alice  = core.Identity{User: "alice", Domain: bridgeDomain}
)

// outOfDialog builds a request of a test phone to the gateway.
func outOfDialog(phone *peer, gw string, m sip.RequestMethod, user, toUser, toHost string) *sip.Request {
	d := &side{callID: "t-" + sip.GenerateTagN(10), localURI: sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1"},
		remote: sip.Uri{Scheme: "sip", User: toUser, Host: toHost}, localTag: sip.GenerateTagN(8),
		target: sip.Uri{Scheme: "sip", User: toUser, Host: toHost}, dest: gw, self: phone.addr}
	r := d.request(m, "")
	r.To().Params.Remove("tag")
	return r
}

func textMessage(r *sip.Request, body string) *sip.Request {
	r.AppendHeader(sip.NewHeader("Content-Type", "text/plain;charset=utf-8"))
	r.SetBody([]byte(body))
	return r
}

func do(t *testing.T, p *peer, r *sip.Request) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.cli.Do(ctx, r, noBuild)
	if err != nil {
		t.Fatalf("%s: %v", r.Method, err)
	}
	return res
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("waiting for %s", what)
	}
	var zero T
	return zero
}

func none[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s: got %+v", what, v)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestBridgeMessageFromSIP: a SIP MESSAGE to a bridged domain becomes a
// core.Message from the user's address in the bridged domain, and the
// other side's answer becomes the SIP status (RFC 7247 section 7).
func TestBridgeMessageFromSIP(t *testing.T) {
	pbx := newPeer(t, func(srv *sipgo.Server) {
		srv.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
			t.Errorf("a bridged MESSAGE reached the PBX")
			tx.Respond(sip.NewResponseFromRequest(req, 500, "No", nil))
		})
	})
	e := startBridge(t, pbx.addr, nil)
	phone := newPeer(t)

	req := textMessage(outOfDialog(phone, e.gw, sip.MESSAGE, "alice", "juliet", xmppDomain), "hello, wherefore art thou")
	req.From().DisplayName = "Alice"
	res := do(t, phone, req)
	if res.StatusCode != 200 {
		t.Fatalf("MESSAGE to the bridge: %d %s", res.StatusCode, res.Reason)
	}
	m := recv(t, e.other.msgs, "the message")
	if m.From != (core.Identity{Display: "Alice", User: "alice", Domain: bridgeDomain}) || m.To != (core.Identity{User: "juliet", Domain: xmppDomain}) ||
		m.Body != "hello, wherefore art thou" || m.ContentType != "text/plain" || m.Src.Addr.Addr().String() != "127.0.0.1" || m.Src.Zone != "internet" || m.ID == "" {
		t.Fatalf("core message: %+v", m)
	}
	rec := e.j.find(t, "MESSAGE", func(r core.Transaction) bool { return r.Status == 200 })
	if rec.From != "alice@127.0.0.1" || rec.To != "juliet@"+xmppDomain ||
		rec.Detail != "peer xmpp from alice@"+bridgeDomain+" to juliet@"+xmppDomain || rec.Action != "allow" {
		t.Fatalf("journal: %+v", rec)
	}

	// A percent-encoded user part reaches the other side decoded, and a
	// user part the other side cannot carry is refused.
	res = do(t, phone, textMessage(outOfDialog(phone, e.gw, sip.MESSAGE, "alice", "j%C3%BCliet.c", xmppDomain), "x"))
	if m := recv(t, e.other.msgs, "the second message"); res.StatusCode != 200 || m.To.User != "jüliet.c" {
		t.Fatalf("encoded user: %d %+v", res.StatusCode, m.To)
	}
	res = do(t, phone, textMessage(outOfDialog(phone, e.gw, sip.MESSAGE, "alice", "a%2Fb", xmppDomain), "x"))
	if res.StatusCode != 404 {
		t.Fatalf("a localpart with '/': %d", res.StatusCode)
	}
	none(t, e.other.msgs, "a message for an impossible address")

	// A user of another domain does not speak as one of ours; one of the
	// bridged domain or of the PBX's does.
	for _, tt := range []struct {
		host string
		code int
	}{{"elsewhere.example", 403}, {bridgeDomain, 200}, {"127.0.0.1", 200}} {
		r := textMessage(outOfDialog(phone, e.gw, sip.MESSAGE, "bob", "juliet", xmppDomain), "who am I")
		r.From().Address.Host = tt.host
		if res := do(t, phone, r); res.StatusCode != tt.code {
			t.Errorf("From bob@%s: %d, want %d", tt.host, res.StatusCode, tt.code)
		}
		if tt.code == 200 {
			if m := recv(t, e.other.msgs, "bob's message"); m.From.User != "bob" || m.From.Domain != bridgeDomain {
				t.Errorf("From bob@%s crossed as %v", tt.host, m.From)
			}
		}
	}
	none(t, e.other.msgs, "a message from another domain")
	if rec := e.j.find(t, "MESSAGE", func(r core.Transaction) bool { return r.Status == 403 }); rec.Rule != "sip/bridge_sender" {
		t.Fatalf("journal of a foreign sender: %+v", rec)
	}

	// Refusals of the other side, mapped.
	for _, tt := range []struct {
		err  error
		code int
	}{
		{&core.DeliveryError{Reason: core.ReasonNotFound}, 404},
		{&core.DeliveryError{Reason: core.ReasonUnavailable, Detail: "offline"}, 480},
		{&core.DeliveryError{Reason: core.ReasonForbidden}, 403},
		{&core.DeliveryError{Reason: core.ReasonTooLarge}, 513},
		{&core.DeliveryError{Reason: core.ReasonRateLimited}, 503},
		{&core.DeliveryError{}, 500},
		{context.DeadlineExceeded, 408},
		{errors.New("component link down"), 480},
	} {
		e.other.answer(tt.err, nil)
		res := do(t, phone, textMessage(outOfDialog(phone, e.gw, sip.MESSAGE, "alice", "juliet", xmppDomain), "x"))
		recv(t, e.other.msgs, "a message to refuse")
		if res.StatusCode != tt.code {
			t.Errorf("other side says %v: SIP %d, want %d", tt.err, res.StatusCode, tt.code)
		}
	}
	e.other.answer(nil, nil)

	// What an XMPP body cannot carry is refused here.
	html := outOfDialog(phone, e.gw, sip.MESSAGE, "alice", "juliet", xmppDomain)
	html.AppendHeader(sip.NewHeader("Content-Type", "text/html"))
	html.SetBody([]byte("<b>hi</b>"))
	if res := do(t, phone, html); res.StatusCode != 415 || res.GetHeader("Accept") == nil {
		t.Fatalf("text/html: %v", res)
	}
	latin := outOfDialog(phone, e.gw, sip.MESSAGE, "alice", "juliet", xmppDomain)
	latin.AppendHeader(sip.NewHeader("Content-Type", "text/plain; charset=iso-8859-1"))
	latin.SetBody([]byte("caf\xe9"))
	if res := do(t, phone, latin); res.StatusCode != 415 {
		t.Fatalf("latin-1: %d", res.StatusCode)
	}
	none(t, e.other.msgs, "a message the other side cannot carry")
}

// TestBridgeMessageToSIP: a core.Message to alice@<bridge domain> becomes a
// SIP MESSAGE to alice: along the routes, then (once she registered
// through the gateway) to her phone; SIP answers become neutral reasons.
func TestBridgeMessageToSIP(t *testing.T) {
	got := make(chan *sip.Request, 8)
	status := make(chan int, 8)
	answer := func(req *sip.Request, tx sip.ServerTransaction) {
		got <- req
		code := 200
		select {
		case code = <-status:
		default:
		}
		if code > 0 {
			tx.Respond(sip.NewResponseFromRequest(req, code, "Answer", nil))
		}
	}
	pbx := newPeer(t, func(srv *sipgo.Server) {
		srv.OnMessage(answer)
		srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			res.AppendHeader(req.Contact())
			tx.Respond(res)
		})
	})
	e := startBridge(t, pbx.addr, nil)
	ctx := context.Background()

	m := &core.Message{ID: "x1", From: juliet, To: alice, Body: "hi alice ✓", Src: xmppSrc, Time: time.Now()}
	if err := e.a.DeliverMessage(ctx, m); err != nil {
		t.Fatalf("delivery along the routes: %v", err)
	}
	req := recv(t, got, "the MESSAGE at the PBX")
	if req.Recipient.User != "alice" || req.From().Address.User != "juliet" || req.From().Address.Host != xmppDomain ||
		req.From().DisplayName != "Juliet" || req.To().Address.User != "alice" || string(req.Body()) != "hi alice ✓" ||
		req.ContentType().Value() != "text/plain;charset=UTF-8" {
		t.Fatalf("MESSAGE at the PBX:\n%s", req)
	}
	rec := e.j.find(t, "MESSAGE", func(r core.Transaction) bool { return r.PeerCall == "x1" })
	if rec.From != "Juliet <juliet@"+xmppDomain+">" && rec.From != "juliet@"+xmppDomain || rec.Src != xmppSrc.Addr.String() ||
		rec.Status != 200 || !strings.Contains(rec.Detail, "peer xmpp from juliet@"+xmppDomain+" to alice@"+bridgeDomain) {
		t.Fatalf("journal: %+v", rec)
	}

	// SIP refusals come back as neutral reasons.
	for _, tt := range []struct {
		code int
		want core.Reason
	}{{404, core.ReasonNotFound}, {486, core.ReasonBusy}, {480, core.ReasonUnavailable}, {403, core.ReasonForbidden}, {415, core.ReasonNotAcceptable}} {
		status <- tt.code
		err := e.a.DeliverMessage(ctx, &core.Message{From: juliet, To: alice, Body: "x", Src: xmppSrc})
		recv(t, got, "a MESSAGE to refuse")
		var de *core.DeliveryError
		if !errors.As(err, &de) || de.Reason != tt.want {
			t.Errorf("SIP %d: %v, want %v", tt.code, err, tt.want)
		}
	}
	// No answer: a timeout, bounded by the caller's context.
	status <- 0
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := e.a.DeliverMessage(short, &core.Message{From: juliet, To: alice, Body: "x", Src: xmppSrc})
	cancel()
	recv(t, got, "a MESSAGE left unanswered")
	if de := (*core.DeliveryError)(nil); !errors.As(err, &de) || de.Reason != core.ReasonTimeout {
		t.Fatalf("no answer: %v", err)
	}

	// What cannot go is refused before anything is sent.
	for _, tt := range []struct {
		name string
		m    core.Message
		want core.Reason
	}{
		{"other domain", core.Message{From: juliet, To: core.Identity{User: "alice", Domain: "elsewhere.example"}, Body: "x"}, core.ReasonNotFound},
		{"bad recipient", core.Message{From: juliet, To: core.Identity{User: "al ice", Domain: bridgeDomain}, Body: "x"}, core.ReasonNotFound},
		{"bad sender", core.Message{From: core.Identity{User: "ju<liet", Domain: xmppDomain}, To: alice, Body: "x"}, core.ReasonMalformed},
		{"sender domain", core.Message{From: core.Identity{User: "juliet", Domain: "xmpp.example>;evil"}, To: alice, Body: "x"}, core.ReasonMalformed},
		{"html", core.Message{From: juliet, To: alice, Body: "<b>x</b>", ContentType: "text/html"}, core.ReasonNotAcceptable},
		{"not utf-8", core.Message{From: juliet, To: alice, Body: "caf\xe9"}, core.ReasonMalformed},
		{"too large", core.Message{From: juliet, To: alice, Body: strings.Repeat("x", maxBridgedBody+1)}, core.ReasonTooLarge},
		{"too large for udp", core.Message{From: juliet, To: alice, Body: strings.Repeat("x", 1400)}, core.ReasonTooLarge},
	} {
		err := e.a.DeliverMessage(ctx, &tt.m)
		if de := (*core.DeliveryError)(nil); !errors.As(err, &de) || de.Reason != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	none(t, got, "a MESSAGE that should not have gone")

	// Alice registers through the gateway: her phone gets the next one.
	phoneGot := make(chan *sip.Request, 4)
	phone := newPeer(t, func(srv *sipgo.Server) {
		srv.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
			phoneGot <- req
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	reg := outOfDialog(phone, e.gw, sip.REGISTER, "alice", "alice", "pbx.example")
	reg.Recipient = sip.Uri{Scheme: "sip", Host: "pbx.example"}
	reg.AppendHeader(sip.NewHeader("Expires", "300"))
	if res := do(t, phone, reg); res.StatusCode != 200 {
		t.Fatalf("REGISTER: %d", res.StatusCode)
	}
	if err := e.a.DeliverMessage(ctx, &core.Message{From: juliet, To: alice, Body: "to your phone", Src: xmppSrc}); err != nil {
		t.Fatalf("delivery to the registered phone: %v", err)
	}
	req = recv(t, phoneGot, "the MESSAGE at alice's phone")
	if string(req.Body()) != "to your phone" || req.From().Address.String() != "sip:juliet@"+xmppDomain {
		t.Fatalf("MESSAGE at the phone:\n%s", req)
	}
	none(t, got, "the PBX, once alice is registered")
}

// TestBridgeSecurityStages: the pipeline judges interworked traffic both
// ways; what it refuses never crosses, and the journal says which rule
// decided, with both sides' identities.
func TestBridgeSecurityStages(t *testing.T) {
	pbxGot := make(chan *sip.Request, 4)
	pbx := newPeer(t, func(srv *sipgo.Server) {
		srv.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
			pbxGot <- req
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	au := auth.Defaults()
	au.NonceKeyFile = ""
	authStage, err := auth.New(au, core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ac := acl.Defaults()
	ac.Deny = []string{"192.0.2.99"}
	aclStage, err := acl.New(ac, core.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	e := startBridge(t, pbx.addr, nil, authStage, aclStage)
	phone := newPeer(t)

	// A SIP user who does not authenticate is challenged; nothing crosses.
	res := do(t, phone, textMessage(outOfDialog(phone, e.gw, sip.MESSAGE, "alice", "juliet", xmppDomain), "let me in"))
	if res.StatusCode != 407 {
		t.Fatalf("unauthenticated MESSAGE to the bridge: %d", res.StatusCode)
	}
	none(t, e.other.msgs, "a challenged message")
	rec := e.j.find(t, "MESSAGE", func(r core.Transaction) bool { return r.Status == 407 })
	if rec.Rule != "auth/challenge" || rec.From != "alice@127.0.0.1" || rec.To != "juliet@"+xmppDomain {
		t.Fatalf("journal of the challenge: %+v", rec)
	}

	// From the other side, whose users authenticated there (SASL), the
	// SIP digest stage stands aside; the source rules still apply.
	if err := e.a.DeliverMessage(context.Background(), &core.Message{From: juliet, To: alice, Body: "ok", Src: xmppSrc}); err != nil {
		t.Fatalf("a message from an allowed source: %v", err)
	}
	recv(t, pbxGot, "the allowed message")
	bad := xmppSrc
	bad.Addr = netip.MustParseAddrPort("192.0.2.99:5269")
	err = e.a.DeliverMessage(context.Background(), &core.Message{ID: "denied-1", From: juliet, To: alice, Body: "no", Src: bad})
	if de := (*core.DeliveryError)(nil); !errors.As(err, &de) || de.Reason != core.ReasonForbidden {
		t.Fatalf("a message from a denied source: %v", err)
	}
	none(t, pbxGot, "a denied message")
	rec = e.j.find(t, "MESSAGE", func(r core.Transaction) bool { return r.PeerCall == "denied-1" })
	if rec.Rule != "acl/deny" || rec.Action != "drop" || rec.Src != "192.0.2.99:5269" ||
		!strings.Contains(rec.Detail, "juliet@"+xmppDomain) || !strings.Contains(rec.Detail, "alice@"+bridgeDomain) {
		t.Fatalf("journal of the denied message: %+v", rec)
	}

	// A message the adapter it entered by already judged (Judged) is not
	// judged again: the stages would charge its source twice. The denied
	// source above passes here, which shows the pipeline did not run.
	if err := e.a.DeliverMessage(context.Background(), &core.Message{ID: "judged-1", Judged: true, From: juliet, To: alice, Body: "once", Src: bad}); err != nil {
		t.Fatalf("a message judged where it entered: %v", err)
	}
	if got := recv(t, pbxGot, "the judged message"); string(got.Body()) != "once" {
		t.Fatalf("judged message body %q", got.Body())
	}

	// Presence the same way: a denied source subscribes to nothing.
	err = e.a.DeliverPresence(context.Background(), &core.Presence{Kind: core.PresenceSubscribe, From: juliet, To: alice, Src: bad})
	if de := (*core.DeliveryError)(nil); !errors.As(err, &de) {
		t.Fatalf("a subscription from a denied source: %v", err)
	}
	if n := e.a.subs.count(); n != 0 {
		t.Fatalf("%d subscriptions held after a refusal", n)
	}
	sub := outOfDialog(phone, e.gw, sip.SUBSCRIBE, "alice", "juliet", xmppDomain)
	sub.AppendHeader(sip.NewHeader("Event", "presence"))
	if res := do(t, phone, sub); res.StatusCode != 407 {
		t.Fatalf("unauthenticated SUBSCRIBE to the bridge: %d", res.StatusCode)
	}
	none(t, e.other.pres, "a challenged subscription")
}

func TestBridgeAddresses(t *testing.T) {
	for _, tt := range []struct {
		local string
		user  string
	}{
		{"juliet", "juliet"},
		{"juliet.capulet", "juliet.capulet"},
		{"jüliet", "j%C3%BCliet"},
		{"a;b?c#d%e,f", "a%3Bb%3Fc%23d%25e,f"},
	} {
		if got := sipUser(tt.local); got != tt.user {
			t.Errorf("sipUser(%q) = %q, want %q", tt.local, got, tt.user)
		}
		if back, ok := localOf(tt.user); !ok || back != tt.local {
			t.Errorf("localOf(%q) = %q %v, want %q", tt.user, back, ok, tt.local)
		}
	}
	for _, bad := range []string{"", "a%2", "a%zz", "a%2Fb", "a%40b", "a%00", "a%20b", "\xff", strings.Repeat("a", 1024)} {
		if got, ok := localOf(bad); ok {
			t.Errorf("localOf(%q) accepted as %q", bad, got)
		}
	}
	for _, tt := range []struct {
		in, want string
	}{{"Juliet", "Juliet"}, {`Ju"li\et`, "Juliet"}, {"a\r\nVia: evil", "aVia: evil"}, {strings.Repeat("x", 100), strings.Repeat("x", 64)}} {
		if got := cleanDisplay(tt.in); got != tt.want {
			t.Errorf("cleanDisplay(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, d := range []string{"xmpp.example", "a-b.example", "localhost"} {
		if !validDomain(d) {
			t.Errorf("%q refused as a domain", d)
		}
	}
	for _, d := range []string{"", "-a.example", "a..example", "a.example.", "a_b.example", "[::1]", "a.example>", strings.Repeat("a", 64) + ".example"} {
		if validDomain(d) {
			t.Errorf("%q accepted as a domain", d)
		}
	}
}

// TestBridgeStatusMapping: every SIP final status maps to a reason, and
// each reason the other side may give maps to a SIP status.
func TestBridgeStatusMapping(t *testing.T) {
	for code := 300; code < 700; code++ {
		if reasonOfStatus(code) == core.ReasonNone {
			t.Errorf("SIP %d has no reason", code)
		}
	}
	for _, r := range core.AllReasons() {
		if code, phrase := bridgeStatusFor(r); code < 400 || code > 699 || phrase == "" {
			t.Errorf("reason %v maps to %d %q", r, code, phrase)
		}
	}
	if code, _ := bridgeStatusFor(core.ReasonUnavailable); code != 480 {
		t.Errorf("an unavailable recipient is %d, want 480", code)
	}
}

// BenchmarkBridgeMessage: one-to-one messages through the adapter, one at
// a time over loopback, each answered: a SIP MESSAGE to the bridge (ends
// as a core.Message the other side takes), a core.Message to a SIP user
// (a SIP MESSAGE the PBX answers), and for comparison a SIP MESSAGE
// relayed SIP to SIP. It reports messages per second.
func BenchmarkBridgeMessage(b *testing.B) {
	pbx := newBenchPeer(b, func(srv *sipgo.Server) {
		srv.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	e := startBridge(b, pbx.addr, nil)
	go func() {
		for range e.other.msgs {
		}
	}()
	phone := newBenchPeer(b)
	ctx := context.Background()
	report := func(b *testing.B, start time.Time) {
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	}
	b.Run("sip-to-bridge", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			res, err := phone.cli.Do(ctx, textMessage(outOfDialog(phone, e.gw, sip.MESSAGE, "alice", "juliet", xmppDomain), "hello"), noBuild)
			if err != nil || res.StatusCode != 200 {
				b.Fatalf("%v %v", res, err)
			}
		}
		report(b, start)
	})
	b.Run("bridge-to-sip", func(b *testing.B) {
		m := core.Message{From: juliet, To: alice, Body: "hello", Src: xmppSrc}
		start := time.Now()
		for b.Loop() {
			mm := m
			if err := e.a.DeliverMessage(ctx, &mm); err != nil {
				b.Fatal(err)
			}
		}
		report(b, start)
	})
	b.Run("sip-to-sip", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			res, err := phone.cli.Do(ctx, textMessage(outOfDialog(phone, e.gw, sip.MESSAGE, "alice", "bob", "pbx.example"), "hello"), noBuild)
			if err != nil || res.StatusCode != 200 {
				b.Fatalf("%v %v", res, err)
			}
		}
		report(b, start)
	})
}

// newBenchPeer is newPeer for benchmarks too.
func newBenchPeer(t testing.TB, setup ...func(*sipgo.Server)) *peer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ua, _ := sipgo.NewUA()
	srv, _ := sipgo.NewServer(ua)
	p := &peer{ua: ua, srv: srv, addr: pc.LocalAddr().String()}
	p.cli, _ = sipgo.NewClient(ua, sipgo.WithClientAddr(p.addr))
	for _, f := range setup {
		f(srv)
	}
	go srv.ServeUDP(pc)
	t.Cleanup(func() { ua.Close(); pc.Close() })
	return p
}

// TestBridgeReadyAtStart: the bridge may hand a message over the moment
// the adapter serves its domain.
func TestBridgeReadyAtStart(t *testing.T) {
	got := make(chan struct{}, 1)
	pbx := newPeer(t, func(srv *sipgo.Server) {
		srv.OnMessage(func(req *sip.Request, tx sip.ServerTransaction) {
			got <- struct{}{}
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	cfg := Defaults()
	cfg.Listeners = []Listener{{Zone: "internet", Transport: "udp", Listen: "127.0.0.1:0"}}
	cfg.Upstreams = []Upstream{{Name: "pbx", Address: pbx.addr, Zone: "trunk"}}
	cfg.Routes = []Route{{Default: true, Upstreams: []string{"pbx"}}}
	cfg.Bridge.Domain = bridgeDomain
	b := core.NewBridge()
	a, err := New(cfg, core.Deps{Bridge: b}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	d, ok := b.For(bridgeDomain)
	if !ok {
		t.Fatal("not served")
	}
	if err := d.DeliverMessage(context.Background(), &core.Message{From: juliet, To: alice, Body: "at once", Src: xmppSrc}); err != nil {
		t.Fatalf("a message at start: %v", err)
	}
	recv(t, got, "the MESSAGE")
}
