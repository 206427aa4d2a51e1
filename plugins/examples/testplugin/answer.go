package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// Mode answer: the plugin answers every call offered to one of its users
// (a SIP user's INVITE bridged to it). It opens a UDP socket on
// 127.0.0.1, answers with that address and the first offered codec of
// each audio stream, and sends every RTP packet it receives back to the
// offered address (the gateway's relay), counting them. When the host
// ends the session it reports "answered session S received X echoed Y
// end REASON" on stderr and appends it to -report.

func (p *protocol) answerCall(ev *pb.Event) *pb.Verdict {
	var offered *pb.Stream
	for _, s := range ev.GetMedia().GetStreams() {
		if s.GetType() == "audio" && !s.GetDisabled() && len(s.GetCodecs()) > 0 {
			offered = s
			break
		}
	}
	if offered == nil {
		return &pb.Verdict{Action: pb.Action_REFUSE, Reason: "not_acceptable"}
	}
	dst, err := net.ResolveUDPAddr("udp", offered.GetAddr())
	if err != nil {
		return &pb.Verdict{Action: pb.Action_REFUSE, Reason: "not_acceptable"}
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return &pb.Verdict{Action: pb.Action_REFUSE, Reason: "unavailable"}
	}
	sid := ev.GetSession()
	events := p.calls.watch(sid)
	p.hostMu.Lock()
	h := p.host
	p.hostMu.Unlock()
	go func() {
		defer conn.Close()
		var received, echoed atomic.Int64
		go func() {
			buf := make([]byte, 1500)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				if n >= 12 && buf[0]>>6 == 2 {
					received.Add(1)
					if _, err := conn.WriteToUDP(buf[:n], dst); err == nil {
						echoed.Add(1)
					}
				}
			}
		}()
		answer := &pb.Event{Kind: pb.Kind_SESSION_ANSWER, Method: "ANSWER", Session: sid,
			Src: &pb.Source{Addr: "127.0.0.1:7000", Transport: "tcp"}, From: ev.GetTo(), To: ev.GetFrom(),
			Media: &pb.MediaDesc{Streams: []*pb.Stream{{Type: "audio", Addr: conn.LocalAddr().String(), Protocol: "RTP/AVP",
				Direction: "sendrecv", Codecs: offered.GetCodecs()[:1]}}}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := h.Submit(ctx, answer)
		cancel()
		if err != nil || r.GetVerdict().GetAction() != pb.Action_ALLOW {
			fmt.Fprintln(os.Stderr, "answer of", sid, "refused:", err, r.GetVerdict().GetRule())
			return
		}
		fmt.Fprintln(os.Stderr, "answered session", sid, "media from", dst)
		reason := "none"
		select {
		case e := <-events:
			reason = e.GetReason()
		case <-time.After(5 * time.Minute):
		}
		time.Sleep(50 * time.Millisecond)
		line := fmt.Sprintf("answered session %s received %d echoed %d end %s", sid, received.Load(), echoed.Load(), reason)
		fmt.Fprintln(os.Stderr, line)
		if p.call.report != "" {
			if f, err := os.OpenFile(p.call.report, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				fmt.Fprintln(f, line)
				f.Close()
			}
		}
	}()
	return &pb.Verdict{}
}
