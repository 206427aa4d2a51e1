package e2e

// Benchmarks of browser calls through the gateway, with pion/webrtc
// playing the browser (the same ICE and DTLS-SRTP as Chromium, without
// a browser's cost on the client side) and sipgo speaking SIP over a
// WebSocket; the builtin echo is the SIP side. Each is run beside the
// same measure for a plain SIP call (UDP signalling, RTP/AVP) so that
// the cost of WebRTC shows as a ratio. The gateway runs in its own
// process: its CPU and memory are read from /proc.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	pion "github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	h "github.com/ucgate/ucgate/e2e/harness"
)

// webrtcBenchGW starts a gateway with a UDP and a WS listener whose
// calls go to the builtin echo, every control on, loopback trusted.
func webrtcBenchGW(b *testing.B) (gw *h.Gateway, udp, ws string) {
	b.Helper()
	udp = h.HostPort("127.0.0.1", h.FreeUDPPort(b))
	ws = h.HostPort("127.0.0.1", h.FreeTCPPort(b))
	yaml := fmt.Sprintf(`admin:
  listen: ""
log: {level: warn}
sip:
  listeners:
    - {zone: internet, transport: udp, listen: "%s"}
    - {zone: internet, transport: ws, listen: "%s"}
  upstreams:
    - {name: demo, builtin: echo, zone: trunk}
  routes:
    - {default: true, upstreams: [demo]}
%s%s`, udp, ws, mediaSection(""), trustLoopback)
	gw = h.StartGateway(b, h.GatewayConfig{YAML: yaml, UDP: []string{udp}, TCP: []string{ws}})
	return gw, udp, ws
}

var webrtcQuietSipgo sync.Once

// webrtcBenchUA is a SIP user agent of the benchmark.
func webrtcBenchUA(b *testing.B) *sipgo.DialogUA {
	b.Helper()
	// sipgo's transport warnings would land in the middle of the
	// benchmark's result lines.
	webrtcQuietSipgo.Do(func() { sip.SetDefaultLogger(slog.New(slog.DiscardHandler)) })
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("ucgate-bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ua.Close() })
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	return &sipgo.DialogUA{Client: cli, ContactHDR: sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bench", Host: "127.0.0.1"}}}
}

// webrtcBenchCall is one call in progress: its media peer and dialog.
type webrtcBenchCall struct {
	sess     *sipgo.DialogClientSession
	answered time.Duration // INVITE to 200 OK
	first    chan struct{}
	recv     atomic.Int64
	sent     atomic.Int64
	stop     func()
}

func (c *webrtcBenchCall) hangup(ctx context.Context) {
	if c.sess != nil {
		_ = c.sess.Bye(ctx)
		c.sess.Close()
	}
	c.stop()
}

// webrtcBenchDial places one call to sip:echo at the gateway (WS with
// ICE and DTLS-SRTP when dtls, else UDP with RTP/AVP), sends 20 ms
// packets, and returns when the call is answered; setup is the time from
// the INVITE to the first packet echoed back.
func webrtcBenchDial(ctx context.Context, dua *sipgo.DialogUA, udp, ws string, dtls bool) (*webrtcBenchCall, time.Duration, error) {
	c := &webrtcBenchCall{first: make(chan struct{})}
	var once sync.Once
	gotFirst := func() { c.recv.Add(1); once.Do(func() { close(c.first) }) }
	var offer []byte
	var onAnswer func(body []byte) error
	if dtls {
		var se pion.SettingEngine
		se.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4})
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
		se.SetIncludeLoopbackCandidate(true)
		// The echo's first packets may beat pion's own processing of
		// the answer it was just given.
		se.SetHandleUndeclaredSSRCWithoutAnswer(true)
		pc, err := pion.NewAPI(pion.WithSettingEngine(se)).NewPeerConnection(pion.Configuration{})
		if err != nil {
			return nil, 0, err
		}
		track, err := pion.NewTrackLocalStaticSample(pion.RTPCodecCapability{MimeType: pion.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "bench")
		if err != nil {
			pc.Close()
			return nil, 0, err
		}
		if _, err := pc.AddTrack(track); err != nil {
			pc.Close()
			return nil, 0, err
		}
		pc.OnTrack(func(tr *pion.TrackRemote, _ *pion.RTPReceiver) {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				gotFirst()
			}
		})
		o, err := pc.CreateOffer(nil)
		if err != nil {
			pc.Close()
			return nil, 0, err
		}
		gathered := pion.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(o); err != nil {
			pc.Close()
			return nil, 0, err
		}
		<-gathered
		offer = []byte(pc.LocalDescription().SDP)
		done := make(chan struct{})
		c.stop = func() { close(done); pc.Close() }
		onAnswer = func(body []byte) error {
			if err := pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeAnswer, SDP: string(body)}); err != nil {
				return fmt.Errorf("%w\n%s\noffer:\n%s", err, body, offer)
			}
			payload := make([]byte, 160)
			go func() {
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
						if track.WriteSample(media.Sample{Data: payload, Duration: 20 * time.Millisecond}) == nil {
							c.sent.Add(1)
						}
					}
				}
			}()
			return nil
		}
	} else {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, 0, err
		}
		port := conn.LocalAddr().(*net.UDPAddr).Port
		offer = []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio " +
			strconv.Itoa(port) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
		done := make(chan struct{})
		c.stop = func() { close(done); conn.Close() }
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := conn.ReadFrom(buf); err != nil {
					return
				}
				gotFirst()
			}
		}()
		onAnswer = func(body []byte) error {
			dst, err := webrtcBenchRTPAddr(string(body))
			if err != nil {
				return err
			}
			go func() {
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 0x1234abcd}, Payload: make([]byte, 160)}
				buf := make([]byte, 1500)
				for {
					select {
					case <-done:
						return
					case <-tick.C:
						pkt.SequenceNumber++
						pkt.Timestamp += 160
						n, _ := pkt.MarshalTo(buf)
						if _, err := conn.WriteToUDPAddrPort(buf[:n], dst); err == nil {
							c.sent.Add(1)
						}
					}
				}
			}()
			return nil
		}
	}
	target := sip.Uri{Scheme: "sip", User: "echo", Host: "127.0.0.1"}
	if dtls {
		target.Port = mustPort(ws)
		target.UriParams = sip.HeaderParams{{K: "transport", V: "ws"}}
	} else {
		target.Port = mustPort(udp)
	}
	start := time.Now()
	sess, err := dua.Invite(ctx, target, offer, sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		c.stop()
		return nil, 0, err
	}
	c.sess = sess
	if err := sess.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		c.hangup(ctx)
		return nil, 0, err
	}
	c.answered = time.Since(start)
	if err := onAnswer(sess.InviteResponse.Body()); err != nil {
		c.hangup(ctx)
		return nil, 0, err
	}
	if err := sess.Ack(ctx); err != nil {
		c.hangup(ctx)
		return nil, 0, err
	}
	select {
	case <-c.first:
	case <-ctx.Done():
		c.hangup(context.Background())
		return nil, 0, fmt.Errorf("no media echoed: %w", ctx.Err())
	}
	return c, time.Since(start), nil
}

