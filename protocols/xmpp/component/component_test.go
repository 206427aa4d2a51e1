package component

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

// recorder is the test's side of the bridge: what the component hands
// it, and the refusal it answers with.
type recorder struct {
	mu     sync.Mutex
	msgs   []core.Message
	pres   []core.Presence
	refuse error
	got    chan struct{}
}

func (r *recorder) DeliverMessage(_ context.Context, m *core.Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, *m)
	err := r.refuse
	r.mu.Unlock()
	r.got <- struct{}{}
	return err
}

func (r *recorder) DeliverPresence(_ context.Context, p *core.Presence) error {
	r.mu.Lock()
	r.pres = append(r.pres, *p)
	err := r.refuse
	r.mu.Unlock()
	r.got <- struct{}{}
	return err
}

// client is a mellium client logged in to Prosody directly.
type client struct {
	s  *xmpp.Session
	in chan string // raw-ish description of each stanza received
}

func login(t *testing.T, addr, user, pass string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s, err := xmpp.NewClientSession(ctx, jid.MustParse(user+"@example.test"), conn,
		xmpp.StartTLS(&tls.Config{ServerName: "example.test", InsecureSkipVerify: true}), // #nosec G402 -- the test's own Prosody
		xmpp.SASL("", pass, sasl.ScramSha1), xmpp.BindResource())
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	c := &client{s: s, in: make(chan string, 64)}
	go s.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		var v struct {
			From  string `xml:"from,attr"`
			Type  string `xml:"type,attr"`
			Body  string `xml:"body"`
			Error struct {
				Conds []struct {
					XMLName xml.Name
				} `xml:",any"`
			} `xml:"error"`
		}
		if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&v); err != nil {
			return nil
		}
		cond := ""
		for _, x := range v.Error.Conds {
			cond += x.XMLName.Local + " "
		}
		c.in <- start.Name.Local + " from=" + v.From + " type=" + v.Type + " body=" + v.Body + " error=" + cond
		return nil
	}))
	t.Cleanup(func() { s.Close(); conn.Close() })
	if err := s.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *client) wait(t *testing.T, substr string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-c.in:
			if strings.Contains(s, substr) {
				return s
			}
		case <-deadline:
			t.Fatalf("nothing with %q received", substr)
		}
	}
}

type message struct {
	stanza.Message
	Body string `xml:"body"`
}

