// Package transcodetest holds what the transcoder's tests and benchmarks
// share: test clips made by Debian's ffmpeg, RTP packetization of a clip as
// a sender does it, depacketization of what comes out, and the independent
// decoder's view of it (ffprobe, PSNR, mean luma). Codecs are named as SDP
// does ("VP8", "H264", any case). Only tests import it.
package transcodetest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/ucgate/ucgate/e2e/harness"
)

// RemoveClips removes the clips made in a temporary directory (not those
// in TRANSCODE_CLIP_DIR); TestMain calls it after the tests.
func RemoveClips() {
	clipMu.Lock()
	defer clipMu.Unlock()
	if clipDir != "" {
		os.RemoveAll(clipDir)
		clipDir = ""
		clipCache = map[string]*Clip{}
	}
}

// isVP8 reports whether codec names VP8 (else it is H.264).
func isVP8(codec string) bool { return strings.EqualFold(codec, "vp8") }

// Clip is a test clip made by Debian's ffmpeg from its testsrc pattern (a
// moving picture with a counter): the encoded frames, one per element, and
// the file they came from.
type Clip struct {
	Codec  string
	W, H   int
	Frames [][]byte
	Path   string
}

var (
	clipMu    sync.Mutex
	clipCache = map[string]*Clip{}
	clipDir   string
)

