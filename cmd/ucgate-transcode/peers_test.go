package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ucgate/ucgate/e2e/harness"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
	tt "github.com/ucgate/ucgate/transcode/transcodetest"
)

// TestFFmpegPeers puts the plugin between two real RTP peers that share no
// code with it: ffmpeg sends testsrc over RTP (its own packetizer, on
// loopback), the test hands each datagram to the plugin binary as the host
// would, sends what comes back to a second ffmpeg that receives it through
// an SDP file (its own depacketizer and decoder), and ffprobe reads what
// that one wrote: the frames, in the other codec, not blank.
func TestFFmpegPeers(t *testing.T) {
	ffmpeg := harness.RequirePeer(t, "ffmpeg")
	mc, _ := startPlugin(t, buildPlugin(t))
	for _, tc := range []struct {
		name              string
		inCodec, outCodec string
		inPT, outPT       uint32
		enc               []string
		sdpFmtp, outFmt   string
	}{
		{"vp8 to h264", "VP8", "H264", 96, 102,
			[]string{"-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "800k", "-g", "30", "-auto-alt-ref", "0", "-lag-in-frames", "0"},
			"a=fmtp:102 packetization-mode=1\r\n", "h264"},
		{"h264 to vp8", "H264", "VP8", 102, 96,
			[]string{"-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency", "-b:v", "800k", "-g", "30"},
			"", "ivf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const frames = 60
			dir := t.TempDir()
			// The receiving ffmpeg: an SDP file, RTP on outPort. It stops
			// after frames-1 frames: its H.264 depacketizer holds the last
			// one until more data or the end of input.
			outPort := harness.FreePortPair(t, false)
			sdp := fmt.Sprintf("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=transcoded\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
				"m=video %d RTP/AVP %d\r\na=rtpmap:%d %s/90000\r\n%s", outPort, tc.outPT, tc.outPT, tc.outCodec, tc.sdpFmtp)
			sdpPath := filepath.Join(dir, "recv.sdp")
			if err := os.WriteFile(sdpPath, []byte(sdp), 0o644); err != nil {
				t.Fatal(err)
			}
			outFile := filepath.Join(dir, "out."+tc.outFmt)
			recv := harness.StartProc(t, harness.ProcConfig{Name: "ffmpeg-recv", Path: ffmpeg, Args: []string{
				"-hide_banner", "-nostats", "-protocol_whitelist", "file,udp,rtp", "-reorder_queue_size", "0",
				"-i", sdpPath, "-frames:v", strconv.Itoa(frames - 1), "-c", "copy", "-f", tc.outFmt, "-y", outFile}})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			harness.WaitBound(ctx, t, recv, "udp", outPort)

			// Where the sending ffmpeg sends: RTP on inPort, RTCP on inPort+1.
			inPort := harness.FreePortPair(t, false)
			in, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: inPort})
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			_ = in.SetReadBuffer(4 << 20)
			rtcpIn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: inPort + 1})
			if err != nil {
				t.Fatal(err)
			}
			defer rtcpIn.Close()
			out, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: outPort})
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()

			// The plugin stream: what it returns goes to the receiver.
			col := newCollector()
			conn, err := mc.Open(context.Background(), &pb.MediaOpen{Session: "peers", Stream: 1,
				In:  &pb.Codec{Pt: tc.inPT, Name: tc.inCodec, Rate: 90000, Params: "packetization-mode=1"},
				Out: &pb.Codec{Pt: tc.outPT, Name: tc.outCodec, Rate: 90000, Params: "packetization-mode=1"}},
				func(p *pb.Packet) {
					if !p.GetRtcp() {
						_, _ = out.Write(p.GetData())
					}
					col.recv(p)
				})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()

			send := harness.StartProc(t, harness.ProcConfig{Name: "ffmpeg-send", Path: ffmpeg, Args: append(append([]string{
				"-hide_banner", "-nostats", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
				"-frames:v", strconv.Itoa(frames), "-pix_fmt", "yuv420p", "-threads", "1"}, tc.enc...),
				"-f", "rtp", "-payload_type", strconv.Itoa(int(tc.inPT)), "-ssrc", "4660",
				fmt.Sprintf("rtp://127.0.0.1:%d?rtcpport=%d&pkt_size=1200", inPort, inPort+1))})
			relayed := make(chan error, 1)
			go func() {
				buf := make([]byte, 2048)
				for {
					n, err := in.Read(buf)
					if err != nil {
						relayed <- nil // the socket's deadline passed after the sender ended
						return
					}
					if err := conn.Send(&pb.Packet{Data: append([]byte(nil), buf[:n]...)}); err != nil {
						relayed <- err
						return
					}
				}
			}()
			select {
			case <-send.Done():
			case <-time.After(20 * time.Second):
				t.Fatal("sender still running")
			}
			// What the sender wrote before it exited is in the socket buffer.
			_ = in.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if err := <-relayed; err != nil {
				t.Fatal(err)
			}
			select {
			case <-recv.Done():
			case <-time.After(15 * time.Second):
				t.Fatalf("receiver did not get %d frames (plugin returned %d)", frames-1, col.frames)
			}
			p := tt.FFprobe(t, outFile)
			want := map[string]string{"h264": "h264", "ivf": "vp8"}[tc.outFmt]
			if p.Codec != want || p.Frames != frames-1 || p.W != 320 || p.H != 240 {
				t.Fatalf("ffprobe of what the receiver wrote: %+v", p)
			}
			for i, y := range tt.YAVG(t, outFile) {
				if y < 20 || y > 235 {
					t.Fatalf("frame %d has mean luma %.1f: blank", i, y)
				}
			}
		})
	}
}