func mustPort(hp string) int {
	ap := netip.MustParseAddrPort(hp)
	return int(ap.Port())
}

// webrtcBenchRTPAddr reads the address of an answer's first stream.
func webrtcBenchRTPAddr(sdp string) (netip.AddrPort, error) {
	var ip, port string
	for _, l := range strings.Split(sdp, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "c=IN IP4 ") && ip == "" {
			ip = strings.TrimPrefix(l, "c=IN IP4 ")
		}
		if strings.HasPrefix(l, "m=audio ") && port == "" {
			port = strings.Fields(l)[1]
		}
	}
	return netip.ParseAddrPort(ip + ":" + port)
}

// webrtcProcStat returns a process's CPU time (user+system) and RSS.
func webrtcProcStat(pid int) (time.Duration, int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu := time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
	s, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var rss int64
	for _, l := range strings.Split(string(s), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			rss = kb << 10
		}
	}
	return cpu, rss
}

var webrtcBenchModes = []struct {
	name string
	dtls bool
}{{"webrtc", true}, {"plain-sip", false}}

// BenchmarkWebRTCCallSetup: time from the INVITE to media flowing (the
// first packet echoed back), one call after the other; the median is
// reported.
func BenchmarkWebRTCCallSetup(b *testing.B) {
	for _, m := range webrtcBenchModes {
		b.Run(m.name, func(b *testing.B) {
			gw, udp, ws := webrtcBenchGW(b)
			_ = gw
			dua := webrtcBenchUA(b)
			var setups, answers []time.Duration
			b.ResetTimer()
			for range b.N {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c, d, err := webrtcBenchDial(ctx, dua, udp, ws, m.dtls)
				if err != nil {
					cancel()
					b.Fatal(err)
				}
				setups = append(setups, d)
				answers = append(answers, c.answered)
				c.hangup(ctx)
				cancel()
			}
			b.StopTimer()
			slices.Sort(setups)
			slices.Sort(answers)
			b.ReportMetric(float64(answers[len(answers)/2].Microseconds())/1000, "ms-answer-median")
			b.ReportMetric(float64(setups[len(setups)/2].Microseconds())/1000, "ms-setup-median")
			b.ReportMetric(float64(setups[len(setups)*9/10].Microseconds())/1000, "ms-setup-p90")
		})
	}
}

