package e2e

// Media anchoring with real user agents: every call's RTP goes through the
// gateway's relay ports (core/media), SDES-SRTP is terminated on one leg and
// originated on the other, RTP is validated (policies/rtpguard), and the
// CDR carries the figures of each stream direction. The peers are baresip
// (SRTP and plain RTP, IPv4 and IPv6), each recording what it hears with
// its sndfile module, and sipp playing a pcap. The recordings are analysed
// here, in Go, for the tone the other side sends and for the pattern an
// attacker injects.
//
// Every identifier here has "media" or "Media" in its name (or is a
// method of such a type), so that it cannot collide with the other e2e
// files of the package. Test data: testdata/media.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/journal"
	h "github.com/ucgate/ucgate/e2e/harness"
)

// The tones the two user agents send (ausine), far enough apart that each
// recording shows which side it came from, and the pattern an attacker
// injects: a full-scale tone that neither agent sends.
const (
	mediaCallerHz   = 440
	mediaCalleeHz   = 1000
	mediaInjectedHz = 2600
)

// mediaSection is the media section of the gateways of these tests: relay
// ports away from the harness's range (20000-32767, where the peers' own
// ports come from), plus extra keys (indented by two spaces).
func mediaSection(extra string) string {
	return "media:\n  ipv4: {address: 127.0.0.1, ports: 40000-44999}\n  ipv6: {address: \"::1\", ports: 40000-44999}\n" + extra
}

// startMediaGW starts a gateway (startGWWith: the listeners of the SIP
// tests, loopback trusted) whose default route goes to one upstream, the
// callee at addr, with the given srtp setting.
func startMediaGW(t *testing.T, callee, srtpMode, media string) *gw {
	t.Helper()
	up := fmt.Sprintf(`  upstreams:
    - {name: callee, address: "%s", transport: udp, zone: trunk, srtp: %s}
  routes:
    - {default: true, upstreams: [callee]}
`, callee, srtpMode)
	return startGWWith(t, up, mediaSection(media)+trustLoopback)
}

// mediaUA is a baresip for the media tests: it sends a sine of hz, records
// the decoded audio of its call into rec (sndfile), and keeps every
// ctrl_tcp event.
type mediaUA struct {
	*h.Baresip
	name string
	rec  string
	srtp bool

	mu     sync.Mutex
	evs    []h.BaresipEvent
	notify chan struct{}
}

// startMediaUA starts baresip on ip (127.0.0.1 or ::1) as user,
// auto-answering, sending a sine of hz; with srtpMand its account requires
// SDES-SRTP (mediaenc=srtp-mand).
func startMediaUA(t *testing.T, name, ip, user string, srtpMand bool, hz int) *mediaUA {
	t.Helper()
	u := &mediaUA{name: name, rec: t.TempDir(), srtp: srtpMand, notify: make(chan struct{}, 1)}
	host := ip
	if strings.Contains(ip, ":") {
		host = "[" + ip + "]"
	}
	account := fmt.Sprintf("<sip:%s@%s;transport=udp>;regint=0;answermode=auto", user, host)
	modules := []string{"sndfile.so"}
	if srtpMand {
		account += ";mediaenc=srtp-mand"
		modules = append(modules, "srtp.so")
	}
	u.Baresip = h.StartBaresip(t, h.BaresipConfig{Name: name, IP: ip, Account: account,
		Modules: modules, Lines: []string{"snd_path\t\t" + u.rec}, Timeout: 50 * time.Second})
	go func() {
		for ev := range u.Events() {
			u.mu.Lock()
			u.evs = append(u.evs, ev)
			u.mu.Unlock()
			select {
			case u.notify <- struct{}{}:
			default:
			}
		}
	}()
	// The harness configures audio_source ausine,440 (the first value of
	// a key wins in baresip's config); menu's ausrc command switches the
	// source of the calls to come.
	if hz != 440 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := u.Command(ctx, "ausrc", fmt.Sprintf("ausine,%d", hz)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return u
}

// event waits for the first event of type typ since the start.
func (u *mediaUA) event(ctx context.Context, typ string) (h.BaresipEvent, error) {
	for {
		u.mu.Lock()
		var seen []string
		for _, ev := range u.evs {
			if ev.Type == typ {
				u.mu.Unlock()
				return ev, nil
			}
			seen = append(seen, ev.Type)
		}
		u.mu.Unlock()
		select {
		case <-u.notify:
		case <-ctx.Done():
			return h.BaresipEvent{}, fmt.Errorf("%s: no %s event (seen %v): %w", u.name, typ, seen, ctx.Err())
		}
	}
}

// recording returns the file sndfile writes the decoded audio of the call
// into ("dump-<time>-dec.wav"), or "" if there is none yet.
func (u *mediaUA) recording() string {
	m, _ := filepath.Glob(filepath.Join(u.rec, "dump-*-dec.wav"))
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1]
}

// recorded is how much audio the recording holds so far (sndfile writes
// the header at once and the sizes when the call ends).
func (u *mediaUA) recorded() time.Duration {
	p := u.recording()
	if p == "" {
		return 0
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	w, err := mediaParseWAV(b)
	if err != nil {
		return 0
	}
	return time.Duration(w.seconds() * float64(time.Second))
}

// rtpPort says whether port is one of the agent's RTP or RTCP ports.
func (u *mediaUA) rtpPort(port uint16) bool {
	return int(port) >= u.RTPPorts[0] && int(port) <= u.RTPPorts[1]+1
}

// mediaWaitAudio waits until every agent recorded at least d of its call.
func mediaWaitAudio(t *testing.T, ctx context.Context, d time.Duration, us ...*mediaUA) {
	t.Helper()
	for _, u := range us {
		if _, err := waitUntil(ctx, d+15*time.Second, func() bool { return u.recorded() >= d }); err != nil {
			t.Fatalf("%s recorded %v of audio, want %v (files: %v)", u.name, u.recorded(), d, mediaLs(u.rec))
		}
	}
}

func mediaLs(dir string) []string {
	es, _ := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		if fi, err := e.Info(); err == nil {
			out = append(out, fmt.Sprintf("%s (%d bytes)", e.Name(), fi.Size()))
		}
	}
	return out
}

