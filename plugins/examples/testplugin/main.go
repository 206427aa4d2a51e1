// Command testplugin is a ucgate plugin for tests: a stage, protocol or
// media plugin whose behaviour the arguments choose, so that the host's
// handling of crashes, hangs, old and new contract versions and hostile
// input can be exercised against a real plugin process.
//
//	testplugin -kind stage -mode refuse-mallory   refuse events from user mallory
//	testplugin -kind stage -mode hang             never answer Decide
//	testplugin -kind protocol -mode offer         offer one session and answer it
//	testplugin -kind protocol -mode hostile       end a session it does not own, send a foreign sender, flood
//	testplugin -kind protocol -mode call -call-to alice@sip.example.com -hold 3s,0 -state FILE -report FILE
//	                                              place calls (see call.go)
//	testplugin -kind protocol -mode answer -report FILE
//	                                              answer calls to its users, echo their RTP (see answer.go)
//	testplugin -kind media                        return every packet as it came
//	-versions 1       offer only contract version 1 (99: a version no host speaks)
//	-pidfile FILE     write the process id to FILE
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ucgate/ucgate/plugins/sdk"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

func main() {
	kind := flag.String("kind", sdk.KindStage, "plugin kind")
	mode := flag.String("mode", "", "behaviour")
	versions := flag.String("versions", "", "contract versions to offer (default all)")
	pidfile := flag.String("pidfile", "", "write the pid here")
	callTo := flag.String("call-to", "", "mode call: the callee, user@domain")
	hold := flag.String("hold", "3s", "mode call: how long each call sends media before the plugin ends it (0: until killed), one per call")
	state := flag.String("state", "", "mode call: file counting the calls placed (a restarted plugin places only the rest)")
	report := flag.String("report", "", "mode call: file the per-call packet counts are appended to")
	flag.Parse()
	if *pidfile != "" {
		if err := os.WriteFile(*pidfile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "testplugin:", err)
			os.Exit(1)
		}
	}
	vs := sdk.Versions
	if *versions != "" {
		vs = nil
		for _, s := range strings.Split(*versions, ",") {
			v, err := strconv.Atoi(s)
			if err != nil {
				fmt.Fprintln(os.Stderr, "testplugin: bad -versions")
				os.Exit(2)
			}
			vs = append(vs, v)
		}
	}
	var impl any
	switch *kind {
	case sdk.KindStage:
		impl = stage{mode: *mode}
	case sdk.KindProtocol:
		impl = &protocol{mode: *mode, call: callConfig{to: *callTo, hold: *hold, state: *state, report: *report}}
	case sdk.KindMedia:
		impl = media{}
	}
	fmt.Fprintln(os.Stderr, "testplugin starting, kind", *kind, "mode", *mode) // forwarded into the host's log (stdout is the handshake)
	sdk.ServeVersions(*kind, impl, &pb.Description{Software: "ucgate-testplugin", Version: "1.0.0"}, vs)
}

type stage struct{ mode string }

func (s stage) Decide(ctx context.Context, ev *pb.Event) (*pb.Verdict, error) {
	switch s.mode {
	case "hang":
		<-ctx.Done()
		select {} // never answer, even when the host gives up
	case "refuse-mallory":
		if ev.GetFrom().GetUser() == "mallory" {
			return &pb.Verdict{Action: pb.Action_REFUSE, Reason: "forbidden", Rule: "reputation", Detail: "known fraudster"}, nil
		}
	}
	return &pb.Verdict{}, nil
}

type protocol struct {
	mode  string
	call  callConfig
	calls calls

	hostMu sync.Mutex
	host   sdk.Host
	domain string
}