// MakeClip encodes n frames of testsrc at w x h, 30 fps, a keyframe every
// gop frames, with libvpx (VP8, IVF) or libx264 (constrained baseline,
// Annex B with access unit delimiters). TRANSCODE_CLIP_DIR keeps the files
// (scripts/bench.sh hands the same clips to the ffmpeg command).
func MakeClip(tb testing.TB, c string, w, h, n, gop int) *Clip {
	tb.Helper()
	ffmpeg := harness.RequirePeer(tb, "ffmpeg")
	key := fmt.Sprintf("%s-%dx%d-%d-%d", strings.ToLower(c), w, h, n, gop)
	clipMu.Lock()
	defer clipMu.Unlock()
	if cl, ok := clipCache[key]; ok {
		return cl
	}
	dir := os.Getenv("TRANSCODE_CLIP_DIR")
	if dir == "" {
		if clipDir == "" {
			d, err := os.MkdirTemp("", "ucgate-transcode-clips")
			if err != nil {
				tb.Fatal(err)
			}
			clipDir = d
		}
		dir = clipDir
	}
	src := fmt.Sprintf("testsrc=size=%dx%d:rate=30", w, h)
	var path string
	var args []string
	if isVP8(c) {
		path = filepath.Join(dir, key+".ivf")
		args = []string{"-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M",
			"-g", strconv.Itoa(gop), "-auto-alt-ref", "0", "-lag-in-frames", "0", "-f", "ivf"}
	} else {
		path = filepath.Join(dir, key+".h264")
		args = []string{"-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
			"-b:v", "1M", "-g", strconv.Itoa(gop), "-bsf:v", "h264_metadata=aud=insert", "-f", "h264"}
	}
	if _, err := os.Stat(path); err != nil {
		cmd := append([]string{"-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src,
			"-frames:v", strconv.Itoa(n), "-pix_fmt", "yuv420p", "-threads", "1"}, args...)
		cmd = append(cmd, path)
		if out, err := exec.Command(ffmpeg, cmd...).CombinedOutput(); err != nil {
			tb.Fatalf("ffmpeg %v: %v\n%s", cmd, err, out)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	cl := &Clip{Codec: c, W: w, H: h, Path: path}
	if isVP8(c) {
		cl.Frames = ReadIVF(tb, data)
	} else {
		cl.Frames = SplitAUs(data)
	}
	if len(cl.Frames) != n {
		tb.Fatalf("clip %s: %d frames, want %d", path, len(cl.Frames), n)
	}
	clipCache[key] = cl
	return cl
}

// ReadIVF returns the frames of an IVF file (32-byte header, then a 12-byte
// header before each frame).
func ReadIVF(tb testing.TB, b []byte) [][]byte {
	if len(b) < 32 || string(b[:4]) != "DKIF" {
		tb.Fatal("not an IVF file")
	}
	var out [][]byte
	for off := int(binary.LittleEndian.Uint16(b[6:])); off+12 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		off += 12
		if off+n > len(b) {
			tb.Fatal("truncated IVF frame")
		}
		out = append(out, b[off:off+n])
		off += n
	}
	return out
}

// WriteIVF writes VP8 frames as an IVF file ffmpeg reads.
func WriteIVF(path string, w, h int, frames [][]byte) error {
	var b bytes.Buffer
	hdr := make([]byte, 32)
	copy(hdr, "DKIF")
	binary.LittleEndian.PutUint16(hdr[6:], 32)
	copy(hdr[8:], "VP80")
	binary.LittleEndian.PutUint16(hdr[12:], uint16(w))
	binary.LittleEndian.PutUint16(hdr[14:], uint16(h))
	binary.LittleEndian.PutUint32(hdr[16:], 30)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	binary.LittleEndian.PutUint32(hdr[24:], uint32(len(frames)))
	b.Write(hdr)
	for i, f := range frames {
		fh := make([]byte, 12)
		binary.LittleEndian.PutUint32(fh, uint32(len(f)))
		binary.LittleEndian.PutUint64(fh[4:], uint64(i))
		b.Write(fh)
		b.Write(f)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// SplitAUs splits an Annex B stream into access units at its access unit
// delimiters (NAL type 9), dropping the delimiters.
func SplitAUs(b []byte) [][]byte {
	var out [][]byte
	var cur []byte
	starts := nalStarts(b)
	for i, s := range starts {
		end := len(b)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		nal := b[s:end]
		body := bytes.TrimLeft(nal, "\x00")[1:]
		if body[0]&0x1f == 9 {
			if cur != nil {
				out = append(out, cur)
			}
			cur = []byte{}
			continue
		}
		cur = append(cur, nal...)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// nalStarts returns the offsets of the start codes (00 00 01, or the 00 00
// 00 01 around it) in b.
func nalStarts(b []byte) []int {
	var out []int
	for i := 0; i+3 <= len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			s := i
			if s > 0 && b[s-1] == 0 {
				s--
			}
			out = append(out, s)
			i += 2
		}
	}
	return out
}

// NALTypes returns the NAL unit types of an Annex B access unit.
func NALTypes(au []byte) []byte {
	var t []byte
	for i := 0; i+3 < len(au); i++ {
		if au[i] == 0 && au[i+1] == 0 && au[i+2] == 1 {
			t = append(t, au[i+3]&0x1f)
			i += 2
		}
	}
	return t
}

// Packetize turns a clip into RTP packets, as a browser or phone sends them
// (pion's payloaders, 1200-byte MTU), with sequence numbers and timestamps
// starting near their wrap to exercise it.
func Packetize(cl *Clip, pt uint8, ssrc uint32) [][]byte {
	var pkts [][]byte
	seq := uint16(65530)
	ts := uint32(0xffffffff - 6000)
	vp8 := codecs.VP8Payloader{EnablePictureID: true}
	var h264 codecs.H264Payloader
	for _, f := range cl.Frames {
		var pls [][]byte
		if isVP8(cl.Codec) {
			pls = vp8.Payload(1188, f)
		} else {
			pls = h264.Payload(1188, f)
		}
		for i, pl := range pls {
			p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts,
				SSRC: ssrc, Marker: i == len(pls)-1}, Payload: pl}
			b, _ := p.Marshal()
			pkts = append(pkts, b)
			seq++
		}
		ts += 3000
	}
	return pkts
}

// Received is what came out of a transcoder, depacketized with pion's
// depacketizers in order, one frame per marker.
type Received struct {
	Frames [][]byte
	Keys   []bool
	PTs    []uint8
	SSRCs  map[uint32]bool
}

// Depacketize checks the packets (in order, consecutive sequence numbers,
// at most mtu bytes) and returns their frames.
func Depacketize(tb testing.TB, c string, pkts [][]byte, mtu int) *Received {
	tb.Helper()
	r := &Received{SSRCs: map[uint32]bool{}}
	var vp8 codecs.VP8Packet
	var h264 codecs.H264Packet
	var cur []byte
	var lastSeq uint16
	for i, raw := range pkts {
		var p rtp.Packet
		if err := p.Unmarshal(raw); err != nil {
			tb.Fatalf("output packet %d: %v", i, err)
		}
		if len(raw) > mtu {
			tb.Fatalf("output packet %d is %d bytes, above the MTU", i, len(raw))
		}
		if i > 0 && p.SequenceNumber != lastSeq+1 {
			tb.Fatalf("output packet %d: sequence %d after %d", i, p.SequenceNumber, lastSeq)
		}
		lastSeq = p.SequenceNumber
		r.SSRCs[p.SSRC] = true
		r.PTs = append(r.PTs, p.PayloadType)
		var b []byte
		var err error
		if isVP8(c) {
			b, err = vp8.Unmarshal(p.Payload)
		} else {
			b, err = h264.Unmarshal(p.Payload)
		}
		if err != nil {
			tb.Fatalf("output packet %d: depacketize: %v", i, err)
		}
		cur = append(cur, b...)
		if p.Marker {
			r.Frames = append(r.Frames, cur)
			if isVP8(c) {
				r.Keys = append(r.Keys, cur[0]&1 == 0)
			} else {
				r.Keys = append(r.Keys, bytes.Contains(NALTypes(cur), []byte{5}))
			}
			cur = nil
		}
	}
	return r
}

// WriteOut writes received frames to a file ffmpeg reads: IVF for VP8, an
// Annex B .h264 file for H.264.
func WriteOut(tb testing.TB, c string, w, h int, frames [][]byte) string {
	tb.Helper()
	dir := tb.TempDir()
	if isVP8(c) {
		p := filepath.Join(dir, "out.ivf")
		if err := WriteIVF(p, w, h, frames); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	p := filepath.Join(dir, "out.h264")
	if err := os.WriteFile(p, bytes.Join(frames, nil), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Probe is what ffprobe, an independent decoder, reads from a file.
type Probe struct {
	Frames  int
	W, H    int
	Profile string
	Codec   string
}

// FFprobe decodes a file with ffprobe and counts its frames.
func FFprobe(tb testing.TB, path string) Probe {
	tb.Helper()
	bin := harness.RequirePeer(tb, "ffprobe")
	out, err := exec.Command(bin, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,profile,width,height,nb_read_frames", "-of", "default=nw=1", path).CombinedOutput()
	if err != nil {
		tb.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	var p Probe
	for _, l := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(l, "=")
		switch k {
		case "codec_name":
			p.Codec = v
		case "profile":
			p.Profile = v
		case "width":
			p.W, _ = strconv.Atoi(v)
		case "height":
			p.H, _ = strconv.Atoi(v)
		case "nb_read_frames":
			p.Frames, _ = strconv.Atoi(v)
		}
	}
	return p
}

var psnrRe = regexp.MustCompile(`average:([0-9.]+|inf)`)

// PSNR decodes both files with ffmpeg and returns the average luma+chroma
// PSNR of a against ref, frame by frame; a is scaled to ref's size first. It
// also fails the test when ffmpeg reports a decoding error in a.
func PSNR(tb testing.TB, a, ref string, w, h int) float64 {
	tb.Helper()
	bin := harness.RequirePeer(tb, "ffmpeg")
	args := []string{"-hide_banner", "-nostats", "-threads", "1", "-err_detect", "explode", "-i", a, "-i", ref,
		"-lavfi", fmt.Sprintf("[0:v]scale=%d:%d[a];[a][1:v]psnr", w, h), "-f", "null", "-"}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("ffmpeg psnr: %v\n%s", err, out)
	}
	m := psnrRe.FindSubmatch(out)
	if m == nil {
		tb.Fatalf("ffmpeg printed no PSNR:\n%s", out)
	}
	if string(m[1]) == "inf" {
		return 100
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// YAVG returns the mean luma of every frame of a file (ffmpeg signalstats).
func YAVG(tb testing.TB, path string) []float64 {
	tb.Helper()
	bin := harness.RequirePeer(tb, "ffmpeg")
	out, err := exec.Command(bin, "-hide_banner", "-nostats", "-threads", "1", "-i", path,
		"-vf", "signalstats,metadata=print:key=lavfi.signalstats.YAVG", "-f", "null", "-").CombinedOutput()
	if err != nil {
		tb.Fatalf("ffmpeg signalstats: %v\n%s", err, out)
	}
	var v []float64
	for _, m := range regexp.MustCompile(`YAVG=([0-9.]+)`).FindAllSubmatch(out, -1) {
		f, _ := strconv.ParseFloat(string(m[1]), 64)
		v = append(v, f)
	}
	return v
}

// Shift moves packets' timestamps and sequence numbers on, in place.
func Shift(pkts [][]byte, dts uint32, dseq uint16) {
	for _, p := range pkts {
		seq := binary.BigEndian.Uint16(p[2:]) + dseq
		binary.BigEndian.PutUint16(p[2:], seq)
		binary.BigEndian.PutUint32(p[4:], binary.BigEndian.Uint32(p[4:])+dts)
	}
}
