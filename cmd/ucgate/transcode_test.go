package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/plugins/host"
	"github.com/ucgate/ucgate/protocols/sip"
	tt "github.com/ucgate/ucgate/transcode/transcodetest"
)

func TestValidateTranscoder(t *testing.T) {
	c := defaults()
	if err := validateTranscoder(c); err != nil {
		t.Fatalf("no transcoder: %v", err)
	}
	c.WebRTC.Transcoder = "transcode"
	if err := validateTranscoder(c); err == nil || !strings.Contains(err.Error(), "webrtc.transcoder") || !strings.Contains(err.Error(), `no plugin named "transcode"`) {
		t.Fatalf("missing plugin: %v", err)
	}
	c.Plugins = []host.Config{{Name: "transcode", Kind: "stage"}}
	if err := validateTranscoder(c); err == nil || !strings.Contains(err.Error(), "not media") {
		t.Fatalf("stage plugin: %v", err)
	}
	c.Plugins[0].Kind = "media"
	if err := validateTranscoder(c); err != nil {
		t.Fatalf("media plugin: %v", err)
	}
}

// buildTranscodePlugin builds cmd/ucgate-transcode into the test's
// directory and returns it with its sha256.
func buildTranscodePlugin(t *testing.T) (string, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ucgate-transcode")
	if out, err := exec.Command("go", "build", "-o", bin, "../ucgate-transcode").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return bin, hex.EncodeToString(sum[:])
}

// tcCollector keeps what a transcoded direction returns.
type tcCollector struct {
	mu       sync.Mutex
	rtp, fb  [][]byte
	lost     chan string
	received chan struct{}
}

func (c *tcCollector) recv(pkt []byte, isRTCP bool) {
	c.mu.Lock()
	if isRTCP {
		c.fb = append(c.fb, bytes.Clone(pkt))
	} else {
		c.rtp = append(c.rtp, bytes.Clone(pkt))
	}
	c.mu.Unlock()
	select {
	case c.received <- struct{}{}:
	default:
	}
}

func (c *tcCollector) wait(t *testing.T, what string, ok func(rtp, fb [][]byte) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		done := ok(c.rtp, c.fb)
		c.mu.Unlock()
		if done {
			return
		}
		select {
		case <-c.received:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestTranscoderWithPlugin runs the SIP adapter's transcoder on the plugin
// host with the real ucgate-transcode: VP8 in, H.264 out with the input's
// SSRC; the receiver's PLI (feedback) brings a keyframe; a lost packet
// makes the plugin send a PLI for the sender; the plugin killed ends the
// stream with the host's reason.
func TestTranscoderWithPlugin(t *testing.T) {
	cl := tt.MakeClip(t, "VP8", 320, 240, 40, 40) // skips without ffmpeg (fails under CI)
	t.Cleanup(tt.RemoveClips)
	bin, sum := buildTranscodePlugin(t)
	deps := core.Deps{Log: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry(),
		Sessions: core.NewSessions(), Alerts: core.NewAlerts(64)}
	hst, err := host.New([]host.Config{{Name: "transcode", Kind: "media", Binary: bin, SHA256: sum}}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := hst.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hst.Close() })
	tc := &transcoder{h: hst, name: "transcode", streams: map[core.SessionID]map[*tcStream]bool{}}
	hst.OnMediaLost(tc.onLost)
	if !tc.Available() {
		t.Fatal("plugin running but not available")
	}
	col := &tcCollector{lost: make(chan string, 1), received: make(chan struct{}, 1)}
	const ssrc = 0xabcdef
	s, err := tc.Open("s1", 1, sip.VideoCodec{PT: 96, Name: "VP8", Rate: 90000},
		sip.VideoCodec{PT: 127, Name: "H264", Rate: 90000, Params: "packetization-mode=1"},
		col.recv, func(r string) { col.lost <- r })
	if err != nil {
		t.Fatal(err)
	}
	pkts := tt.Packetize(cl, 96, ssrc)
	i, frame := 0, 0
	sendFrame := func(drop bool) {
		for k := 0; i < len(pkts); k++ {
			p := pkts[i]
			i++
			if !(drop && k == 0) {
				s.Send(p, false)
			}
			if p[1]&0x80 != 0 {
				break
			}
		}
		frame++
		time.Sleep(5 * time.Millisecond) // Send drops what the queue cannot hold
	}
	frames := func(n int) func(rtp, fb [][]byte) bool {
		return func(rtp, _ [][]byte) bool {
			m := 0
			for _, p := range rtp {
				if p[1]&0x80 != 0 {
					m++
				}
			}
			return m >= n
		}
	}
	for frame < 10 {
		sendFrame(false)
	}
	col.wait(t, "10 H.264 frames", frames(10))
	pli, _ := (&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: ssrc}).Marshal()
	s.Send(pli, true)
	sendFrame(false)
	col.wait(t, "11 H.264 frames", frames(11))
	col.mu.Lock()
	got := tt.Depacketize(t, "H264", col.rtp, 1200)
	col.mu.Unlock()
	if len(got.Frames) != 11 || !got.Keys[10] || got.Keys[9] || !got.SSRCs[ssrc] || got.PTs[0] != 127 {
		t.Fatalf("%d frames, keys at 9 and 10 %v %v, SSRCs %v, PT %d: want a keyframe after the PLI only, SSRC %#x, PT 127",
			len(got.Frames), got.Keys[9], got.Keys[10], got.SSRCs, got.PTs[0], ssrc)
	}
	// A frame without its first packet: the plugin asks the sender.
	sendFrame(true)
	for frame < 20 {
		sendFrame(false)
	}
	col.wait(t, "a PLI for the sender", func(_, fb [][]byte) bool { return len(fb) > 0 })
	col.mu.Lock()
	pk, err := rtcp.Unmarshal(col.fb[0])
	col.mu.Unlock()
	if p, ok := pk[0].(*rtcp.PictureLossIndication); err != nil || !ok || p.MediaSSRC != ssrc {
		t.Fatalf("feedback %v %v, want a PLI for %#x", pk, err, ssrc)
	}
	// The plugin dies: the stream ends with the host's reason.
	pid := transcodeChild(t)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-col.lost:
		if r != "plugin_crashed" {
			t.Errorf("lost: %q, want plugin_crashed", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the stream was not reported lost")
	}
	s.Close() // after the loss: nothing happens
	tc.mu.Lock()
	left := len(tc.streams)
	tc.mu.Unlock()
	if left != 0 {
		t.Errorf("%d sessions still registered", left)
	}
}

// transcodeChild finds the ucgate-transcode process this test's host
// started.
func transcodeChild(t *testing.T) int {
	t.Helper()
	me := strconv.Itoa(os.Getpid())
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
		if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == me {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			return pid
		}
	}
	t.Fatal("no ucgate-transcode child")
	return 0
}