func (p *protocol) Serve(ctx context.Context, w *pb.Welcome, h sdk.Host) error {
	from := &pb.Identity{User: "bob", Domain: w.GetDomain()}
	to := &pb.Identity{User: "carol", Domain: w.GetDomain()}
	src := &pb.Source{Addr: "127.0.0.1:7000", Transport: "tcp"}
	p.hostMu.Lock()
	p.host, p.domain = h, w.GetDomain()
	p.hostMu.Unlock()
	switch p.mode {
	case "call":
		if err := p.placeCalls(ctx, w, h); err != nil {
			fmt.Fprintln(os.Stderr, "calls:", err)
		}
	case "offer":
		r, err := h.Submit(ctx, &pb.Event{Kind: pb.Kind_SESSION_OFFER, Method: "CALL", Session: "c1", Src: src, From: from, To: to})
		if err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "offer verdict", r.GetVerdict().GetAction(), "session", r.GetSession())
		if _, err := h.Submit(ctx, &pb.Event{Kind: pb.Kind_SESSION_ANSWER, Method: "ANSWER", Session: r.GetSession(), Src: src, From: from, To: to}); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "session answered", r.GetSession())
	case "hostile":
		r, _ := h.Submit(ctx, &pb.Event{Kind: pb.Kind_SESSION_END, Method: "HANGUP", Session: "not-mine", Src: src, From: from, To: to})
		fmt.Fprintln(os.Stderr, "not-owner verdict", r.GetVerdict().GetRule())
		r, _ = h.Submit(ctx, &pb.Event{Kind: pb.Kind_MESSAGE, Method: "MSG", Src: src, From: &pb.Identity{User: "x", Domain: "sip.example.com"}, To: to, Body: "hi"})
		fmt.Fprintln(os.Stderr, "foreign verdict", r.GetVerdict().GetRule())
		r, _ = h.Submit(ctx, &pb.Event{Kind: pb.Kind_MESSAGE, Method: "MSG", Src: src, From: from, To: &pb.Identity{User: "a b", Domain: "x"}})
		fmt.Fprintln(os.Stderr, "malformed verdict", r.GetVerdict().GetRule())
		// A session whose media would make the relay send to a third party.
		r, _ = h.Submit(ctx, &pb.Event{Kind: pb.Kind_SESSION_OFFER, Method: "CALL", Session: "aim-elsewhere", Src: src, From: from, To: to,
			Media: &pb.MediaDesc{Streams: []*pb.Stream{{Type: "audio", Protocol: "RTP/AVP", Addr: "192.0.2.7:4000",
				Codecs: []*pb.Codec{{Pt: 0, Name: "PCMU", Rate: 8000}}}}}})
		fmt.Fprintln(os.Stderr, "media address verdict", r.GetVerdict().GetRule())
		flooded := 0
		for i := 0; i < 2000; i++ {
			c, cancel := context.WithTimeout(ctx, 5*time.Second)
			r, err := h.Submit(c, &pb.Event{Kind: pb.Kind_REGISTER, Method: "LOGIN", Src: src, From: from})
			cancel()
			if err == nil && r.GetVerdict().GetRule() == "plugin/flood" {
				flooded++
			}
		}
		fmt.Fprintln(os.Stderr, "flood refused", flooded)
		big := strings.Repeat("x", 200<<10)
		_, err := h.Submit(ctx, &pb.Event{Kind: pb.Kind_MESSAGE, Method: "MSG", Src: src, From: from, To: to, Body: big})
		fmt.Fprintln(os.Stderr, "oversized submitted", err)
	}
	<-ctx.Done()
	return nil
}

func (p *protocol) Deliver(_ context.Context, ev *pb.Event) *pb.Verdict {
	if p.mode == "answer" && ev.GetKind() == pb.Kind_SESSION_OFFER {
		return p.answerCall(ev)
	}
	if ev.GetKind() == pb.Kind_SESSION_ANSWER || ev.GetKind() == pb.Kind_SESSION_END {
		return p.calls.event(ev)
	}
	if ev.GetTo().GetUser() == "carol" {
		fmt.Fprintln(os.Stderr, "delivered to carol:", ev.GetBody())
		return &pb.Verdict{}
	}
	return &pb.Verdict{Action: pb.Action_REFUSE, Reason: "not_found"}
}

type media struct{}

type echoStream struct{ send func(*pb.Packet) error }

func (media) Open(_ context.Context, _ *pb.MediaOpen, send func(*pb.Packet) error) (sdk.MediaStream, error) {
	return echoStream{send: send}, nil
}

func (e echoStream) Packet(p *pb.Packet) error { return e.send(p) }
func (e echoStream) Close() error              { return nil }
