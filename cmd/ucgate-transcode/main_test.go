package main

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/pion/rtcp"

	"github.com/ucgate/ucgate/plugins/sdk"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
	tt "github.com/ucgate/ucgate/transcode/transcodetest"
)

const inSSRC = 0x51a7e5

func TestMain(m *testing.M) {
	code := m.Run()
	tt.RemoveClips()
	os.Exit(code)
}

// buildPlugin builds this command into a temporary directory.
func buildPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ucgate-transcode")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startPlugin starts the binary as the gateway does: go-plugin's client,
// gRPC, automatic mutual TLS, the binary's checksum checked.
func startPlugin(t *testing.T, bin string, args ...string) (*sdk.MediaClient, *plugin.Client) {
	t.Helper()
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, _ = io.Copy(h, f)
	f.Close()
	sets, err := sdk.HostPlugins(sdk.KindMedia)
	if err != nil {
		t.Fatal(err)
	}
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sets,
		Cmd:              exec.Command(bin, args...),
		SecureConfig:     &plugin.SecureConfig{Checksum: h.Sum(nil), Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Warn}),
	})
	t.Cleanup(c.Kill)
	rpc, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sdk.Dispense(rpc, sdk.KindMedia)
	if err != nil {
		t.Fatal(err)
	}
	d, err := sdk.Describe(context.Background(), rpc, c.NegotiatedVersion())
	if err != nil || d.GetSoftware() != "ucgate-transcode" || d.GetKind() != sdk.KindMedia {
		t.Fatalf("describe: %v %v", d, err)
	}
	return raw.(*sdk.MediaClient), c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// collector gathers what the plugin returns.
type collector struct {
	mu     sync.Mutex
	rtp    [][]byte
	rtcp   [][]byte
	frames int
	signal chan struct{}
}

func newCollector() *collector { return &collector{signal: make(chan struct{}, 1)} }

func (c *collector) recv(p *pb.Packet) {
	c.mu.Lock()
	if p.GetRtcp() {
		c.rtcp = append(c.rtcp, p.GetData())
	} else {
		c.rtp = append(c.rtp, p.GetData())
		if len(p.GetData()) > 1 && p.GetData()[1]&0x80 != 0 {
			c.frames++
		}
	}
	c.mu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// waitFrames waits until n output frames (markers) have arrived.
func (c *collector) waitFrames(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		got := c.frames
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-c.signal:
		case <-deadline:
			t.Fatalf("%d output frames, want %d", got, n)
		}
	}
}

func (c *collector) snapshot() (rtp, rtcpPkts [][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.rtp...), append([][]byte(nil), c.rtcp...)
}

func vp8ToH264() *pb.MediaOpen {
	return &pb.MediaOpen{Session: "s1", Stream: 1,
		In:  &pb.Codec{Pt: 96, Name: "VP8", Rate: 90000},
		Out: &pb.Codec{Pt: 102, Name: "H264", Rate: 90000, Params: "profile-level-id=42e01f;packetization-mode=1"}}
}

