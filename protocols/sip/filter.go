package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
)

// errFraming closes a stream connection whose bytes are not SIP.
var errFraming = errors.New("sip: stream framing error")

// readFilter sees every datagram, WebSocket message and stream read before
// sipgo parses it. What does not parse is journaled here (sipgo would only
// log it): a datagram is answered with 400 if its headers allow an answer
// and dropped; a WebSocket message is dropped; a stream connection, which
// has lost its framing, is closed.
func (a *Adapter) readFilter(p sip.TransportReadProps, data []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			// A parser bug on hostile bytes costs this message (a stream, its
			// connection), never the listener.
			a.log.Error("read filter panicked", "transport", p.Transport, "src", p.RemoteAddr.String(), "panic", fmt.Sprint(r))
			a.malformed(p, data)
			out, err = nil, nil
			if p.Transport != "UDP" && p.Transport != "WS" && p.Transport != "WSS" {
				err = errFraming
			}
		}
	}()
	switch p.Transport {
	case "UDP", "WS", "WSS":
		if len(bytes.TrimSpace(data)) == 0 {
			return data, nil // keep-alive
		}
		msg, err := a.parser.ParseSIP(data)
		if err == nil {
			if res, ok := msg.(*sip.Response); ok && !a.responseOK(p, res) {
				return nil, nil
			}
			a.keyless(p, msg)
			return data, nil
		}
		a.malformed(p, data)
		return nil, nil
	}
	v, ok := a.streams.Load(streamKey(p.Transport, p.RemoteAddr))
	if !ok {
		return data, nil // a connection the gateway opened
	}
	par := v.(*sip.ParserStream)
	bad := false
	err = par.ParseSIPStream(data, func(m sip.Message) {
		if res, ok := m.(*sip.Response); ok && !a.responseOK(p, res) {
			bad = true
		}
		a.keyless(p, m)
	})
	if bad {
		// A stream cannot drop one message and keep its framing.
		a.streams.Delete(streamKey(p.Transport, p.RemoteAddr))
		return nil, errFraming
	}
	if err == nil || errors.Is(err, sip.ErrParseSipPartial) {
		return data, nil
	}
	a.streams.Delete(streamKey(p.Transport, p.RemoteAddr))
	a.malformed(p, data)
	return nil, errFraming
}

func streamKey(transport string, remote net.Addr) string {
	return transport + "/" + remote.String()
}

// responseOK runs the stages on a response from a peer (validate judges
// its form) and journals one it must drop.
func (a *Adapter) responseOK(p sip.TransportReadProps, res *sip.Response) bool {
	pipe := a.pipeline.Load()
	if pipe == nil {
		return true
	}
	src, _ := netip.ParseAddrPort(p.RemoteAddr.String())
	transport := strings.ToLower(p.Transport)
	ev := &core.Event{Kind: core.KindResponse, Protocol: "sip", Method: strconv.Itoa(res.StatusCode), Time: time.Now(),
		Src: core.Source{Addr: netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), Transport: transport,
			Encrypted: transport == "tls" || transport == "wss"}, Shape: shape(res), Orig: res}
	if l := a.byLocal[transport+"/"+p.LocalAddr.String()]; l != nil {
		ev.Src.Zone, ev.Src.Local = l.zone, l.addr
	}
	ev.Size = ev.Shape.Size
	d := pipe.Run(context.Background(), ev)
	if d.Action == core.Allow {
		return true
	}
	rec := a.filterRecord(p)
	rec.Method, rec.Action, rec.Rule, rec.Reason, rec.Detail = "response", core.Drop.String(), d.Rule, d.Reason.String(), d.Detail
	if h := res.CallID(); h != nil {
		rec.CallID = h.Value()
	}
	a.metrics.refusal(d.Stage, d.Rule)
	a.journal.Transaction(&rec)
	return false
}

// keyless journals a request that parsed but lacks the Via or CSeq that
// a transaction needs: sipgo answers it with 400 and never hands it to the
// adapter.
func (a *Adapter) keyless(p sip.TransportReadProps, m sip.Message) {
	req, ok := m.(*sip.Request)
	if !ok || req.Via() != nil && req.CSeq() != nil {
		return
	}
	detail := "Missing Via"
	if req.Via() != nil {
		detail = "Missing CSeq"
	}
	rec := a.filterRecord(p)
	rec.Method, rec.Status, rec.Action = string(req.Method), 400, core.Refuse.String()
	rec.Rule, rec.Detail = "sip/malformed", detail
	if h := req.CallID(); h != nil {
		rec.CallID = h.Value()
	}
	a.metrics.transaction(rec.Method, 400)
	a.metrics.refusals.WithLabelValues("sip", rec.Rule).Inc()
	a.journal.Transaction(&rec)
}

