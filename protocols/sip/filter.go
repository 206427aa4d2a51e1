package sip

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
)

// readFilter sees every datagram before sipgo parses it. A datagram that
// does not parse is journaled here, answered with 400 if its headers allow
// an answer, and dropped; sipgo would only log it.
func (a *Adapter) readFilter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	if p.Transport != "UDP" {
		return data, nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return data, nil // keep-alive
	}
	if _, err := a.parser.ParseSIP(data); err == nil {
		return data, nil
	}
	a.malformed(p, data)
	return nil, nil
}

// malformed journals an unparsable datagram and answers it with 400 when
// its Via, From, To, Call-ID and CSeq can be read and it is a request.
func (a *Adapter) malformed(p sip.TransportReadProps, data []byte) {
	a.metrics.malformed.WithLabelValues("udp").Inc()
	src, _ := netip.ParseAddrPort(p.RemoteAddr.String())
	rec := core.Transaction{
		Time: time.Now(), Protocol: "sip", Src: src.String(), Dst: p.LocalAddr.String(),
		Transport: "udp", Action: core.Drop.String(), Rule: "sip/parse",
		Reason: core.ReasonMalformed.String(), Detail: "unparsable message",
	}
	if l := a.byLocal["udp/"+p.LocalAddr.String()]; l != nil {
		rec.Zone = l.zone
	}
	res, method := salvage(data)
	rec.Method = method
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

// packetRefused journals a datagram or connection that a network stage
// refused. (Issue: floods are summarised by the stages themselves.)
func (a *Adapter) packetRefused(m *core.PacketMeta, d core.Decision) {
	a.metrics.refusals.WithLabelValues(d.Stage, d.Rule).Inc()
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
	ref.call.resendAckB()
}
