package media

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/ucgate/ucgate/core"
)

// The benchmarks relay G.711 packets: 12-byte header, 160-byte payload
// (20 ms at 8 kHz).
const benchPayload = 160

// BenchmarkRelayPath is the relay's per-packet work for one packet, the
// send to the loopback socket included and the receive excluded: what
// one reader goroutine spends per RTP packet.
func BenchmarkRelayPath(b *testing.B) {
	for _, tc := range []struct {
		name          string
		inSRTP, outTo string // suites; "" plain
	}{
		{"rtp", "", ""},
		{"srtp-to-rtp", "AES_CM_128_HMAC_SHA1_80", ""},
		{"rtp-to-srtp", "", "AES_CM_128_HMAC_SHA1_80"},
		{"srtp-to-srtp", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80"},
		{"gcm-to-rtp", "AEAD_AES_128_GCM", ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := testConfig(20)
			cfg.MaxPacketsPerSecond, cfg.MaxBitrate = 1e9, 1e12 // limits checked, never reached
			e, _ := newEngine(b, cfg)
			sink := newPhone(b, "127.0.0.1") // nobody reads: the kernel drops once its buffer is full
			c := e.NewCall(core.NewSessionID(), nil, nil)
			defer c.Close()
			src := netip.MustParseAddrPort("127.0.0.1:4000")
			off := audio(src)
			var sp *srtpPhone
			if tc.inSRTP != "" {
				sp = newSRTPPhone(b, tc.inSRTP)
				off.Protocol, off.Crypto = "RTP/SAVP", []core.Crypto{{Tag: 1, Suite: tc.inSRTP, Key: sp.inline}}
			}
			mode := SRTPNone
			if tc.outTo != "" {
				mode = SRTPWant
			}
			out, err := c.Offer(core.RoleCaller, desc(off), PeerInfo{SRTP: mode})
			if err != nil {
				b.Fatal(err)
			}
			ans := audio(sink.addr)
			if tc.outTo != "" {
				peer := newSRTPPhone(b, tc.outTo)
				ans.Protocol, ans.Crypto = "RTP/SAVP", []core.Crypto{{Tag: out.Streams[0].Crypto[0].Tag, Suite: tc.outTo, Key: peer.inline}}
			}
			if _, err := c.Answer(core.RoleCallee, desc(ans), PeerInfo{}); err != nil {
				b.Fatal(err)
			}
			st := c.streams[0]
			r := &reader{c: c, st: st, d: st.dirs[0], peer: st.dirs[1], out: st.sides[1], buf: make([]byte, bufSize)}
			r.reload(st.dirs[0].cfg.Load())

			const chunk = 4096
			pkts := make([][]byte, chunk)
			fill := func(from int) {
				for i := range pkts {
					seq := from + i
					p := rtpPkt(b, 0, 0xBE7C, uint16(seq), uint32(seq*160), make([]byte, benchPayload))
					if sp != nil {
						p = sp.seal(b, p)
					}
					pkts[i] = p
				}
			}
			fill(0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%chunk == 0 && i > 0 {
					b.StopTimer()
					fill(i)
					b.StartTimer()
				}
				p := pkts[i%chunk]
				n := copy(r.buf, p)
				r.relayRTP(r.buf[:n], src, e.now())
			}
			b.StopTimer()
			if s := st.dirs[0].stats(st, "caller"); s.Packets != uint64(b.N) {
				b.Fatalf("relayed %d of %d: %v", s.Packets, b.N, s.Dropped)
			}
		})
	}
}

