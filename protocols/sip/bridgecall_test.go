package sip

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
)

// callPeer is the calling side of a bridged call in these tests.
type callPeer struct {
	answered chan *core.MediaDesc
	ended    chan string
}

func newCallPeer() *callPeer {
	return &callPeer{answered: make(chan *core.MediaDesc, 2), ended: make(chan string, 2)}
}

func (p *callPeer) Answered(md *core.MediaDesc) { p.answered <- md }
func (p *callPeer) Ended(reason string)         { p.ended <- reason }

// pcmuOffer is a plugin's offer: PCMU at 127.0.0.1:40000.
func pcmuOffer() *core.CallOffer {
	return &core.CallOffer{Session: "plugin-s1", From: juliet, To: alice, Src: xmppSrc, Judged: true,
		Media: &core.MediaDesc{Streams: []core.Stream{{Type: "audio", Addr: netip.MustParseAddrPort("127.0.0.1:40000"),
			Protocol: "RTP/AVP", Direction: "sendrecv", Codecs: []core.Codec{{PT: 0, Name: "PCMU", Rate: 8000}}}}}}
}

const aliceSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"

// TestBridgeCallToSIP: a neutral call offer becomes an INVITE to the SIP
// user along the routes with SDP written from the neutral description;
// her 200 is acknowledged and its SDP reaches the caller in neutral form;
// the caller's End sends BYE; her BYE ends the call and tells the caller;
// her refusal is the neutral reason; the caller ending while it rings
// cancels the INVITE.
func TestBridgeCallToSIP(t *testing.T) {
	invites := make(chan *sip.Request, 8)
	acks := make(chan *sip.Request, 8)
	byes := make(chan *sip.Request, 8)
	cancels := make(chan *sip.Request, 8)
	mode := make(chan string, 8)
	pbx := newPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			invites <- req
			m := "answer"
			select {
			case m = <-mode:
			default:
			}
			switch m {
			case "busy":
				tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
			case "ring":
				res := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
				res.To().Params.Add("tag", "alice-tag")
				canceled := make(chan struct{}, 1)
				tx.OnCancel(func(r *sip.Request) { cancels <- r; canceled <- struct{}{} })
				tx.Respond(res)
				select {
				case <-canceled:
				case <-time.After(5 * time.Second):
				}
				tx.Respond(sip.NewResponseFromRequest(req, 487, "Request Terminated", nil))
			default:
				res := sip.NewResponseFromRequest(req, 200, "OK", []byte(aliceSDP))
				res.To().Params.Add("tag", "alice-tag")
				res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: portOf(req.Source())}})
				res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
				tx.Respond(res)
			}
		})
		srv.OnAck(func(req *sip.Request, _ sip.ServerTransaction) { acks <- req })
		srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			byes <- req
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
		srv.OnCancel(func(req *sip.Request, tx sip.ServerTransaction) {
			cancels <- req
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	e := startBridge(t, pbx.addr, nil)
	ctx := context.Background()

	// 1. Answered, then ended by the caller.
	p := newCallPeer()
	leg, err := e.a.OfferCall(ctx, pcmuOffer(), p)
	if err != nil {
		t.Fatal(err)
	}
	inv := recv(t, invites, "the INVITE at the PBX")
	body := string(inv.Body())
	if inv.Recipient.User != "alice" || inv.From().Address.User != "juliet" || inv.From().Address.Host != xmppDomain ||
		!strings.Contains(body, "m=audio 40000 RTP/AVP 0") || !strings.Contains(body, "c=IN IP4 127.0.0.1") ||
		!strings.Contains(body, "a=rtpmap:0 PCMU/8000") || inv.ContentType().Value() != "application/sdp" {
		t.Fatalf("INVITE at the PBX:\n%s", inv)
	}
	md := recv(t, p.answered, "the answer")
	if len(md.Streams) != 1 || md.Streams[0].Addr != netip.MustParseAddrPort("127.0.0.1:41000") || md.Streams[0].Codecs[0].Name != "PCMU" {
		t.Fatalf("answer: %+v", md)
	}
	ack := recv(t, acks, "the ACK")
	if ack.CallID().Value() != inv.CallID().Value() {
		t.Fatalf("ACK of another call: %s", ack)
	}
	if e.a.sessions.Len() != 1 {
		t.Fatalf("sessions: %d", e.a.sessions.Len())
	}
	leg.End("normal")
	bye := recv(t, byes, "the BYE")
	if bye.CallID().Value() != inv.CallID().Value() || bye.Recipient.User != "alice" {
		t.Fatalf("BYE:\n%s", bye)
	}
	none(t, p.ended, "the caller told of its own end")
	rec := e.j.find(t, "INVITE", func(r core.Transaction) bool { return r.PeerCall == "plugin-s1" })
	if rec.Status != 200 || !strings.Contains(rec.Detail, "peer xmpp from juliet@"+xmppDomain) || rec.Session == "" {
		t.Fatalf("journal: %+v", rec)
	}

	// 2. Answered, then ended by the SIP user.
	p = newCallPeer()
	if _, err := e.a.OfferCall(ctx, pcmuOffer(), p); err != nil {
		t.Fatal(err)
	}
	inv = recv(t, invites, "the second INVITE")
	recv(t, p.answered, "the second answer")
	recv(t, acks, "the second ACK")
	ph := newPeer(t)
	r := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", User: "ucgate", Host: "127.0.0.1", Port: portOf(e.gw)})
	r.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: portOf(ph.addr),
		Params: sip.HeaderParams{{K: "branch", V: sip.GenerateBranch()}}})
	from := &sip.FromHeader{Address: inv.To().Address, Params: sip.HeaderParams{{K: "tag", V: "alice-tag"}}}
	r.AppendHeader(from)
	to := inv.From().AsTo()
	r.AppendHeader(&to)
	r.AppendHeader(sip.HeaderClone(inv.CallID()))
	r.AppendHeader(&sip.CSeqHeader{SeqNo: 7, MethodName: sip.BYE})
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.SetDestination(e.gw)
	if res := do(t, ph, r); res.StatusCode != 200 {
		t.Fatalf("BYE from the SIP user: %d", res.StatusCode)
	}
	if why := recv(t, p.ended, "the end"); why != "normal" {
		t.Fatalf("end reason %q", why)
	}
	waitSessions(t, e.a, 0)

	// 3. Refused: busy.
	mode <- "busy"
	p = newCallPeer()
	if _, err := e.a.OfferCall(ctx, pcmuOffer(), p); err != nil {
		t.Fatal(err)
	}
	recv(t, invites, "the INVITE refused")
	if why := recv(t, p.ended, "the refusal"); why != core.ReasonBusy.String() {
		t.Fatalf("refusal reason %q", why)
	}

	// 4. The caller gives up while it rings: CANCEL.
	mode <- "ring"
	p = newCallPeer()
	leg, err = e.a.OfferCall(ctx, pcmuOffer(), p)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, invites, "the INVITE that rings")
	time.Sleep(200 * time.Millisecond)
	leg.End("plugin_crashed")
	recv(t, cancels, "the CANCEL")
	none(t, p.ended, "the caller told of its own end")
	waitSessions(t, e.a, 0)

	// 5. Refused at once: not a user of the bridged domain, bad media.
	o := pcmuOffer()
	o.To.Domain = "elsewhere.example"
	var de *core.DeliveryError
	if _, err := e.a.OfferCall(ctx, o, newCallPeer()); !errors.As(err, &de) || de.Reason != core.ReasonNotFound {
		t.Fatalf("foreign callee: %v", err)
	}
	o = pcmuOffer()
	o.Media.Streams[0].Codecs[0].Name = "PCMU\r\na=evil"
	if _, err := e.a.OfferCall(ctx, o, newCallPeer()); !errors.As(err, &de) || de.Reason != core.ReasonNotAcceptable {
		t.Fatalf("codec name with CRLF: %v", err)
	}
	o = pcmuOffer()
	o.Media.Streams[0].Addr = netip.AddrPort{}
	if _, err := e.a.OfferCall(ctx, o, newCallPeer()); !errors.As(err, &de) || de.Reason != core.ReasonNotAcceptable {
		t.Fatalf("stream without address: %v", err)
	}
	none(t, invites, "an INVITE for a refused offer")
}

