package e2e

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/xml"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/journal"
	h "github.com/ucgate/ucgate/e2e/harness"
)

// SIP <-> XMPP interworking end to end (RFC 7247, 7248, 7572): a real
// Prosody serves example.test and routes sip.example.test to the gateway's
// XEP-0114 component; the gateway's SIP adapter gives its SIP users
// addresses in sip.example.test; baresip (alice) registers through the
// gateway to a sipp registrar; juliet is a mellium client logged in to
// Prosody.
const (
	iwXMPPDomain = "example.test"
	iwSIPDomain  = "sip.example.test"
	iwSecret     = "iw-component-secret"
	iwPassword   = "juliet-secret"
)

type iwEnv struct {
	gw  *h.Gateway
	pr  *h.Prosody
	udp string // the gateway's SIP listener
}

// startInterwork starts Prosody (user juliet, the component domain), a
// sipp registrar and the gateway with the component, sip.bridge and the
// policies section given, and waits until the component is connected.
func startInterwork(t *testing.T, policies string) *iwEnv {
	t.Helper()
	h.RequirePeer(t, "sipp")
	h.RequirePeer(t, "baresip")
	e := &iwEnv{pr: h.StartProsody(t, h.ProsodyConfig{Domain: iwXMPPDomain, Users: map[string]string{"juliet": iwPassword},
		Component: iwSIPDomain, ComponentSecret: iwSecret})}
	regPort := h.FreeUDPPort(t)
	h.StartRegistrar(t, h.SippConfig{Port: regPort, Timeout: 120 * time.Second}, 8)
	e.udp = h.HostPort("127.0.0.1", h.FreeUDPPort(t))
	yaml := fmt.Sprintf(`admin:
  listen: ""
sip:
  listeners:
    - {zone: internet, transport: udp, listen: "%s"}
  upstreams:
    - {name: pbx, address: "%s", transport: udp, zone: trunk}
  registrar: pbx
  bridge:
    domain: %s
xmpp:
  component:
    enabled: true
    server: "%s"
    domain: %s
    secret: %s
    peer_domains: [%s]
    capture: {enabled: true, body: true}
%s`, e.udp, h.HostPort("127.0.0.1", regPort), iwSIPDomain, e.pr.ComponentAddr, iwSIPDomain, iwSecret, iwXMPPDomain, policies)
	e.gw = h.StartGateway(t, h.GatewayConfig{YAML: yaml, UDP: []string{e.udp}})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What crossed the component, as Prosody saw it, and the journal.
		var lines []string
		for _, l := range strings.Split(e.pr.DebugLog(), "\n") {
			if strings.Contains(l, iwSIPDomain) && (strings.Contains(l, "<presence") || strings.Contains(l, "<message")) {
				lines = append(lines, l)
			}
		}
		t.Logf("prosody, stanzas of %s:\n%s", iwSIPDomain, strings.Join(lines, "\n"))
		txs, _ := journal.QueryTransactions(context.Background(), filepath.Join(e.gw.DataDir, "journal.db"), journal.TxFilter{Limit: 500})
		for _, tx := range txs {
			t.Logf("journal: %s %s %s -> %s %d %s %s %s", tx.Protocol, tx.Method, tx.From, tx.To, tx.Status, tx.Action, tx.Rule, tx.Detail)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(e.pr.DebugLog(), "External component successfully authenticated") {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway's component never connected to Prosody\ngateway:\n%s\nprosody:\n%s", e.gw.Proc.Tail(40), e.pr.Proc.Tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return e
}

// iwClient is an XMPP client session (mellium) and what it receives.
type iwClient struct {
	s  *xmpp.Session
	in chan iwStanza
}

type iwStanza struct {
	name, from, typ, body, show, status string
}

func (s iwStanza) String() string {
	return fmt.Sprintf("<%s from=%q type=%q body=%q show=%q status=%q>", s.name, s.from, s.typ, s.body, s.show, s.status)
}

// iwLogin logs user in to Prosody directly (STARTTLS, SCRAM-SHA-1), binds
// a resource and sends initial presence.
func iwLogin(ctx context.Context, t *testing.T, pr *h.Prosody, user, password string) *iwClient {
	t.Helper()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", pr.C2S)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{ServerName: iwXMPPDomain, RootCAs: pr.Cert.Pool}
	s, err := xmpp.NewClientSession(ctx, jid.MustParse(user+"@"+iwXMPPDomain), conn,
		xmpp.StartTLS(conf), xmpp.SASL("", password, sasl.ScramSha1), xmpp.BindResource())
	if err != nil {
		conn.Close()
		t.Fatalf("login %s: %v", user, err)
	}
	c := &iwClient{s: s, in: make(chan iwStanza, 256)}
	go s.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		var v struct {
			From   string `xml:"from,attr"`
			Type   string `xml:"type,attr"`
			Body   string `xml:"body"`
			Show   string `xml:"show"`
			Status string `xml:"status"`
		}
		if xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&v) == nil {
			select {
			case c.in <- iwStanza{start.Name.Local, v.From, v.Type, v.Body, v.Show, v.Status}:
			default:
			}
		}
		return nil
	}))
	t.Cleanup(func() { s.Close(); s.Conn().Close() })
	// The roster first: a resource that asked for it is one Prosody tells
	// of subscription changes (RFC 6121 section 2.1.6).
	roster := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: "jabber:iq:roster", Local: "query"}})
	if err := s.Send(ctx, stanza.IQ{Type: stanza.GetIQ}.Wrap(roster)); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	return c
}