// BenchmarkRelayLoopback relays G.711 streams over real loopback sockets
// at full speed. The phones (a pool of sender goroutines, a receiver per
// callee) run in a child process, so that this process's CPU time is the
// relay's alone. Metrics: pkts/s relayed, pkts/cpu-s (relayed per second
// of this process's CPU: per core), the latency the relay adds under the
// load (p50, p99, from timestamps in the payload, queueing in the window
// included), allocs/op per relayed packet. "forward" is the baseline: a
// plain Go UDP forwarder per stream (read, write; no checks) in place of
// the relay. window is how many packets may be in flight: a full load
// (hundreds: the latency then is mostly queueing) or a light one (a few:
// the latency is the relay's own). Run with a fixed count, e.g.
// -benchtime=200000x.
func BenchmarkRelayLoopback(b *testing.B) {
	for _, load := range []struct{ streams, window int }{{100, 400}, {1000, 1024}, {100, 4}} {
		for _, mode := range []string{"forward", "rtp", "srtp-to-rtp"} {
			b.Run(fmt.Sprintf("%s/streams=%d/window=%d", mode, load.streams, load.window), func(b *testing.B) {
				benchLoopback(b, mode, load.streams, load.window)
			})
		}
	}
}

// phonesReq and phonesResp are the lines exchanged with the child.
type phonesReq struct {
	Streams int
	SRTP    string // suite; "" plain
	Targets []string
	Packets int
	Window  int
	Senders int
}

type phonesResp struct {
	Callers, Callees, Keys []string
	Received               int
	ElapsedNs              int64
	P50Ns, P99Ns           int64
}