func waitSessions(t *testing.T, a *Adapter, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for a.sessions.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("sessions: %d, want %d", a.sessions.Len(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// farCallee is an adapter on the bridge whose users take calls, in these
// tests: it answers or refuses as told and records how calls end.
type farCallee struct {
	offers chan *core.CallOffer
	ends   chan string
	answer *core.MediaDesc

	mu     sync.Mutex
	refuse error
}

func (f *farCallee) DeliverMessage(context.Context, *core.Message) error {
	return &core.DeliveryError{Reason: core.ReasonNotFound}
}
func (f *farCallee) DeliverPresence(context.Context, *core.Presence) error {
	return &core.DeliveryError{Reason: core.ReasonNotFound}
}
func (f *farCallee) Protocol() string { return "vendor" }

type farLeg struct{ f *farCallee }

func (l farLeg) End(reason string) { l.f.ends <- reason }

func (f *farCallee) OfferCall(_ context.Context, o *core.CallOffer, peer core.CallPeer) (core.CallLeg, error) {
	f.offers <- o
	f.mu.Lock()
	refuse := f.refuse
	f.mu.Unlock()
	if refuse != nil {
		return nil, refuse
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		peer.Answered(f.answer)
	}()
	return farLeg{f}, nil
}

// TestBridgeCallFromSIP: a SIP INVITE to a domain whose adapter takes
// calls is offered there in neutral form; the far answer becomes the
// 200's SDP; the caller's BYE ends the far leg; a far refusal is the SIP
// status of its reason; an INVITE without SDP is 488.
func TestBridgeCallFromSIP(t *testing.T) {
	e := startBridge(t, "127.0.0.1:9", nil)
	far := &farCallee{offers: make(chan *core.CallOffer, 4), ends: make(chan string, 4),
		answer: &core.MediaDesc{Streams: []core.Stream{{Type: "audio", Addr: netip.MustParseAddrPort("127.0.0.1:42000"),
			Protocol: "RTP/AVP", Direction: "sendrecv", Codecs: []core.Codec{{PT: 0, Name: "PCMU", Rate: 8000}}}}}}
	e.a.bridge.Serve("plugin.example", far)
	phone := newPeer(t)

	inv := outOfDialog(phone, e.gw, sip.INVITE, "alice", "bob", "plugin.example")
	inv.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: portOf(phone.addr)}})
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody([]byte(strings.ReplaceAll(aliceSDP, "41000", "43000")))
	res := do(t, phone, inv)
	if res.StatusCode != 200 || !strings.Contains(string(res.Body()), "m=audio 42000 RTP/AVP 0") {
		t.Fatalf("200 with the far answer:\n%s", res)
	}
	o := recv(t, far.offers, "the offer")
	if o.From.User != "alice" || o.From.Domain != bridgeDomain || o.To.User != "bob" || o.To.Domain != "plugin.example" ||
		len(o.Media.Streams) != 1 || o.Media.Streams[0].Addr != netip.MustParseAddrPort("127.0.0.1:43000") || !o.Judged {
		t.Fatalf("offer: %+v", o)
	}
	tag, _ := res.To().Params.Get("tag")
	ack := inDialog(inv, sip.ACK, 1, tag, e.gw)
	if err := phone.cli.WriteRequest(ack); err != nil {
		t.Fatal(err)
	}
	if r := do(t, phone, inDialog(inv, sip.BYE, 2, tag, e.gw)); r.StatusCode != 200 {
		t.Fatalf("BYE: %d", r.StatusCode)
	}
	if why := recv(t, far.ends, "the far leg's end"); why != "normal" {
		t.Fatalf("far end reason %q", why)
	}
	waitSessions(t, e.a, 0)

	far.mu.Lock()
	far.refuse = &core.DeliveryError{Reason: core.ReasonBusy}
	far.mu.Unlock()
	inv = outOfDialog(phone, e.gw, sip.INVITE, "alice", "bob", "plugin.example")
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody([]byte(aliceSDP))
	if r := do(t, phone, inv); r.StatusCode != 486 {
		t.Fatalf("far refusal busy: %d", r.StatusCode)
	}
	recv(t, far.offers, "the refused offer")

	inv = outOfDialog(phone, e.gw, sip.INVITE, "alice", "bob", "plugin.example")
	if r := do(t, phone, inv); r.StatusCode != 488 {
		t.Fatalf("INVITE without SDP: %d", r.StatusCode)
	}
	none(t, far.offers, "an offer without SDP")
	waitSessions(t, e.a, 0)
}

