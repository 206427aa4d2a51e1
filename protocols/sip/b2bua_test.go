package sip

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
)

// peer is a real sipgo user agent on a loopback UDP socket, playing a
// phone or a PBX in these tests.
type peer struct {
	ua   *sipgo.UserAgent
	srv  *sipgo.Server
	cli  *sipgo.Client
	addr string
}

// newPeer starts a peer; setup registers its handlers before it serves.
func newPeer(t *testing.T, setup ...func(*sipgo.Server)) *peer {
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

func startAdapter(t *testing.T, upstream string, more ...Listener) (*Adapter, string) {
	t.Helper()
	cfg := Defaults()
	cfg.Listeners = append([]Listener{{Zone: "internet", Transport: "udp", Listen: "127.0.0.1:0"}}, more...)
	cfg.Upstreams = []Upstream{{Name: "pbx", Address: upstream, Zone: "trunk"}}
	cfg.Routes = []Route{{Default: true, Upstreams: []string{"pbx"}}}
	cfg.Registrar = "pbx"
	a, err := New(cfg, core.Deps{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, strings.TrimPrefix(a.Listeners()[0], "udp/")
}

// What each side's internal headers say; none of it may cross the gateway.
var (
	pbxSecrets   = []string{"10.9.8.7", "pbx.internal", "SecretPBX", "X-Internal", "secret-route"}
	phoneSecrets = []string{"10.1.1.1", "phone-internal", "SecretPhone", "X-Internal", "secret-route"}
)

func assertNoLeak(t *testing.T, what string, msg interface {
	Headers() []sip.Header
	Body() []byte
}, secrets []string) {
	t.Helper()
	allowed := headerSet("via", "max-forwards", "from", "to", "call-id", "cseq", "contact", "content-type",
		"content-length", "user-agent", "server", "subject", "supported", "allow", "require", "session-expires",
		"rseq", "expires", "route", "record-route")
	for _, h := range msg.Headers() {
		name := strings.ToLower(h.Name())
		if !allowed[name] {
			t.Errorf("%s: header %s crossed the gateway: %s", what, h.Name(), h.Value())
		}
		for _, s := range secrets {
			if strings.Contains(h.Value(), s) || strings.Contains(h.Name(), s) {
				t.Errorf("%s: %s leaks %q: %s", what, h.Name(), s, h.Value())
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(string(msg.Body()), s) && !strings.Contains(s, "c=") {
			// The connection line passes until media is anchored; the
			// origin must not.
			for _, line := range strings.Split(string(msg.Body()), "\n") {
				if strings.HasPrefix(line, "o=") && strings.Contains(line, s) {
					t.Errorf("%s: SDP origin leaks %q: %s", what, s, line)
				}
			}
		}
	}
}

const leakyPBXSDP = "v=0\r\no=SecretPBX 1 1 IN IP4 10.9.8.7\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

func TestTopologyHiding(t *testing.T) {
	invites := make(chan *sip.Request, 1)
	byes := make(chan *sip.Request, 1)
	pbx := newPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			invites <- req
			self := hostPort(req.Recipient.Host, req.Recipient.Port) // the PBX's own address
			res := sip.NewResponseFromRequest(req, 200, "OK", []byte(leakyPBXSDP))
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "pbx", Host: req.Recipient.Host, Port: req.Recipient.Port}})
			res.AppendHeader(sip.NewHeader("Record-Route", "<sip:"+self+";lr;x=pbx.internal>"))
			res.AppendHeader(sip.NewHeader("Server", "SecretPBX 9.1"))
			res.AppendHeader(sip.NewHeader("Warning", `399 pbx.internal "secret-route"`))
			res.AppendHeader(sip.NewHeader("X-Internal-Trunk", "10.9.8.7"))
			res.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:1001@10.9.8.7>"))
			tx.Respond(res)
		})
		srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
		srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			byes <- req
			tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	_, gw := startAdapter(t, pbx.addr)

	phone := newPeer(t)
	inv := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: portOf(gw)})
	inv.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: portOf(phone.addr),
		Params: sip.HeaderParams{{K: "branch", V: sip.GenerateBranch()}}})
	inv.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKphone-internal"))
	inv.AppendHeader(&sip.FromHeader{DisplayName: "Alice", Address: sip.Uri{Scheme: "sip", User: "alice", Host: "phone-internal.example"},
		Params: sip.HeaderParams{{K: "tag", V: "phone-internal-tag"}}})
	inv.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1"}})
	cid := sip.CallIDHeader("phone-internal-callid@10.1.1.1")
	inv.AppendHeader(&cid)
	inv.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	inv.AppendHeader(&mf)
	inv.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: portOf(phone.addr)}})
	inv.AppendHeader(sip.NewHeader("Record-Route", "<sip:10.1.1.1;lr>"))
	inv.AppendHeader(sip.NewHeader("User-Agent", "SecretPhone 2.0"))
	inv.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:alice@10.1.1.1>"))
	inv.AppendHeader(sip.NewHeader("X-Internal-Route", "secret-route"))
	inv.AppendHeader(sip.NewHeader("Call-Info", "<http://phone-internal/photo.jpg>;purpose=icon"))
	inv.AppendHeader(sip.NewHeader("Subject", "hello"))
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody([]byte(strings.ReplaceAll(strings.ReplaceAll(leakyPBXSDP, "SecretPBX", "SecretPhone"), "10.9.8.7", "10.1.1.1")))
	inv.SetDestination(gw)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := phone.cli.Do(ctx, inv, noBuild)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	got := <-invites
	assertNoLeak(t, "INVITE at the PBX", got, phoneSecrets)
	if n := len(got.GetHeaders("Via")); n != 1 {
		t.Errorf("PBX sees %d Via headers", n)
	}
	if got.Via().Host != "127.0.0.1" || got.Contact().Address.Host != "127.0.0.1" || got.GetHeader("Subject") == nil {
		t.Errorf("INVITE at the PBX: %s", got.String())
	}
	assertNoLeak(t, "200 at the phone", res, pbxSecrets)
	if res.Contact() == nil || res.Contact().Address.Host != "127.0.0.1" || res.Contact().Address.Port != portOf(gw) {
		t.Errorf("200 Contact is not the gateway: %v", res.Contact())
	}

	// ACK and BYE from the phone, in the gateway's dialog.
	toTag, _ := res.To().Params.Get("tag")
	ack := inDialog(inv, sip.ACK, 1, toTag, gw)
	if err := phone.cli.WriteRequest(ack, noBuild); err != nil {
		t.Fatal(err)
	}
	bye := inDialog(inv, sip.BYE, 2, toTag, gw)
	bres, err := phone.cli.Do(ctx, bye, noBuild)
	if err != nil || bres.StatusCode != 200 {
		t.Fatalf("BYE: %v %v", bres, err)
	}
	select {
	case b := <-byes:
		assertNoLeak(t, "BYE at the PBX", b, phoneSecrets)
		if b.CallID().Value() != got.CallID().Value() {
			t.Errorf("BYE in another dialog: %s vs %s", b.CallID().Value(), got.CallID().Value())
		}
	case <-ctx.Done():
		t.Fatal("BYE never reached the PBX")
	}
}

