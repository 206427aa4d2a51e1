package e2e

// Video transcoding through ucgate: headless Chromium with a fake camera,
// its video restricted to VP8 (RTCRtpTransceiver.setCodecPreferences),
// calls a SIP video endpoint that takes only H.264 (sipp signalling with
// an H.264-only answer, ffmpeg receiving and sending the RTP). The gateway
// runs the real ucgate-transcode plugin. What reaches the endpoint is
// decoded by ffmpeg (an independent decoder) into frames that are not
// blank, at about the configured rate; what the endpoint sends (H.264 by
// ffmpeg's libx264) reaches the browser as VP8, whose getStats shows
// frames decoded and whose remote <video>, drawn on a canvas, is not
// blank. A second test kills the plugin with SIGKILL mid-call: the host
// restarts it, the gateway keeps answering SIP, and the call ends with a
// CDR whose reason is plugin_crashed.
//
// Identifiers here start with "transcode".

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/journal"
	h "github.com/ucgate/ucgate/e2e/harness"
)

// transcodeVideo is what the softphone page reports of its video (video=1).
type transcodeVideo struct {
	FramesSent    int    `json:"framesSent"`
	FramesDecoded int    `json:"framesDecoded"`
	CodecOut      string `json:"codecOut"`
	CodecIn       string `json:"codecIn"`
	Width         int    `json:"width"`
	Height        int    `json:"height"`
	Luma          int    `json:"luma"`
	LumaStd       int    `json:"lumaStd"`
}

// transcodeFPS is the transcoder's configured output frame rate (below
// the 20 frames per second of Chromium's fake camera), and the rate ffmpeg
// sends at.
const transcodeFPS = 10

// transcodePlugin builds cmd/ucgate-transcode into the test's directory
// and writes its configuration; it returns the plugins section and the
// webrtc section naming it.
func transcodePlugin(t *testing.T) string {
	t.Helper()
	return transcodePluginWith(t, "")
}

// transcodePluginWith is transcodePlugin with more keys for the plugin
// (indented for its list item).
func transcodePluginWith(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "ucgate-transcode")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ucgate-transcode")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ucgate-transcode: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "transcode.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "width: 320\nheight: 240\nframe_rate: %d\nkeyframe_interval: 2s\n", transcodeFPS), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`webrtc:
  transcoder: transcode
plugins:
  - name: transcode
    kind: media
    binary: %q
    sha256: %s
    args: ["-config", %q, "-max-streams", "4"]
%s`, bin, sha256File(t, bin), cfg, extra)
}

// transcodeUAS answers an INVITE with PCMU audio on sipp's media port and
// H.264 video only, on port [vport] (where ffmpeg receives), in the
// payload type the offer gave H.264; then it waits for the BYE.
const transcodeUAS = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAS: H.264-only video endpoint">
  <recv request="INVITE">
    <action>
      <ereg regexp="a=rtpmap:([0-9]+) H264/90000" search_in="body" check_it="true" assign_to="all,vpt" />
    </action>
  </recv>
  <Reference variables="all" />
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=h264phone 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      m=video [vport] RTP/AVP [$vpt]
      a=rtpmap:[$vpt] H264/90000
      a=fmtp:[$vpt] profile-level-id=42e01f;packetization-mode=1

    ]]>
  </send>
  <recv request="ACK" />
  <recv request="BYE" timeout="120000" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
`

// transcodeEndpoint is the H.264-only SIP video endpoint: sipp for the
// signalling, ffmpeg for the video on vport.
type transcodeEndpoint struct {
	sipp  *h.Sipp
	vport int
}

func startTranscodeEndpoint(t *testing.T) *transcodeEndpoint {
	t.Helper()
	return startTranscodeEndpointWith(t, transcodeUAS)
}

func startTranscodeEndpointWith(t *testing.T, scenario string) *transcodeEndpoint {
	t.Helper()
	h.RequirePeer(t, "sipp")
	h.RequirePeer(t, "ffmpeg")
	vport := h.FreePortPair(t, false)
	s := h.StartSipp(t, h.SippConfig{Name: "h264-endpoint", ScenarioXML: scenario, TraceMsg: true,
		Timeout: 3 * time.Minute, Args: []string{"-key", "vport", strconv.Itoa(vport)}})
	return &transcodeEndpoint{sipp: s, vport: vport}
}

// transcodeUACVideo is what the calling endpoint adds to its offer: H.264
// only, in payload type 109.
const transcodeUACVideo = `a=rtpmap:0 PCMU/8000
      m=video [vport] RTP/AVP 109
      a=rtpmap:109 H264/90000
      a=fmtp:109 profile-level-id=42e01f;packetization-mode=1