// TestTranscoderStreamRefusedByPlugin: a stream the plugin ends on its own
// (here it refuses VP8 to VP8 at open) is reported lost as
// plugin_stream_failed and released on the host: the plugin's open
// streams (SESSIONS in `ucgate plugins`) go back to none.
func TestTranscoderStreamRefusedByPlugin(t *testing.T) {
	bin, sum := buildTranscodePlugin(t)
	deps := core.Deps{Log: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry(),
		Sessions: core.NewSessions(), Alerts: core.NewAlerts(64)}
	hst, err := host.New([]host.Config{{Name: "transcode", Kind: "media", Binary: bin, SHA256: sum}}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := hst.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hst.Close() })
	tc := &transcoder{h: hst, name: "transcode", streams: map[core.SessionID]map[*tcStream]bool{}}
	hst.OnMediaLost(tc.onLost)
	col := &tcCollector{lost: make(chan string, 1), received: make(chan struct{}, 1)}
	vp8 := sip.VideoCodec{PT: 96, Name: "VP8", Rate: 90000}
	if _, err := tc.Open("s1", 1, vp8, vp8, col.recv, func(r string) { col.lost <- r }); err != nil {
		t.Fatal(err)
	}
	if n := hst.Status()[0].Sessions; n != 1 {
		t.Fatalf("open streams %d, want 1", n)
	}
	select {
	case r := <-col.lost:
		if r != "plugin_stream_failed" {
			t.Fatalf("lost %q, want plugin_stream_failed", r)
		}
	case <-time.After(tcGrace + 10*time.Second):
		t.Fatal("the refused stream was not reported")
	}
	if n := hst.Status()[0].Sessions; n != 0 {
		t.Fatalf("open streams %d after the plugin ended the stream, want 0 (held by the host)", n)
	}
	tc.mu.Lock()
	left := len(tc.streams)
	tc.mu.Unlock()
	if left != 0 || hst.Status()[0].State != host.StateRunning {
		t.Fatalf("transcoder streams %d, plugin %s", left, hst.Status()[0].State)
	}
}
