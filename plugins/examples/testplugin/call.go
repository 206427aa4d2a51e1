package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ucgate/ucgate/plugins/sdk"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// Mode call: the plugin places calls to a user of another adapter (a SIP
// user on the bridge). For each call it opens a UDP socket on 127.0.0.1,
// offers a session (PCMU at that address) from bob@<its domain>; on the
// host's SESSION_ANSWER it sends RTP (PCMU, 20 ms packets) to the
// answered address and counts the RTP that comes back on its socket;
// after the call's hold time it ends the session. Each call's counts are
// reported on stderr and appended to -report as
// "call N session S sent X received Y end REASON".
//
// -hold gives each call's hold time in order (comma separated; 0 holds
// until the plugin is killed); -state counts the calls placed so far, so
// that a restarted plugin places only the calls it has not.

type callConfig struct {
	to     string
	hold   string
	state  string
	report string
}

// calls are the plugin's calls by the host's session id.
type calls struct {
	mu sync.Mutex
	m  map[string]chan *pb.Event
}

func (c *calls) watch(session string) chan *pb.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]chan *pb.Event{}
	}
	ch := c.m[session]
	if ch == nil {
		ch = make(chan *pb.Event, 4)
		c.m[session] = ch
	}
	return ch
}

// event takes the host's SESSION_ANSWER or SESSION_END for a call.
func (c *calls) event(ev *pb.Event) *pb.Verdict {
	ch := c.watch(ev.GetSession())
	select {
	case ch <- ev:
	default:
	}
	return &pb.Verdict{}
}

func (p *protocol) placeCalls(ctx context.Context, w *pb.Welcome, h sdk.Host) error {
	user, domain, ok := strings.Cut(p.call.to, "@")
	if !ok {
		return errors.New("-call-to wants user@domain")
	}
	placed := 0
	if p.call.state != "" {
		if b, err := os.ReadFile(p.call.state); err == nil {
			placed, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	holds := strings.Split(p.call.hold, ",")
	for i := placed; i < len(holds); i++ {
		hold, err := time.ParseDuration(holds[i])
		if err != nil {
			return err
		}
		if p.call.state != "" {
			if err := os.WriteFile(p.call.state, []byte(strconv.Itoa(i+1)), 0o644); err != nil {
				return err
			}
		}
		line := p.placeCall(ctx, h, i+1, &pb.Identity{User: "bob", Domain: w.GetDomain()}, &pb.Identity{User: user, Domain: domain}, hold)
		fmt.Fprintln(os.Stderr, line)
		if p.call.report != "" {
			f, err := os.OpenFile(p.call.report, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err == nil {
				fmt.Fprintln(f, line)
				f.Close()
			}
		}
	}
	return nil
}

// placeCall places one call and returns its report line.
func (p *protocol) placeCall(ctx context.Context, h sdk.Host, n int, from, to *pb.Identity, hold time.Duration) string {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Sprintf("call %d error %v", n, err)
	}
	defer conn.Close()
	offer := &pb.Event{Kind: pb.Kind_SESSION_OFFER, Method: "CALL", Session: "call" + strconv.Itoa(n),
		Src: &pb.Source{Addr: "127.0.0.1:7000", Transport: "tcp"}, From: from, To: to,
		Media: &pb.MediaDesc{Streams: []*pb.Stream{{Type: "audio", Addr: conn.LocalAddr().String(), Protocol: "RTP/AVP",
			Direction: "sendrecv", Codecs: []*pb.Codec{{Pt: 0, Name: "PCMU", Rate: 8000}}}}}}
	// The gateway's adapters may not all be ready when the plugin starts:
	// a call refused for want of a route is tried again, for 10 s.
	var r *pb.EventResult
	for try := 0; ; try++ {
		r, err = h.Submit(ctx, offer)
		if err != nil {
			return fmt.Sprintf("call %d error %v", n, err)
		}
		v := r.GetVerdict()
		if v.GetAction() == pb.Action_ALLOW {
			break
		}
		if v.GetRule() != "plugin/no_route" || try == 50 {
			return fmt.Sprintf("call %d refused %s %s", n, v.GetReason(), v.GetRule())
		}
		time.Sleep(200 * time.Millisecond)
	}
	sid := r.GetSession()
	fmt.Fprintln(os.Stderr, "call", n, "offered, session", sid)
	events := p.calls.watch(sid)
	var answer *pb.Event
	select {
	case ev := <-events:
		if ev.GetKind() != pb.Kind_SESSION_ANSWER {
			return fmt.Sprintf("call %d session %s sent 0 received 0 end %s", n, sid, ev.GetReason())
		}
		answer = ev
	case <-time.After(30 * time.Second):
		return fmt.Sprintf("call %d session %s no answer", n, sid)
	case <-ctx.Done():
		return fmt.Sprintf("call %d session %s stopped", n, sid)
	}
	var dst *net.UDPAddr
	for _, s := range answer.GetMedia().GetStreams() {
		if s.GetType() == "audio" && !s.GetDisabled() {
			dst, err = net.ResolveUDPAddr("udp", s.GetAddr())
			break
		}
	}
	if dst == nil || err != nil {
		return fmt.Sprintf("call %d session %s answer without audio address", n, sid)
	}
	fmt.Fprintln(os.Stderr, "call", n, "answered, media to", dst)
	var received atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			if k >= 12 && buf[0]>>6 == 2 && buf[1]&0x7f == 0 {
				received.Add(1)
			}
		}
	}()
	pkt := make([]byte, 12+160)
	pkt[0], pkt[1] = 0x80, 0
	binary.BigEndian.PutUint32(pkt[8:], 0x7e57ca11+uint32(n))
	for i := range pkt[12:] {
		pkt[12+i] = 0xff // PCMU silence
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var stop <-chan time.Time
	if hold > 0 {
		stop = time.After(hold)
	}
	sent := 0
	reason := "plugin_hangup"
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
loop:
	for {
		select {
		case <-tick.C:
			binary.BigEndian.PutUint16(pkt[2:], uint16(sent))
			binary.BigEndian.PutUint32(pkt[4:], uint32(sent*160))
			if _, err := conn.WriteToUDP(pkt, dst); err == nil {
				sent++
			}
		case <-progress.C:
			fmt.Fprintln(os.Stderr, "call", n, "session", sid, "sent", sent, "received", received.Load())
		case ev := <-events:
			reason = "remote " + ev.GetReason()
			break loop
		case <-stop:
			if _, err := h.Submit(ctx, &pb.Event{Kind: pb.Kind_SESSION_END, Method: "HANGUP", Session: sid, Reason: "normal",
				Src: offer.Src, From: from, To: to}); err != nil {
				reason = "end failed: " + err.Error()
			}
			break loop
		case <-ctx.Done():
			reason = "stopped"
			break loop
		}
	}
	time.Sleep(100 * time.Millisecond) // the last echoes
	return fmt.Sprintf("call %d session %s sent %d received %d end %s", n, sid, sent, received.Load(), reason)
}
