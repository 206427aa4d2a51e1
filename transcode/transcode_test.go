package transcode

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	tt "github.com/ucgate/ucgate/transcode/transcodetest"
)

const testSSRC, outSSRC = 0x1234abcd, 0x0badcafe

func packetize(cl *tt.Clip, pt uint8) [][]byte { return tt.Packetize(cl, pt, testSSRC) }

func depacketize(tb testing.TB, c Codec, pkts [][]byte) *tt.Received {
	return tt.Depacketize(tb, c.String(), pkts, 1200)
}

func makeClip(tb testing.TB, c Codec, w, h, n, gop int) *tt.Clip {
	return tt.MakeClip(tb, c.String(), w, h, n, gop)
}

func writeOut(tb testing.TB, c Codec, w, h int, frames [][]byte) string {
	return tt.WriteOut(tb, c.String(), w, h, frames)
}

const inPT, outPT = 96, 102

type run struct {
	t        *Transcoder
	out      [][]byte
	keyReqs  int
	outCodec Codec
}

func newRun(tb testing.TB, cfg Config, from, to Codec) *run {
	tb.Helper()
	r := &run{outCodec: to}
	tr, err := New(cfg, Stream{From: from, To: to, InPayloadType: inPT, OutPayloadType: outPT, OutSSRC: outSSRC},
		func(p []byte) { r.out = append(r.out, append([]byte(nil), p...)) },
		func() { r.keyReqs++ })
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tr.Close)
	r.t = tr
	return r
}