// TestPlugin runs the real plugin binary the way the gateway does and
// transcodes a clip both ways through it; ffmpeg decodes what comes back.
// A PLI from the receiver gives a keyframe; a lost packet gives a PLI
// upstream; a stream beyond -max-streams and H.264 packetization mode 0 are
// refused.
func TestPlugin(t *testing.T) {
	tt.MakeClip(t, "VP8", 320, 240, 30, 30) // skips here without ffmpeg (fails under CI)
	mc, _ := startPlugin(t, buildPlugin(t), "-max-streams", "2")
	ctx := context.Background()

	t.Run("vp8 to h264, PLI, loss", func(t *testing.T) {
		cl := tt.MakeClip(t, "VP8", 320, 240, 30, 30)
		pkts := tt.Packetize(cl, 96, inSSRC)
		col := newCollector()
		conn, err := mc.Open(ctx, vp8ToH264(), col.recv)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		frame, i := 0, 0
		sendFrame := func(drop int) {
			for k := 0; i < len(pkts); k++ {
				p := pkts[i]
				i++
				if k != drop {
					if err := conn.Send(&pb.Packet{Data: p}); err != nil {
						t.Fatal(err)
					}
				}
				if p[1]&0x80 != 0 {
					break
				}
			}
			frame++
		}
		for frame < 10 {
			sendFrame(-1)
		}
		col.waitFrames(t, 10)
		pli, _ := (&rtcp.PictureLossIndication{SenderSSRC: 9, MediaSSRC: inSSRC}).Marshal()
		if err := conn.Send(&pb.Packet{Data: pli, Rtcp: true}); err != nil {
			t.Fatal(err)
		}
		sendFrame(-1)
		col.waitFrames(t, 11)
		out, _ := col.snapshot()
		got := tt.Depacketize(t, "H264", out, 1200)
		if len(got.Frames) != 11 || !got.Keys[10] || got.Keys[9] {
			t.Fatalf("%d frames; keys at 9, 10: %v %v (want a keyframe only after the PLI)", len(got.Frames), got.Keys[9], got.Keys[10])
		}
		if len(got.SSRCs) != 1 || !got.SSRCs[inSSRC] || got.PTs[0] != 102 {
			t.Errorf("output SSRCs %v, payload type %d", got.SSRCs, got.PTs[0])
		}
		for frame < 20 {
			sendFrame(-1)
		}
		col.waitFrames(t, 20)
		p := tt.FFprobe(t, tt.WriteOut(t, "H264", 320, 240, got.Frames))
		if p.Frames != 11 || p.Profile != "Constrained Baseline" || p.W != 320 {
			t.Fatalf("ffprobe %+v", p)
		}
		// A frame's packets but its first: the plugin asks upstream for a keyframe.
		sendFrame(0)
		for frame < 30 {
			sendFrame(-1)
		}
		deadline := time.After(30 * time.Second)
		for {
			_, fb := col.snapshot()
			if len(fb) > 0 {
				pk, err := rtcp.Unmarshal(fb[0])
				if err != nil {
					t.Fatal(err)
				}
				pl, ok := pk[0].(*rtcp.PictureLossIndication)
				if !ok || pl.MediaSSRC != inSSRC {
					t.Fatalf("feedback %v, want a PLI for %#x", pk[0], inSSRC)
				}
				break
			}
			select {
			case <-col.signal:
			case <-deadline:
				t.Fatal("no PLI upstream after a loss")
			case <-time.After(100 * time.Millisecond):
			}
		}
	})

	t.Run("h264 to vp8", func(t *testing.T) {
		cl := tt.MakeClip(t, "H264", 320, 240, 30, 30)
		col := newCollector()
		o := &pb.MediaOpen{Session: "s2", Stream: 1,
			In:  &pb.Codec{Pt: 102, Name: "H264", Rate: 90000, Params: "packetization-mode=1"},
			Out: &pb.Codec{Pt: 96, Name: "VP8", Rate: 90000}, Width: 160, Height: 120, Fps: 15}
		conn, err := mc.Open(ctx, o, col.recv)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, p := range tt.Packetize(cl, 102, inSSRC) {
			if err := conn.Send(&pb.Packet{Data: p}); err != nil {
				t.Fatal(err)
			}
		}
		col.waitFrames(t, 15)
		out, _ := col.snapshot()
		got := tt.Depacketize(t, "VP8", out, 1200)
		path := tt.WriteOut(t, "VP8", 160, 120, got.Frames)
		p := tt.FFprobe(t, path)
		if p.Frames != 15 || p.Codec != "vp8" || p.W != 160 || p.H != 120 {
			t.Fatalf("ffprobe %+v, want 15 VP8 frames of 160x120", p)
		}
		for i, y := range tt.YAVG(t, path) {
			if y < 20 || y > 235 {
				t.Fatalf("frame %d has mean luma %.1f: blank", i, y)
			}
		}
	})

	t.Run("refusals", func(t *testing.T) {
		mode0 := vp8ToH264()
		mode0.Out.Params = "packetization-mode=0"
		c, err := mc.Open(ctx, mode0, func(*pb.Packet) {})
		if err != nil {
			t.Fatal(err)
		}
		<-c.Done()
		if c.Err() == nil || !strings.Contains(c.Err().Error(), "packetization-mode") {
			t.Fatalf("packetization-mode 0: %v", c.Err())
		}
		// Two streams are allowed; of three, one is refused (the server
		// takes streams concurrently: which one is not ordered).
		var conns []*sdk.MediaConn
		ended := make(chan *sdk.MediaConn, 3)
		for range 3 {
			c, err := mc.Open(ctx, vp8ToH264(), func(*pb.Packet) {})
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			go func() { <-c.Done(); ended <- c }()
		}
		select {
		case c := <-ended:
			if c.Err() == nil || !strings.Contains(c.Err().Error(), "too many streams") {
				t.Fatalf("refused stream: %v", c.Err())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no stream refused beyond -max-streams")
		}
		select {
		case c := <-ended:
			t.Fatalf("a second stream ended: %v", c.Err())
		case <-time.After(200 * time.Millisecond):
		}
		for _, c := range conns {
			c.Close()
		}
	})
}

func TestCodecOf(t *testing.T) {
	for _, tc := range []struct {
		c    *pb.Codec
		want string
	}{
		{&pb.Codec{Name: "VP8", Rate: 90000}, ""},
		{&pb.Codec{Name: "h264", Params: "profile-level-id=42e01f; packetization-mode=1"}, ""},
		{&pb.Codec{Name: "H264", Params: "packetization-mode=0"}, "packetization-mode 0"},
		{&pb.Codec{Name: "VP9"}, "unknown video codec"},
		{&pb.Codec{Name: "VP8", Rate: 8000}, "clock rate 8000"},
		{&pb.Codec{Name: "VP8", Pt: 200}, "payload type 200"},
		{nil, "no codec"},
	} {
		_, err := codecOf(tc.c)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v, want %q", tc.c, err, tc.want)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "t.yaml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := loadConfig(write("bitrate: 800000\nframe_rate: 25\nkeyframe_interval: 5s\n"))
	if err != nil || cfg.Bitrate != 800_000 || cfg.FrameRate != 25 || cfg.KeyframeInterval != 5*time.Second || cfg.MTU != 1200 {
		t.Fatalf("%+v %v", cfg, err)
	}
	if _, err := loadConfig(write("bitrat: 1\n")); err == nil || !strings.Contains(err.Error(), "line 1: field bitrat not found") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := loadConfig(write("width: 321\nheight: 240\n")); err == nil || !strings.Contains(err.Error(), "width: must be 0 or an even number") {
		t.Errorf("bad width: %v", err)
	}
	if err := run(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "the gateway starts it") {
		t.Errorf("run by hand: %v", err)
	}
}

// TestREADMEConfig: the transcode.yaml example in the README loads and is
// the defaults, as it says.
func TestREADMEConfig(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "`transcode.yaml` (every key optional")
	if !ok {
		t.Fatal("README has no transcode.yaml example")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, _ := strings.Cut(rest, "```")
	p := filepath.Join(t.TempDir(), "transcode.yaml")
	if err := os.WriteFile(p, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if def, _ := loadConfig(""); cfg != def {
		t.Errorf("README example %+v, defaults %+v", cfg, def)
	}
}