// wait returns the first stanza that match accepts, skipping others.
func (c *iwClient) wait(t *testing.T, what string, match func(iwStanza) bool) iwStanza {
	t.Helper()
	deadline := time.After(15 * time.Second)
	var seen []string
	for {
		select {
		case s := <-c.in:
			if match(s) {
				return s
			}
			seen = append(seen, s.String())
		case <-deadline:
			t.Fatalf("juliet never got %s; got:\n%s", what, strings.Join(seen, "\n"))
		}
	}
}

func (c *iwClient) presence(ctx context.Context, t *testing.T, to, typ string, payload ...xml.TokenReader) {
	t.Helper()
	p := stanza.Presence{Type: stanza.PresenceType(typ)}
	if to != "" {
		p.To = jid.MustParse(to)
	}
	if err := c.s.Send(ctx, p.Wrap(xmlstream.MultiReader(payload...))); err != nil {
		t.Fatal(err)
	}
}

func (c *iwClient) message(ctx context.Context, t *testing.T, to, body string) {
	t.Helper()
	m := struct {
		stanza.Message
		Body string `xml:"body"`
	}{Message: stanza.Message{To: jid.MustParse(to), Type: stanza.ChatMessage}, Body: body}
	if err := c.s.Encode(ctx, m); err != nil {
		t.Fatal(err)
	}
}

func textElement(name, text string) xml.TokenReader {
	return xmlstream.Wrap(xmlstream.Token(xml.CharData(text)), xml.StartElement{Name: xml.Name{Local: name}})
}