func (r *run) write(tb testing.TB, pkts [][]byte) {
	tb.Helper()
	for _, p := range pkts {
		if err := r.t.WriteRTP(p); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestTranscodeRealFrames sends a clip encoded by ffmpeg through the
// transcoder in RTP and has ffmpeg decode what comes out: every frame
// arrives, in the other codec, at the right size and profile, and looks like
// the source (PSNR against the source clip), never blank.
func TestTranscodeRealFrames(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to Codec
		codec    string
		profile  string
	}{
		{"vp8 to h264", VP8, H264, "h264", "Constrained Baseline"},
		{"h264 to vp8", H264, VP8, "vp8", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := makeClip(t, tc.from, 320, 240, 30, 30)
			r := newRun(t, Config{Bitrate: 800_000}, tc.from, tc.to)
			r.write(t, packetize(cl, inPT))
			got := depacketize(t, tc.to, r.out)
			if len(got.Frames) != 30 {
				t.Fatalf("%d frames out, want 30; stats %+v", len(got.Frames), r.t.Stats())
			}
			if !got.Keys[0] {
				t.Error("first output frame is not a keyframe")
			}
			if len(got.SSRCs) != 1 || !got.SSRCs[outSSRC] || got.PTs[0] != outPT {
				t.Errorf("output SSRCs %v, payload type %d", got.SSRCs, got.PTs[0])
			}
			path := writeOut(t, tc.to, 320, 240, got.Frames)
			p := tt.FFprobe(t, path)
			if p.Frames != 30 || p.W != 320 || p.H != 240 || p.Codec != tc.codec {
				t.Fatalf("ffprobe: %+v", p)
			}
			if tc.profile != "" && p.Profile != tc.profile {
				t.Errorf("profile %q, want %q", p.Profile, tc.profile)
			}
			if db := tt.PSNR(t, path, cl.Path, 320, 240); db < 28 {
				t.Errorf("PSNR against the source %.1f dB, want >= 28", db)
			} else {
				t.Logf("PSNR against the source %.1f dB", db)
			}
			for i, y := range tt.YAVG(t, path) {
				if y < 20 || y > 235 {
					t.Fatalf("frame %d has mean luma %.1f: blank", i, y)
				}
			}
			if r.keyReqs != 0 {
				t.Errorf("%d keyframe requests on a clean stream", r.keyReqs)
			}
			if s := r.t.Stats(); s.DecodeErrors != 0 || s.Assembler.Lost != 0 || s.FramesEncoded != 30 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestScaleAndFrameRate: the configured size and frame rate are what ffprobe
// reads, and a run-time change applies.
func TestScaleAndFrameRate(t *testing.T) {
	cl := makeClip(t, VP8, 320, 240, 30, 30)
	r := newRun(t, Config{Width: 160, Height: 120, FrameRate: 15}, VP8, H264)
	pkts := packetize(cl, inPT)
	r.write(t, pkts)
	got := depacketize(t, H264, r.out)
	p := tt.FFprobe(t, writeOut(t, H264, 160, 120, got.Frames))
	if p.W != 160 || p.H != 120 || p.Frames != 15 {
		t.Fatalf("ffprobe %+v, want 15 frames of 160x120", p)
	}
	if s := r.t.Stats(); s.FramesSkippedByRate != 15 {
		t.Errorf("skipped by rate %d, want 15", s.FramesSkippedByRate)
	}
	// At run time: 240x180, 30 fps. The encoder restarts with a keyframe.
	if err := r.t.SetResolution(240, 180); err != nil {
		t.Fatal(err)
	}
	if err := r.t.SetFrameRate(30); err != nil {
		t.Fatal(err)
	}
	if r.t.SetResolution(241, 180) == nil || r.t.SetFrameRate(0) == nil {
		t.Error("bad size or rate accepted")
	}
	n := len(r.out)
	// The same clip again: it starts with a keyframe; timestamps go on.
	r2 := packetize(cl, inPT)
	tt.Shift(r2, 30*3000, uint16(len(pkts)))
	r.write(t, r2)
	got = depacketize(t, H264, r.out[n:])
	if len(got.Frames) != 30 || !got.Keys[0] {
		t.Fatalf("%d frames after the change, first key %v", len(got.Frames), got.Keys[0])
	}
	p = tt.FFprobe(t, writeOut(t, H264, 240, 180, got.Frames))
	if p.W != 240 || p.H != 180 || p.Frames != 30 {
		t.Fatalf("after the change ffprobe %+v", p)
	}
}

// TestReorderAndDuplicates: packets swapped within the window and duplicated
// give the same 30 frames.
func TestReorderAndDuplicates(t *testing.T) {
	for _, c := range []Codec{VP8, H264} {
		t.Run(c.String(), func(t *testing.T) {
			cl := makeClip(t, c, 320, 240, 30, 30)
			pkts := packetize(cl, inPT)
			var mixed [][]byte
			for i := 0; i+1 < len(pkts); i += 2 {
				mixed = append(mixed, pkts[i+1], pkts[i], pkts[i])
			}
			if len(pkts)%2 == 1 {
				mixed = append(mixed, pkts[len(pkts)-1])
			}
			to := H264
			if c == H264 {
				to = VP8
			}
			r := newRun(t, Config{}, c, to)
			r.write(t, mixed)
			got := depacketize(t, to, r.out)
			s := r.t.Stats()
			if len(got.Frames) != 30 || s.Assembler.Duplicate == 0 || s.Assembler.Lost != 0 || r.keyReqs != 0 {
				t.Fatalf("%d frames, stats %+v, %d keyframe requests", len(got.Frames), s, r.keyReqs)
			}
			if p := tt.FFprobe(t, writeOut(t, to, 320, 240, got.Frames)); p.Frames != 30 {
				t.Fatalf("ffprobe %+v", p)
			}
		})
	}
}

// TestLossRequestsKeyframe: a packet lost in the middle of a frame fires the
// keyframe request callback; nothing is sent until the next keyframe, and
// what is sent decodes cleanly.
func TestLossRequestsKeyframe(t *testing.T) {
	for _, c := range []Codec{VP8, H264} {
		t.Run(c.String(), func(t *testing.T) {
			cl := makeClip(t, c, 320, 240, 30, 10) // keyframes at 0, 10, 20
			pkts := packetize(cl, inPT)
			// Drop the first packet of frame 4 (frames 4..9 cannot be decoded).
			idx, frame := 0, 0
			for i, p := range pkts {
				if frame == 4 {
					idx = i
					break
				}
				if p[1]&0x80 != 0 {
					frame++
				}
			}
			to := H264
			if c == H264 {
				to = VP8
			}
			r := newRun(t, Config{}, c, to)
			now := time.Unix(1000, 0)
			r.t.now = func() time.Time { return now }
			r.write(t, pkts[:idx])
			if r.keyReqs != 0 {
				t.Fatal("keyframe request before the loss")
			}
			r.write(t, pkts[idx+1:])
			s := r.t.Stats()
			if r.keyReqs == 0 || s.KeyframeRequests == 0 || s.Assembler.Lost == 0 {
				t.Fatalf("no keyframe request after a loss: stats %+v", s)
			}
			got := depacketize(t, to, r.out)
			if len(got.Frames) != 24 {
				t.Errorf("%d frames out, want 24 (frames 4 to 9 held back until the keyframe)", len(got.Frames))
			}
			// The output stream itself lost nothing: the encoder goes on
			// without a keyframe of its own.
			if s.DecodeErrors != 0 {
				t.Errorf("%d decode errors: a broken frame reached the decoder", s.DecodeErrors)
			}
			if p := tt.FFprobe(t, writeOut(t, to, 320, 240, got.Frames)); p.Frames != 24 {
				t.Fatalf("ffprobe %+v", p)
			}
			// Rate limited: with the clock stopped, one more loss asks no more.
			before := r.keyReqs
			r.t.requestUpstream()
			if r.keyReqs != before {
				t.Error("keyframe request not rate limited")
			}
			now = now.Add(time.Second)
			r.t.requestUpstream()
			if r.keyReqs != before+1 {
				t.Error("keyframe request not sent after the interval")
			}
		})
	}
}

// TestPLIForcesKeyframe: after a PLI (or a new FIR) for the output SSRC, the
// next output frame is a keyframe; feedback for another SSRC changes nothing;
// REMB sets the bitrate within its bounds.
func TestPLIForcesKeyframe(t *testing.T) {
	for _, c := range []Codec{VP8, H264} {
		t.Run(c.String(), func(t *testing.T) {
			cl := makeClip(t, c, 320, 240, 30, 30)
			pkts := packetize(cl, inPT)
			to := H264
			if c == H264 {
				to = VP8
			}
			r := newRun(t, Config{}, c, to)
			fb := func(p rtcp.Packet) {
				b, err := p.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				if err := r.t.HandleRTCP(b); err != nil {
					t.Fatal(err)
				}
			}
			frames := 0
			writeFrame := func() bool {
				n := len(r.out)
				for len(pkts) > 0 {
					p := pkts[0]
					pkts = pkts[1:]
					r.write(t, [][]byte{p})
					if p[1]&0x80 != 0 {
						break
					}
				}
				frames++
				got := depacketize(t, to, r.out[n:])
				if len(got.Frames) != 1 {
					t.Fatalf("frame %d: %d frames out", frames, len(got.Frames))
				}
				return got.Keys[0]
			}
			for range 5 {
				writeFrame()
			}
			if writeFrame() {
				t.Fatal("frame 6 is a keyframe without a request")
			}
			fb(&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: outSSRC + 1})
			if writeFrame() {
				t.Fatal("a PLI for another SSRC forced a keyframe")
			}
			fb(&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: outSSRC})
			if !writeFrame() {
				t.Fatal("the frame after a PLI is not a keyframe")
			}
			if writeFrame() {
				t.Fatal("two keyframes for one PLI")
			}
			fir := &rtcp.FullIntraRequest{SenderSSRC: 1, FIR: []rtcp.FIREntry{{SSRC: outSSRC, SequenceNumber: 7}}}
			fb(fir)
			if !writeFrame() {
				t.Fatal("the frame after a FIR is not a keyframe")
			}
			fb(fir) // retransmission: same sequence number
			if writeFrame() {
				t.Fatal("a retransmitted FIR forced a keyframe")
			}
			fb(&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 300_000, SSRCs: []uint32{outSSRC}})
			writeFrame()
			if s := r.t.Stats(); s.Bitrate != 300_000 {
				t.Errorf("bitrate %d after REMB 300000", s.Bitrate)
			}
			fb(&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 1, SSRCs: []uint32{outSSRC}})
			writeFrame()
			if s := r.t.Stats(); s.Bitrate != 100_000 {
				t.Errorf("bitrate %d after REMB 1, want the minimum 100000", s.Bitrate)
			}
			r.t.SetBitrate(math.MaxInt32)
			writeFrame()
			if s := r.t.Stats(); s.Bitrate != 4_000_000 {
				t.Errorf("bitrate %d, want the maximum", s.Bitrate)
			}
			if r.t.HandleRTCP([]byte{1, 2, 3}) == nil {
				t.Error("garbage RTCP accepted")
			}
		})
	}
}

