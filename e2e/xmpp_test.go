package e2e

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
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
	"github.com/ucgate/ucgate/protocols/xmpp/wire"
)

// xgw is a gateway with the XMPP proxy in front of a real Prosody.
type xgw struct {
	*h.Gateway
	pr *h.Prosody
	// starttls and direct are the internet zone's listeners (TLS
	// required); lan is a STARTTLS listener of a zone whose tls_required
	// is false; office one that allows plain streams.
	starttls, direct, lan, office string
	cert                          *h.TestCert
}

var xmppUsers = map[string]string{"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}

// startXMPPGW starts Prosody and a gateway whose proxy relays to it.
// proxyExtra is added under xmpp.proxy, rest at the top level.
func startXMPPGW(t testing.TB, pc h.ProsodyConfig, proxyExtra, rest string) *xgw {
	t.Helper()
	if pc.Users == nil {
		pc.Users = xmppUsers
	}
	g := &xgw{pr: h.StartProsody(t, pc), cert: h.NewTestCert(t, "example.test")}
	g.starttls = h.HostPort("127.0.0.1", h.FreeTCPPort(t))
	g.direct = h.HostPort("127.0.0.1", h.FreeTCPPort(t))
	g.lan = h.HostPort("127.0.0.1", h.FreeTCPPort(t))
	g.office = h.HostPort("127.0.0.1", h.FreeTCPPort(t))
	sip := h.HostPort("127.0.0.1", h.FreePort(t, "udp"))
	// proxyExtra may name the upstream itself, with {{C2S}}, {{C2STLS}} and
	// {{PROSODY_CA}} for Prosody's ports and certificate.
	upstream := fmt.Sprintf("    upstream: {address: %q}\n", g.pr.C2S)
	if strings.Contains(proxyExtra, "upstream:") {
		upstream = ""
		proxyExtra = strings.NewReplacer("{{C2S}}", g.pr.C2S, "{{C2STLS}}", g.pr.C2STLS, "{{PROSODY_CA}}", g.pr.Cert.CertFile, "{{OTHER_CA}}", g.cert.CertFile).Replace(proxyExtra)
	}
	yaml := fmt.Sprintf(`admin:
  listen: ""
sip:
  listeners:
    - {zone: internet, transport: udp, listen: "%s"}
xmpp:
  proxy:
    enabled: true
    domains: [example.test]
    tls: {cert: %q, key: %q}
    listeners:
      - {listen: "%s", mode: starttls, zone: internet}
      - {listen: "%s", mode: direct_tls, zone: internet}
      - {listen: "%s", mode: starttls, zone: lan, tls_required: false}
      - {listen: "%s", mode: starttls, zone: office, tls_required: false}
%s%s%s`, sip, g.cert.CertFile, g.cert.KeyFile, g.starttls, g.direct, g.lan, g.office, upstream, proxyExtra, rest)
	g.Gateway = h.StartGateway(t, h.GatewayConfig{YAML: yaml, UDP: []string{sip}, TCP: []string{g.starttls, g.direct}})
	return g
}

// xclient is a mellium client session and what it receives.
type xclient struct {
	s  *xmpp.Session
	in chan xin
}

type xin struct {
	name, from, typ, body string
}

type xmsg struct {
	stanza.Message
	Body string `xml:"body"`
}

// xlogin logs user in through addr from the local address local, over
// STARTTLS or direct TLS, with SCRAM-SHA-1, binds a resource and sends
// initial presence.
func xlogin(ctx context.Context, g *xgw, addr, local, user string, direct bool) (*xclient, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conf := &tls.Config{ServerName: "example.test", RootCAs: g.cert.Pool}
	var conn net.Conn
	var err error
	features := []xmpp.StreamFeature{xmpp.SASL("", xmppUsers[user], sasl.ScramSha1), xmpp.BindResource()}
	if direct {
		conn, err = (&tls.Dialer{NetDialer: &d, Config: conf}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
		features = append([]xmpp.StreamFeature{xmpp.StartTLS(conf)}, features...)
	}
	if err != nil {
		return nil, err
	}
	s, err := xmpp.NewClientSession(ctx, jid.MustParse(user+"@example.test"), conn, features...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &xclient{s: s, in: make(chan xin, 256)}
	go s.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		var v struct {
			From string `xml:"from,attr"`
			Type string `xml:"type,attr"`
			Body string `xml:"body"`
		}
		if xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&v) == nil {
			select {
			case c.in <- xin{start.Name.Local, v.From, v.Type, v.Body}:
			default:
			}
		}
		return nil
	}))
	if err := s.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *xclient) close() { c.s.Close(); c.s.Conn().Close() }

