package sip

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/ucgate/ucgate/core"
)

// maxHandshake bounds the WebSocket upgrade request read before the
// Origin is checked.
const maxHandshake = 8 << 10

// RuleOrigin is the rule that refuses a WebSocket handshake from a page
// whose Origin the listener does not allow.
const RuleOrigin = "sip/origin"

// errOrigin ends a connection whose handshake was refused.
var errOrigin = errors.New("sip: websocket origin not allowed")

// originListener checks the Origin of every WebSocket handshake on a ws
// or wss listener against its allowed origins before sipgo upgrades it
// (a browser always sends Origin, and a page cannot change it: this keeps
// other sites' pages from using a visitor's browser to reach the
// gateway). A handshake without Origin passes: it is not a browser, and a
// program could claim any Origin anyway; it authenticates like any SIP
// client. One with an Origin not allowed gets 403 and is journaled under
// RuleOrigin. The check fails closed: a listener with no origins
// configured refuses every browser; "*" alone allows any origin.
type originListener struct {
	net.Listener
	a       *Adapter
	l       *listener
	allowed map[string]bool
	any     bool
}

func newOriginListener(inner net.Listener, a *Adapter, l *listener, origins []string) *originListener {
	m := map[string]bool{}
	anyOrigin := false
	for _, o := range origins {
		if o == AnyOrigin {
			anyOrigin = true
		}
		m[normOrigin(o)] = true
	}
	return &originListener{Listener: inner, a: a, l: l, allowed: m, any: anyOrigin}
}

// AnyOrigin, alone in a listener's origins, allows pages from any origin.
const AnyOrigin = "*"

func normOrigin(o string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(o)), "/")
}

func (o *originListener) Accept() (net.Conn, error) {
	c, err := o.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &originConn{Conn: c, ol: o}, nil
}

// originConn reads the handshake on its first Read, checks it, and then
// hands sipgo the bytes it read followed by the rest of the stream.
type originConn struct {
	net.Conn
	ol *originListener

	once sync.Once
	buf  []byte
	err  error
}

func (c *originConn) Read(b []byte) (int, error) {
	c.once.Do(c.check)
	if len(c.buf) > 0 {
		n := copy(b, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(b)
}

// check reads the request head (bounded in size and by the handshake
// deadline sipgo set) and decides on its Origin.
func (c *originConn) check() {
	var head []byte
	tmp := make([]byte, 1024)
	for !bytes.Contains(head, []byte("\r\n\r\n")) {
		if len(head) >= maxHandshake {
			c.err = errOrigin
			c.refuse("oversized handshake")
			return
		}
		n, err := c.Conn.Read(tmp)
		head = append(head, tmp[:n]...)
		if err != nil {
			c.buf, c.err = head, err
			return
		}
	}
	c.buf = head
	origin, ok := originOf(head)
	if !ok || c.ol.any || c.ol.allowed[normOrigin(origin)] {
		return
	}
	c.buf, c.err = nil, errOrigin
	c.refuse(origin)
}

// refuse answers 403, closes the connection and journals it.
func (c *originConn) refuse(detail string) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Conn.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
	c.Conn.Close()
	var src netip.AddrPort
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		src = netip.AddrPortFrom(ta.AddrPort().Addr().Unmap(), ta.AddrPort().Port())
	}
	l := c.ol.l
	m := core.PacketMeta{Src: src, Local: l.addr, Transport: l.transport, Zone: c.ol.a.zoneOf(src, l, l.transport), Conn: true}
	if len(detail) > 100 {
		detail = detail[:100]
	}
	c.ol.a.log.Info("websocket handshake refused", "rule", RuleOrigin, "src", src, "origin", detail)
	c.ol.a.packetRefused(&m, core.Decision{Stage: "sip", Verdict: core.RefuseWith(core.ReasonForbidden, RuleOrigin, detail)})
}

// originOf reads the Origin header of an HTTP request head; ok is false
// when it has none.
func originOf(head []byte) (string, bool) {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
	if _, err := r.ReadLine(); err != nil {
		return "", false
	}
	h, err := r.ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return "", false
	}
	v := h.Values("Origin")
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// validOrigin accepts a serialized web origin: http or https, a host, an
// optional port, nothing else.
func validOrigin(o string) bool {
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" {
		return false
	}
	return !strings.ContainsAny(rest, "/?#@ \t\r\n")
}