// TestGarbageIsDropped: random and truncated packets between good ones are
// counted and never reach the decoder as a frame; the stream goes on.
func TestGarbageIsDropped(t *testing.T) {
	cl := makeClip(t, VP8, 320, 240, 30, 30)
	pkts := packetize(cl, inPT)
	r := newRun(t, Config{}, VP8, H264)
	junk := [][]byte{nil, {0x80}, {0x80, inPT, 0, 1}, make([]byte, 2000), {0x40, inPT, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}}
	for i, p := range pkts {
		r.write(t, [][]byte{p})
		if i%5 == 0 {
			r.write(t, junk)
		}
	}
	s := r.t.Stats()
	if s.Assembler.Garbage == 0 || s.FramesEncoded != 30 || s.DecodeErrors != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestHostileVP8Size: a VP8 keyframe declaring 16000x16000 is refused before
// libvpx allocates for it, and a keyframe is asked for.
func TestHostileVP8Size(t *testing.T) {
	r := newRun(t, Config{}, VP8, H264)
	frame := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x3e, 0x80, 0x3e, 0, 0, 0, 0}
	p := []byte{0x80, 0x80 | inPT, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0x10}
	r.write(t, [][]byte{append(p, frame...)})
	s := r.t.Stats()
	if s.DecodeErrors != 1 || r.keyReqs != 1 || s.FramesDecoded != 0 {
		t.Fatalf("stats %+v, %d keyframe requests", s, r.keyReqs)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Width: 321, Height: 240}, "width: must be 0 or an even number up to 4096, got 321"},
		{Config{Width: 320}, "width: width and height are set together or not at all"},
		{Config{FrameRate: 120}, "frame_rate: must be between 1 and 60, got 120"},
		{Config{Bitrate: 50_000}, "bitrate: must be between min_bitrate and max_bitrate, got 50000"},
		{Config{MTU: 100}, "mtu: must be between 200 and 1500, got 100"},
		{Config{Jitter: -time.Second}, "jitter: must be above 0 and at most 2s, got -1s"},
	} {
		err := tc.cfg.Defaults().Validate()
		if err == nil || err.Error() != tc.want {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{}).Defaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if _, err := New(Config{}, Stream{From: VP8, To: VP8}, func([]byte) {}, nil); err == nil {
		t.Error("VP8 to VP8 accepted")
	}
}