// FuzzSDPFromNeutral: whatever another adapter (a plugin) puts in a
// neutral description, what checkNeutral lets through is written as SDP
// that parses back to the same streams and codecs: nothing it carries
// adds a line or an attribute of its own.
func FuzzSDPFromNeutral(f *testing.F) {
	f.Add("audio", "RTP/AVP", "sendrecv", "PCMU", "", uint8(0), uint32(8000))
	f.Add("video", "RTP/AVPF", "recvonly", "H264", "profile-level-id=42e01f;packetization-mode=1", uint8(96), uint32(90000))
	f.Add("audio", "RTP/AVP", "", "PCMU\r\na=evil", "x\r\nm=video 1 RTP/AVP 0", uint8(0), uint32(8000))
	f.Fuzz(func(t *testing.T, typ, proto, dir, name, params string, pt uint8, rate uint32) {
		md := &core.MediaDesc{Streams: []core.Stream{{Type: typ, Protocol: proto, Direction: dir,
			Addr: netip.MustParseAddrPort("127.0.0.1:40000"), Codecs: []core.Codec{{PT: pt, Name: name, Rate: rate, Params: params}}}}}
		if checkNeutral(md) != nil {
			return
		}
		body, err := sdpFromMedia(md, md, "127.0.0.1")
		if err != nil {
			return
		}
		back, err := mediaFromSDP(body)
		if err != nil {
			t.Fatalf("written SDP does not parse: %v\n%s", err, body)
		}
		if len(back.Streams) != 1 || len(back.Streams[0].Codecs) != 1 || back.Streams[0].Codecs[0].PT != pt ||
			back.Streams[0].Type != typ || back.Streams[0].Addr != md.Streams[0].Addr {
			t.Fatalf("streams changed: %+v\n%s", back, body)
		}
		if rate > 0 && name != "" && (back.Streams[0].Codecs[0].Name != name || strings.TrimSpace(back.Streams[0].Codecs[0].Params) != strings.TrimSpace(params)) {
			t.Fatalf("codec changed: %+v\n%s", back.Streams[0].Codecs[0], body)
		}
	})
}