`

// callTranscodeEndpoint makes the H.264-only endpoint call the browser
// user through the gateway at gwAddr, from the SIP port port (the
// gateway's trunk).
func callTranscodeEndpoint(t *testing.T, gwAddr string, port, vport int) *transcodeEndpoint {
	t.Helper()
	scenario := strings.Replace(h.ScenarioUACWaitBye, "a=rtpmap:0 PCMU/8000\n", transcodeUACVideo, 1)
	scenario = strings.Replace(scenario, `<recv request="BYE" />`, `<recv request="BYE" timeout="120000" />`, 1)
	if scenario == h.ScenarioUACWaitBye {
		t.Fatal("the UAC scenario has no audio line to add video to")
	}
	s := h.StartSipp(t, h.SippConfig{Name: "h264-caller", ScenarioXML: scenario, TraceMsg: true, Remote: gwAddr,
		Port: port, Service: webrtcUser, Timeout: 3 * time.Minute, Args: []string{"-key", "vport", strconv.Itoa(vport)}})
	return &transcodeEndpoint{sipp: s, vport: vport}
}

// relayVideoPort reads, from sipp's message log, the video port of the
// gateway's offer: where the endpoint sends its video.
func (e *transcodeEndpoint) relayVideoPort(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.sipp.Dir(), "messages.log"))
	if err != nil {
		// sipp names the file after the scenario.
		matches, _ := filepath.Glob(filepath.Join(e.sipp.Dir(), "*messages.log"))
		if len(matches) == 0 {
			t.Fatalf("no sipp message log: %v", err)
		}
		if b, err = os.ReadFile(matches[0]); err != nil {
			t.Fatal(err)
		}
	}
	// The endpoint's own description names vport; the gateway's, another.
	for _, m := range regexp.MustCompile(`(?m)^m=video (\d+) RTP/AVP`).FindAllSubmatch(b, -1) {
		if p, _ := strconv.Atoi(string(m[1])); p != e.vport {
			return p
		}
	}
	t.Fatalf("no video stream from the gateway in sipp's messages:\n%s", b)
	return 0
}

// transcodeFrame is one frame ffmpeg decoded: its time and picture
// statistics (signalstats: luma mean, min, max).
type transcodeFrame struct {
	pts              float64
	yavg, ymin, ymax float64
}

// receive runs ffmpeg on the endpoint's video port with an SDP file (H.264
// in payload type pt) until it decoded secs seconds of video or ctx ends;
// it returns the frames with their statistics.
func (e *transcodeEndpoint) receive(t *testing.T, ctx context.Context, pt, secs int) []transcodeFrame {
	t.Helper()
	dir := t.TempDir()
	sdpFile := filepath.Join(dir, "in.sdp")
	sdp := fmt.Sprintf("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=h264\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=video %d RTP/AVP %d\r\na=rtpmap:%d H264/90000\r\na=fmtp:%d packetization-mode=1\r\n", e.vport, pt, pt, pt)
	if err := os.WriteFile(sdpFile, []byte(sdp), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info",
		"-protocol_whitelist", "file,udp,rtp", "-reorder_queue_size", "0", "-i", sdpFile,
		"-t", strconv.Itoa(secs), "-vf", "signalstats,metadata=mode=print",
		"-f", "null", "-")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	out, _ := cmd.CombinedOutput()
	var frames []transcodeFrame
	var cur *transcodeFrame
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	reFrame := regexp.MustCompile(`frame:\d+\s+pts:\S+\s+pts_time:(\S+)`)
	reKey := regexp.MustCompile(`lavfi\.signalstats\.(YAVG|YMIN|YMAX)=(\S+)`)
	for sc.Scan() {
		l := sc.Text()
		if m := reFrame.FindStringSubmatch(l); m != nil {
			pts, _ := strconv.ParseFloat(m[1], 64)
			frames = append(frames, transcodeFrame{pts: pts})
			cur = &frames[len(frames)-1]
			continue
		}
		if m := reKey.FindStringSubmatch(l); m != nil && cur != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			switch m[1] {
			case "YAVG":
				cur.yavg = v
			case "YMIN":
				cur.ymin = v
			case "YMAX":
				cur.ymax = v
			}
		}
	}
	if len(frames) == 0 {
		t.Logf("ffmpeg (receiving) said:\n%s", webrtcTail(string(out), 40))
	}
	return frames
}

// send runs ffmpeg sending secs seconds of H.264 (libx264, constrained
// baseline, packetization mode 1) in payload type pt from the endpoint's
// video port to the gateway's relay port.
func (e *transcodeEndpoint) send(t *testing.T, ctx context.Context, relay, pt, secs int) {
	t.Helper()
	dst := fmt.Sprintf("rtp://127.0.0.1:%d?localrtpport=%d&localrtcpport=%d&pkt_size=1200", relay, e.vport, e.vport+1)
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning",
		"-re", "-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=320x240:rate=%d", transcodeFPS), "-t", strconv.Itoa(secs),
		"-c:v", "libx264", "-profile:v", "baseline", "-level", "3.1", "-pix_fmt", "yuv420p", "-tune", "zerolatency",
		"-g", strconv.Itoa(transcodeFPS), "-bf", "0", "-b:v", "400k",
		"-payload_type", strconv.Itoa(pt), "-f", "rtp", dst)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil && ctx.Err() == nil {
		t.Errorf("ffmpeg (sending): %v\n%s", err, webrtcTail(string(out), 20))
	}
}

// transcodeBrowser opens the softphone with video restricted to VP8 and
// calls the endpoint (hanging up after hangupMs, 0: never).
func transcodeBrowser(t *testing.T, g *webrtcGW, hangupMs int) *webrtcBrowser {
	t.Helper()
	p := url.Values{
		"server": {"wss://" + g.wss4}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {webrtcPassword},
		"target": {"sip:callee@127.0.0.1"}, "auto": {"1"}, "video": {"1"}, "video_codec": {"VP8"},
	}
	if hangupMs > 0 {
		p.Set("hangup_after", strconv.Itoa(hangupMs))
	}
	return startWebRTCBrowser(t, g, p)
}

// transcodeLast is the page's last video report.
func transcodeLast(b *webrtcBrowser) transcodeVideo {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.events) - 1; i >= 0; i-- {
		if e := b.events[i]; e.Event == "stats" || e.Event == "final" {
			return e.RTP.Video
		}
	}
	return transcodeVideo{}
}

// transcodeStats waits for a stats report that satisfies ok.
func transcodeStats(ctx context.Context, b *webrtcBrowser, ok func(transcodeVideo) bool) (transcodeVideo, error) {
	var last transcodeVideo
	for {
		b.mu.Lock()
		for _, e := range b.events {
			if e.Event == "stats" || e.Event == "final" {
				last = e.RTP.Video
				if ok(last) {
					b.mu.Unlock()
					return last, nil
				}
			}
			if e.Event == "ended" || e.Event == "failed" {
				b.mu.Unlock()
				return last, fmt.Errorf("call %s (%s) before the video did", e.Event, e.Cause)
			}
		}
		b.mu.Unlock()
		select {
		case <-b.notify:
		case <-ctx.Done():
			return last, fmt.Errorf("video never did (last %+v): %w", last, ctx.Err())
		}
	}
}

// TestTranscodeBrowserVP8ToH264Endpoint: VP8 from the browser reaches the
// H.264-only endpoint as H.264 that ffmpeg decodes into pictures that are
// not blank, at about the configured rate; the endpoint's H.264 reaches
// the browser as VP8 it decodes and shows.
func TestTranscodeBrowserVP8ToH264Endpoint(t *testing.T) {
	if webrtcIsolated(t) {
		return
	}
	h.RequirePeer(t, "chromium")
	ep := startTranscodeEndpoint(t)
	g := startWebRTCGWWith(t, ep.sipp.Addr(), transcodePlugin(t))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	b := transcodeBrowser(t, g, 40000)
	if _, err := b.wait(ctx, "confirmed", "failed", "ended"); err != nil {
		t.Fatal(err)
	}
	// The answer the browser got names its own codec.
	if v, err := transcodeStats(ctx, b, func(v transcodeVideo) bool { return v.FramesSent > 10 && v.CodecOut != "" }); err != nil {
		t.Fatal(err)
	} else if !strings.EqualFold(v.CodecOut, "video/VP8") {
		t.Fatalf("the browser sends %q, want video/VP8", v.CodecOut)
	}

	transcodeBothWays(t, ctx, b, ep, 127)

	// The page hangs up; the CDR shows video relayed both ways.
	if _, err := b.wait(ctx, "ended", "failed"); err != nil {
		t.Fatal(err)
	}
	transcodeCheckCDR(t, g)
}

// transcodeCheckCDR checks the browser call's CDR: a normal end, video
// relayed both ways.
func transcodeCheckCDR(t *testing.T, g *webrtcGW) {
	t.Helper()
	c := g.cdrs(t, journal.CDRFilter{Party: webrtcUser}, 1)[0]
	t.Logf("CDR: %s", mediaCDRText(c))
	if c.EndReason != "normal" {
		t.Errorf("CDR: ended %q, want normal", c.EndReason)
	}
	video := 0
	for _, m := range c.Media {
		if m.Type == "video" {
			video++
			if m.Packets < 50 {
				t.Errorf("CDR: %d video packets from the %s", m.Packets, m.From)
			}
		}
	}
	if video != 2 {
		t.Errorf("CDR: %d video directions, want 2", video)
	}
}

// transcodeBothWays checks a transcoded call in both directions: ffmpeg
// decodes what reaches the endpoint (H.264 in payload type pt) into frames
// that are not blank at about the configured rate; H.264 that ffmpeg sends
// reaches the browser as VP8 it decodes and shows.
func transcodeBothWays(t *testing.T, ctx context.Context, b *webrtcBrowser, ep *transcodeEndpoint, pt int) {
	t.Helper()
	// Browser -> endpoint: ffmpeg decodes 6 s of the transcoded H.264.
	const secs = 6
	rctx, rcancel := context.WithTimeout(ctx, 40*time.Second)
	frames := ep.receive(t, rctx, pt, secs)
	rcancel()
	if len(frames) < 2 {
		t.Fatalf("ffmpeg decoded %d frames of the browser's video", len(frames))
	}
	span := frames[len(frames)-1].pts - frames[0].pts
	rate := float64(len(frames)-1) / span
	blank := 0
	for _, f := range frames {
		// Chromium's fake camera draws on black: a blank picture is a
		// flat one.
		if f.ymax-f.ymin < 64 {
			blank++
		}
	}
	mid := frames[len(frames)/2]
	t.Logf("endpoint: %d H.264 frames decoded over %.2f s (%.1f fps); middle frame YAVG %.0f YMIN %.0f YMAX %.0f; %d blank",
		len(frames), span, rate, mid.yavg, mid.ymin, mid.ymax, blank)
	if rate < 0.6*transcodeFPS || rate > 1.4*transcodeFPS {
		t.Errorf("frames arrive at %.1f fps, want about %d", rate, transcodeFPS)
	}
	if blank > len(frames)/10 {
		t.Errorf("%d of %d decoded frames are blank", blank, len(frames))
	}

	// Endpoint -> browser: ffmpeg sends H.264, the browser decodes VP8.
	before := transcodeLast(b)
	relay := ep.relayVideoPort(t)
	sctx, scancel := context.WithTimeout(ctx, 40*time.Second)
	go ep.send(t, sctx, relay, pt, 12)
	v, err := transcodeStats(ctx, b, func(v transcodeVideo) bool {
		return v.FramesDecoded >= before.FramesDecoded+5*transcodeFPS && v.LumaStd > 0
	})
	scancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("browser: decoded %d frames (%s, %dx%d), picture luma mean %d std %d", v.FramesDecoded, v.CodecIn, v.Width, v.Height, v.Luma, v.LumaStd)
	if !strings.EqualFold(v.CodecIn, "video/VP8") {
		t.Errorf("the browser receives %q, want video/VP8", v.CodecIn)
	}
	if v.LumaStd < 10 || v.Luma < 20 {
		t.Errorf("the browser's picture is blank: luma mean %d std %d", v.Luma, v.LumaStd)
	}
	if v.Width != 320 || v.Height != 240 {
		t.Errorf("the browser decodes %dx%d, want the transcoder's 320x240", v.Width, v.Height)
	}
}

// TestTranscodeH264EndpointCallsBrowser: the other way round, the
// H.264-only endpoint calls the VP8-only browser: the browser is offered
// VP8 beside H.264 and answers VP8, the endpoint is answered H.264, and
// video is transcoded both ways.
func TestTranscodeH264EndpointCallsBrowser(t *testing.T) {
	if webrtcIsolated(t) {
		return
	}
	h.RequirePeer(t, "chromium")
	h.RequirePeer(t, "sipp")
	h.RequirePeer(t, "ffmpeg")
	port, vport := h.FreeUDPPort(t), h.FreePortPair(t, false)
	g := startWebRTCGWWith(t, h.HostPort("127.0.0.1", port), transcodePlugin(t))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	b := startWebRTCBrowser(t, g, url.Values{
		"server": {"wss://" + g.wss4}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {webrtcPassword},
		"auto": {"1"}, "answer": {"1"}, "hangup_after": {"40000"}, "video": {"1"}, "video_codec": {"VP8"},
	})
	if _, err := b.wait(ctx, "registered", "registrationFailed"); err != nil {
		t.Fatal(err)
	}
	ep := callTranscodeEndpoint(t, g.udp, port, vport)
	if _, err := b.wait(ctx, "confirmed", "failed", "ended"); err != nil {
		t.Fatal(err)
	}
	if v, err := transcodeStats(ctx, b, func(v transcodeVideo) bool { return v.FramesSent > 10 && v.CodecOut != "" }); err != nil {
		t.Fatal(err)
	} else if !strings.EqualFold(v.CodecOut, "video/VP8") {
		t.Fatalf("the browser sends %q, want video/VP8", v.CodecOut)
	}
	transcodeBothWays(t, ctx, b, ep, 109)
	if _, err := b.wait(ctx, "ended", "failed"); err != nil {
		t.Fatal(err)
	}
	if res := ep.sipp.Wait(ctx); !res.OK() {
		t.Errorf("the endpoint's call: %s", res)
	}
	transcodeCheckCDR(t, g)
}

// transcodePluginPID finds the ucgate-transcode process the gateway
// started.
func transcodePluginPID(t *testing.T, gateway int) int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "(ucgate-transcod") {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(gateway) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			return pid
		}
	}
	t.Fatalf("no ucgate-transcode child of the gateway (pid %d)", gateway)
	return 0
}

// TestTranscodePluginKilledMidCall: SIGKILL of the transcoding plugin
// during a transcoded call. The host restarts it, the gateway keeps
// answering SIP, the call ends (BYE to both sides) and its CDR says
// plugin_crashed.
func TestTranscodePluginKilledMidCall(t *testing.T) {
	if webrtcIsolated(t) {
		return
	}
	h.RequirePeer(t, "chromium")
	ep := startTranscodeEndpoint(t)
	g := startWebRTCGWWith(t, ep.sipp.Addr(), transcodePlugin(t))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	b := transcodeBrowser(t, g, 0)
	if _, err := b.wait(ctx, "confirmed", "failed", "ended"); err != nil {
		t.Fatal(err)
	}
	// Transcoded video flows: ffmpeg decodes some.
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	frames := ep.receive(t, rctx, 127, 2)
	rcancel()
	if len(frames) == 0 {
		t.Fatal("no transcoded video reached the endpoint")
	}
	pid := transcodePluginPID(t, g.Proc.Pid())
	t.Logf("killing ucgate-transcode (pid %d) mid-call", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ended, err := b.wait(ctx, "ended", "failed")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("browser: call ended (%s)", ended.Cause)
	res := ep.sipp.Wait(ctx)
	if !res.OK() {
		t.Errorf("the endpoint's call did not end with a BYE: %s", res)
	}
	cdrs := g.cdrs(t, journal.CDRFilter{Party: webrtcUser}, 1)
	if c := cdrs[0]; c.EndReason != "plugin_crashed" || c.EndedBy != core.RoleGateway {
		t.Errorf("CDR ends %q by %q, want plugin_crashed by the gateway", c.EndReason, c.EndedBy)
	}
	// The host restarts the plugin; the gateway answers SIP all along.
	if _, err := h.SIPOptions(ctx, g.udp); err != nil {
		t.Errorf("the gateway does not answer OPTIONS after the crash: %v", err)
	}
	pluginWait(t, "the plugin restarted", 30*time.Second, func() bool {
		for _, p := range plugins(t, g.admin) {
			if p.Name == "transcode" {
				return p.Restarts >= 1 && p.State == "running"
			}
		}
		return false
	})
	if p := transcodePluginPID(t, g.Proc.Pid()); p == pid {
		t.Errorf("the plugin still runs as pid %d", p)
	}
}

// TestTranscodePluginDownRefused: the plugin is killed after the offer
// went to the H.264-only endpoint (with H.264 added) and before its
// answer (the host waits 20 s before restarting it): the answer needs
// the transcoder, which is not there, so the browser's call is refused
// with 488 and the reason, the endpoint's call is acknowledged and hung
// up, and the gateway goes on answering SIP.
func TestTranscodePluginDownRefused(t *testing.T) {
	if webrtcIsolated(t) {
		return
	}
	h.RequirePeer(t, "chromium")
	slow := strings.Replace(transcodeUAS, `<Reference variables="all" />`, `<Reference variables="all" />
  <pause milliseconds="4000" />`, 1)
	ep := startTranscodeEndpointWith(t, slow)
	g := startWebRTCGWWith(t, ep.sipp.Addr(), transcodePluginWith(t, "    limits: {backoff_min: 20s, backoff_max: 20s}\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b := transcodeBrowser(t, g, 0)
	// The endpoint has the offer (sipp logs it): the plugin goes.
	pluginWait(t, "the endpoint got the INVITE", 30*time.Second, func() bool {
		m, _ := filepath.Glob(filepath.Join(ep.sipp.Dir(), "*messages.log"))
		for _, f := range m {
			if bb, _ := os.ReadFile(f); strings.Contains(string(bb), "H264/90000") {
				return true
			}
		}
		return false
	})
	pid := transcodePluginPID(t, g.Proc.Pid())
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	failed, err := b.wait(ctx, "failed", "confirmed")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("browser: call failed: %s %d", failed.Cause, failed.Code)
	if failed.Code != 488 {
		t.Errorf("the browser's call failed with %d, want 488", failed.Code)
	}
	if res := ep.sipp.Wait(ctx); !res.OK() {
		t.Errorf("the endpoint's call was not acknowledged and hung up: %s", res)
	}
	if _, err := h.SIPOptions(ctx, g.udp); err != nil {
		t.Errorf("the gateway does not answer OPTIONS: %v", err)
	}
	c := g.cdrs(t, journal.CDRFilter{Party: webrtcUser}, 1)[0]
	t.Logf("CDR: %s", mediaCDRText(c))
	if c.Status != 488 {
		t.Errorf("CDR status %d, want 488", c.Status)
	}
	if log := g.Proc.Log(); !strings.Contains(log, "transcoding refused") {
		t.Errorf("the gateway's log does not say why the call was refused")
	}
}

// transcodeReanswer answers a re-INVITE in the dialog of transcodeUAS,
// H.264 only again.
const transcodeReanswer = `  <recv request="INVITE" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=h264phone 1 2 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      m=video [vport] RTP/AVP [$vpt]
      a=rtpmap:[$vpt] H264/90000
      a=fmtp:[$vpt] profile-level-id=42e01f;packetization-mode=1

    ]]>
  </send>
  <recv request="ACK" />