// contactStatus polls baresip's address book until juliet's presence
// reads want ("Online", "Busy", "Offline").
func contactStatus(ctx context.Context, t *testing.T, b *h.Baresip, want string) {
	t.Helper()
	var last string
	for {
		r, err := b.Command(ctx, "contacts", "")
		if err == nil {
			last = r.Data
			if strings.Contains(r.Data, want) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("baresip never saw juliet %s; contacts: %q\n%s", want, last, b.Proc.Tail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestInterworkSIPAndXMPP: alice on baresip and juliet on XMPP exchange
// messages both ways and see each other's presence both ways, through
// the gateway's SIP adapter and its XMPP component; the journal names both
// protocols' identities.
func TestInterworkSIPAndXMPP(t *testing.T) {
	e := startInterwork(t, trustLoopback)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	juliet := iwLogin(ctx, t, e.pr, "juliet", iwPassword)
	alice := "alice@" + iwSIPDomain

	b := h.StartBaresip(t, h.BaresipConfig{
		Name: "baresip-alice",
		Account: fmt.Sprintf(`"Alice" <sip:alice@%s>;outbound="sip:%s";regint=60;pubint=0;answermode=manual`,
			iwSIPDomain, e.udp),
		Modules:        []string{"presence.so"},
		Contacts:       fmt.Sprintf("\"Juliet\" <sip:juliet@%s>;presence=p2p\n", iwXMPPDomain),
		Args:           []string{"-s"}, // the SIP trace shows what baresip received
		WaitRegistered: true,
		Timeout:        110 * time.Second,
	})

	// Presence, SIP watching XMPP: baresip subscribes to juliet at start;
	// juliet is asked, allows it, and her presence reaches baresip.
	juliet.wait(t, "alice's subscription request", func(s iwStanza) bool {
		return s.name == "presence" && s.typ == "subscribe" && s.from == alice
	})
	// Pending until she allows it (the trace shows what baresip received).
	if _, err := b.Proc.WaitLog(ctx, regexp.MustCompile(`Subscription-State: pending;expires=`)); err != nil {
		t.Fatalf("no pending NOTIFY before juliet's approval: %v", err)
	}
	juliet.presence(ctx, t, alice, "subscribed")
	contactStatus(ctx, t, b, "Online")
	if _, err := b.Proc.WaitLog(ctx, regexp.MustCompile(`Subscription-State: active;expires=`)); err != nil {
		t.Fatalf("no active NOTIFY after juliet's approval: %v", err)
	}
	juliet.presence(ctx, t, "", "", textElement("show", "dnd"), textElement("status", "in a meeting"))
	contactStatus(ctx, t, b, "Busy")

	// Messages, SIP to XMPP.
	if r, err := b.Command(ctx, "message", "wherefore art thou, juliet"); err != nil || !r.OK {
		t.Fatalf("baresip message: %+v %v", r, err)
	}
	m := juliet.wait(t, "alice's message", func(s iwStanza) bool { return s.name == "message" && s.body != "" })
	if m.body != "wherefore art thou, juliet" || !strings.HasPrefix(m.from, alice) || m.typ == "error" {
		t.Fatalf("juliet got %s", m)
	}

	// Messages, XMPP to SIP: to alice's phone, where she registered.
	juliet.message(ctx, t, alice, "on the balcony, alice")
	if _, err := b.Proc.WaitLog(ctx, regexp.MustCompile(`on the balcony, alice`)); err != nil {
		t.Fatalf("baresip never got juliet's message: %v\n%s", err, b.Proc.Tail(40))
	}

	// A message for a SIP user nobody can reach comes back as an error
	// (RFC 7247 section 7: SIP 404 is item-not-found).
	juliet.message(ctx, t, "nobody@"+iwSIPDomain, "anyone there?")
	juliet.wait(t, "the error for nobody", func(s iwStanza) bool {
		return s.name == "message" && s.typ == "error" && s.from == "nobody@"+iwSIPDomain
	})

	// Presence, XMPP watching SIP: juliet subscribes to alice; the gateway
	// subscribes to alice's phone, which allows it and notifies.
	if r, err := b.Command(ctx, "presence_online", ""); err != nil || !r.OK { // baresip starts "unknown"
		t.Fatalf("baresip presence_online: %+v %v", r, err)
	}
	juliet.presence(ctx, t, alice, "subscribe")
	juliet.wait(t, "alice's approval", func(s iwStanza) bool {
		return s.name == "presence" && s.typ == "subscribed" && s.from == alice
	})
	juliet.wait(t, "alice available", func(s iwStanza) bool {
		return s.name == "presence" && s.typ == "" && strings.HasPrefix(s.from, alice)
	})
	if r, err := b.Command(ctx, "presence_offline", ""); err != nil || !r.OK {
		t.Fatalf("baresip presence_offline: %+v %v", r, err)
	}
	juliet.wait(t, "alice unavailable", func(s iwStanza) bool {
		return s.name == "presence" && s.typ == "unavailable" && strings.HasPrefix(s.from, alice)
	})

	// The journal has each message on both sides, with both identities.
	txs := iwTransactions(ctx, t, e.gw)
	find := func(what string, f func(core.Transaction) bool) core.Transaction {
		t.Helper()
		for _, tx := range txs {
			if f(tx) {
				return tx
			}
		}
		var all []string
		for _, tx := range txs {
			all = append(all, fmt.Sprintf("%s %s %s->%s %d %s", tx.Protocol, tx.Method, tx.From, tx.To, tx.Status, tx.Detail))
		}
		t.Fatalf("no journal record of %s in:\n%s", what, strings.Join(all, "\n"))
		return core.Transaction{}
	}
	find("alice's MESSAGE on the SIP side", func(tx core.Transaction) bool {
		return tx.Protocol == "sip" && tx.Method == "MESSAGE" && tx.Status == 200 && tx.From == "alice@"+iwSIPDomain &&
			strings.Contains(tx.Detail, "peer xmpp from alice@"+iwSIPDomain+" to juliet@"+iwXMPPDomain)
	})
	find("juliet's MESSAGE on the SIP side", func(tx core.Transaction) bool {
		return tx.Protocol == "sip" && tx.Method == "MESSAGE" && tx.Status == 200 && strings.HasPrefix(tx.From, "juliet@"+iwXMPPDomain) &&
			strings.Contains(tx.Detail, "to alice@"+iwSIPDomain)
	})
	find("alice's message on the XMPP side", func(tx core.Transaction) bool {
		return tx.Protocol == "xmpp" && strings.HasPrefix(tx.Method, "message") && strings.Contains(tx.To, "juliet@"+iwXMPPDomain) &&
			strings.Contains(tx.From, "alice@"+iwSIPDomain)
	})
	find("juliet's message on the XMPP side", func(tx core.Transaction) bool {
		return tx.Protocol == "xmpp" && strings.HasPrefix(tx.Method, "message") && tx.To == "sip:alice@"+iwSIPDomain &&
			strings.Contains(tx.From, "juliet@"+iwXMPPDomain)
	})
	find("the SUBSCRIBE to alice's phone", func(tx core.Transaction) bool {
		return tx.Protocol == "sip" && tx.Method == "SUBSCRIBE" && tx.Status < 300 && strings.Contains(tx.Detail, "from juliet@"+iwXMPPDomain)
	})

	// The component's capture policy kept both messages, with both
	// protocols' identities.
	db, err := sql.Open("sqlite", filepath.Join(e.gw.DataDir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, want := range [][3]string{
		{"sip:alice@" + iwSIPDomain, "xmpp:juliet@" + iwXMPPDomain, "wherefore art thou, juliet"},
		{"xmpp:juliet@" + iwXMPPDomain + "/", "sip:alice@" + iwSIPDomain, "on the balcony, alice"},
	} {
		var from, to string
		if err := db.QueryRowContext(ctx, "SELECT from_party, to_party FROM messages WHERE body = ?", want[2]).Scan(&from, &to); err != nil {
			t.Fatalf("message %q not captured: %v", want[2], err)
		}
		if !strings.HasPrefix(from, want[0]) || to != want[1] {
			t.Errorf("message %q captured from %q to %q, want %s... to %s", want[2], from, to, want[0], want[1])
		}
	}
}

func iwTransactions(ctx context.Context, t *testing.T, g *h.Gateway) []core.Transaction {
	t.Helper()
	db := filepath.Join(g.DataDir, "journal.db")
	var out []core.Transaction
	// The journal writes in batches: wait until the last NOTIFY is there.
	deadline := time.Now().Add(10 * time.Second)
	for {
		txs, err := journal.QueryTransactions(ctx, db, journal.TxFilter{Limit: 10000})
		if err == nil {
			out = txs
			for _, tx := range txs {
				if tx.Method == "NOTIFY" && tx.Protocol == "sip" && strings.Contains(tx.Detail, "peer xmpp from alice@") {
					return out
				}
			}
		}
		if time.Now().After(deadline) {
			return out
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// iwMessage407 is a sipp UAC that sends one MESSAGE to juliet through the
// gateway without credentials and expects the digest challenge.
const iwMessage407 = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="MESSAGE to the bridge, challenged">
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:juliet@example.test SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:mallory@[local_ip]>;tag=[pid]m[call_number]
      To: <sip:juliet@example.test>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

      let me in
    ]]>
  </send>
  <recv response="407" />
</scenario>
`

// TestInterworkRefused: the security stages judge interworked traffic: a
// SIP MESSAGE to an XMPP user from a source that must authenticate is
// challenged and never reaches Prosody, and the journal says which rule
// decided, with both identities.
func TestInterworkRefused(t *testing.T) {
	// Only 127.0.0.1 is trusted by the digest stage; mallory sends from
	// 127.0.0.2.
	e := startInterwork(t, `policies:
  auth: {trusted: [127.0.0.1/32]}
  ratelimit: {trusted: [127.0.0.0/8]}
`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	juliet := iwLogin(ctx, t, e.pr, "juliet", iwPassword)
	r := h.RunSipp(t, ctx, h.SippConfig{Name: "sipp-mallory", ScenarioXML: iwMessage407, Remote: e.udp, IP: "127.0.0.2",
		Calls: 1, Timeout: 20 * time.Second})
	if !r.OK() {
		t.Fatalf("MESSAGE without credentials was not challenged: %s", r)
	}
	select {
	case s := <-juliet.in:
		if s.name == "message" {
			t.Fatalf("juliet got %s", s)
		}
	case <-time.After(time.Second):
	}
	if strings.Contains(e.pr.DebugLog(), "let me in") {
		t.Fatal("the challenged message reached Prosody")
	}
	db := filepath.Join(e.gw.DataDir, "journal.db")
	deadline := time.Now().Add(10 * time.Second)
	for {
		txs, _ := journal.QueryTransactions(ctx, db, journal.TxFilter{Method: "MESSAGE", Rule: "auth/challenge"})
		if len(txs) == 1 && txs[0].From == "mallory@127.0.0.2" && txs[0].To == "juliet@"+iwXMPPDomain && txs[0].Status == 407 &&
			strings.HasPrefix(txs[0].Src, "127.0.0.2:") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal of the challenge: %+v", txs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