// mediaCall places one call from caller to user "callee" at the gateway's
// address gwAddr, waits until it is established on both sides and both
// recorded a second, runs during (if any), holds the call until both
// recorded talk, and has the caller hang up.
func mediaCall(t *testing.T, caller, callee *mediaUA, gwAddr string, talk time.Duration, during func(ctx context.Context)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), talk+40*time.Second)
	defer cancel()
	if err := caller.Dial(ctx, fmt.Sprintf("sip:callee@%s;transport=udp", gwAddr)); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*mediaUA{caller, callee} {
		if _, err := u.event(ctx, "CALL_ESTABLISHED"); err != nil {
			t.Fatal(err)
		}
	}
	mediaWaitAudio(t, ctx, time.Second, caller, callee)
	if during != nil {
		during(ctx)
	}
	mediaWaitAudio(t, ctx, talk, caller, callee)
	if err := caller.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*mediaUA{caller, callee} {
		if _, err := u.event(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
	}
}

var mediaRTPFrom = regexp.MustCompile(`incoming rtp for 'audio' established, receiving from (\S+)`)

// mediaAnchored fails the test unless u receives its audio from a relay
// port of the gateway (mediaSection's range) on ip: the media is anchored,
// the two agents do not talk to each other directly.
func mediaAnchored(t *testing.T, u *mediaUA, ip string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	line, err := u.Proc.WaitLog(ctx, mediaRTPFrom)
	if err != nil {
		t.Errorf("%s: %v", u.name, err)
		return
	}
	from, err := netip.ParseAddrPort(mediaRTPFrom.FindStringSubmatch(line)[1])
	if err != nil || from.Addr() != netip.MustParseAddr(ip) || from.Port() < 40000 || from.Port() > 44999 {
		t.Errorf("%s receives its audio from %q, want a relay port of the gateway on %s", u.name, line, ip)
	}
}

// mediaWAV is a decoded recording: its first channel, in [-1, 1].
type mediaWAV struct {
	rate, channels int
	samples        []float64
}

func (w mediaWAV) seconds() float64 { return float64(len(w.samples)) / float64(w.rate) }

// mediaParseWAV reads a RIFF/WAVE file of 16-bit PCM or 32-bit float
// samples. A data chunk whose size is not written yet (the file is still
// being recorded) runs to the end of the file.
func mediaParseWAV(b []byte) (mediaWAV, error) {
	var w mediaWAV
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return w, errors.New("not a RIFF/WAVE file")
	}
	format, bits := 0, 0
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:off+8]))
		body := b[off+8:]
		switch id {
		case "fmt ":
			if len(body) < 16 {
				return w, errors.New("short fmt chunk")
			}
			format = int(binary.LittleEndian.Uint16(body[0:2]))
			w.channels = int(binary.LittleEndian.Uint16(body[2:4]))
			w.rate = int(binary.LittleEndian.Uint32(body[4:8]))
			bits = int(binary.LittleEndian.Uint16(body[14:16]))
			if format == 0xfffe && size >= 26 && len(body) >= 26 { // WAVE_FORMAT_EXTENSIBLE
				format = int(binary.LittleEndian.Uint16(body[24:26]))
			}
		case "data":
			if w.rate == 0 || w.channels == 0 {
				return w, errors.New("data before fmt")
			}
			if size == 0 || size > len(body) {
				size = len(body)
			}
			frame := w.channels * bits / 8
			if frame == 0 {
				return w, errors.New("zero frame size")
			}
			for i := 0; i+frame <= size; i += frame {
				switch {
				case format == 1 && bits == 16:
					w.samples = append(w.samples, float64(int16(binary.LittleEndian.Uint16(body[i:])))/32768)
				case format == 3 && bits == 32:
					w.samples = append(w.samples, float64(math.Float32frombits(binary.LittleEndian.Uint32(body[i:]))))
				default:
					return w, fmt.Errorf("unsupported sample format %d with %d bits", format, bits)
				}
			}
			return w, nil
		}
		off += 8 + size + size%2
	}
	return w, errors.New("no data chunk")
}

// mediaAmplitude is the amplitude of the hz component of x (Goertzel with
// a Hann window, so that a strong tone does not leak into far bins): 1 for
// a full-scale sine of that frequency.
func mediaAmplitude(x []float64, rate int, hz float64) float64 {
	n := len(x)
	if n < 2 {
		return 0
	}
	coeff := 2 * math.Cos(2*math.Pi*hz/float64(rate))
	var s1, s2 float64
	for i, v := range x {
		win := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(n-1))
		s0 := v*win + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	p := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * math.Sqrt(math.Max(p, 0)) / (float64(n) / 2) // the Hann window halves the gain
}

func mediaRMS(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v * v
	}
	return math.Sqrt(s / float64(max(len(x), 1)))
}

// mediaTone is what a recording shows about the tone it should carry.
type mediaTone struct {
	seconds  float64
	rms      float64
	tone     float64 // amplitude of the expected tone over the whole recording
	other    float64 // the strongest other component, 100-3900 Hz in 50 Hz steps
	otherHz  float64
	windows  int     // 100 ms windows with sound
	toneWins int     // of which the expected tone dominates
	injected float64 // the strongest mediaInjectedHz component in a 20 ms window
	injAt    float64 // where, in seconds
}

func (r mediaTone) String() string {
	return fmt.Sprintf("%.2f s, rms %.3f, tone %.3f, strongest other %.4f at %.0f Hz, tone dominates %d of %d windows, %d Hz peak %.4f at %.2f s",
		r.seconds, r.rms, r.tone, r.other, r.otherHz, r.toneWins, r.windows, mediaInjectedHz, r.injected, r.injAt)
}

// mediaAnalyse measures a recording against the tone hz it should carry.
// The first 200 ms (jitter buffer filling, codec start) are skipped.
func mediaAnalyse(w mediaWAV, hz float64) mediaTone {
	r := mediaTone{seconds: w.seconds()}
	x := w.samples
	skip := w.rate / 5
	if len(x) <= skip {
		return r
	}
	x = x[skip:]
	r.rms = mediaRMS(x)
	r.tone = mediaAmplitude(x, w.rate, hz)
	for f := 100.0; f < 3900; f += 50 {
		if math.Abs(f-hz) < 100 {
			continue
		}
		if a := mediaAmplitude(x, w.rate, f); a > r.other {
			r.other, r.otherHz = a, f
		}
	}
	win := w.rate / 10
	for i := 0; i+win <= len(x); i += win {
		seg := x[i : i+win]
		if mediaRMS(seg) < 0.005 {
			continue
		}
		r.windows++
		tone, dominated := mediaAmplitude(seg, w.rate, hz), true
		for _, f := range []float64{200, 700, 1500, 2000, mediaInjectedHz, 3400, 2*hz + 300} {
			dominated = dominated && mediaAmplitude(seg, w.rate, f) < tone/10
		}
		if dominated {
			r.toneWins++
		}
	}
	win = w.rate / 50
	for i := 0; i+win <= len(x); i += win / 2 {
		if a := mediaAmplitude(x[i:i+win], w.rate, mediaInjectedHz); a > r.injected {
			r.injected, r.injAt = a, float64(i+skip)/float64(w.rate)
		}
	}
	return r
}

