package sip

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// side is one end of a dialog as a test peer sees it.
type side struct {
	callID           string
	localURI, remote sip.Uri
	localTag, remTag string
	target           sip.Uri // where in-dialog requests go
	dest             string  // host:port to send to
	self             string  // the peer's own host:port (for Via)
	seq              uint32
}

// request builds an in-dialog request of the peer.
func (d *side) request(m sip.RequestMethod, body string) *sip.Request {
	d.seq++
	r := sip.NewRequest(m, d.target)
	r.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1",
		Port: portOf(d.self), Params: sip.HeaderParams{{K: "branch", V: sip.GenerateBranch()}}})
	r.AppendHeader(&sip.FromHeader{Address: d.localURI, Params: sip.HeaderParams{{K: "tag", V: d.localTag}}})
	r.AppendHeader(&sip.ToHeader{Address: d.remote, Params: sip.HeaderParams{{K: "tag", V: d.remTag}}})
	cid := sip.CallIDHeader(d.callID)
	r.AppendHeader(&cid)
	r.AppendHeader(&sip.CSeqHeader{SeqNo: d.seq, MethodName: m})
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: portOf(d.self)}})
	if body != "" {
		r.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		r.SetBody([]byte(body))
	} else {
		r.SetBody(nil)
	}
	r.SetDestination(d.dest)
	return r
}

func sdpBody(origin string, port int) string {
	return "v=0\r\no=" + origin + " 1 1 IN IP4 10.20.30.40\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio " +
		itoa(port) + " RTP/AVP 0\r\n"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	s := ""
	for n > 0 {
		s = string(rune('0'+n%10)) + s
		n /= 10
	}
	return s
}

// TestDialogFlows runs one call through the gateway with early media,
// re-INVITE and INFO from the caller, INFO and re-INVITE from the callee,
// an out-of-dialog MESSAGE, and a BYE: every request reaches the other
// side in the right dialog and every answer comes back.
func TestDialogFlows(t *testing.T) {
	got := make(chan string, 32) // "side:METHOD" as each peer receives requests
	pbxDialog := make(chan side, 1)
	pbx := newPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			if req.To().Params.Has("tag") {
				got <- "pbx:reINVITE"
				res := sip.NewResponseFromRequest(req, 200, "OK", []byte(sdpBody("pbx", 5002)))
				res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
				res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: req.Recipient.Host, Port: req.Recipient.Port}})
				tx.Respond(res)
				return
			}
			got <- "pbx:INVITE"
			early := sip.NewResponseFromRequest(req, 183, "Session Progress", []byte(sdpBody("pbx", 5000)))
			early.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			early.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: req.Recipient.Host, Port: req.Recipient.Port}})
			tag, _ := early.To().Params.Get("tag")
			tx.Respond(early)
			// The callee rings a moment. (sipgo hands each response to a
			// goroutine of its own: a 200 right behind a 183 may overtake it.)
			time.Sleep(100 * time.Millisecond)
			res := sip.NewResponseFromRequest(req, 200, "OK", []byte(sdpBody("pbx", 5000)))
			res.To().Params.Add("tag", tag)
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: req.Recipient.Host, Port: req.Recipient.Port}})
			self := hostPort(req.Recipient.Host, req.Recipient.Port)
			ct := req.Contact().Address
			pbxDialog <- side{callID: req.CallID().Value(), localURI: req.To().Address, remote: req.From().Address,
				localTag: tag, remTag: req.From().Params.GetOr("tag", ""), target: ct, dest: hostPort(ct.Host, ct.Port), self: self, seq: 100}
			tx.Respond(res)
		})
		srv.OnAck(func(*sip.Request, sip.ServerTransaction) { got <- "pbx:ACK" })
		for _, m := range []sip.RequestMethod{sip.INFO, sip.UPDATE, sip.BYE, sip.MESSAGE} {
			m := m
			srv.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
				got <- "pbx:" + string(m)
				code := 200
				if m == sip.MESSAGE {
					code = 202
				}
				tx.Respond(sip.NewResponseFromRequest(req, code, "OK", nil))
			})
		}
	})
	_, gw := startAdapter(t, pbx.addr)
	phone := newPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			got <- "phone:reINVITE"
			res := sip.NewResponseFromRequest(req, 200, "OK", []byte(sdpBody("phone", 4002)))
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			tx.Respond(res)
		})
		srv.OnAck(func(*sip.Request, sip.ServerTransaction) { got <- "phone:ACK" })
		srv.OnRequest(sip.INFO, func(req *sip.Request, tx sip.ServerTransaction) {
			got <- "phone:INFO"
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
		srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			got <- "phone:BYE"
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	expect := func(want string) {
		t.Helper()
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("got %s, want %s", g, want)
			}
		case <-ctx.Done():
			t.Fatalf("waiting for %s", want)
		}
	}

	// The call, with early media.
	call := side{callID: "flows-1", localURI: sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"},
		remote: sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"}, localTag: "a1",
		target: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: portOf(gw)}, dest: gw, self: phone.addr}
	inv := call.request(sip.INVITE, sdpBody("phone", 4000))
	inv.To().Params.Remove("tag")
	tx, err := phone.cli.TransactionRequest(ctx, inv, noBuild)
	if err != nil {
		t.Fatal(err)
	}
	var final *sip.Response
	sawEarly := false
	for final == nil {
		select {
		case r := <-tx.Responses():
			switch {
			case r.StatusCode == 183:
				sawEarly = true
				if !strings.Contains(string(r.Body()), "m=audio 5000") || strings.Contains(string(r.Body()), "10.20.30.40") {
					t.Fatalf("early media SDP: %q", r.Body())
				}
			case r.StatusCode >= 200:
				final = r
			}
		case <-ctx.Done():
			t.Fatal("no final response")
		}
	}
	tx.Terminate()
	expect("pbx:INVITE")
	if !sawEarly || final.StatusCode != 200 {
		t.Fatalf("early media %v, final %d", sawEarly, final.StatusCode)
	}
	call.remTag, _ = final.To().Params.Get("tag")
	call.target = final.Contact().Address
	ack := call.request(sip.ACK, "")
	ack.CSeq().SeqNo = 1
	phone.cli.WriteRequest(ack, noBuild)
	expect("pbx:ACK")

	// The caller's re-INVITE and INFO.
	call.seq = 1
	res, err := phone.cli.Do(ctx, call.request(sip.INVITE, sdpBody("phone", 4010)), noBuild)
	if err != nil || res.StatusCode != 200 || !strings.Contains(string(res.Body()), "m=audio 5002") {
		t.Fatalf("re-INVITE: %v %v", res, err)
	}
	expect("pbx:reINVITE")
	ack = call.request(sip.ACK, "")
	ack.CSeq().SeqNo = call.seq - 1
	ack.CSeq().MethodName = sip.ACK
	phone.cli.WriteRequest(ack, noBuild)
	expect("pbx:ACK")
	if res, err = phone.cli.Do(ctx, call.request(sip.INFO, ""), noBuild); err != nil || res.StatusCode != 200 {
		t.Fatalf("INFO from the caller: %v %v", res, err)
	}
	expect("pbx:INFO")

	// The callee's INFO and re-INVITE reach the caller.
	pd := <-pbxDialog
	if res, err = pbx.cli.Do(ctx, pd.request(sip.INFO, ""), noBuild); err != nil || res.StatusCode != 200 {
		t.Fatalf("INFO from the callee: %v %v", res, err)
	}
	expect("phone:INFO")
	if res, err = pbx.cli.Do(ctx, pd.request(sip.INVITE, sdpBody("pbx", 5004)), noBuild); err != nil || res.StatusCode != 200 ||
		!strings.Contains(string(res.Body()), "m=audio 4002") {
		t.Fatalf("re-INVITE from the callee: %v %v", res, err)
	}
	expect("phone:reINVITE")
	expect("phone:ACK") // the gateway acknowledges the caller's 2xx itself
	ack = pd.request(sip.ACK, "")
	ack.CSeq().SeqNo = pd.seq - 1
	pbx.cli.WriteRequest(ack, noBuild) // and absorbs the callee's ACK

	// An out-of-dialog MESSAGE is relayed with its answer.
	msg := (&side{callID: "flows-msg", localURI: call.localURI, remote: call.remote, localTag: "m1",
		target: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: portOf(gw)}, dest: gw, self: phone.addr}).request(sip.MESSAGE, "")
	msg.To().Params.Remove("tag")
	msg.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	msg.SetBody([]byte("hello"))
	if res, err = phone.cli.Do(ctx, msg, noBuild); err != nil || res.StatusCode != 202 {
		t.Fatalf("MESSAGE: %v %v", res, err)
	}
	expect("pbx:MESSAGE")

	// BYE from the caller ends both legs.
	if res, err = phone.cli.Do(ctx, call.request(sip.BYE, ""), noBuild); err != nil || res.StatusCode != 200 {
		t.Fatalf("BYE: %v %v", res, err)
	}
	expect("pbx:BYE")
}

