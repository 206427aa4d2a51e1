package sip

import (
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core/media"
)

const (
	sideA = 0 // the caller's leg: the gateway is its UAS
	sideB = 1 // the callee's leg: the gateway is its UAC
)

// leg is one dialog of a call, as the gateway sees it: the gateway is
// "local", the peer is "remote".
type leg struct {
	callID    string
	localTag  string
	remoteTag string
	local     sip.Uri // the gateway's party URI on this leg (From in our requests)
	localName string
	remote    sip.Uri // the peer's party URI (To in our requests)
	remoteNm  string
	target    sip.Uri   // where in-dialog requests go (the peer's Contact)
	routes    []sip.Uri // the route set, in the order Route headers are sent
	cseq      atomic.Uint32
	remoteSeq uint32 // the highest CSeq the peer used

	transport string // upper case, as sipgo wants it
	dest      string // fixed host:port to send to ("" = from route set or target)
	l         *listener
	src       netip.AddrPort // where the peer's requests come from
	secure    bool
	zone      string
	// natted says the peer seems to be behind NAT (the relay latches to
	// where its media really comes from); srtp is how this leg's media is
	// protected when the other leg offers.
	natted bool
	srtp   media.SRTPMode
}

// contact is the gateway's Contact on this leg.
func (lg *leg) contact() *sip.ContactHeader {
	u := sip.Uri{Scheme: "sip", User: "ucgate", Host: lg.l.host, Port: lg.l.port}
	if lg.l.transport != "udp" {
		u.UriParams = sip.HeaderParams{{K: "transport", V: lg.l.transport}}
	}
	return &sip.ContactHeader{Address: u}
}

// via is a fresh Via header for a request the gateway sends on this leg.
func (lg *leg) via() *sip.ViaHeader {
	v := &sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       lg.transport,
		Host:            lg.l.host,
		Port:            lg.l.port,
		Params:          sip.HeaderParams{{K: "branch", V: sip.GenerateBranchN(16)}},
	}
	if lg.transport == "UDP" {
		v.Params.Add("rport", "")
	}
	return v
}

// request builds an in-dialog request on this leg with the next CSeq (or
// with seq, when seq is not 0: ACK and CANCEL reuse the INVITE's).
func (lg *leg) request(method sip.RequestMethod, seq uint32) *sip.Request {
	r := sip.NewRequest(method, lg.target)
	lg.prepare(r)
	r.AppendHeader(lg.via())
	for i := range lg.routes {
		r.AppendHeader(&sip.RouteHeader{Address: lg.routes[i]})
	}
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	from := &sip.FromHeader{DisplayName: lg.localName, Address: lg.local, Params: sip.HeaderParams{{K: "tag", V: lg.localTag}}}
	r.AppendHeader(from)
	to := &sip.ToHeader{DisplayName: lg.remoteNm, Address: lg.remote}
	if lg.remoteTag != "" {
		to.Params = sip.HeaderParams{{K: "tag", V: lg.remoteTag}}
	}
	r.AppendHeader(to)
	cid := sip.CallIDHeader(lg.callID)
	r.AppendHeader(&cid)
	if seq == 0 {
		seq = lg.cseq.Add(1)
	}
	r.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	switch method {
	case sip.INVITE, sip.UPDATE, sip.SUBSCRIBE, sip.NOTIFY, sip.REFER:
		r.AppendHeader(lg.contact())
	}
	r.SetBody(nil)
	return r
}

// prepare sets where and how a request on this leg is sent.
func (lg *leg) prepare(r *sip.Request) {
	r.SetTransport(lg.transport)
	if len(lg.routes) == 0 && lg.dest != "" {
		r.SetDestination(lg.dest)
	}
	if lg.transport == "UDP" && lg.l != nil {
		r.Laddr = sip.Addr{IP: lg.l.addr.Addr().AsSlice(), Port: int(lg.l.addr.Port())}
	}
}

// noBuild tells sipgo's client to send a request exactly as built.
func noBuild(*sipgo.Client, *sip.Request) error { return nil }

// routeSet turns Record-Route headers into a route set. A UAS keeps the
// order of the request; a UAC reverses the order of the response.
func routeSet(m sip.Message, reverse bool) []sip.Uri {
	hs := m.GetHeaders("Record-Route")
	if len(hs) == 0 {
		return nil
	}
	out := make([]sip.Uri, 0, len(hs))
	for _, h := range hs {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			out = append(out, *rr.Address.Clone())
		}
	}
	if reverse {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// hostPort renders host:port for a URI host and port, bracketing IPv6.
func hostPort(host string, port int) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	if port == 0 {
		return host
	}
	return host + ":" + strconv.Itoa(port)
}