// TestComponentWithProsody joins a real Prosody as sip.example.test and
// carries a message and presence both ways between a Prosody user and the
// bridge, and a refusal back as a stanza error.
func TestComponentWithProsody(t *testing.T) {
	pr := h.StartProsody(t, h.ProsodyConfig{Users: map[string]string{"juliet": "secret"},
		Component: "sip.example.test", ComponentSecret: "s3cret"})
	br := core.NewBridge()
	rec := &recorder{got: make(chan struct{}, 64)}
	br.Serve("sip.example.test", rec)
	cfg := Defaults()
	cfg.Enabled, cfg.Server, cfg.Domain, cfg.Secret, cfg.PeerDomains = true, pr.ComponentAddr, "sip.example.test", "s3cret", []string{"example.test"}
	cfg.Capture = Capture{Enabled: true, Body: true}
	dir := t.TempDir()
	jr, err := journal.Open(journal.Defaults(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer jr.Close()
	comp, err := New(cfg, core.Deps{Bridge: br, Journal: jr})
	if err != nil {
		t.Fatal(err)
	}
	if err := comp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer comp.Close()
	select {
	case <-comp.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("component not accepted by prosody\n%s", pr.Proc.Tail(20))
	}
	if d, ok := br.For("example.test"); !ok || d != core.Deliverer(comp) {
		t.Fatalf("the component does not serve example.test on the bridge")
	}
	juliet := login(t, pr.C2S, "juliet", "secret")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// XMPP -> bridge.
	m := message{Message: stanza.Message{To: jid.MustParse("alice@sip.example.test"), Type: stanza.ChatMessage, ID: "m1"}, Body: "hello alice"}
	if err := juliet.s.Encode(ctx, m); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rec.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the message did not reach the bridge")
	}
	rec.mu.Lock()
	got := rec.msgs[0]
	rec.mu.Unlock()
	if got.Body != "hello alice" || got.From.String() != "juliet@example.test" || got.To.String() != "alice@sip.example.test" || got.ID != "m1" {
		t.Fatalf("bridge got %+v", got)
	}

	// Stanzas between two parties reach the bridge in the order they came.
	for i := range 20 {
		m := message{Message: stanza.Message{To: jid.MustParse("alice@sip.example.test"), Type: stanza.ChatMessage}, Body: fmt.Sprintf("n%d", i)}
		if err := juliet.s.Encode(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		select {
		case <-rec.got:
		case <-time.After(10 * time.Second):
			t.Fatal("the messages did not reach the bridge")
		}
	}
	rec.mu.Lock()
	for i, m := range rec.msgs[1:] {
		if m.Body != fmt.Sprintf("n%d", i) {
			t.Errorf("message %d on the bridge is %q", i, m.Body)
		}
	}
	rec.mu.Unlock()

	// Presence subscription XMPP -> bridge.
	if err := juliet.s.Send(ctx, stanza.Presence{To: jid.MustParse("alice@sip.example.test"), Type: stanza.SubscribePresence}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rec.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription did not reach the bridge")
	}
	rec.mu.Lock()
	p := rec.pres[0]
	rec.mu.Unlock()
	if p.Kind != core.PresenceSubscribe || p.From.String() != "juliet@example.test" || p.To.String() != "alice@sip.example.test" {
		t.Fatalf("bridge got presence %+v", p)
	}

	// Bridge -> XMPP: a message and an availability update.
	if err := comp.DeliverMessage(ctx, &core.Message{From: core.Identity{User: "alice", Domain: "sip.example.test"},
		To: core.Identity{User: "juliet", Domain: "example.test"}, Body: "hi juliet <&>"}); err != nil {
		t.Fatal(err)
	}
	juliet.wait(t, "body=hi juliet <&>")
	if err := comp.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceSubscribed, From: core.Identity{User: "alice", Domain: "sip.example.test"},
		To: core.Identity{User: "juliet", Domain: "example.test"}}); err != nil {
		t.Fatal(err)
	}
	if err := comp.DeliverPresence(ctx, &core.Presence{Kind: core.PresenceUpdate, Available: true, Show: "away",
		From: core.Identity{User: "alice", Domain: "sip.example.test"}, To: core.Identity{User: "juliet", Domain: "example.test"}}); err != nil {
		t.Fatal(err)
	}
	juliet.wait(t, "presence from=alice@sip.example.test")

	// A recipient the bridge's adapter does not know: item-not-found.
	rec.mu.Lock()
	rec.refuse = &core.DeliveryError{Reason: core.ReasonNotFound, Detail: "no such user"}
	rec.mu.Unlock()
	m = message{Message: stanza.Message{To: jid.MustParse("nobody@sip.example.test"), Type: stanza.ChatMessage, ID: "m2"}, Body: "anyone?"}
	if err := juliet.s.Encode(ctx, m); err != nil {
		t.Fatal(err)
	}
	if s := juliet.wait(t, "type=error"); !strings.Contains(s, "item-not-found") {
		t.Fatalf("error = %s, want item-not-found", s)
	}

	// Service discovery and ping of the component's domain are answered;
	// an iq to a user of the domain is not served.
	info := juliet.iq(ctx, t, "sip.example.test", "http://jabber.org/protocol/disco#info", "query")
	if info.Type != "result" || len(info.Query.Identity) != 1 || info.Query.Identity[0].Category != "gateway" ||
		info.Query.Identity[0].Type != "simple" || !slices.Contains(info.Query.features(), "http://jabber.org/protocol/disco#info") {
		t.Fatalf("disco#info of the component: %+v", info)
	}
	if items := juliet.iq(ctx, t, "sip.example.test", "http://jabber.org/protocol/disco#items", "query"); items.Type != "result" {
		t.Fatalf("disco#items of the component: %+v", items)
	}
	if ping := juliet.iq(ctx, t, "sip.example.test", "urn:xmpp:ping", "ping"); ping.Type != "result" {
		t.Fatalf("ping of the component: %+v", ping)
	}
	if user := juliet.iq(ctx, t, "alice@sip.example.test", "http://jabber.org/protocol/disco#info", "query"); user.Type != "error" || user.Error.Cond.XMLName.Local != "service-unavailable" {
		t.Fatalf("disco#info of a user of the domain: %+v", user)
	}
	if roster := juliet.iq(ctx, t, "sip.example.test", "jabber:iq:roster", "query"); roster.Type != "error" || roster.Error.Cond.XMLName.Local != "service-unavailable" {
		t.Fatalf("a roster query to the component: %+v", roster)
	}

	// Delivery refusals of the component itself.
	var de *core.DeliveryError
	err = comp.DeliverMessage(ctx, &core.Message{From: core.Identity{User: "alice", Domain: "sip.example.test"},
		To: core.Identity{User: "x", Domain: "elsewhere.test"}, Body: "x"})
	if !errors.As(err, &de) || de.Reason != core.ReasonNoRoute {
		t.Fatalf("to an unknown domain: %v", err)
	}
	err = comp.DeliverMessage(ctx, &core.Message{From: core.Identity{User: "a b", Domain: "sip.example.test"},
		To: core.Identity{User: "juliet", Domain: "example.test"}, Body: "x"})
	if !errors.As(err, &de) || de.Reason != core.ReasonMalformed {
		t.Fatalf("from an invalid localpart: %v", err)
	}

	// The capture policy kept both interworked messages that crossed, with
	// both protocols' identities, and nothing of the refused ones.
	comp.Close()
	if err := jr.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT from_party, to_party, body FROM messages ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var captured []string
	for rows.Next() {
		var f, to, b string
		if err := rows.Scan(&f, &to, &b); err != nil {
			t.Fatal(err)
		}
		captured = append(captured, f+" > "+to+": "+b)
	}
	julietFull := "xmpp:juliet@example.test/" + juliet.s.LocalAddr().Resourcepart()
	want := []string{julietFull + " > bridge:alice@sip.example.test: hello alice"}
	for i := range 20 {
		want = append(want, fmt.Sprintf("%s > bridge:alice@sip.example.test: n%d", julietFull, i))
	}
	want = append(want, "bridge:alice@sip.example.test > xmpp:juliet@example.test: hi juliet <&>")
	if !slices.Equal(captured, want) {
		t.Fatalf("captured:\n%s\nwant:\n%s", strings.Join(captured, "\n"), strings.Join(want, "\n"))
	}
}