// BenchmarkWebRTCConcurrentCalls holds WEBRTC_BENCH_CALLS calls (default
// 20) for WEBRTC_BENCH_HOLD (default 5s), each sending 50 packets a
// second both ways, and reports the gateway's CPU and memory: calls per
// core (calls / cores used), RSS, RSS per call, and the share of packets
// echoed back.
func BenchmarkWebRTCConcurrentCalls(b *testing.B) {
	n := 20
	if v, err := strconv.Atoi(os.Getenv("WEBRTC_BENCH_CALLS")); err == nil && v > 0 {
		n = v
	}
	hold := 5 * time.Second
	if v, err := time.ParseDuration(os.Getenv("WEBRTC_BENCH_HOLD")); err == nil && v > 0 {
		hold = v
	}
	for _, m := range webrtcBenchModes {
		b.Run(fmt.Sprintf("%s/calls=%d", m.name, n), func(b *testing.B) {
			gw, udp, ws := webrtcBenchGW(b)
			pid := gw.Proc.Pid()
			dua := webrtcBenchUA(b)
			_, rss0 := webrtcProcStat(pid)
			var perCore, rssPerCall, rss, echoed float64
			for range b.N {
				ctx, cancel := context.WithTimeout(context.Background(), hold+60*time.Second)
				calls := make([]*webrtcBenchCall, n)
				var wg sync.WaitGroup
				var failed atomic.Value
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						c, _, err := webrtcBenchDial(ctx, dua, udp, ws, m.dtls)
						if err != nil {
							failed.Store(err)
							return
						}
						calls[i] = c
					}()
					time.Sleep(10 * time.Millisecond)
				}
				wg.Wait()
				if err, _ := failed.Load().(error); err != nil {
					cancel()
					b.Fatal(err)
				}
				time.Sleep(500 * time.Millisecond) // every call in its stride
				cpu0, _ := webrtcProcStat(pid)
				var sent0, recv0 int64
				for _, c := range calls {
					sent0, recv0 = sent0+c.sent.Load(), recv0+c.recv.Load()
				}
				t0 := time.Now()
				time.Sleep(hold)
				cpu1, rss1 := webrtcProcStat(pid)
				wall := time.Since(t0)
				var sent1, recv1 int64
				for _, c := range calls {
					sent1, recv1 = sent1+c.sent.Load(), recv1+c.recv.Load()
				}
				for _, c := range calls {
					c.hangup(ctx)
				}
				cancel()
				cores := (cpu1 - cpu0).Seconds() / wall.Seconds()
				perCore += float64(n) / max(cores, 1e-3)
				rss += float64(rss1) / (1 << 20)
				rssPerCall += float64(rss1-rss0) / 1024 / float64(n)
				echoed += float64(recv1-recv0) / float64(max(sent1-sent0, 1))
			}
			k := float64(b.N)
			b.ReportMetric(perCore/k, "calls/core")
			b.ReportMetric(rss/k, "MB-rss")
			b.ReportMetric(rssPerCall/k, "KB-rss/call")
			b.ReportMetric(echoed/k, "echoed-ratio")
		})
	}
}

// BenchmarkWebRTCBrowserCallSetup: headless Chromium on the softphone
// page calls the echo through the gateway over WSS b.N times in a row;
// the page reports the time from sending each INVITE to the first RTP
// packet it receives (ICE, DTLS and the relay included). The median is
// reported.
func BenchmarkWebRTCBrowserCallSetup(b *testing.B) {
	h.RequirePeer(b, "chromium")
	g := startWebRTCGW(b, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(b.N)*5*time.Second+30*time.Second)
	defer cancel()
	br := startWebRTCBrowser(b, g, url.Values{
		"server": {"wss://" + g.wss4}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {webrtcPassword},
		"target": {"sip:echo@127.0.0.1"}, "auto": {"1"}, "hangup_after": {"300"}, "repeat": {strconv.Itoa(b.N)},
	})
	var ms []int
	for len(ms) < b.N {
		br.mu.Lock()
		ms = ms[:0]
		failed := ""
		for _, e := range br.events {
			if e.Event == "media" {
				ms = append(ms, e.Ms)
			}
			if e.Event == "failed" || e.Event == "registrationFailed" {
				failed = e.Event + " " + e.Cause
			}
		}
		br.mu.Unlock()
		if failed != "" {
			b.Fatal(failed)
		}
		if len(ms) >= b.N {
			break
		}
		select {
		case <-br.notify:
		case <-ctx.Done():
			b.Fatalf("%d of %d calls had media: %v", len(ms), b.N, ctx.Err())
		}
	}
	slices.Sort(ms)
	b.ReportMetric(float64(ms[len(ms)/2]), "ms-setup-median")
	b.ReportMetric(float64(ms[len(ms)*9/10]), "ms-setup-p90")
}