func benchLoopback(b *testing.B, mode string, streams, window int) {
	if testing.Short() {
		b.Skip("loopback load in -short mode")
	}
	suite := ""
	if mode == "srtp-to-rtp" {
		suite = "AES_CM_128_HMAC_SHA1_80"
	}
	child := startPhones(b)
	defer child.stop()
	resp := child.ask(b, phonesReq{Streams: streams, SRTP: suite})

	targets := make([]string, streams)
	switch mode {
	case "forward":
		stop := forwarders(b, resp, targets)
		defer stop()
	default:
		cfg := testConfig(4*streams + 8)
		cfg.MaxPacketsPerSecond, cfg.MaxBitrate = 1e9, 1e12 // full speed is the point; the limits are still checked
		e, _ := newEngine(b, cfg)
		for i := range streams {
			c := e.NewCall(core.NewSessionID(), nil, nil)
			off := audio(netip.MustParseAddrPort(resp.Callers[i]))
			if suite != "" {
				off.Protocol, off.Crypto = "RTP/SAVP", []core.Crypto{{Tag: 1, Suite: suite, Key: resp.Keys[i]}}
			}
			if _, err := c.Offer(core.RoleCaller, desc(off), PeerInfo{SRTP: SRTPNone}); err != nil {
				b.Fatal(err)
			}
			back, err := c.Answer(core.RoleCallee, desc(audio(netip.MustParseAddrPort(resp.Callees[i]))), PeerInfo{})
			if err != nil {
				b.Fatal(err)
			}
			targets[i] = back.Streams[0].Addr.String()
		}
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	res := child.ask(b, phonesReq{Targets: targets, Packets: b.N, Window: window, Senders: 4})
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if res.Received < b.N*99/100 {
		b.Fatalf("received %d of %d", res.Received, b.N)
	}
	secs := float64(res.ElapsedNs) / 1e9
	b.ReportMetric(float64(res.Received)/secs, "pkts/s")
	b.ReportMetric(float64(res.Received)/cpu.Seconds(), "pkts/cpu-s")
	b.ReportMetric(float64(res.P50Ns)/1e3, "p50-µs")
	b.ReportMetric(float64(res.P99Ns)/1e3, "p99-µs")
	b.ReportMetric(float64(b.N-res.Received), "lost")
}

// forwarders starts the baseline: per stream a socket and a goroutine
// that writes whatever it reads to the callee.
func forwarders(b *testing.B, resp phonesResp, targets []string) func() {
	var wg sync.WaitGroup
	var conns []*net.UDPConn
	for i := range targets {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		targets[i] = c.LocalAddr().String()
		dst := netip.MustParseAddrPort(resp.Callees[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, bufSize)
			for {
				n, _, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				c.WriteToUDPAddrPort(buf[:n], dst)
			}
		}()
	}
	return func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// phones is the child process that plays the phones.
type phones struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startPhones(b *testing.B) *phones {
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadPhones$")
	cmd.Env = append(os.Environ(), "UCGATE_MEDIA_PHONES=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return &phones{cmd: cmd, in: in, out: bufio.NewReader(out)}
}

func (p *phones) ask(b *testing.B, req phonesReq) phonesResp {
	line, _ := json.Marshal(req)
	if _, err := p.in.Write(append(line, '\n')); err != nil {
		b.Fatal(err)
	}
	for {
		l, err := p.out.ReadBytes('\n')
		if err != nil {
			b.Fatalf("phones: %v", err)
		}
		var resp phonesResp
		if json.Unmarshal(l, &resp) == nil {
			return resp
		}
	}
}

func (p *phones) stop() {
	p.in.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// TestLoadPhones is the child process of BenchmarkRelayLoopback; it does
// nothing in a normal test run.
func TestLoadPhones(t *testing.T) {
	if os.Getenv("UCGATE_MEDIA_PHONES") != "1" {
		t.Skip("the phones of BenchmarkRelayLoopback (child process only)")
	}
	in := bufio.NewReader(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	var req phonesReq
	read := func() bool {
		l, err := in.ReadBytes('\n')
		return err == nil && json.Unmarshal(l, &req) == nil
	}
	if !read() {
		return
	}
	n := req.Streams
	callers, callees := make([]*net.UDPConn, n), make([]*net.UDPConn, n)
	var resp phonesResp
	ctxs := make([]*srtp.Context, n)
	for i := range n {
		callers[i] = listenLoop(t)
		callees[i] = listenLoop(t)
		callees[i].SetReadBuffer(1 << 20)
		resp.Callers = append(resp.Callers, callers[i].LocalAddr().String())
		resp.Callees = append(resp.Callees, callees[i].LocalAddr().String())
		if req.SRTP != "" {
			s := suiteByName(req.SRTP)
			raw := make([]byte, s.keyLen+s.saltLen)
			for j := range raw {
				raw[j] = byte(rand.IntN(256))
			}
			ctx, err := srtp.CreateContext(raw[:s.keyLen], raw[s.keyLen:], s.profile)
			if err != nil {
				t.Fatal(err)
			}
			ctxs[i] = ctx
			resp.Keys = append(resp.Keys, "inline:"+base64.StdEncoding.EncodeToString(raw))
		}
	}
	enc.Encode(resp)
	if !read() {
		return
	}
	targets := make([]netip.AddrPort, n)
	for i, s := range req.Targets {
		targets[i] = netip.MustParseAddrPort(s)
	}
	enc.Encode(runLoad(callers, callees, ctxs, targets, req))
	// Wait for the parent to close stdin, then leave.
	io.Copy(io.Discard, in)
}

func listenLoop(t *testing.T) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runLoad sends req.Packets packets round-robin over the streams with at
// most req.Window in flight and waits for them at the callees.
func runLoad(callers, callees []*net.UDPConn, ctxs []*srtp.Context, targets []netip.AddrPort, req phonesReq) phonesResp {
	base := time.Now()
	total := int64(req.Packets)
	window := make(chan struct{}, req.Window)
	var sent, received atomic.Int64
	done := make(chan struct{})
	var doneOnce sync.Once
	finish := func() { doneOnce.Do(func() { close(done) }) }

	var samplesMu sync.Mutex
	var samples []int64
	var rwg sync.WaitGroup
	for _, c := range callees {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			buf := make([]byte, bufSize)
			mine := make([]int64, 0, 4096)
			for {
				n, _, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				if n >= 12+8 {
					lat := int64(time.Since(base)) - int64(binary.BigEndian.Uint64(buf[12:]))
					if len(mine) < cap(mine) {
						mine = append(mine, lat)
					}
				}
				select {
				case <-window:
				default:
				}
				if received.Add(1) >= total {
					finish()
				}
			}
			samplesMu.Lock()
			samples = append(samples, mine...)
			samplesMu.Unlock()
		}()
	}
	var swg sync.WaitGroup
	for g := range req.Senders {
		swg.Add(1)
		go func() {
			defer swg.Done()
			var mine []int
			for i := g; i < len(callers); i += req.Senders {
				mine = append(mine, i)
			}
			if len(mine) == 0 {
				return
			}
			seqs := make([]uint16, len(callers))
			pkt := make([]byte, 12+benchPayload)
			out := make([]byte, bufSize)
			var h rtp.Header
			for k := 0; ; k++ {
				if sent.Add(1) > total {
					return
				}
				select {
				case window <- struct{}{}:
				case <-done:
					return
				}
				i := mine[k%len(mine)]
				seqs[i]++
				pkt[0], pkt[1] = 0x80, 0
				binary.BigEndian.PutUint16(pkt[2:], seqs[i])
				binary.BigEndian.PutUint32(pkt[4:], uint32(seqs[i])*160)
				binary.BigEndian.PutUint32(pkt[8:], uint32(i+1))
				binary.BigEndian.PutUint64(pkt[12:], uint64(time.Since(base)))
				b := pkt
				if ctxs[i] != nil {
					var err error
					if b, err = ctxs[i].EncryptRTP(out, pkt, &h); err != nil {
						panic(err)
					}
				}
				callers[i].WriteToUDPAddrPort(b, targets[i])
			}
		}()
	}
	// Stop when everything arrived, or when nothing arrived for a second
	// (packets lost on the way).
	last, stall := int64(-1), time.NewTicker(time.Second)
	for wait := true; wait; {
		select {
		case <-done:
			wait = false
		case <-stall.C:
			r := received.Load()
			if r == last {
				finish()
				wait = false
			}
			last = r
		}
	}
	stall.Stop()
	elapsed := time.Since(base)
	swg.Wait()
	for _, c := range callees {
		c.Close()
	}
	rwg.Wait()
	slices.Sort(samples)
	resp := phonesResp{Received: int(received.Load()), ElapsedNs: int64(elapsed)}
	if len(samples) > 0 {
		resp.P50Ns = samples[len(samples)/2]
		resp.P99Ns = samples[len(samples)*99/100]
	}
	return resp
}

// BenchmarkCallMemory sets up relayed calls (offer, answer, a packet
// each way) and reports the memory and goroutines each holds. Run with
// -benchtime=1000x for the figure per 1,000 calls.
func BenchmarkCallMemory(b *testing.B) {
	cfg := testConfig(4*b.N + 8)
	e, _ := newEngine(b, cfg)
	caller, callee := newPhone(b, "127.0.0.1"), newPhone(b, "127.0.0.1")
	callee.conn.SetReadBuffer(4 << 20)
	caller.conn.SetReadBuffer(4 << 20)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	calls := make([]*Call, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		c := e.NewCall(core.NewSessionID(), nil, nil)
		out, err := c.Offer(core.RoleCaller, desc(audio(caller.addr)), PeerInfo{})
		if err != nil {
			b.Fatal(err)
		}
		back, err := c.Answer(core.RoleCallee, desc(audio(callee.addr)), PeerInfo{})
		if err != nil {
			b.Fatal(err)
		}
		caller.send(rtpPkt(b, 0, uint32(i), 1, 0, make([]byte, benchPayload)), back.Streams[0].Addr)
		callee.send(rtpPkt(b, 0, uint32(i), 1, 0, make([]byte, benchPayload)), out.Streams[0].Addr)
		callee.mustRecv()
		caller.mustRecv()
		calls = append(calls, c)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	perCall := float64((m1.HeapInuse+m1.StackInuse)-(m0.HeapInuse+m0.StackInuse)) / float64(b.N)
	b.ReportMetric(perCall, "bytes/call")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(b.N), "goroutines/call")
	for _, c := range calls {
		c.Close()
	}
}