// iqAnswer is what the tests read of an iq's answer.
type iqAnswer struct {
	Type  string  `xml:"type,attr"`
	Query iqQuery `xml:"query"`
	Error struct {
		Cond struct {
			XMLName xml.Name
		} `xml:",any"`
	} `xml:"error"`
}

type iqQuery struct {
	Identity []struct {
		Category string `xml:"category,attr"`
		Type     string `xml:"type,attr"`
	} `xml:"identity"`
	Feature []struct {
		Var string `xml:"var,attr"`
	} `xml:"feature"`
}

func (q iqQuery) features() []string {
	var out []string
	for _, f := range q.Feature {
		out = append(out, f.Var)
	}
	return out
}

// iq sends a get with an empty <local xmlns=ns/> to addr and reads the
// answer.
func (c *client) iq(ctx context.Context, t *testing.T, to, ns, local string) iqAnswer {
	t.Helper()
	payload := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: ns, Local: local}})
	r, err := c.s.SendIQ(ctx, stanza.IQ{To: jid.MustParse(to), Type: stanza.GetIQ}.Wrap(payload))
	if err != nil {
		t.Fatalf("iq %s to %s: %v", ns, to, err)
	}
	defer r.Close()
	var a iqAnswer
	if err := xml.NewTokenDecoder(r).Decode(&a); err != nil {
		t.Fatalf("iq %s to %s: answer: %v", ns, to, err)
	}
	return a
}

func TestConfigValidate(t *testing.T) {
	good := Defaults()
	good.Enabled, good.Server, good.Domain, good.Secret, good.PeerDomains = true, "127.0.0.1:5347", "sip.example.test", "x", []string{"example.test"}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no server", func(c *Config) { c.Server = "" }, "server: must be ip:port"},
		{"bad domain", func(c *Config) { c.Domain = "a@b" }, "domain: must be a domain name"},
		{"two secrets", func(c *Config) { c.SecretFile = "/x" }, "secret: exactly one"},
		{"no peers", func(c *Config) { c.PeerDomains = nil }, "peer_domains: must name"},
		{"own domain as peer", func(c *Config) { c.PeerDomains = []string{"sip.example.test"} }, "must not be the component's own domain"},
		{"body", func(c *Config) { c.MaxBody = 0 }, "max_body"},
	} {
		c := good
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