// TestJoinMidStream: a stream that starts with delta frames (the sender's
// keyframe was before we joined) gets a keyframe request and sends nothing
// until the keyframe; then everything.
func TestJoinMidStream(t *testing.T) {
	cl := makeClip(t, H264, 320, 240, 30, 15) // keyframes at 0 and 15
	pkts := packetize(cl, inPT)
	start, frame := 0, 0
	for i, p := range pkts {
		if frame == 5 {
			start = i
			break
		}
		if p[1]&0x80 != 0 {
			frame++
		}
	}
	r := newRun(t, Config{}, H264, VP8)
	r.write(t, pkts[start:])
	got := depacketize(t, VP8, r.out)
	s := r.t.Stats()
	if r.keyReqs == 0 || len(got.Frames) != 15 || !got.Keys[0] || s.DecodeErrors != 0 {
		t.Fatalf("%d keyframe requests, %d frames out (want 15 from the keyframe on); stats %+v", r.keyReqs, len(got.Frames), s)
	}
}

// TestInputSizeLimit: pictures beyond max_input_width x max_input_height are
// refused (VP8 before decoding, H.264 once decoded), nothing is sent, and
// a keyframe is asked for.
func TestInputSizeLimit(t *testing.T) {
	for _, c := range []Codec{VP8, H264} {
		t.Run(c.String(), func(t *testing.T) {
			cl := makeClip(t, c, 320, 240, 30, 30)
			to := H264
			if c == H264 {
				to = VP8
			}
			r := newRun(t, Config{MaxInputWidth: 160, MaxInputHeight: 120}, c, to)
			r.write(t, packetize(cl, inPT))
			s := r.t.Stats()
			if len(r.out) != 0 || s.DecodeErrors == 0 || s.FramesDecoded != 0 || r.keyReqs == 0 {
				t.Fatalf("%d packets out, %d keyframe requests, stats %+v", len(r.out), r.keyReqs, s)
			}
		})
	}
}