// filterRecord starts the journal record of something the read filter
// decided.
func (a *Adapter) filterRecord(p sip.TransportReadProps) core.Transaction {
	transport := strings.ToLower(p.Transport)
	src, _ := netip.ParseAddrPort(p.RemoteAddr.String())
	rec := core.Transaction{
		Time: time.Now(), Protocol: "sip", Src: src.String(), Dst: p.LocalAddr.String(),
		Transport: transport, Encrypted: transport == "tls" || transport == "wss",
		Reason: core.ReasonMalformed.String(),
	}
	if l := a.byLocal[transport+"/"+p.LocalAddr.String()]; l != nil {
		rec.Zone = l.zone
	}
	return rec
}

// malformed journals an unparsable datagram and answers it with 400 when
// its Via, From, To, Call-ID and CSeq can be read and it is a request.
func (a *Adapter) malformed(p sip.TransportReadProps, data []byte) {
	transport := strings.ToLower(p.Transport)
	a.metrics.malformed.WithLabelValues(transport).Inc()
	rec := a.filterRecord(p)
	rec.Action, rec.Rule, rec.Detail = core.Drop.String(), "sip/parse", "unparsable message"
	res, method := salvage(data)
	rec.Method = method
	if transport != "udp" {
		res = nil // only a datagram can be answered from here
	}
	if res != nil {
		var buf bytes.Buffer
		res.StringWrite(&buf)
		if conn, ok := a.udpConn(p.LocalAddr); ok {
			if _, err := conn.WriteTo(buf.Bytes(), p.RemoteAddr); err == nil {
				rec.Status, rec.Action = 400, core.Refuse.String()
			}
		}
	}
	a.metrics.transaction(method, rec.Status)
	a.metrics.refusals.WithLabelValues("sip", "sip/parse").Inc()
	a.journal.Transaction(&rec)
}

func (a *Adapter) udpConn(local net.Addr) (net.PacketConn, bool) {
	if l := a.byLocal["udp/"+local.String()]; l != nil && l.pc != nil {
		return l.pc, true
	}
	return nil, false
}

// salvage reads the headers a response needs from a request that sipgo's
// parser refused, using sipgo's own header parsers line by line, and
// builds a 400. It returns nil for a response or when a needed header is
// missing or unreadable.
func salvage(data []byte) (*sip.Response, string) {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	if len(lines) < 2 || len(lines) > 256 {
		return nil, ""
	}
	first := strings.Fields(lines[0])
	if len(first) != 3 || first[2] != "SIP/2.0" || strings.HasPrefix(lines[0], "SIP/") {
		return nil, ""
	}
	method := strings.ToUpper(first[0])
	if len(method) > 16 {
		method = method[:16]
	}
	if method == "ACK" {
		return nil, method
	}
	parsers := sip.HeadersParser(sip.DefaultHeadersParser())
	res := sip.NewResponse(400, "Bad Request")
	need := map[string]bool{"via": true, "from": true, "to": true, "call-id": true, "cseq": true}
	compact := map[string]string{"v": "via", "f": "from", "t": "to", "i": "call-id"}
	for _, ln := range lines[1:] {
		name, _, ok := strings.Cut(ln, ":")
		if !ok {
			continue
		}
		n := strings.ToLower(strings.TrimSpace(name))
		if c, ok := compact[n]; ok {
			n = c
		}
		if !need[n] || n == "via" && res.Via() != nil {
			continue
		}
		hs, err := parsers.ParseHeader(nil, []byte(ln))
		if err != nil || len(hs) == 0 {
			return nil, method
		}
		res.AppendHeader(hs[0])
		if n != "via" {
			delete(need, n)
		}
	}
	if res.Via() == nil || len(need) > 1 {
		return nil, method
	}
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", sip.GenerateTagN(8))
	}
	res.SetBody(nil)
	return res, method
}

// packetRefused counts and journals a datagram or connection that a
// network stage refused (a flood is summarised, see dropLog).
func (a *Adapter) packetRefused(m *core.PacketMeta, d core.Decision) {
	a.metrics.refusal(d.Stage, d.Rule)
	a.drops.add(m, d)
}

// onStrayResponse handles responses that match no client transaction: a
// retransmitted 2xx on leg B after its INVITE transaction ended gets its
// ACK again.
func (a *Adapter) onStrayResponse(res *sip.Response) {
	if res.StatusCode < 200 || res.StatusCode >= 300 {
		return
	}
	cs, from, cid := res.CSeq(), res.From(), res.CallID()
	if cs == nil || from == nil || cid == nil || cs.MethodName != sip.INVITE {
		return
	}
	tag, _ := from.Params.Get("tag")
	ref, ok := a.dialogs.get(cid.Value(), tag)
	if !ok || ref.side != sideB {
		return
	}
	if ref.bc != nil {
		ref.bc.resendAck()
		return
	}
	ref.call.resendAckB()
}
