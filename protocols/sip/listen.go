package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ucgate/ucgate/core"
)

// listener is one bound SIP socket and what the adapter knows about it.
type listener struct {
	cfg       Listener
	zone      string
	transport string // lower case: udp, tcp, tls, ws, wss
	addr      netip.AddrPort
	host      string // advertised host for Via, Contact, SDP origin
	port      int
	encrypted bool

	pc net.PacketConn
	ln net.Listener
}

// open binds the listener's socket, wrapped so that the network stages see
// every datagram and every new connection before sipgo parses anything.
func (a *Adapter) open(ctx context.Context, cfg Listener) (*listener, error) {
	l := &listener{cfg: cfg, zone: cfg.Zone, transport: cfg.Transport,
		encrypted: cfg.Transport == "tls" || cfg.Transport == "wss"}
	var lc net.ListenConfig
	switch cfg.Transport {
	case "udp":
		pc, err := lc.ListenPacket(ctx, "udp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen udp %s: %w", cfg.Listen, err)
		}
		if u, ok := pc.(*net.UDPConn); ok {
			_ = u.SetReadBuffer(4 << 20)
			_ = u.SetWriteBuffer(4 << 20)
		}
		l.pc = &guardedPacketConn{PacketConn: pc, a: a, l: l}
		l.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	default:
		ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen %s %s: %w", cfg.Transport, cfg.Listen, err)
		}
		l.addr = ln.Addr().(*net.TCPAddr).AddrPort()
		var inner net.Listener = &guardedListener{Listener: ln, a: a, l: l}
		if l.encrypted {
			inner = tls.NewListener(inner, a.tlsConf)
		}
		if cfg.Transport == "ws" || cfg.Transport == "wss" {
			inner = newOriginListener(inner, a, l, cfg.Origins)
		}
		l.ln = inner
	}
	l.addr = netip.AddrPortFrom(l.addr.Addr().Unmap(), l.addr.Port())
	l.host, l.port = l.addr.Addr().String(), int(l.addr.Port())
	if cfg.Advertise != "" {
		h, p, _ := net.SplitHostPort(cfg.Advertise)
		l.host = h
		l.port, _ = strconv.Atoi(p)
	}
	return l, nil
}

// serve hands the socket to sipgo. It returns when the socket is closed.
func (a *Adapter) serve(l *listener) error {
	var err error
	switch l.transport {
	case "udp":
		err = a.srv.ServeUDP(l.pc)
	case "tcp":
		err = a.srv.ServeTCP(l.ln)
	case "tls":
		err = a.srv.ServeTLS(l.ln)
	case "ws":
		err = a.srv.ServeWS(l.ln)
	case "wss":
		err = a.srv.ServeWSS(l.ln)
	}
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (l *listener) close() error {
	if l.pc != nil {
		return l.pc.Close()
	}
	if l.ln != nil {
		return l.ln.Close()
	}
	return nil
}

// guardedPacketConn runs the network stages on every datagram before sipgo
// reads it. A refused datagram is consumed here and never parsed.
type guardedPacketConn struct {
	net.PacketConn
	a *Adapter
	l *listener
}

func (g *guardedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := g.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		p := g.a.pipeline.Load()
		if !p.HasPacketStages() {
			return n, addr, nil
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			return n, addr, nil
		}
		src := ua.AddrPort()
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		m := core.PacketMeta{Src: src, Local: g.l.addr, Transport: "udp", Zone: g.a.zoneOf(src, g.l, "udp"), Data: b[:n]}
		if d := p.RunPacket(&m); d.Action != core.Allow {
			g.a.packetRefused(&m, d)
			continue
		}
		return n, addr, nil
	}
}

// guardedListener runs the network stages on every new connection and
// bounds the time a connection may take to send its first bytes.
type guardedListener struct {
	net.Listener
	a *Adapter
	l *listener
}

func (g *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		p := g.a.pipeline.Load()
		ta, _ := c.RemoteAddr().(*net.TCPAddr)
		var src netip.AddrPort
		if ta != nil {
			src = netip.AddrPortFrom(ta.AddrPort().Addr().Unmap(), ta.AddrPort().Port())
		}
		m := core.PacketMeta{Src: src, Local: g.l.addr, Transport: g.l.transport, Zone: g.a.zoneOf(src, g.l, g.l.transport), Conn: true}
		if p.HasPacketStages() {
			if d := p.RunPacket(&m); d.Action != core.Allow {
				g.a.packetRefused(&m, d)
				c.Close()
				continue
			}
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetKeepAlive(true)
			_ = tc.SetKeepAlivePeriod(30 * time.Second)
		}
		tc := &trackedConn{Conn: c, a: g.a, pipe: p, meta: m}
		tc.handshake, tc.idle = p.Timeouts()
		if tc.handshake > 0 {
			_ = c.SetReadDeadline(time.Now().Add(tc.handshake))
		}
		if g.l.transport == "tcp" || g.l.transport == "tls" {
			// Streams get a parser of their own in the read filter, so that
			// a framing error is journaled before sipgo drops the connection.
			tc.key = streamKey(strings.ToUpper(g.l.transport), c.RemoteAddr())
			g.a.streams.Store(tc.key, g.a.parser.NewSIPStream())
		}
		return tc, nil
	}
}

// trackedConn is an accepted connection: its reads are bounded by the
// handshake timeout until the first bytes arrive and by the idle timeout
// afterwards (slow-loris defence), and its close is told to the stages
// that counted it and forgets its stream parser.
type trackedConn struct {
	net.Conn
	a               *Adapter
	pipe            *core.Pipeline
	meta            core.PacketMeta
	key             string
	handshake, idle time.Duration
	once            sync.Once
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.idle > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	} else if n > 0 && c.handshake > 0 {
		_ = c.Conn.SetReadDeadline(time.Time{})
		c.handshake = 0
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		if c.key != "" {
			c.a.streams.Delete(c.key)
		}
		c.pipe.ConnClosed(&c.meta)
	})
	return c.Conn.Close()
}

// zoneOf is the zone of traffic from src on l: its upstream's, when src is
// an upstream's address (an upstream may share a listener with the
// internet), else the listener's.
func (a *Adapter) zoneOf(src netip.AddrPort, l *listener, transport string) string {
	if up := a.upstreamOf(src, transport); up != nil && up.zone != "" {
		return up.zone
	}
	return l.zone
}