// TestFrameRateSchedule: frames go out on a schedule of one per interval of
// the configured rate, whatever the input rate: 20 fps in at 15 fps out
// keeps three frames in four, not one in two.
func TestFrameRateSchedule(t *testing.T) {
	cases := []struct {
		inTicks  uint32 // RTP ticks between input frames (90 kHz)
		rate     float64
		in, want int
	}{
		{4500, 15, 40, 30}, // 20 fps -> 15
		{3000, 20, 30, 20}, // 30 fps -> 20
		{3000, 10, 30, 10}, // 30 fps -> 10
		{3000, 30, 30, 30}, // unchanged
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dticks-%gfps", c.inTicks, c.rate), func(t *testing.T) {
			cl := makeClip(t, VP8, 160, 120, c.in, c.in)
			pkts := packetize(cl, inPT)
			var ts0 uint32
			for i, b := range pkts { // the clip's 3000-tick steps become inTicks
				var p rtp.Packet
				if err := p.Unmarshal(b); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					ts0 = p.Timestamp
				}
				p.Timestamp = ts0 + (p.Timestamp-ts0)/3000*c.inTicks
				out, err := p.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				copy(b, out)
			}
			r := newRun(t, Config{FrameRate: c.rate}, VP8, H264)
			r.write(t, pkts)
			got := depacketize(t, H264, r.out)
			if len(got.Frames) != c.want {
				t.Fatalf("%d frames out of %d at %g fps, want %d", len(got.Frames), c.in, c.rate, c.want)
			}
		})
	}
}

// TestFeedbackAdaptsSizeAndFrameRate: once REMB sets the bitrate, a
// picture left with too few bits per pixel steps down (half the size, then
// half the frame rate, then a quarter of the size), one step per 2 s at
// most, and steps back up when the receiver allows more.
func TestFeedbackAdaptsSizeAndFrameRate(t *testing.T) {
	// H.264 to VP8: libvpx is set never to drop a frame for its bitrate
	// (openh264 skips frames at low bitrates), so frame counts are the
	// schedule's.
	cl := makeClip(t, H264, 640, 480, 30, 30)
	r := newRun(t, Config{MinBitrate: 20_000}, H264, VP8)
	now := time.Unix(1000, 0)
	r.t.now = func() time.Time { return now }
	round := 0
	send := func() int { // the clip once more, timestamps going on: the frames out
		pkts := packetize(cl, inPT)
		tt.Shift(pkts, uint32(round*30*3000), uint16(round*len(pkts)))
		round++
		n := len(r.out)
		r.write(t, pkts)
		return len(depacketize(t, VP8, r.out[n:]).Frames)
	}
	remb := func(bps float32) {
		b, err := (&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: bps, SSRCs: []uint32{outSSRC}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.t.HandleRTCP(b); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, frames, minFrames, maxFrames, w, h, step int) {
		t.Helper()
		s := r.t.Stats()
		if frames < minFrames || frames > maxFrames || s.Width != w || s.Height != h || s.Adaptation != step {
			t.Fatalf("%s: %d frames out of 30 at %dx%d, step %d; want %d-%d at %dx%d, step %d",
				what, frames, s.Width, s.Height, s.Adaptation, minFrames, maxFrames, w, h, step)
		}
	}
	check("no feedback", send(), 30, 30, 640, 480, 0)
	remb(150_000) // 0.016 bits per pixel at 640x480x30
	check("REMB 150 kbit/s", send(), 30, 30, 320, 240, 1)
	remb(40_000) // 0.017 at 320x240x30, but within 2 s of the last step
	check("REMB 40 kbit/s at once", send(), 30, 30, 320, 240, 1)
	now = now.Add(3 * time.Second)
	check("REMB 40 kbit/s 3 s later", send(), 14, 16, 320, 240, 2)
	remb(10_000) // the minimum, 20 kbit/s: 0.017 at 320x240x15
	now = now.Add(3 * time.Second)
	check("REMB 20 kbit/s", send(), 14, 16, 160, 120, 3)
	now = now.Add(3 * time.Second)
	check("at the smallest step", send(), 14, 16, 160, 120, 3)
	remb(3_000_000)
	for step, want := range []struct{ frames, w, h int }{{15, 320, 240}, {30, 320, 240}, {30, 640, 480}} {
		now = now.Add(3 * time.Second)
		check(fmt.Sprintf("REMB 3 Mbit/s, step %d", 2-step), send(), want.frames-1, want.frames, want.w, want.h, 2-step)
	}
}