// inDialog builds an in-dialog request of the phone from its INVITE.
func inDialog(inv *sip.Request, m sip.RequestMethod, seq uint32, toTag, gw string) *sip.Request {
	r := sip.NewRequest(m, sip.Uri{Scheme: "sip", User: "ucgate", Host: "127.0.0.1", Port: portOf(gw)})
	v := inv.Via().Clone()
	v.Params.Add("branch", sip.GenerateBranch())
	r.AppendHeader(v)
	r.AppendHeader(sip.HeaderClone(inv.From()))
	to := sip.HeaderClone(inv.To()).(*sip.ToHeader)
	to.Params.Add("tag", toTag)
	r.AppendHeader(to)
	r.AppendHeader(sip.HeaderClone(inv.CallID()))
	cs := &sip.CSeqHeader{SeqNo: seq, MethodName: m}
	if m == sip.ACK {
		cs.MethodName = sip.ACK
	}
	r.AppendHeader(cs)
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.SetBody(nil)
	r.SetDestination(gw)
	return r
}

func portOf(hp string) int {
	_, p, _ := net.SplitHostPort(hp)
	n := 0
	for _, c := range p {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestUnknownDialogGets481(t *testing.T) {
	pbx := newPeer(t)
	_, gw := startAdapter(t, pbx.addr)
	phone := newPeer(t)
	inv := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1"})
	inv.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: portOf(phone.addr),
		Params: sip.HeaderParams{{K: "branch", V: sip.GenerateBranch()}}})
	inv.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "mallory", Host: "example.com"}, Params: sip.HeaderParams{{K: "tag", V: "m1"}}})
	inv.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"}})
	cid := sip.CallIDHeader("never-existed")
	inv.AppendHeader(&cid)
	bye := inDialog(inv, sip.BYE, 7, "nosuchtag", gw)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := phone.cli.Do(ctx, bye, noBuild)
	if err != nil || res.StatusCode != 481 {
		t.Fatalf("BYE for an unknown dialog: %v %v", res, err)
	}
}