// mediaCheckRecording fails the test unless u's recording holds at least
// minLen of the tone hz: not silence, the tone 20 dB above every other
// component of the whole recording and dominating nearly every 100 ms
// window with sound; and, unless injected says the pattern was played to
// u on purpose, nothing of the injected pattern in any 20 ms of it. With
// injected the pattern must be there, loud, and may spoil a few windows.
func mediaCheckRecording(t *testing.T, u *mediaUA, hz float64, minLen time.Duration, injected bool) {
	t.Helper()
	p := u.recording()
	if p == "" {
		t.Fatalf("%s: no recording in %s: %v", u.name, u.rec, mediaLs(u.rec))
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	w, err := mediaParseWAV(b)
	if err != nil {
		t.Fatalf("%s: %s: %v", u.name, p, err)
	}
	r := mediaAnalyse(w, hz)
	t.Logf("%s heard (%d Hz, %d channel(s)): %s", u.name, w.rate, w.channels, r)
	minWins, spoilt := int(minLen.Seconds()*10)-4, r.windows/20
	if injected {
		spoilt += 8
	}
	switch {
	case r.seconds < minLen.Seconds():
		t.Errorf("%s: recording of %.2f s, want at least %v", u.name, r.seconds, minLen)
	case r.rms < 0.05:
		t.Errorf("%s: the recording is silence: rms %.4f", u.name, r.rms)
	case r.tone < 10*r.other:
		t.Errorf("%s: %v Hz does not dominate the recording: %s", u.name, hz, r)
	case r.windows < minWins || r.toneWins < r.windows-spoilt:
		t.Errorf("%s: the %v Hz tone is not intact: %s", u.name, hz, r)
	}
	switch {
	case !injected && r.injected > 0.05:
		t.Errorf("%s: the injected %d Hz pattern reached the recording: %s", u.name, mediaInjectedHz, r)
	case injected && r.injected < 0.3:
		t.Errorf("%s: the %d Hz pattern played to it on purpose is not in the recording: %s", u.name, mediaInjectedHz, r)
	}
}

// mediaOneCDR waits for the only CDR of g and checks what every anchored
// call of these tests shows: answered, ended normally by the caller, each
// leg's media encryption as given, packets relayed in both directions,
// each direction's encryption.
func mediaOneCDR(t *testing.T, g *gw, callerEnc, calleeEnc bool) core.CDR {
	t.Helper()
	got := waitCDRs(t, g, journal.CDRFilter{}, 1)
	if len(got) != 1 {
		t.Fatalf("%d CDRs, want 1", len(got))
	}
	c := got[0]
	t.Logf("cdr: %s", mediaCDRText(c))
	if c.EndReason != "normal" || c.EndedBy != core.RoleCaller || c.Status != 200 || len(c.Legs) != 2 {
		t.Fatalf("cdr: %s", mediaCDRText(c))
	}
	if c.Legs[0].MediaEncrypted != callerEnc || c.Legs[1].MediaEncrypted != calleeEnc {
		t.Errorf("media_encrypted: caller %v callee %v, want %v %v", c.Legs[0].MediaEncrypted, c.Legs[1].MediaEncrypted, callerEnc, calleeEnc)
	}
	for role, enc := range map[string]bool{core.RoleCaller: callerEnc, core.RoleCallee: calleeEnc} {
		m, ok := mediaFrom(c, role)
		switch {
		case !ok:
			t.Errorf("no media figures from the %s: %+v", role, c.Media)
		case m.Type != "audio" || m.Packets < 50 || m.Bytes < 50*172:
			t.Errorf("media from the %s: %+v", role, m)
		case m.Encrypted != enc:
			t.Errorf("media from the %s: encrypted %v, want %v", role, m.Encrypted, enc)
		}
	}
	return c
}

// mediaFrom returns the figures of the audio sent by role.
func mediaFrom(c core.CDR, role string) (core.MediaStats, bool) {
	for _, m := range c.Media {
		if m.From == role && m.Type == "audio" {
			return m, true
		}
	}
	return core.MediaStats{}, false
}

// mediaBaresipRTCPDrop says whether the drops of one stream direction
// are at most the one every SRTP baresip 1.0.0 causes: its first RTCP
// packet (an APP "PING", sent when the stream starts) goes out in plain
// RTCP from its RTCP port before its SRTCP is set up, and the gateway
// rightly refuses it (media/srtp, "srtp undecryptable"); its RTCP BYE at
// hangup, also plain, arrives after the call's figures are taken. Seen
// with tshark: 80cc0003 <ssrc> "PINGPONG", 24 bytes, no SRTCP index or
// tag, followed by the same packet in SRTCP. The event must name the
// agent's own RTP/RTCP ports, so that a drop of anything else still fails.
func mediaBaresipRTCPDrop(t *testing.T, g *gw, m core.MediaStats, sender *mediaUA) bool {
	t.Helper()
	if len(m.Dropped) == 0 {
		return true
	}
	if !sender.srtp || len(m.Dropped) != 1 || m.Dropped[mediaRuleSRTP] != 1 {
		return false
	}
	for _, e := range mediaEvents(t, g, journal.SecFilter{Rule: mediaRuleSRTP}) {
		src, err := netip.ParseAddrPort(e.Src)
		if err == nil && sender.rtpPort(src.Port()) && src.Port()%2 == 1 && strings.HasSuffix(e.Detail, "srtp undecryptable") {
			return true
		}
	}
	return false
}

// mediaRuleSRTP is core/media's RuleSRTP, as the journal shows it.
const mediaRuleSRTP = "media/srtp"

// mediaNoDrops fails the test if a stream direction dropped packets
// (beyond baresip's plain RTCP packet on an SRTP leg).
func mediaNoDrops(t *testing.T, g *gw, c core.CDR, caller, callee *mediaUA) {
	t.Helper()
	for _, m := range c.Media {
		sender := map[string]*mediaUA{core.RoleCaller: caller, core.RoleCallee: callee}[m.From]
		if sender == nil || !mediaBaresipRTCPDrop(t, g, m, sender) {
			t.Errorf("media from the %s dropped packets: %v; security events: %+v", m.From, m.Dropped, mediaEvents(t, g, journal.SecFilter{}))
		}
	}
}

func mediaCDRText(c core.CDR) string {
	var b strings.Builder
	fmt.Fprintf(&b, "status %d, %s, ended by %s, duration %v", c.Status, c.EndReason, c.EndedBy, c.Duration.Round(time.Millisecond))
	for _, l := range c.Legs {
		fmt.Fprintf(&b, "; %s leg %s/%s from %v, media_encrypted %v", l.Role, l.Transport, l.Zone, l.Remote, l.MediaEncrypted)
	}
	for _, m := range c.Media {
		fmt.Fprintf(&b, "; %s %d from the %s: %d packets, %d bytes, lost %d, jitter %.1f ms, encrypted %v, dropped %v",
			m.Type, m.Index, m.From, m.Packets, m.Bytes, m.Lost, m.JitterMs, m.Encrypted, m.Dropped)
	}
	return b.String()
}

// mediaEvents returns the security events of g's journal that match f.
func mediaEvents(t *testing.T, g *gw, f journal.SecFilter) []core.SecurityEvent {
	t.Helper()
	if f.Limit == 0 {
		f.Limit = 10000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := journal.QuerySecurity(ctx, filepath.Join(g.DataDir, "journal.db"), f)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mediaTalk is how long the plain calls last.
const mediaTalk = 3 * time.Second

// TestMediaSRTPToRTP: baresip with SDES-SRTP required calls through the
// gateway a baresip with plain RTP reached as an upstream with srtp: none,
// and the reverse, a plain caller to an SRTP callee (srtp: sdes): the
// gateway terminates SRTP on one leg and originates it on the other. Each
// side records what it hears: each recording carries the other side's tone
// for the whole call and is not silence. The CDR says which leg's media
// was encrypted and counts packets both ways, with no drop.
func TestMediaSRTPToRTP(t *testing.T) {
	h.RequirePeer(t, "baresip")
	cases := []struct {
		name                   string
		callerSRTP, calleeSRTP bool
		upstream               string // sip.upstreams[].srtp toward the callee
	}{
		{"srtp caller to rtp callee", true, false, "none"},
		{"rtp caller to srtp callee", false, true, "sdes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			callee := startMediaUA(t, "callee", "127.0.0.1", "callee", tc.calleeSRTP, mediaCalleeHz)
			g := startMediaGW(t, callee.SIPAddr, tc.upstream, "")
			caller := startMediaUA(t, "caller", "127.0.0.1", "caller", tc.callerSRTP, mediaCallerHz)
			mediaCall(t, caller, callee, g.udp, mediaTalk, nil)
			mediaAnchored(t, caller, "127.0.0.1")
			mediaAnchored(t, callee, "127.0.0.1")
			mediaCheckRecording(t, callee, mediaCallerHz, mediaTalk-500*time.Millisecond, false)
			mediaCheckRecording(t, caller, mediaCalleeHz, mediaTalk-500*time.Millisecond, false)
			c := mediaOneCDR(t, g, tc.callerSRTP, tc.calleeSRTP)
			mediaNoDrops(t, g, c, caller, callee)
			t.Logf("%s: %v", tc.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestMediaIPv6CallerIPv4Callee: the SRTP caller is on ::1 and calls the
// gateway's ::1 listener; the plain callee is on 127.0.0.1. The gateway
// bridges the families (relay sockets on ::1 facing the caller, on
// 127.0.0.1 facing the callee): both recordings carry the other side's
// tone, and the CDR's legs show the families.
func TestMediaIPv6CallerIPv4Callee(t *testing.T) {
	h.RequirePeer(t, "baresip")
	start := time.Now()
	callee := startMediaUA(t, "callee", "127.0.0.1", "callee", false, mediaCalleeHz)
	g := startMediaGW(t, callee.SIPAddr, "none", "")
	caller := startMediaUA(t, "caller6", "::1", "caller", true, mediaCallerHz)
	mediaCall(t, caller, callee, g.udp6, mediaTalk, nil)
	mediaAnchored(t, caller, "::1")
	mediaAnchored(t, callee, "127.0.0.1")
	mediaCheckRecording(t, callee, mediaCallerHz, mediaTalk-500*time.Millisecond, false)
	mediaCheckRecording(t, caller, mediaCalleeHz, mediaTalk-500*time.Millisecond, false)
	c := mediaOneCDR(t, g, true, false)
	mediaNoDrops(t, g, c, caller, callee)
	if a := c.Legs[0].Remote.Addr(); !a.Is6() || a.Is4In6() || a != netip.IPv6Loopback() {
		t.Errorf("caller leg from %v, want [::1]", c.Legs[0].Remote)
	}
	if a := c.Legs[1].Remote.Addr(); !a.Is4() {
		t.Errorf("callee leg to %v, want 127.0.0.1", c.Legs[1].Remote)
	}
	t.Logf("ipv6 caller to ipv4 callee: %v", time.Since(start).Round(time.Millisecond))
}

// mediaProxy stands between a caller and the gateway, for the injection
// test: the caller sends its SIP to the proxy, which passes every datagram
// on (the caller's to the gateway, the gateway's back to the caller) and
// rewrites the SDP of both, so that the caller's media goes through it
// too. The gateway then sees the proxy's gateway-side sockets as the
// caller's media address (the source it latches: description and packets
// agree), and the caller sees the proxy's caller-side sockets as the
// gateway's relay. The proxy keeps copies of the caller's SRTP packets,
// the newest RTP header of each direction, the SDES keys of both
// descriptions, and counts what it relays.
//
// Only the INVITE transaction passes the proxy: the caller sends its ACK
// and BYE to the gateway's Contact from its own SIP port, at the same IP
// address (the dialog control compares addresses, not ports).
type mediaProxy struct {
	sip      *net.UDPConn
	gwSIP    netip.AddrPort
	callerIn [2]*net.UDPConn // RTP, RTCP: facing the caller, named in the answer it gets
	gwOut    [2]*net.UDPConn // RTP, RTCP: facing the gateway, named in the offer it gets

	mu          sync.Mutex
	callerSIP   netip.AddrPort
	callerMedia [2]netip.AddrPort // where the caller receives, from its offer
	relay       [2]netip.AddrPort // the gateway's relay, from its answer
	offerCrypto []string          // a=crypto values of the caller's offer
	answer      []string          // a=crypto values of the gateway's answer
	first       [][]byte          // the caller's first SRTP packets, as sent
	recent      [][]byte          // its newest ones (at most mediaRecent)
	seen        [2]mediaSeen      // the newest RTP header from (0) and to (1) the caller

	fromCaller atomic.Int64 // packets (RTP and RTCP) relayed from the caller
	toCaller   atomic.Int64
}

const mediaRecent = 40

// mediaSeen follows one RTP stream as a bystander sees it: the newest
// header and the rollover counter of its sequence numbers.
type mediaSeen struct {
	hdr rtp.Header
	roc uint32
	ok  bool
}

func (s *mediaSeen) add(b []byte) {
	var hdr rtp.Header
	if _, err := hdr.Unmarshal(b); err != nil || hdr.Version != 2 || hdr.PayloadType >= 64 {
		return
	}
	if s.ok && hdr.SequenceNumber < s.hdr.SequenceNumber && s.hdr.SequenceNumber-hdr.SequenceNumber > 1<<15 {
		s.roc++
	}
	if !s.ok || int16(hdr.SequenceNumber-s.hdr.SequenceNumber) > 0 {
		s.hdr, s.ok = hdr, true
	}
}

func startMediaProxy(t *testing.T, gwSIP string) *mediaProxy {
	t.Helper()
	p := &mediaProxy{gwSIP: netip.MustParseAddrPort(gwSIP)}
	listen := func(port int) *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			t.Fatalf("media proxy: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	p.sip = listen(h.FreeUDPPort(t))
	base := h.FreePortPair(t, false)
	p.callerIn = [2]*net.UDPConn{listen(base), listen(base + 1)}
	p.gwOut = [2]*net.UDPConn{listen(base + 2), listen(base + 3)}
	go p.relaySIP()
	for i := range 2 {
		go p.relayMedia(p.callerIn[i], p.gwOut[i], i, true)
		go p.relayMedia(p.gwOut[i], p.callerIn[i], i, false)
	}
	return p
}

func (p *mediaProxy) sipAddr() string { return p.sip.LocalAddr().String() }

// latched is the proxy's RTP socket facing the gateway: the caller's
// media source as the gateway sees it.
func (p *mediaProxy) latched() *net.UDPConn { return p.gwOut[0] }

func (p *mediaProxy) relaySIP() {
	buf := make([]byte, 65535)
	for {
		n, src, err := p.sip.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		msg := append([]byte(nil), buf[:n]...)
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		p.mu.Lock()
		var dst netip.AddrPort
		if src == p.gwSIP {
			dst = p.callerSIP
			msg = p.rewrite(msg, false)
		} else {
			p.callerSIP, dst = src, p.gwSIP
			msg = p.rewrite(msg, true)
		}
		p.mu.Unlock()
		if dst.IsValid() {
			p.sip.WriteToUDPAddrPort(msg, dst)
		}
	}
}

var (
	mediaSDPPort   = regexp.MustCompile(`(?m)^m=audio (\d+) `)
	mediaSDPRTCP   = regexp.MustCompile(`(?m)^a=rtcp:(\d+)`)
	mediaSDPConn   = regexp.MustCompile(`(?m)^c=IN IP4 (\S+)`)
	mediaSDPCrypto = regexp.MustCompile(`(?m)^a=crypto:(.+?)\r?$`)
	mediaCLen      = regexp.MustCompile(`(?mi)^(content-length|l)[ \t]*:[ \t]*\d+`)
)

// rewrite points the audio stream of an SDP body at the proxy and notes
// what it named: the caller's receive ports in an offer (fromCaller), the
// gateway's relay ports in an answer. Called with p.mu held.
func (p *mediaProxy) rewrite(msg []byte, fromCaller bool) []byte {
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 || !bytes.Contains(msg[i:], []byte("m=audio ")) {
		return msg
	}
	head, body := string(msg[:i+4]), string(msg[i+4:])
	port, _ := strconv.Atoi(mediaSDPPort.FindStringSubmatch(body)[1])
	addr := netip.MustParseAddr("127.0.0.1")
	if c := mediaSDPConn.FindStringSubmatch(body); c != nil {
		addr, _ = netip.ParseAddr(c[1])
	}
	rtcpPort := port + 1
	if r := mediaSDPRTCP.FindStringSubmatch(body); r != nil {
		rtcpPort, _ = strconv.Atoi(r[1])
	}
	named := [2]netip.AddrPort{netip.AddrPortFrom(addr, uint16(port)), netip.AddrPortFrom(addr, uint16(rtcpPort))}
	var crypto []string
	for _, c := range mediaSDPCrypto.FindAllStringSubmatch(body, -1) {
		crypto = append(crypto, c[1])
	}
	mine := p.callerIn
	if fromCaller {
		p.callerMedia, p.offerCrypto, mine = named, crypto, p.gwOut
	} else {
		p.relay, p.answer = named, crypto
	}
	own := func(c *net.UDPConn) string { return strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port) }
	body = mediaSDPPort.ReplaceAllString(body, "m=audio "+own(mine[0])+" ")
	body = mediaSDPRTCP.ReplaceAllString(body, "a=rtcp:"+own(mine[1]))
	head = mediaCLen.ReplaceAllString(head, "Content-Length: "+strconv.Itoa(len(body)))
	return []byte(head + body)
}

// relayMedia passes packets arriving on in (component i: 0 RTP, 1 RTCP)
// out of out, to the gateway's relay (fromCaller) or to the caller.
func (p *mediaProxy) relayMedia(in, out *net.UDPConn, i int, fromCaller bool) {
	buf := make([]byte, 2048)
	for {
		n, _, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		dst := p.callerMedia[i]
		if fromCaller {
			dst = p.relay[i]
		}
		if i == 0 && fromCaller {
			pkt := append([]byte(nil), buf[:n]...)
			if len(p.first) < mediaRecent {
				p.first = append(p.first, pkt)
			}
			p.recent = append(p.recent, pkt)
			if len(p.recent) > mediaRecent {
				p.recent = p.recent[1:]
			}
			p.seen[0].add(pkt)
		} else if i == 0 {
			p.seen[1].add(buf[:n])
		}
		p.mu.Unlock()
		if !dst.IsValid() {
			continue
		}
		if _, err := out.WriteToUDPAddrPort(buf[:n], dst); err == nil {
			if fromCaller {
				p.fromCaller.Add(1)
			} else {
				p.toCaller.Add(1)
			}
		}
	}
}

// mimic is packet k of a forged stream that passes for the stream seen
// in direction d (0 from the caller, 1 to it): its SSRC, its payload type,
// and sequence numbers and timestamps running 3 packets ahead of the
// newest one seen (so that a receiver that let it through would play it
// in place of the real packets, which would then arrive as duplicates),
// with the injected pattern as payload. roc is the stream's rollover
// counter, for sealing it as SRTP.
func (p *mediaProxy) mimic(d, k int) (pkt *rtp.Packet, roc uint32) {
	p.mu.Lock()
	seen := p.seen[d]
	p.mu.Unlock()
	ahead := uint16(3 + k)
	return &rtp.Packet{
		Header: rtp.Header{Version: 2, PayloadType: seen.hdr.PayloadType, SSRC: seen.hdr.SSRC,
			SequenceNumber: seen.hdr.SequenceNumber + ahead, Timestamp: seen.hdr.Timestamp + 160*uint32(ahead)},
		Payload: mediaToneFrame(mediaInjectedHz, 0.95, 160*k),
	}, seen.roc
}

// callerContext returns an SRTP context with the caller's own sending key:
// the a=crypto line of its offer that the gateway's answer accepted (the
// same tag). gatewayContext is the gateway's sending key toward the
// caller, from its answer.
func (p *mediaProxy) callerContext() (*srtp.Context, error) { return p.context(true) }

func (p *mediaProxy) gatewayContext() (*srtp.Context, error) { return p.context(false) }

func (p *mediaProxy) context(callers bool) (*srtp.Context, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.answer) == 0 {
		return nil, fmt.Errorf("no a=crypto in the gateway's answer (offer: %q)", p.offerCrypto)
	}
	lines := p.answer
	if callers {
		lines = p.offerCrypto
	}
	tag := strings.Fields(p.answer[0])[0]
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != tag {
			continue
		}
		profile, ok := map[string]srtp.ProtectionProfile{
			"AES_CM_128_HMAC_SHA1_80": srtp.ProtectionProfileAes128CmHmacSha1_80,
			"AES_CM_128_HMAC_SHA1_32": srtp.ProtectionProfileAes128CmHmacSha1_32,
			"AES_256_CM_HMAC_SHA1_80": srtp.ProtectionProfileAes256CmHmacSha1_80,
			"AES_256_CM_HMAC_SHA1_32": srtp.ProtectionProfileAes256CmHmacSha1_32,
			"AEAD_AES_128_GCM":        srtp.ProtectionProfileAeadAes128Gcm,
			"AEAD_AES_256_GCM":        srtp.ProtectionProfileAeadAes256Gcm,
		}[f[1]]
		if !ok {
			return nil, fmt.Errorf("suite %s", f[1])
		}
		inline, _, _ := strings.Cut(strings.TrimPrefix(f[2], "inline:"), "|")
		km, err := base64.StdEncoding.DecodeString(inline)
		if err != nil {
			return nil, err
		}
		kl, _ := profile.KeyLen()
		sl, _ := profile.SaltLen()
		if len(km) != kl+sl {
			return nil, fmt.Errorf("key material of %d bytes for %s", len(km), f[1])
		}
		return srtp.CreateContext(km[:kl], km[kl:], profile)
	}
	return nil, fmt.Errorf("no a=crypto with the tag of the answer %q in %q", p.answer[0], lines)
}

// mediaULaw encodes a linear sample as G.711 mu-law.
func mediaULaw(s int16) byte {
	const bias, clip = 0x84, 32635
	v, sign := int(s), 0
	if v < 0 {
		v, sign = -v, 0x80
	}
	v = min(v, clip) + bias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	return ^byte(sign | exp<<4 | (v>>(exp+3))&0x0f)
}

// mediaToneFrame is 20 ms of PCMU at 8 kHz: a sine of hz at amplitude
// (1: full scale), starting at sample n0.
func mediaToneFrame(hz, amplitude float64, n0 int) []byte {
	out := make([]byte, 160)
	for i := range out {
		v := amplitude * 32767 * math.Sin(2*math.Pi*hz*float64(n0+i)/8000)
		out[i] = mediaULaw(int16(v))
	}
	return out
}

// mediaForeign is packet k of a forged stream of its own: SSRC 0x0badf00d,
// sequence numbers and timestamps far from any real stream's, PCMU
// carrying the injected pattern.
func mediaForeign(k int) *rtp.Packet {
	return &rtp.Packet{
		Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(40000 + k),
			Timestamp: uint32(0x70000000 + 160*k), SSRC: 0x0badf00d, Marker: k == 0},
		Payload: mediaToneFrame(mediaInjectedHz, 0.95, 160*k),
	}
}

func mediaSeal(t *testing.T, c *srtp.Context, pkt *rtp.Packet) []byte {
	t.Helper()
	raw, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := c.EncryptRTP(nil, raw, &pkt.Header)
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

func mediaSend(t *testing.T, c *net.UDPConn, b []byte, dst netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, dst); err != nil {
		t.Fatal(err)
	}
}

func mediaPlain(t *testing.T, pkt *rtp.Packet) []byte {
	t.Helper()
	raw, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestMediaInjection: while an SRTP caller talks through the gateway to a
// plain RTP callee, this test attacks the gateway's relay port the caller
// sends to (as the gateway's answer names it). The caller's media path
// goes through a proxy of the test's (mediaProxy), so the test knows the
// relay port, sees the caller's SRTP packets, and can send from the
// caller's latched source. The forged packets carry a full-scale 2600 Hz
// tone.
//
//   - From 127.0.0.9, an address the stream never named: plain RTP of a
//     made-up SSRC and sequence, and plain RTP that passes for the caller's
//     stream (its SSRC, sequence numbers just ahead): media/source.
//   - From the latched source, SRTP sealed with the caller's own key (an
//     insider who read the offer) carrying the made-up SSRC: it
//     authenticates, and rtpguard refuses the foreign SSRC: rtpguard/ssrc.
//   - From the latched source, replays of the caller's own SRTP packets,
//     its first ones (older than the replay window) and its newest ones
//     (inside it), so that only SRTP replay protection stands in the way;
//     and plain RTP passing for the caller's stream: media/srtp.
//
// Nothing injected reaches the callee: its recording holds the caller's
// tone for the whole call and no trace of the pattern, the gateway
// relayed no more packets from the caller than the proxy passed on from
// it, the CDR counts every injected packet as dropped under its rule, and
// the journal has a security event of each rule for the call.
//
// Control: the stream that passes for the real one, sealed with the
// gateway's key toward the caller and sent by the proxy straight to the
// caller (where no gateway stands in the way), is in the caller's
// recording: the user agent plays such a stream, and the analysis finds
// the pattern. (A foreign SSRC interleaved with the real stream is not
// heard at all: baresip flushes its jitter buffer at every SSRC change.
// The packet counts above catch those.)
//
// The replays and the plain packets from the latched source wait until
// 10 s after the caller's first media/srtp drop (baresip's plain RTCP
// packet when the stream starts, see mediaBaresipRTCPDrop): the relay
// raises at most one event per rule and stream direction every 10 s, and
// the event must be the replay's.
func TestMediaInjection(t *testing.T) {
	h.RequirePeer(t, "baresip")
	start := time.Now()
	callee := startMediaUA(t, "callee", "127.0.0.1", "callee", false, mediaCalleeHz)
	g := startMediaGW(t, callee.SIPAddr, "none", "")
	caller := startMediaUA(t, "caller", "127.0.0.1", "caller", true, mediaCallerHz)
	proxy := startMediaProxy(t, g.udp)
	const n, control = 25, 15 // packets of each kind; of the control
	var (
		from9, keyed, replays, plain int
		replayed                     [][]byte
	)
	attack := func(ctx context.Context) {
		proxy.mu.Lock()
		relay, callerRTP := proxy.relay[0], proxy.callerMedia[0]
		replayed = append(append(replayed, proxy.first[:10]...), proxy.recent...)
		ok := proxy.seen[0].ok && proxy.seen[1].ok && len(proxy.first) >= 10
		proxy.mu.Unlock()
		if !relay.IsValid() || !ok {
			t.Fatalf("the proxy saw no answer or no media: relay %v, %d packets", relay, len(replayed))
		}
		t.Logf("the caller sends to the gateway's relay %v through the proxy; the gateway latched %v",
			relay, proxy.latched().LocalAddr())
		attacker, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 9)})
		if err != nil {
			t.Fatal(err)
		}
		defer attacker.Close()
		callerKey, err := proxy.callerContext()
		if err != nil {
			t.Fatalf("caller's SRTP key: %v", err)
		}
		gatewayKey, err := proxy.gatewayContext()
		if err != nil {
			t.Fatalf("gateway's SRTP key: %v", err)
		}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		// From 127.0.0.9; SRTP with the caller's key from the latched source.
		for k := range n {
			<-tick.C
			mediaSend(t, attacker, mediaPlain(t, mediaForeign(k)), relay)
			pkt, _ := proxy.mimic(0, k)
			mediaSend(t, attacker, mediaPlain(t, pkt), relay)
			from9 += 2
			mediaSend(t, proxy.latched(), mediaSeal(t, callerKey, mediaForeign(n+k)), relay)
			keyed++
		}
		// Control: a stream passing for the gateway's, straight to the caller.
		for k := range control {
			<-tick.C
			pkt, roc := proxy.mimic(1, k)
			if k == 0 {
				gatewayKey.SetROC(pkt.SSRC, roc)
			}
			mediaSend(t, proxy.callerIn[0], mediaSeal(t, gatewayKey, pkt), callerRTP)
		}
		// Replays and plain RTP from the latched source, 10 s after the
		// first media/srtp event.
		var first time.Time
		for _, e := range mediaEvents(t, g, journal.SecFilter{Rule: mediaRuleSRTP}) {
			if first.IsZero() || e.Time.Before(first) {
				first = e.Time
			}
		}
		if !first.IsZero() {
			select {
			case <-time.After(time.Until(first.Add(10*time.Second + 300*time.Millisecond))):
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
		proxy.mu.Lock()
		replayed = append(replayed, proxy.recent...) // the newest, inside the replay window
		proxy.mu.Unlock()
		for _, b := range replayed {
			<-tick.C
			mediaSend(t, proxy.latched(), b, relay)
			replays++
		}
		for k := range n {
			<-tick.C
			pkt, _ := proxy.mimic(0, k)
			mediaSend(t, proxy.latched(), mediaPlain(t, pkt), relay)
			plain++
		}
	}
	mediaCall(t, caller, callee, proxy.sipAddr(), 15*time.Second, attack)
	mediaAnchored(t, callee, "127.0.0.1")
	mediaCheckRecording(t, callee, mediaCallerHz, 14*time.Second, false)
	mediaCheckRecording(t, caller, mediaCalleeHz, 14*time.Second, true)
	c := mediaOneCDR(t, g, true, false)
	m, _ := mediaFrom(c, core.RoleCaller)
	sent := proxy.fromCaller.Load()
	t.Logf("sent %d forged packets from 127.0.0.9, %d sealed with the caller's key, %d replays, %d plain from the latched source; the proxy passed on %d packets from the caller (RTP and RTCP) and %d to it; the gateway relayed %d from the caller",
		from9, keyed, replays, plain, sent, proxy.toCaller.Load(), m.Packets)
	if int64(m.Packets) > sent || int64(m.Packets) < sent-3 {
		t.Errorf("the gateway relayed %d packets from the caller, who sent %d", m.Packets, sent)
	}
	// baresip's own plain RTCP packet at the start counts under media/srtp too.
	if d := m.Dropped[mediaRuleSRTP]; d != uint64(replays+plain) && d != uint64(replays+plain+1) {
		t.Errorf("media/srtp drops: %d, want %d replays and %d plain (+1 from baresip's RTCP)", d, replays, plain)
	}
	if m.Dropped["media/source"] != uint64(from9) || m.Dropped["rtpguard/ssrc"] != uint64(keyed) {
		t.Errorf("drops from the caller's direction: %v, want media/source %d, rtpguard/ssrc %d", m.Dropped, from9, keyed)
	}
	if len(m.Dropped) != 3 {
		t.Errorf("drops from the caller's direction by other rules: %v", m.Dropped)
	}
	if mc, _ := mediaFrom(c, core.RoleCallee); len(mc.Dropped) != 0 {
		t.Errorf("drops in the callee's direction: %v", mc.Dropped)
	}
	evs := mediaEvents(t, g, journal.SecFilter{})
	for _, e := range evs {
		t.Logf("security event: %s %s from %s (%s, %s): %s", e.Rule, e.Action, e.Src, e.Zone, e.Protocol, e.Detail)
	}
	latched := proxy.latched().LocalAddr().String()
	for _, w := range []struct{ rule, src, detail string }{
		{"media/source", "127.0.0.9:", "unexpected source"},
		{"rtpguard/ssrc", latched, "SSRC 0badf00d"},
		{mediaRuleSRTP, latched, "srtp replay"},
	} {
		found := false
		for _, e := range evs {
			found = found || e.Rule == w.rule && strings.HasPrefix(e.Src, w.src) && strings.Contains(e.Detail, w.detail) && e.Session == c.Session
		}
		if !found {
			t.Errorf("no security event %s from %s with %q for the call", w.rule, w.src, w.detail)
		}
	}
	t.Logf("injection: %v", time.Since(start).Round(time.Millisecond))
}

// mediaWritePCAP writes a pcap (Ethernet, IPv4, UDP from port 6000 to
// 6002 on 127.0.0.1; sipp keeps only the payloads and their timing) of d of
// RTP: PCMU, 20 ms packets, a 440 Hz tone at a third of full scale.
func mediaWritePCAP(t *testing.T, path string, d time.Duration) {
	t.Helper()
	var b bytes.Buffer
	le := binary.LittleEndian
	hdr := make([]byte, 24)
	le.PutUint32(hdr[0:], 0xa1b2c3d4)
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 65535)
	le.PutUint32(hdr[20:], 1) // LINKTYPE_ETHERNET
	b.Write(hdr)
	for k := range int(d / (20 * time.Millisecond)) {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(1000 + k),
			Timestamp: uint32(160 * k), SSRC: 0x5eed0001, Marker: k == 0}, Payload: mediaToneFrame(440, 0.3, 160*k)}
		payload, _ := pkt.Marshal()
		udp := make([]byte, 8, 8+len(payload))
		binary.BigEndian.PutUint16(udp[0:], 6000)
		binary.BigEndian.PutUint16(udp[2:], 6002)
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
		udp = append(udp, payload...)
		ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1}
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		binary.BigEndian.PutUint16(ip[4:], uint16(k))
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[i:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		frame := append(append([]byte{0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00}, ip...), udp...)
		rec := make([]byte, 16)
		at := time.Duration(k) * 20 * time.Millisecond
		le.PutUint32(rec[0:], uint32(1700000000+at/time.Second))
		le.PutUint32(rec[4:], uint32(at%time.Second/time.Microsecond))
		le.PutUint32(rec[8:], uint32(len(frame)))
		le.PutUint32(rec[12:], uint32(len(frame)))
		b.Write(rec)
		b.Write(frame)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMediaTimeout: a caller (sipp) plays 2 s of RTP and then falls silent
// without hanging up; the callee (sipp) echoes what it gets, so it falls
// silent too. With media.timeout 3s the gateway ends the call itself: both
// sides get a BYE (each sipp answers it with 200 and exits 0), and the
// CDR says media_timeout, ended by the gateway, after about 2 s of media
// plus the timeout, with the packets of those 2 s counted both ways.
func TestMediaTimeout(t *testing.T) {
	h.RequirePeer(t, "sipp")
	start := time.Now()
	const audio, timeout = 2 * time.Second, 3 * time.Second
	dir := t.TempDir()
	pcap := filepath.Join(dir, "tone.pcap")
	mediaWritePCAP(t, pcap, audio)
	scenario, err := os.ReadFile(filepath.Join("testdata", "media", "uac_pcap_then_silence.xml"))
	if err != nil {
		t.Fatal(err)
	}
	uasPort := h.FreeUDPPort(t)
	g := startMediaGW(t, h.HostPort("127.0.0.1", uasPort), "none", fmt.Sprintf("  timeout: %v\n", timeout))
	uas := h.SippConfig{ScenarioXML: h.ScenarioUASRingAnswer, Port: uasPort, RTPEcho: true, Calls: 1, Timeout: 30 * time.Second}
	uac := h.SippConfig{Name: "sipp-silent-caller", ScenarioXML: strings.ReplaceAll(string(scenario), "{{PCAP}}", pcap),
		Remote: g.udp, Service: "4711", Calls: 1, Timeout: 30 * time.Second}
	r, ur := runUASUAC(t, uas, uac)
	if !r.OK() {
		t.Errorf("caller (no BYE from the gateway?): %s", r)
	}
	if !ur.OK() {
		t.Errorf("callee (no BYE from the gateway?): %s", ur)
	}
	got := waitCDRs(t, g, journal.CDRFilter{}, 1)
	if len(got) != 1 {
		t.Fatalf("%d CDRs, want 1", len(got))
	}
	c := got[0]
	t.Logf("cdr: %s", mediaCDRText(c))
	if c.EndReason != "media_timeout" || c.EndedBy != "gateway" || c.Status != 200 {
		t.Errorf("cdr: %s, want media_timeout ended by the gateway", mediaCDRText(c))
	}
	if lo, hi := audio+timeout-500*time.Millisecond, audio+timeout+2*time.Second; c.Duration < lo || c.Duration > hi {
		t.Errorf("call of %v, want %v of audio plus the %v timeout (%v-%v)", c.Duration, audio, timeout, lo, hi)
	}
	for _, role := range []string{core.RoleCaller, core.RoleCallee} {
		m, ok := mediaFrom(c, role)
		if want := uint64(audio / (20 * time.Millisecond)); !ok || m.Packets < want*9/10 || m.Packets > want || len(m.Dropped) != 0 {
			t.Errorf("media from the %s: %+v, want about %d packets and no drop", role, m, want)
		}
	}
	t.Logf("media timeout: %v", time.Since(start).Round(time.Millisecond))
}
