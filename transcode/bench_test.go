package transcode

import (
	"encoding/binary"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user and system) of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTranscode transcodes a 60-frame ffmpeg testsrc clip (looped) one
// frame per iteration: RTP in, RTP out, codecs single-threaded. It reports
// frames per wall second, frames per CPU-second (per core), and the time
// each frame spends in the transcoder (p50, p99): the latency it adds, the
// assembler adding none to in-order packets. scripts/bench.sh puts the
// ffmpeg command transcoding the same clip beside it
// (TRANSCODE_CLIP_DIR names the clips' directory).
func BenchmarkTranscode(b *testing.B) {
	for _, dir := range []struct {
		name     string
		from, to Codec
	}{{"vp8-h264", VP8, H264}, {"h264-vp8", H264, VP8}} {
		for _, size := range []struct {
			w, h, bitrate int
		}{{640, 480, 1_000_000}, {1280, 720, 2_500_000}} {
			b.Run(fmt.Sprintf("%s/%dx%d", dir.name, size.w, size.h), func(b *testing.B) {
				cl := makeClip(b, dir.from, size.w, size.h, 60, 60)
				pkts := packetize(cl, inPT)
				// Frame boundaries in pkts.
				var ends []int
				for i, p := range pkts {
					if p[1]&0x80 != 0 {
						ends = append(ends, i+1)
					}
				}
				outFrames := 0
				tr, err := New(Config{Bitrate: size.bitrate, MaxBitrate: 4_000_000},
					Stream{From: dir.from, To: dir.to, InPayloadType: inPT, OutPayloadType: outPT, OutSSRC: outSSRC},
					func(p []byte) {
						if p[1]&0x80 != 0 {
							outFrames++
						}
					}, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Close()
				lat := make([]time.Duration, 0, b.N)
				buf := make([]byte, 1500)
				var seqBase uint16
				var tsBase uint32
				b.ReportAllocs()
				b.ResetTimer()
				cpu0, t0 := cpuTime(), time.Now()
				for i := 0; i < b.N; i++ {
					f := i % len(ends)
					if f == 0 && i > 0 {
						seqBase += uint16(len(pkts))
						tsBase += uint32(len(ends)) * 3000
					}
					start := 0
					if f > 0 {
						start = ends[f-1]
					}
					ft := time.Now()
					for _, p := range pkts[start:ends[f]] {
						n := copy(buf, p)
						binary.BigEndian.PutUint16(buf[2:], binary.BigEndian.Uint16(p[2:])+seqBase)
						binary.BigEndian.PutUint32(buf[4:], binary.BigEndian.Uint32(p[4:])+tsBase)
						if err := tr.WriteRTP(buf[:n]); err != nil {
							b.Fatal(err)
						}
					}
					lat = append(lat, time.Since(ft))
				}
				wall, cpu := time.Since(t0), cpuTime()-cpu0
				b.StopTimer()
				if s := tr.Stats(); s.DecodeErrors != 0 || outFrames < b.N*9/10 {
					b.Fatalf("%d frames out of %d; stats %+v", outFrames, b.N, s)
				}
				slices.Sort(lat)
				b.ReportMetric(float64(b.N)/wall.Seconds(), "frames/s")
				if cpu > 0 {
					b.ReportMetric(float64(b.N)/cpu.Seconds(), "frames/cpu-s")
				}
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			})
		}
	}
}

// BenchmarkAssembler is the per-packet cost of the frame assembler alone
// (VP8, 640x480 clip, in order).
func BenchmarkAssembler(b *testing.B) {
	cl := makeClip(b, VP8, 640, 480, 60, 60)
	pkts := packetize(cl, inPT)
	a, err := NewAssembler(AssemblerConfig{Codec: VP8, PayloadType: inPT})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1500)
	frames := 0
	emit := func(Frame) { frames++ }
	var seqBase uint16
	var tsBase uint32
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(pkts)
		if k == 0 && i > 0 {
			seqBase += uint16(len(pkts))
			tsBase += 60 * 3000
		}
		p := pkts[k]
		n := copy(buf, p)
		binary.BigEndian.PutUint16(buf[2:], binary.BigEndian.Uint16(p[2:])+seqBase)
		binary.BigEndian.PutUint32(buf[4:], binary.BigEndian.Uint32(p[4:])+tsBase)
		a.Push(buf[:n], emit)
	}
	if b.N > len(pkts) && frames == 0 {
		b.Fatal("no frames")
	}
}