// wait returns the first stanza received that match accepts.
func (c *xclient) wait(t *testing.T, what string, match func(xin) bool) xin {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case x := <-c.in:
			if match(x) {
				return x
			}
		case <-deadline:
			t.Fatalf("no %s received", what)
		}
	}
}

// chat logs alice and bob in from 127.0.0.1 and checks that a message
// and a directed presence from alice reach bob.
func chat(t *testing.T, g *xgw, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bob, err := xlogin(ctx, g, g.direct, "127.0.0.1", "bob", true)
	if err != nil {
		t.Fatalf("bob (direct TLS) through the proxy: %v", err)
	}
	defer bob.close()
	alice, err := xlogin(ctx, g, g.starttls, "127.0.0.1", "alice", false)
	if err != nil {
		t.Fatalf("alice (STARTTLS) through the proxy: %v", err)
	}
	defer alice.close()
	if err := alice.s.Send(ctx, stanza.Presence{To: bob.s.LocalAddr()}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	bob.wait(t, "presence from alice", func(x xin) bool { return x.name == "presence" && strings.HasPrefix(x.from, "alice@example.test/") })
	body := "hello bob " + tag
	if err := alice.s.Encode(ctx, xmsg{Message: stanza.Message{To: jid.MustParse("bob@example.test"), Type: stanza.ChatMessage}, Body: body}); err != nil {
		t.Fatal(err)
	}
	bob.wait(t, "message from alice", func(x xin) bool { return x.name == "message" && x.body == body })
}

func xtxs(t *testing.T, g *xgw, f journal.TxFilter, want func([]core.Transaction) bool) []core.Transaction {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := journal.QueryTransactions(ctx, filepath.Join(g.DataDir, "journal.db"), f)
		cancel()
		if err == nil && want(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal %+v: %d records (%v), not what the test wants: %+v", f, len(out), err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestXMPPProxyChat: clients log in to Prosody through the proxy (STARTTLS
// and direct TLS, SCRAM-SHA-1), exchange a message and presence; the
// journal has every login with its TLS version and cipher.
func TestXMPPProxyChat(t *testing.T) {
	g := startXMPPGW(t, h.ProsodyConfig{}, "    capture: {enabled: true, body: true}\n", trustLoopback)
	chat(t, g, "1")
	// A reload swaps the pipeline under the proxy; clients go on.
	if err := g.Proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if _, err := g.Proc.WaitLog(rctx, regexp.MustCompile(`reloaded`)); err != nil {
		t.Fatalf("no reload: %v", err)
	}
	chat(t, g, "2")
	logins := xtxs(t, g, journal.TxFilter{Method: "login"}, func(txs []core.Transaction) bool { return len(txs) >= 2 })
	for _, tx := range logins {
		if tx.Protocol != "xmpp" || !tx.Encrypted || !strings.Contains(tx.Detail, "TLS 1.") || !strings.Contains(tx.Detail, "mechanism=SCRAM-SHA-1") {
			t.Errorf("login record %+v", tx)
		}
	}
	// Every stream, when it ends: source, account, TLS version and cipher.
	xtxs(t, g, journal.TxFilter{Method: "stream"}, func(txs []core.Transaction) bool {
		n := 0
		for _, tx := range txs {
			if tx.Encrypted && strings.HasPrefix(tx.Src, "127.0.0.1:") && (tx.From == "alice@example.test" || tx.From == "bob@example.test") &&
				regexp.MustCompile(`^TLS 1\.[23] TLS_[A-Z0-9_]+ stanzas=[0-9]+$`).MatchString(tx.Detail) {
				n++
			}
		}
		return n >= 4
	})
	// The capture policy kept the message, with its body.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var from, to, body string
		db, err := sql.Open("sqlite", filepath.Join(g.DataDir, "journal.db"))
		if err != nil {
			t.Fatal(err)
		}
		err = db.QueryRow("SELECT from_party, to_party, body FROM messages WHERE body = ?", "hello bob 1").Scan(&from, &to, &body)
		db.Close()
		if err == nil {
			if from != "alice@example.test" || to != "bob@example.test" {
				t.Errorf("captured from %q to %q", from, to)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("message not captured: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestXMPPProxyUpstreamTLS: the proxy's own stream to the server is
// encrypted too, with STARTTLS and with direct TLS, the server's
// certificate checked against its CA and the stream's domain.
func TestXMPPProxyUpstreamTLS(t *testing.T) {
	for _, mode := range []string{"starttls", "direct_tls"} {
		t.Run(mode, func(t *testing.T) {
			addr := "{{C2S}}"
			if mode == "direct_tls" {
				addr = "{{C2STLS}}"
			}
			g := startXMPPGW(t, h.ProsodyConfig{RequireEncryption: true},
				fmt.Sprintf("    upstream: {address: %q, tls: %s, ca: %q}\n", addr, mode, "{{PROSODY_CA}}"), trustLoopback)
			chat(t, g, mode)
		})
	}
	// A server certificate that does not chain to the CA: the client's
	// stream ends with <remote-connection-failed/>, nothing is relayed.
	g := startXMPPGW(t, h.ProsodyConfig{RequireEncryption: true}, "    upstream: {address: \"{{C2STLS}}\", tls: direct_tls, ca: \"{{OTHER_CA}}\"}\n", trustLoopback)
	s := dialRaw(t, g.direct, "127.0.0.1", true)
	s.send(t, xheader)
	if cond := s.streamError(); cond != "remote-connection-failed" {
		t.Fatalf("unverified server: %q, want remote-connection-failed", cond)
	}
	xtxs(t, g, journal.TxFilter{Rule: "xmpp/upstream"}, func(txs []core.Transaction) bool { return len(txs) >= 1 })
}

// rawStream is a hand-driven client stream: what a hostile client sends.
type rawStream struct {
	c net.Conn
	r *wire.Reader
}

func dialRaw(t testing.TB, addr, local string, direct bool) *rawStream {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if direct {
		c, err = tls.DialWithDialer(&d, "tcp", addr, &tls.Config{ServerName: "example.test", InsecureSkipVerify: true}) // #nosec G402 -- the test's gateway
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, local, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	return &rawStream{c: c, r: wire.NewReader(c, wire.Limits{MaxSize: 1 << 20, MaxDepth: 64, MaxAttrs: 256})}
}

const xheader = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.test' version='1.0'>`

func (s *rawStream) send(t testing.TB, data string) {
	t.Helper()
	if _, err := io.WriteString(s.c, data); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// until reads elements until one is name in ns (returned) or the stream
// ends with an error (returned as the condition, with the element nil).
func (s *rawStream) until(ns, name string) (*wire.Element, string) {
	for {
		it, err := s.r.Next()
		if err != nil {
			return nil, "eof:" + err.Error()
		}
		if it.Kind != wire.KindElement {
			continue
		}
		if it.El.Is(wire.NSStream, "error") {
			for _, c := range it.El.Children {
				if c.Name.Space == "urn:ietf:params:xml:ns:xmpp-streams" && c.Name.Local != "text" {
					return nil, c.Name.Local
				}
			}
			return nil, "error?"
		}
		if it.El.Is(ns, name) {
			return it.El, ""
		}
	}
}

// saslOutcome reads until the server's SASL success or failure and
// returns which, or why the stream ended.
func (s *rawStream) saslOutcome() string {
	for {
		it, err := s.r.Next()
		if err != nil {
			return "eof:" + err.Error()
		}
		if it.Kind == wire.KindElement && it.El.Name.Space == "urn:ietf:params:xml:ns:xmpp-sasl" &&
			(it.El.Name.Local == "success" || it.El.Name.Local == "failure") {
			return it.El.Name.Local
		}
		if it.Kind == wire.KindElement && it.El.Is(wire.NSStream, "error") {
			return "stream error"
		}
	}
}

// streamError reads until the stream error and returns its condition.
func (s *rawStream) streamError() string {
	_, cond := s.until("-", "-")
	return cond
}

// login authenticates user with PLAIN on a direct TLS stream and binds.
func (s *rawStream) login(t testing.TB, user string) {
	t.Helper()
	s.send(t, xheader)
	if _, cond := s.until(wire.NSStream, "features"); cond != "" {
		t.Fatalf("features: %s", cond)
	}
	cred := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + xmppUsers[user]))
	s.send(t, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"+cred+"</auth>")
	if _, cond := s.until("urn:ietf:params:xml:ns:xmpp-sasl", "success"); cond != "" {
		t.Fatalf("auth: %s", cond)
	}
	s.send(t, xheader)
	if _, cond := s.until(wire.NSStream, "features"); cond != "" {
		t.Fatalf("features after auth: %s", cond)
	}
	s.send(t, "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>raw</resource></bind></iq>")
	if _, cond := s.until("jabber:client", "iq"); cond != "" {
		t.Fatalf("bind: %s", cond)
	}
}

// refusedAtConnect reports whether a new connection from local to the
// direct TLS listener at addr is closed before its TLS handshake ends
// (the blacklist at accept drops it without a byte).
func refusedAtConnect(addr, local string) bool {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(&d, "tcp", addr, &tls.Config{ServerName: "example.test", InsecureSkipVerify: true}) // #nosec G402 -- the test's gateway
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// TestXMPPProxyTLSRequired: a plain stream in a zone requiring TLS is
// offered only STARTTLS (required) and refused with <policy-violation/>
// when it goes on without; the tlsrequired policy requires it for the
// lan zone although its listener does not; a zone that allows plain
// streams relays them.
func TestXMPPProxyTLSRequired(t *testing.T) {
	g := startXMPPGW(t, h.ProsodyConfig{}, "", trustLoopback+"  tlsrequired:\n    zones:\n      lan: {required: true}\n")
	auth := "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
		base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alice-secret")) + "</auth>"
	for _, addr := range []string{g.starttls, g.lan} {
		s := dialRaw(t, addr, "127.0.0.1", false)
		s.send(t, xheader)
		f, cond := s.until(wire.NSStream, "features")
		if cond != "" || f.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls") == nil ||
			f.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls").Child("urn:ietf:params:xml:ns:xmpp-tls", "required") == nil {
			t.Fatalf("%s: features %v %s: want STARTTLS required", addr, f, cond)
		}
		if f.Child("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms") != nil {
			t.Errorf("%s: SASL offered on a plain stream that must be encrypted", addr)
		}
		s.send(t, auth)
		if cond := s.streamError(); cond != "policy-violation" {
			t.Errorf("%s: plain auth answered %q, want policy-violation", addr, cond)
		}
	}
	xtxs(t, g, journal.TxFilter{Rule: "xmpp/tls-required"}, func(txs []core.Transaction) bool { return len(txs) >= 2 })

	// The office zone allows plain streams: STARTTLS is offered, not
	// required, and a plain login works.
	s := dialRaw(t, g.office, "127.0.0.1", false)
	s.send(t, xheader)
	f, cond := s.until(wire.NSStream, "features")
	if cond != "" || f.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls") == nil || f.Child("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms") == nil {
		t.Fatalf("office features %v %s", f, cond)
	}
	s.send(t, auth)
	if _, cond := s.until("urn:ietf:params:xml:ns:xmpp-sasl", "success"); cond != "" {
		t.Fatalf("plain login in the office zone: %s", cond)
	}
	chat(t, g, "after the refusals")
}

// billionLaughs is the classic entity expansion, before the stream header.
var billionLaughs = func() string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">`)
	prev := "lol"
	for i := 2; i <= 9; i++ {
		name := fmt.Sprintf("lol%d", i)
		b.WriteString(`<!ENTITY ` + name + ` "` + strings.Repeat("&"+prev+";", 10) + `">`)
		prev = name
	}
	b.WriteString(`]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.test' version='1.0'><message><body>&lol9;</body></message>`)
	return b.String()
}()

// TestXMPPProxyHostile: hostile input through the proxy is refused with
// the right stream error, journaled with its rule, the source blocked
// where configured (flood, restricted XML), and Prosody and a client
// logged in before the attacks are unaffected.
func TestXMPPProxyHostile(t *testing.T) {
	g := startXMPPGW(t, h.ProsodyConfig{}, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bob, err := xlogin(ctx, g, g.direct, "127.0.0.1", "bob", true)
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	defer bob.close()

	for i, tc := range []struct {
		name    string
		send    []string // written in turn; "" waits for the features
		cond    string
		rule    string
		blocked bool
	}{
		{"billion laughs", []string{billionLaughs}, "restricted-xml", "xmpp/restricted-xml", true},
		{"external entity DOCTYPE", []string{xheader, "", `<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><message>&xxe;</message>`}, "restricted-xml", "xmpp/restricted-xml", true},
		{"processing instruction", []string{xheader, "", `<?php evil() ?>`}, "restricted-xml", "xmpp/restricted-xml", true},
		{"entity reference", []string{xheader, "", `<message><body>&xxe;</body></message>`}, "restricted-xml", "xmpp/restricted-xml", true},
		{"deep nesting", []string{xheader, "", "<message>" + strings.Repeat("<a>", 200)}, "policy-violation", "xmpp/depth", false},
		{"oversized stanza", []string{xheader, "", "<message><body>" + strings.Repeat("x", 70000) + "</body></message>"}, "policy-violation", "xmpp/size", false},
		{"many attributes", []string{xheader, "", "<message" + manyAttrs(100) + "/>"}, "policy-violation", "xmpp/attributes", false},
		{"not well-formed", []string{xheader, "", "<message><body></message>"}, "not-well-formed", "xmpp/not-well-formed", false},
		{"stanza before auth", []string{xheader, "", "<message to='bob@example.test'><body>hi</body></message>"}, "not-authorized", "xmpp/unauthenticated", false},
		{"iq before auth", []string{xheader, "", "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>"}, "not-authorized", "xmpp/unauthenticated", false},
		{"unserved domain", []string{strings.Replace(xheader, "example.test", "other.test", 1)}, "host-unknown", "xmpp/host-unknown", false},
		{"many small elements", []string{xheader, "", "<message>" + strings.Repeat("<a/>", 3000) + "</message>"}, "policy-violation", "xmpp/size", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := fmt.Sprintf("127.0.0.%d", 20+i)
			s := dialRaw(t, g.direct, src, true)
			for _, part := range tc.send {
				if part == "" {
					if _, cond := s.until(wire.NSStream, "features"); cond != "" {
						t.Fatalf("features: %s", cond)
					}
					continue
				}
				s.send(t, part)
			}
			if cond := s.streamError(); cond != tc.cond {
				t.Fatalf("stream error %q, want %q", cond, tc.cond)
			}
			xtxs(t, g, journal.TxFilter{Rule: tc.rule, Src: src}, func(txs []core.Transaction) bool { return len(txs) >= 1 })
			if got := refusedAtConnect(g.direct, src); got != tc.blocked {
				t.Errorf("source blocked: %v, want %v", got, tc.blocked)
			}
		})
	}

	t.Run("invalid JID", func(t *testing.T) {
		s := dialRaw(t, g.direct, "127.0.0.60", true)
		s.login(t, "carol")
		s.send(t, "<message to='a@b@c' id='bad1' type='chat'><body>x</body></message>")
		el, cond := s.until("jabber:client", "message")
		if cond != "" || el.Get("type") != "error" || el.Get("id") != "bad1" ||
			el.Child("jabber:client", "error") == nil || el.Child("jabber:client", "error").Child("urn:ietf:params:xml:ns:xmpp-stanzas", "jid-malformed") == nil {
			t.Fatalf("answer %v %s: want a jid-malformed stanza error", el, cond)
		}
		// The stream goes on.
		s.send(t, "<iq type='get' id='p1' to='example.test'><ping xmlns='urn:xmpp:ping'/></iq>")
		if el, cond := s.until("jabber:client", "iq"); cond != "" || el.Get("id") != "p1" || el.Get("type") != "result" {
			t.Fatalf("ping after the refusal: %v %s", el, cond)
		}
		xtxs(t, g, journal.TxFilter{Rule: "xmpp/jid-malformed"}, func(txs []core.Transaction) bool { return len(txs) >= 1 })
		s.send(t, "<message from='bob@example.test/x' to='alice@example.test'><body>spoof</body></message>")
		if cond := s.streamError(); cond != "invalid-from" {
			t.Fatalf("spoofed from: %q, want invalid-from", cond)
		}
	})

	t.Run("stanza flood", func(t *testing.T) {
		const src = "127.0.0.61"
		s := dialRaw(t, g.direct, src, true)
		s.login(t, "carol")
		go func() {
			var b strings.Builder
			for i := range 1000 {
				fmt.Fprintf(&b, "<presence to='bob@example.test' id='f%d'/>", i)
			}
			_, _ = io.WriteString(s.c, b.String())
		}()
		if cond := s.streamError(); cond != "policy-violation" {
			t.Fatalf("flood: stream error %q, want policy-violation", cond)
		}
		xtxs(t, g, journal.TxFilter{Rule: "xmpp/flood", Src: src}, func(txs []core.Transaction) bool { return len(txs) >= 1 })
		if !refusedAtConnect(g.direct, src) {
			t.Errorf("flooding source not blocked")
		}
	})

	// Prosody and bob are unaffected: a new client reaches bob.
	if !g.pr.Alive() {
		t.Fatal("prosody is down")
	}
	alice, err := xlogin(ctx, g, g.starttls, "127.0.0.1", "alice", false)
	if err != nil {
		t.Fatalf("alice after the attacks: %v", err)
	}
	defer alice.close()
	if err := alice.s.Encode(ctx, xmsg{Message: stanza.Message{To: jid.MustParse("bob@example.test"), Type: stanza.ChatMessage}, Body: "still here"}); err != nil {
		t.Fatal(err)
	}
	bob.wait(t, "message after the attacks", func(x xin) bool { return x.name == "message" && x.body == "still here" })
}

func manyAttrs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " a%d='x'", i)
	}
	return b.String()
}

// TestXMPPProxyBruteForce: SASL failures the server answers are counted
// by the bruteforce stage; a source that fails too often, or tries many
// accounts, is blocked at connect.
func TestXMPPProxyBruteForce(t *testing.T) {
	g := startXMPPGW(t, h.ProsodyConfig{}, "", "policies:\n  bruteforce: {source_failures: 3, harvest_users: 100, user_failures: 0}\n")
	const src = "127.0.0.70"
	for i := range 3 {
		s := dialRaw(t, g.direct, src, true)
		s.send(t, xheader)
		if _, cond := s.until(wire.NSStream, "features"); cond != "" {
			t.Fatalf("attempt %d: features: %s", i, cond)
		}
		cred := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong"))
		s.send(t, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"+cred+"</auth>")
		if el, cond := s.until("urn:ietf:params:xml:ns:xmpp-sasl", "failure"); cond != "" || el == nil {
			t.Fatalf("attempt %d: want a SASL failure, got %s", i, cond)
		}
		s.c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !refusedAtConnect(g.direct, src) {
		if time.Now().After(deadline) {
			t.Fatal("source not blocked after 3 SASL failures")
		}
		time.Sleep(100 * time.Millisecond)
	}
	xtxs(t, g, journal.TxFilter{Rule: "xmpp/sasl-failure", Src: src}, func(txs []core.Transaction) bool { return len(txs) == 3 })

	// Harvesting: one source, many accounts. bob and carol are tried
	// without an initial response, the credentials in the <response/> to
	// the empty challenge: the proxy still reads the usernames.
	g2 := startXMPPGW(t, h.ProsodyConfig{}, "", "policies:\n  bruteforce: {source_failures: 100, harvest_users: 3, user_failures: 2}\n")
	const src2 = "127.0.0.71"
	for i, u := range []string{"alice", "bob", "carol"} {
		s := dialRaw(t, g2.direct, src2, true)
		s.send(t, xheader)
		s.until(wire.NSStream, "features")
		cred := base64.StdEncoding.EncodeToString([]byte("\x00" + u + "\x00nope"))
		if i == 0 {
			s.send(t, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"+cred+"</auth>")
		} else {
			s.send(t, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/>")
			if _, cond := s.until("urn:ietf:params:xml:ns:xmpp-sasl", "challenge"); cond != "" {
				t.Fatalf("%s: no empty challenge: %s", u, cond)
			}
			s.send(t, "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"+cred+"</response>")
		}
		if _, cond := s.until("urn:ietf:params:xml:ns:xmpp-sasl", "failure"); cond != "" {
			t.Fatalf("%s: %s", u, cond)
		}
	}
	xtxs(t, g2, journal.TxFilter{Rule: "xmpp/sasl-failure", Src: src2}, func(txs []core.Transaction) bool {
		users := map[string]bool{}
		for _, tx := range txs {
			users[tx.From] = true
		}
		return users["alice@example.test"] && users["bob@example.test"] && users["carol@example.test"]
	})
	deadline = time.Now().Add(10 * time.Second)
	for !refusedAtConnect(g2.direct, src2) {
		if time.Now().After(deadline) {
			t.Fatal("source trying 3 accounts not blocked")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A mechanism whose username the proxy cannot read is neither offered
	// nor relayed.
	s := dialRaw(t, g2.direct, "127.0.0.72", true)
	s.send(t, xheader)
	f, _ := s.until(wire.NSStream, "features")
	if m := f.Child("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms"); m == nil || len(m.Children) == 0 {
		t.Fatalf("features %v: no mechanisms", f)
	} else {
		for _, x := range m.Children {
			if x.Text != "PLAIN" && !strings.HasPrefix(x.Text, "SCRAM-") || strings.HasSuffix(x.Text, "-PLUS") {
				t.Errorf("mechanism %s offered", x.Text)
			}
		}
	}
	s.send(t, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>")
	if el, cond := s.until("urn:ietf:params:xml:ns:xmpp-sasl", "failure"); cond != "" || el.Child("urn:ietf:params:xml:ns:xmpp-sasl", "invalid-mechanism") == nil {
		t.Fatalf("DIGEST-MD5: %v %s, want invalid-mechanism", el, cond)
	}

	// Per account: alice has failed once above (from src2); one more
	// failure from another source reaches user_failures (2), and then
	// her right password is refused from a third source while bob, who
	// failed once only, still logs in from there.
	s.send(t, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong"))+"</auth>")
	if _, cond := s.until("urn:ietf:params:xml:ns:xmpp-sasl", "failure"); cond != "" {
		t.Fatalf("alice's second failure: %s", cond)
	}
	s.c.Close()
	deadline = time.Now().Add(10 * time.Second)
	for {
		s := dialRaw(t, g2.direct, "127.0.0.73", true)
		s.send(t, xheader)
		s.until(wire.NSStream, "features")
		s.send(t, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00"+xmppUsers["alice"]))+"</auth>")
		outcome := s.saslOutcome()
		s.c.Close()
		if outcome == "failure" {
			break // locked out: refused although the password is right
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice not locked out after 2 failures: %s", outcome)
		}
		time.Sleep(200 * time.Millisecond)
	}
	xtxs(t, g2, journal.TxFilter{Rule: "bruteforce/user", Src: "127.0.0.73"}, func(txs []core.Transaction) bool {
		return len(txs) >= 1 && txs[0].From == "alice@example.test"
	})
	s = dialRaw(t, g2.direct, "127.0.0.73", true)
	s.login(t, "bob")
}

// scenarioUASMessage answers one SIP MESSAGE with 200.
const scenarioUASMessage = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAS MESSAGE">
  <recv request="MESSAGE" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
`

// TestXMPPComponentToSIP: ucgate joins a real Prosody as the external
// component sip.example.test; a Prosody user's <message/> to
// x@sip.example.test crosses the core bridge to the SIP adapter and
// reaches a SIP peer (sipp) as a SIP MESSAGE; an unknown domain on the
// component comes back as a stanza error. The component side of the
// journal names both identities.
func TestXMPPComponentToSIP(t *testing.T) {
	pr := h.StartProsody(t, h.ProsodyConfig{Users: xmppUsers, Component: "sip.example.test", ComponentSecret: "component-secret"})
	uas := h.StartSipp(t, h.SippConfig{ScenarioXML: scenarioUASMessage, TraceMsg: true, Timeout: 60 * time.Second})
	sipAddr := h.HostPort("127.0.0.1", h.FreePort(t, "udp"))
	yaml := fmt.Sprintf(`admin:
  listen: ""
sip:
  listeners:
    - {zone: internet, transport: udp, listen: "%s"}
  upstreams:
    - {name: trunk, address: "%s", transport: udp, zone: trunk}
  routes:
    - {default: true, upstreams: [trunk]}
  bridge: {domain: sip.example.test}
xmpp:
  component:
    enabled: true
    server: "%s"
    domain: sip.example.test
    secret: component-secret
    peer_domains: [example.test]
%s`, sipAddr, uas.Addr(), pr.ComponentAddr, trustLoopback)
	g := h.StartGateway(t, h.GatewayConfig{YAML: yaml, UDP: []string{sipAddr}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := g.Proc.WaitLog(ctx, regexp.MustCompile(`component connected`)); err != nil {
		t.Fatalf("component not connected: %v", err)
	}
	alice := directLogin(ctx, t, pr, "alice")
	defer alice.close()
	body := "hello x over the bridge"
	if err := alice.s.Encode(ctx, xmsg{Message: stanza.Message{To: jid.MustParse("x@sip.example.test"), Type: stanza.ChatMessage, ID: "c1"}, Body: body}); err != nil {
		t.Fatal(err)
	}
	res := uas.Wait(ctx)
	if !res.OK() {
		t.Fatalf("sipp UAS: %v", res)
	}
	log, err := os.ReadFile(filepath.Join(uas.Dir(), "messages.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "MESSAGE sip:x@") || !strings.Contains(string(log), body) {
		t.Fatalf("the SIP peer did not get the message:\n%s", log)
	}
	xg := &xgw{Gateway: g}
	xtxs(t, xg, journal.TxFilter{Method: "message", CallID: "c1"}, func(txs []core.Transaction) bool {
		for _, tx := range txs {
			if tx.Protocol == "xmpp" && strings.HasPrefix(tx.From, "xmpp:alice@example.test") && strings.HasSuffix(tx.To, ":x@sip.example.test") && tx.Action == "allow" {
				return true
			}
		}
		return false
	})
	// A message to the component's domain itself has no user: refused.
	if err := alice.s.Encode(ctx, xmsg{Message: stanza.Message{To: jid.MustParse("sip.example.test"), Type: stanza.ChatMessage, ID: "c2"}, Body: "x"}); err != nil {
		t.Fatal(err)
	}
	alice.wait(t, "stanza error", func(x xin) bool { return x.name == "message" && x.typ == "error" })
}

// directLogin logs user in to Prosody itself (no gateway), with STARTTLS.
func directLogin(ctx context.Context, t *testing.T, pr *h.Prosody, user string) *xclient {
	t.Helper()
	g := &xgw{cert: pr.Cert}
	c, err := xlogin(ctx, g, pr.C2S, "127.0.0.1", user, false)
	if err != nil {
		t.Fatalf("%s to prosody: %v", user, err)
	}
	return c
}