`

// TestTranscodeAcrossReoffers: the browser holds and resumes a transcoded
// call (two re-INVITEs, each offer given H.264 again and each answer
// transcoded again); afterwards video is transcoded both ways as before.
func TestTranscodeAcrossReoffers(t *testing.T) {
	if webrtcIsolated(t) {
		return
	}
	h.RequirePeer(t, "chromium")
	scenario := strings.Replace(transcodeUAS, `  <recv request="ACK" />
  <recv request="BYE"`, `  <recv request="ACK" />
`+transcodeReanswer+transcodeReanswer+`  <recv request="BYE"`, 1)
	if scenario == transcodeUAS {
		t.Fatal("scenario unchanged")
	}
	ep := startTranscodeEndpointWith(t, scenario)
	g := startWebRTCGWWith(t, ep.sipp.Addr(), transcodePlugin(t))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	p := url.Values{
		"server": {"wss://" + g.wss4}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {webrtcPassword},
		"target": {"sip:callee@127.0.0.1"}, "auto": {"1"}, "video": {"1"}, "video_codec": {"VP8"},
		"hold_at": {"2000"}, "hangup_after": {"45000"},
	}
	b := startWebRTCBrowser(t, g, p)
	if _, err := b.wait(ctx, "confirmed", "failed", "ended"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.wait(ctx, "unhold", "failed", "ended"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the resuming re-INVITE's answer
	transcodeBothWays(t, ctx, b, ep, 127)
	if _, err := b.wait(ctx, "ended", "failed"); err != nil {
		t.Fatal(err)
	}
	if res := ep.sipp.Wait(ctx); !res.OK() {
		t.Errorf("the endpoint's call (INVITE, two re-INVITEs, BYE): %s", res)
	}
	if n := strings.Count(g.Proc.Log(), "video transcoded"); n != 3 {
		t.Errorf("video transcoded %d times, want 3 (the call and each re-offer)", n)
	}
	transcodeCheckCDR(t, g)
}