// TestWebSocketCall places a call over a WebSocket listener (RFC 7118) to
// a UDP trunk; the caller's BYE comes back over its WebSocket.
func TestWebSocketCall(t *testing.T) {
	byes := make(chan struct{}, 1)
	pbx := newPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			res := sip.NewResponseFromRequest(req, 200, "OK", []byte(sdpBody("pbx", 5000)))
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: req.Recipient.Host, Port: req.Recipient.Port}})
			tx.Respond(res)
		})
		srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
		srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			byes <- struct{}{}
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	a, _ := startAdapter(t, pbx.addr, Listener{Zone: "internet", Transport: "ws", Listen: "127.0.0.1:0"})
	ws := strings.TrimPrefix(a.Listeners()[1], "ws/")

	ua, _ := sipgo.NewUA()
	t.Cleanup(func() { ua.Close() })
	cli, _ := sipgo.NewClient(ua)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inv := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: portOf(ws), UriParams: sip.HeaderParams{{K: "transport", V: "ws"}}})
	inv.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "browser.invalid"}, Params: sip.HeaderParams{{K: "tag", V: "w1"}}})
	inv.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"}})
	inv.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "browser.invalid", UriParams: sip.HeaderParams{{K: "transport", V: "ws"}}}})
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody([]byte(sdpBody("browser", 4000)))
	inv.SetTransport("WS")
	res, err := cli.Do(ctx, inv)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("INVITE over WS: %v %v", res, err)
	}
	if c := res.Contact(); c == nil || c.Address.Port != portOf(ws) || !strings.Contains(c.Address.String(), "transport=ws") {
		t.Fatalf("Contact for a WS caller: %v", c)
	}
	toTag, _ := res.To().Params.Get("tag")
	bye := sip.NewRequest(sip.BYE, res.Contact().Address)
	bye.AppendHeader(sip.HeaderClone(inv.From()))
	to := sip.HeaderClone(inv.To()).(*sip.ToHeader)
	to.Params.Add("tag", toTag)
	bye.AppendHeader(to)
	bye.AppendHeader(sip.HeaderClone(inv.CallID()))
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo + 1, MethodName: sip.BYE})
	bye.SetTransport("WS")
	if res, err = cli.Do(ctx, bye); err != nil || res.StatusCode != 200 {
		t.Fatalf("BYE over WS: %v %v", res, err)
	}
	select {
	case <-byes:
	case <-ctx.Done():
		t.Fatal("the trunk never got the BYE")
	}
}
