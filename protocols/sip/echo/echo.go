// Package echo is the demo upstream built into ucgate: a SIP endpoint on
// loopback that answers calls to sip:echo@… and sends every RTP packet back
// where it came from, accepts any REGISTER, and answers OPTIONS and
// MESSAGE. It lets a newcomer place a call through the gateway at once.
//
// It is a peer of the gateway, not part of it: the gateway reaches it over
// SIP on a loopback socket like any other upstream.
package echo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"
)

// Server is the echo endpoint.
type Server struct {
	log  *slog.Logger
	ua   *sipgo.UserAgent
	srv  *sipgo.Server
	conn net.PacketConn
	addr string

	mu    sync.Mutex
	calls map[string]*echoCall
	// MaxCall bounds a call's length. Default one hour.
	MaxCall time.Duration
	// Idle ends a call whose media stopped this long ago. Default 60s.
	Idle time.Duration
}

type echoCall struct {
	pc   net.PacketConn
	done chan struct{}
	once sync.Once
}

func (c *echoCall) stop() {
	c.once.Do(func() { close(c.done); c.pc.Close() })
}

// Start listens on listen (UDP, e.g. "127.0.0.1:0") and serves until ctx
// ends or Close.
func Start(ctx context.Context, listen string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("echo: listen %s: %w", listen, err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("ucgate-echo"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log)))
	if err != nil {
		pc.Close()
		return nil, err
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		pc.Close()
		return nil, err
	}
	s := &Server{log: log, ua: ua, srv: srv, conn: pc, addr: pc.LocalAddr().String(),
		calls: map[string]*echoCall{}, MaxCall: time.Hour, Idle: 60 * time.Second}
	srv.OnInvite(s.onInvite)
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	srv.OnBye(s.onBye)
	srv.OnRegister(s.onRegister)
	srv.OnOptions(s.ok)
	srv.OnMessage(s.ok)
	go func() {
		if err := srv.ServeUDP(pc); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("echo stopped", "error", err)
		}
	}()
	go func() { <-ctx.Done(); s.Close() }()
	return s, nil
}

// Addr is the echo endpoint's SIP address, host:port.
func (s *Server) Addr() string { return s.addr }

// Close ends every call and stops the endpoint.
func (s *Server) Close() error {
	s.mu.Lock()
	for id, c := range s.calls {
		c.stop()
		delete(s.calls, id)
	}
	s.mu.Unlock()
	s.conn.Close()
	return s.ua.Close()
}

func (s *Server) ok(req *sip.Request, tx sip.ServerTransaction) {
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
}

func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			continue
		}
		c = c.Clone()
		if !c.Params.Has("expires") {
			exp := "3600"
			if e := req.GetHeader("Expires"); e != nil {
				exp = e.Value()
			}
			c.Params.Add("expires", exp)
		}
		res.AppendHeader(c)
	}
	_ = tx.Respond(res)
}

func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		// A re-INVITE: keep the media as it is.
		s.answer(req, tx, nil)
		return
	}
	if !strings.EqualFold(req.Recipient.User, "echo") {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 404, "Not Found", nil))
		return
	}
	s.answer(req, tx, req.Body())
}

func (s *Server) answer(req *sip.Request, tx sip.ServerTransaction, offer []byte) {
	var off sdp.SessionDescription
	if len(offer) == 0 || off.UnmarshalString(string(offer)) != nil || len(off.MediaDescriptions) == 0 {
		if len(offer) == 0 && req.To().Params.Has("tag") {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
			return
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
		return
	}
	ip := netip.MustParseAddr("127.0.0.1")
	if ci := off.ConnectionInformation; ci != nil && ci.Address != nil {
		if a, err := netip.ParseAddr(ci.Address.Address); err == nil && a.Is6() && !a.Is4In6() {
			ip = netip.IPv6Loopback()
		}
	}
	pc, err := net.ListenPacket("udp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil))
		return
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	body := answerSDP(&off, ip, port)
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "echo", Host: hostOf(s.addr), Port: portOf(s.addr)}})
	c := &echoCall{pc: pc, done: make(chan struct{})}
	id := req.CallID().Value()
	s.mu.Lock()
	if old := s.calls[id]; old != nil {
		old.stop()
	}
	s.calls[id] = c
	s.mu.Unlock()
	go s.echo(id, c)
	if err := tx.Respond(res); err != nil {
		s.end(id)
	}
}

// echo sends every packet back to its sender until the call ends, the
// media stops, or the call is too long.
func (s *Server) echo(id string, c *echoCall) {
	defer s.end(id)
	buf := make([]byte, 1500)
	deadline := time.Now().Add(s.MaxCall)
	for {
		idle := time.Now().Add(s.Idle)
		if idle.After(deadline) {
			idle = deadline
		}
		_ = c.pc.SetReadDeadline(idle)
		n, from, err := c.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if _, err := c.pc.WriteTo(buf[:n], from); err != nil {
			return
		}
	}
}

func (s *Server) end(id string) {
	s.mu.Lock()
	c := s.calls[id]
	delete(s.calls, id)
	s.mu.Unlock()
	if c != nil {
		c.stop()
	}
}

func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	s.end(req.CallID().Value())
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
}

// answerSDP accepts the first stream of the offer with its first codec
// (and telephone-event, if offered) and refuses the others.
func answerSDP(off *sdp.SessionDescription, ip netip.Addr, port int) []byte {
	fam := "IP4"
	if ip.Is6() {
		fam = "IP6"
	}
	var b strings.Builder
	now := strconv.FormatInt(time.Now().Unix(), 10)
	fmt.Fprintf(&b, "v=0\r\no=ucgate-echo %s %s IN %s %s\r\ns=echo\r\nc=IN %s %s\r\nt=0 0\r\n", now, now, fam, ip, fam, ip)
	for i, m := range off.MediaDescriptions {
		if i > 0 || len(m.MediaName.Formats) == 0 || m.MediaName.Port.Value == 0 {
			fmt.Fprintf(&b, "m=%s 0 %s %s\r\n", m.MediaName.Media, strings.Join(m.MediaName.Protos, "/"), strings.Join(m.MediaName.Formats, " "))
			continue
		}
		formats := []string{m.MediaName.Formats[0]}
		var attrs []string
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" && a.Key != "fmtp" {
				continue
			}
			pt, _, _ := strings.Cut(a.Value, " ")
			if pt == formats[0] {
				attrs = append(attrs, "a="+a.Key+":"+a.Value)
			}
			if a.Key == "rtpmap" && strings.Contains(strings.ToLower(a.Value), "telephone-event") && pt != formats[0] {
				formats = append(formats, pt)
				attrs = append(attrs, "a="+a.Key+":"+a.Value)
			}
		}
		fmt.Fprintf(&b, "m=%s %d %s %s\r\n", m.MediaName.Media, port, strings.Join(m.MediaName.Protos, "/"), strings.Join(formats, " "))
		for _, a := range attrs {
			b.WriteString(a + "\r\n")
		}
		b.WriteString("a=sendrecv\r\n")
	}
	return []byte(b.String())
}

func hostOf(hp string) string {
	h, _, _ := net.SplitHostPort(hp)
	return h
}

func portOf(hp string) int {
	_, p, _ := net.SplitHostPort(hp)
	n, _ := strconv.Atoi(p)
	return n
}
