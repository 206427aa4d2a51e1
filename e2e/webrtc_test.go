package e2e

// Browsers through the gateway: headless Chromium (Debian's chromium, fake
// media devices playing a tone from a WAV file) loads the softphone page
// the gateway serves at /phone/, registers with JsSIP over WSS (digest
// credentials), and calls a SIP trunk played by baresip through ucgate,
// which terminates ICE and DTLS-SRTP and sends plain RTP to the trunk;
// baresip records what it hears (the browser's tone: not silence) and the
// page reports its RTP figures. The trunk calls the registered browser
// user too, the browser sits on IPv6 loopback while the trunk is on IPv4,
// and the refusals (wrong Origin, bad password, a DTLS fingerprint that is
// not the browser's) are journaled.
//
// Every identifier here has "webrtc" or "WebRTC" in its name, so that it
// cannot collide with the other e2e files. Test data: testdata/webrtc.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/journal"
	h "github.com/ucgate/ucgate/e2e/harness"
)

// webrtcBrowserHz is the tone the browser's fake microphone plays; the
// trunk (baresip) sends mediaCalleeHz.
const webrtcBrowserHz = 440

// webrtcGW is a gateway for browsers: WSS on 127.0.0.1 and ::1 with the
// harness's test certificate, UDP for the trunk, the admin server (the
// softphone page) on a free port.
type webrtcGW struct {
	*h.Gateway
	udp, wss4, wss6, admin string
	cert                   *h.TestCert
}

// webrtcUser and webrtcPassword are the browser user's digest credentials.
const (
	webrtcUser     = "webphone"
	webrtcPassword = "Vq7#pL2!nR9"
)

// startWebRTCGW starts the gateway with its default route to the trunk at
// trunkAddr over UDP (or, after a comma, the rest of its upstream's keys:
// "addr, transport: tcp, srtp: sdes") (baresip, which is also an upstream source and so may call the
// browser user by name) and the builtin echo as registrar. The browser
// user needs its password. The WSS listeners allow the given origins,
// by default only the gateway's own page.
func startWebRTCGW(t testing.TB, trunkAddr string, origins ...string) *webrtcGW {
	t.Helper()
	return startWebRTCGWWith(t, trunkAddr, "", origins...)
}

// startWebRTCGWWith is startWebRTCGW with more policies (lines indented
// by two spaces, under policies:).
func startWebRTCGWWith(t testing.TB, trunkAddr, policies string, origins ...string) *webrtcGW {
	t.Helper()
	g := &webrtcGW{cert: h.NewTestCert(t)}
	g.udp = h.HostPort("127.0.0.1", h.FreeUDPPort(t))
	g.wss4 = h.HostPort("127.0.0.1", h.FreeTCPPort(t))
	g.wss6 = h.HostPort("::1", h.FreePort(t, "tcp6"))
	g.admin = h.HostPort("127.0.0.1", h.FreeTCPPort(t))
	if len(origins) == 0 {
		origins = []string{"http://" + g.admin} // the page the gateway serves
	}
	listenerExtra := fmt.Sprintf(", origins: [%q]", strings.Join(origins, `", "`))
	trunk := fmt.Sprintf("address: %q, transport: udp", trunkAddr)
	if addr, extra, ok := strings.Cut(trunkAddr, ","); ok {
		trunk = fmt.Sprintf("address: %q,%s", addr, extra) // "addr, transport: tcp, srtp: sdes"
	}
	if trunkAddr == "" {
		trunk = "builtin: echo" // the demo echo plays the trunk
	}
	yaml := fmt.Sprintf(`admin:
  listen: "%s"
sip:
  ring_timeout: 20s
  tls: {cert: "%s", key: "%s"}
  listeners:
    - {zone: internet, transport: udp, listen: "%s"}
    - {zone: internet, transport: wss, listen: "%s"%s}
    - {zone: internet, transport: wss, listen: "%s"%s}
  upstreams:
    - {name: trunk, %s, zone: trunk}
    - {name: reg, builtin: echo, zone: trunk}
  routes:
    - {default: true, upstreams: [trunk]}
  registrar: reg
%spolicies:
  auth:
    users:
%s  ratelimit: {trusted: [127.0.0.0/8, "::1"]}
  admission:
    source: {concurrent: 0, rate: 0}
    user: {concurrent: 0, rate: 0}
%s`, g.admin, g.cert.CertFile, g.cert.KeyFile, g.udp, g.wss4, listenerExtra, g.wss6, listenerExtra, trunk,
		mediaSection(""), ha1User(webrtcUser, webrtcPassword), policies)
	g.Gateway = h.StartGateway(t, h.GatewayConfig{YAML: yaml, UDP: []string{g.udp}, TCP: []string{g.wss4, g.wss6, g.admin}})
	return g
}

func (g *webrtcGW) cdrs(t *testing.T, f journal.CDRFilter, n int) []core.CDR {
	t.Helper()
	return waitCDRs(t, &gw{Gateway: g.Gateway}, f, n)
}

func (g *webrtcGW) txs(t *testing.T, f journal.TxFilter) []core.Transaction {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := journal.QueryTransactions(ctx, filepath.Join(g.DataDir, "journal.db"), f)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (g *webrtcGW) security(t *testing.T, rule string) []core.SecurityEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := journal.QuerySecurity(ctx, filepath.Join(g.DataDir, "journal.db"), journal.SecFilter{Rule: rule})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// webrtcEvent is one state change the page reported.
type webrtcEvent struct {
	Event string `json:"event"`
	Cause string `json:"cause"`
	Code  int    `json:"code"`
	Ms    int    `json:"ms"` // "media": from the INVITE to the first packet received
	RTP   struct {
		Sent     int            `json:"sent"`
		Received int            `json:"received"`
		Codec    string         `json:"codec"`
		Pair     string         `json:"pair"`  // the ICE pair in use: "local port -> remote port"
		Video    transcodeVideo `json:"video"` // with video=1 (transcode_test.go)
	} `json:"rtp"`
	Levels struct {
		MicMax    float64 `json:"micMax"`
		RemoteMax float64 `json:"remoteMax"`
	} `json:"levels"`
}

// webrtcBrowser is a headless Chromium on the softphone page, with the
// page's reports.
type webrtcBrowser struct {
	proc *h.Proc

	mu     sync.Mutex
	events []webrtcEvent
	notify chan struct{}
}

// webrtcToneWAV writes the tone the fake microphone plays: 48 kHz mono
// 16-bit, 20 s (Chromium loops it).
func webrtcToneWAV(t testing.TB, hz float64) string {
	t.Helper()
	const rate, secs = 48000, 20
	n := rate * secs
	b := make([]byte, 44+2*n)
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], rate)
	binary.LittleEndian.PutUint32(b[28:], rate*2)
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*n))
	for i := 0; i < n; i++ {
		v := int16(0.5 * 32767 * math.Sin(2*math.Pi*hz*float64(i)/rate))
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(v))
	}
	p := filepath.Join(t.TempDir(), "tone.wav")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startWebRTCBrowser opens the softphone page of g with params (server,
// uri, password, target, auto, answer, hangup_after...) in headless
// Chromium that trusts exactly the gateway's test key. The page reports
// to a collector of the test.
func startWebRTCBrowser(t testing.TB, g *webrtcGW, params url.Values) *webrtcBrowser {
	t.Helper()
	bin := h.RequirePeer(t, "chromium")
	b := &webrtcBrowser{notify: make(chan struct{}, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		var ev webrtcEvent
		if json.Unmarshal(body, &ev) == nil && ev.Event != "" {
			b.mu.Lock()
			b.events = append(b.events, ev)
			b.mu.Unlock()
			select {
			case b.notify <- struct{}{}:
			default:
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	params.Set("report", "http://"+ln.Addr().String()+"/report")
	params.Set("processing", "0")
	if res, err := http.Get("http://" + g.admin + "/phone/phone.js"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("the gateway serves no softphone (%v): build it with make softphone before the binary", err)
	} else {
		res.Body.Close()
	}
	page := "http://" + g.admin + "/phone/?" + params.Encode()
	// Chromium's helper processes may still write into the profile for a
	// moment after the browser is stopped: the profile is removed (after
	// the stop, cleanups run last in first out) with a few retries.
	profile, err := os.MkdirTemp("", "webrtc-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 30 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	b.proc = h.StartProc(t, h.ProcConfig{Name: "chromium", Path: bin, Args: []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile, "--remote-debugging-port=0",
		"--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
		"--use-file-for-fake-audio-capture=" + webrtcToneWAV(t, webrtcBrowserHz),
		"--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
		"--autoplay-policy=no-user-gesture-required",
		"--ignore-certificate-errors-spki-list=" + g.cert.SPKIPin,
		page,
	}})
	return b
}

// wait waits for the first event named ev; it fails on one of failOn.
func (b *webrtcBrowser) wait(ctx context.Context, ev string, failOn ...string) (webrtcEvent, error) {
	for {
		b.mu.Lock()
		var seen []string
		for _, e := range b.events {
			seen = append(seen, e.Event)
			if e.Event == ev {
				b.mu.Unlock()
				return e, nil
			}
			for _, f := range failOn {
				if e.Event == f {
					b.mu.Unlock()
					return e, fmt.Errorf("page: %s (%s %d) while waiting for %s", f, e.Cause, e.Code, ev)
				}
			}
		}
		b.mu.Unlock()
		select {
		case <-b.notify:
		case <-ctx.Done():
			return webrtcEvent{}, fmt.Errorf("page: no %s event (seen %v): %w", ev, seen, ctx.Err())
		}
	}
}

// webrtcTrunk is baresip as the SIP trunk: it answers, sends
// mediaCalleeHz and records what it hears.
func webrtcTrunk(t *testing.T) *mediaUA {
	return startMediaUA(t, "trunk", "127.0.0.1", "callee", false, mediaCalleeHz)
}

// webrtcCheckCall checks the page's final figures and the call's CDR:
// RTP both ways on both legs, the browser's leg over WSS with DTLS-SRTP,
// the trunk's plain RTP over UDP.
func webrtcCheckCall(t *testing.T, g *webrtcGW, final webrtcEvent, browserRole string) {
	t.Helper()
	t.Logf("page: sent %d, received %d RTP packets (%s) on %s; levels mic %.3f remote %.3f",
		final.RTP.Sent, final.RTP.Received, final.RTP.Codec, final.RTP.Pair, final.Levels.MicMax, final.Levels.RemoteMax)
	if final.RTP.Sent < 50 || final.RTP.Received < 50 {
		t.Errorf("page RTP: sent %d, received %d; want at least 50 each way", final.RTP.Sent, final.RTP.Received)
	}
	if final.Levels.RemoteMax < 0.01 {
		t.Errorf("the page heard nothing from the trunk: remote level %.4f", final.Levels.RemoteMax)
	}
	cdrs := g.cdrs(t, journal.CDRFilter{Party: webrtcUser}, 1)
	if len(cdrs) != 1 {
		t.Fatalf("%d CDRs for %s, want 1", len(cdrs), webrtcUser)
	}
	c := cdrs[0]
	t.Logf("CDR: %s", mediaCDRText(c))
	trunkRole := core.RoleCaller
	if browserRole == core.RoleCaller {
		trunkRole = core.RoleCallee
	}
	for _, l := range c.Legs {
		switch l.Role {
		case browserRole:
			if l.Transport != "wss" || !l.Encrypted || !l.MediaEncrypted || l.MediaCrypto != "dtls-srtp" {
				t.Errorf("browser leg %+v: want wss, encrypted, media dtls-srtp", l)
			}
		case trunkRole:
			if l.Transport != "udp" || l.MediaEncrypted || l.MediaCrypto != "" {
				t.Errorf("trunk leg %+v: want udp, plain RTP", l)
			}
		}
	}
	for _, role := range []string{browserRole, trunkRole} {
		m, ok := mediaFrom(c, role)
		if !ok || m.Packets < 50 {
			t.Errorf("CDR: %d packets relayed from the %s, want at least 50", m.Packets, role)
		}
		if ok && m.Encrypted != (role == browserRole) {
			t.Errorf("CDR: media from the %s encrypted=%v", role, m.Encrypted)
		}
	}
}

// webrtcNetnsEnv marks a test process that runs inside its own network
// namespace.
const webrtcNetnsEnv = "UCGATE_E2E_WEBRTC_NETNS"

var (
	webrtcNetnsProbe sync.Once
	webrtcNetnsOK    bool
)

// webrtcULA is the IPv6 address the browser has in that namespace.
const webrtcULA = "fd00:5ca1:ab1e::1"

// webrtcIsolated runs the calling test again in a network namespace that
// has only a loopback interface (unshare -n, as root), the gateway, its
// peers and Chromium with it: Chromium then gathers only loopback
// candidates, so the media stays on 127.0.0.1 and ::1 whatever the host's
// interfaces (PEERS.md 3.7). It returns true when the test ran there (the
// caller returns); false when the caller is already inside, or cannot
// make a namespace (not root, no unshare, or UCGATE_E2E_NO_NETNS set):
// then the test runs here, and Chromium may pick a pair from one of the
// host's addresses.
func webrtcIsolated(t *testing.T) bool {
	t.Helper()
	if os.Getenv(webrtcNetnsEnv) != "" || os.Getenv("UCGATE_E2E_NO_NETNS") != "" || os.Geteuid() != 0 {
		return false
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return false
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return false
	}
	webrtcNetnsProbe.Do(func() {
		// A container may forbid namespaces even to root: then the
		// tests run here.
		probe := exec.Command(unshare, "-n", "--", "sh", "-c", "ip link set lo up && ip link add v0 type veth peer name v1")
		webrtcNetnsOK = probe.Run() == nil
	})
	if !webrtcNetnsOK {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// Default routes through lo: Chromium gathers an address family only
	// when it has a route out (it probes with a public address), and
	// nothing leaves a namespace whose only interface is lo.
	// Chromium gathers no IPv6 candidate unless the host has an IPv6
	// address off loopback: a veth pair inside the namespace (both ends
	// in it, so nothing leaves) carries a unique local one, webrtcULA.
	script := `ip link set lo up && ip route add default dev lo && ip link add v0 type veth peer name v1 && ` +
		`ip link set v0 up && ip link set v1 up && ip -6 addr add ` + webrtcULA + `/64 dev v0 nodad && exec "$@"`
	cmd := exec.CommandContext(ctx, unshare, "-n", "--", "sh", "-c", script, "sh",
		os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1", "-test.timeout=4m")
	cmd.Env = append(os.Environ(), webrtcNetnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "webrtc_test.go") || strings.Contains(l, "transcode_test.go") || strings.HasPrefix(strings.TrimSpace(l), "--- ") {
			keep = append(keep, l)
		}
	}
	t.Logf("in a loopback-only network namespace:\n%s", strings.Join(keep, "\n"))
	if err != nil {
		t.Fatalf("the test failed in its network namespace (%v):\n%s", err, webrtcTail(string(out), 80))
	}
	return true
}

func webrtcTail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestWebRTCBrowserCallsTrunk: the browser registers over WSS (digest),
// calls the trunk; RTP flows both ways, baresip hears the browser's tone.
func TestWebRTCBrowserCallsTrunk(t *testing.T) {
	if webrtcIsolated(t) {
		return
	}
	webrtcBrowserCallsTrunk(t, false)
}

// TestWebRTCBrowserIPv6TrunkIPv4: the same call with the browser on ::1
// (WSS and media) and the trunk on 127.0.0.1.
func TestWebRTCBrowserIPv6TrunkIPv4(t *testing.T) {
	if webrtcIsolated(t) {
		return
	}
	webrtcBrowserCallsTrunk(t, true)
}

func webrtcBrowserCallsTrunk(t *testing.T, ipv6 bool) {
	h.RequirePeer(t, "baresip")
	h.RequirePeer(t, "chromium")
	trunk := webrtcTrunk(t)
	g := startWebRTCGW(t, trunk.SIPAddr)
	server := "wss://" + g.wss4
	if ipv6 {
		server = "wss://" + g.wss6
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b := startWebRTCBrowser(t, g, url.Values{
		"server": {server}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {webrtcPassword},
		"target": {"sip:callee@127.0.0.1"}, "auto": {"1"}, "hangup_after": {"5000"},
	})
	if _, err := b.wait(ctx, "registered", "registrationFailed"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.wait(ctx, "confirmed", "failed", "ended"); err != nil {
		t.Fatal(err)
	}
	if _, err := trunk.event(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	final, err := b.wait(ctx, "final", "failed", "ended")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.wait(ctx, "ended", "failed"); err != nil {
		t.Fatal(err)
	}
	if _, err := trunk.event(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	webrtcCheckCall(t, g, final, core.RoleCaller)
	mediaCheckRecording(t, trunk, webrtcBrowserHz, 3*time.Second, false)
	// The browser's media goes to a relay port of the gateway, in the
	// family of its signalling.
	// Outside a loopback-only namespace Chromium may send from one of the
	// host's addresses.
	local := `\S+`
	if os.Getenv(webrtcNetnsEnv) != "" {
		local = `127\.0\.0\.1`
		if ipv6 {
			local = `(::1|` + regexp.QuoteMeta(webrtcULA) + `)`
		}
	}
	wantPair := regexp.MustCompile(`^` + local + ` \d+ -> 127\.0\.0\.1 (4[0-4]\d\d\d)$`)
	if ipv6 {
		wantPair = regexp.MustCompile(`^` + local + ` \d+ -> ::1 (4[0-4]\d\d\d)$`)
	}
	if !wantPair.MatchString(final.RTP.Pair) {
		cands, _ := b.wait(ctx, "candidates")
		t.Errorf("the browser's ICE pair %q, want %v (its candidates: %s)", final.RTP.Pair, wantPair, cands.Cause)
	}
	if ipv6 {
		mediaAnchored(t, trunk, "127.0.0.1")
		c := g.cdrs(t, journal.CDRFilter{Party: webrtcUser}, 1)[0]
		if r := c.Legs[0].Remote.Addr(); !r.Is6() || !r.IsLoopback() {
			t.Errorf("browser leg from %v, want ::1", c.Legs[0].Remote)
		}
	}
	// The handshake is counted in the metrics.
	if res, err := http.Get("http://" + g.admin + "/metrics"); err != nil {
		t.Error(err)
	} else {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(body), `ucgate_webrtc_handshakes_total{result="ok"} 1`) {
			t.Errorf("metrics do not count the handshake")
		}
	}
	// The journal shows the browser's transactions over WSS.
	invites := g.txs(t, journal.TxFilter{Method: "INVITE", Action: "allow"})
	wss := 0
	for _, tx := range invites {
		if tx.Transport == "wss" && tx.Encrypted {
			wss++
		}
	}
	if wss == 0 {
		t.Errorf("no INVITE over WSS in the journal: %+v", invites)
	}
}

// TestWebRTCBrowserSRTPTrunk: the trunk requires SDES-SRTP (baresip
// with mediaenc=srtp-mand, upstream srtp: sdes, over TCP): DTLS-SRTP on the browser's
// leg, SDES-SRTP on the trunk's, the tone intact.
func TestWebRTCBrowserSRTPTrunk(t *testing.T) {
	if webrtcIsolated(t) {
		return
	}
	h.RequirePeer(t, "baresip")
	h.RequirePeer(t, "chromium")
	trunk := startMediaUA(t, "trunk", "127.0.0.1", "callee", true, mediaCalleeHz)
	// TCP to the trunk: with three SDES keys and the browser's headers
	// the INVITE outgrows what sipgo sends over UDP (1300 bytes).
	g := startWebRTCGW(t, trunk.SIPAddr+", transport: tcp, srtp: sdes")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b := startWebRTCBrowser(t, g, url.Values{
		"server": {"wss://" + g.wss4}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {webrtcPassword},
		"target": {"sip:callee@127.0.0.1"}, "auto": {"1"}, "hangup_after": {"5000"},
	})
	final, err := b.wait(ctx, "final", "failed", "ended", "registrationFailed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trunk.event(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	t.Logf("page: sent %d, received %d RTP packets (%s)", final.RTP.Sent, final.RTP.Received, final.RTP.Codec)
	if final.RTP.Sent < 50 || final.RTP.Received < 50 {
		t.Errorf("page RTP: sent %d, received %d", final.RTP.Sent, final.RTP.Received)
	}
	c := g.cdrs(t, journal.CDRFilter{Party: webrtcUser}, 1)
	if len(c) != 1 {
		t.Fatalf("%d CDRs", len(c))
	}
	t.Logf("CDR: %s", mediaCDRText(c[0]))
	if l := c[0].Legs[0]; l.MediaCrypto != "dtls-srtp" || !l.MediaEncrypted {
		t.Errorf("browser leg %+v", l)
	}
	if l := c[0].Legs[1]; l.MediaCrypto != "sdes-srtp" || !l.MediaEncrypted {
		t.Errorf("trunk leg %+v, want sdes-srtp", l)
	}
	mediaCheckRecording(t, trunk, webrtcBrowserHz, 3*time.Second, false)
}

// TestWebRTCHold: the browser puts the call on hold and takes it back
// (two re-INVITEs through the gateway); the call goes on with media both
// ways after it, on the same DTLS-SRTP transport.
func TestWebRTCHold(t *testing.T) {
	if webrtcIsolated(t) {
		return
	}
	h.RequirePeer(t, "baresip")
	h.RequirePeer(t, "chromium")
	trunk := webrtcTrunk(t)
	g := startWebRTCGW(t, trunk.SIPAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b := startWebRTCBrowser(t, g, url.Values{
		"server": {"wss://" + g.wss4}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {webrtcPassword},
		"target": {"sip:callee@127.0.0.1"}, "auto": {"1"}, "hold_at": {"1000"}, "hangup_after": {"5000"},
	})
	if _, err := b.wait(ctx, "unhold", "failed", "ended"); err != nil {
		t.Fatal(err)
	}
	// The packets counted from now on were sent after the call came back.
	st, err := b.wait(ctx, "final", "failed", "ended")
	if err != nil {
		t.Fatal(err)
	}
	var atUnhold webrtcEvent
	b.mu.Lock()
	seenUnhold := false
	for _, e := range b.events {
		if e.Event == "unhold" {
			seenUnhold = true
		}
		if seenUnhold && e.Event == "stats" {
			atUnhold = e
			break
		}
	}
	b.mu.Unlock()
	if _, err := b.wait(ctx, "ended", "failed"); err != nil {
		t.Fatal(err)
	}
	t.Logf("after unhold: sent %d->%d, received %d->%d", atUnhold.RTP.Sent, st.RTP.Sent, atUnhold.RTP.Received, st.RTP.Received)
	if st.RTP.Sent-atUnhold.RTP.Sent < 50 || st.RTP.Received-atUnhold.RTP.Received < 50 {
		t.Errorf("media after the hold: sent %d, received %d more packets; want 50 each way",
			st.RTP.Sent-atUnhold.RTP.Sent, st.RTP.Received-atUnhold.RTP.Received)
	}
	c := g.cdrs(t, journal.CDRFilter{Party: webrtcUser}, 1)
	if len(c) != 1 || c[0].EndReason != "normal" {
		t.Fatalf("CDRs %+v", c)
	}
	reinvites := 0
	for _, tx := range g.txs(t, journal.TxFilter{Method: "INVITE"}) {
		if tx.Transport == "wss" {
			reinvites++
		}
	}
	if reinvites < 3 {
		t.Errorf("%d INVITEs over WSS in the journal, want the call and two re-INVITEs", reinvites)
	}
}

// TestWebRTCTrunkCallsBrowser: the trunk calls the registered browser
// user by name; the page answers; RTP flows both ways.
func TestWebRTCTrunkCallsBrowser(t *testing.T) {
	if webrtcIsolated(t) {
		return
	}
	h.RequirePeer(t, "baresip")
	h.RequirePeer(t, "chromium")
	trunk := webrtcTrunk(t)
	g := startWebRTCGW(t, trunk.SIPAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b := startWebRTCBrowser(t, g, url.Values{
		"server": {"wss://" + g.wss4}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {webrtcPassword},
		"auto": {"1"}, "answer": {"1"}, "hangup_after": {"5000"},
	})
	if _, err := b.wait(ctx, "registered", "registrationFailed"); err != nil {
		t.Fatal(err)
	}
	if err := trunk.Dial(ctx, fmt.Sprintf("sip:%s@%s;transport=udp", webrtcUser, g.udp)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.wait(ctx, "confirmed", "failed", "ended"); err != nil {
		t.Fatal(err)
	}
	if _, err := trunk.event(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	final, err := b.wait(ctx, "final", "failed", "ended")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trunk.event(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	webrtcCheckCall(t, g, final, core.RoleCallee)
	mediaCheckRecording(t, trunk, webrtcBrowserHz, 3*time.Second, false)
}

// TestWebRTCRefusals: a page from an origin the WSS listener does not
// allow cannot connect, a wrong password does not register, and a browser
// whose SDP announces a DTLS fingerprint that is not its certificate's is
// cut off at the handshake; each is journaled with its rule.
func TestWebRTCRefusals(t *testing.T) {
	if webrtcIsolated(t) {
		return
	}
	h.RequirePeer(t, "baresip")
	h.RequirePeer(t, "chromium")
	t.Run("origin", func(t *testing.T) {
		g := startWebRTCGW(t, "127.0.0.1:9", "https://phone.example.com")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b := startWebRTCBrowser(t, g, url.Values{
			"server": {"wss://" + g.wss4}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {webrtcPassword}, "auto": {"1"},
		})
		if _, err := b.wait(ctx, "disconnected", "registered", "connected"); err != nil {
			t.Fatal(err)
		}
		var got []core.Transaction
		waitUntil(ctx, 10*time.Second, func() bool {
			got = g.txs(t, journal.TxFilter{Rule: "sip/origin"})
			return len(got) > 0
		})
		if len(got) == 0 || got[0].Transport != "wss" || got[0].Action != "refuse" {
			t.Fatalf("journal of sip/origin: %+v", got)
		}
	})
	t.Run("password", func(t *testing.T) {
		g := startWebRTCGW(t, "127.0.0.1:9")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b := startWebRTCBrowser(t, g, url.Values{
			"server": {"wss://" + g.wss4}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {"not-the-password"}, "auto": {"1"},
		})
		ev, err := b.wait(ctx, "registrationFailed", "registered")
		if err != nil {
			t.Fatal(err)
		}
		if ev.Code != 403 {
			t.Errorf("registration failed with %d (%s), want 403", ev.Code, ev.Cause)
		}
		var got []core.Transaction
		waitUntil(ctx, 10*time.Second, func() bool {
			got = g.txs(t, journal.TxFilter{Method: "REGISTER", Action: "refuse"})
			return len(got) > 0
		})
		if len(got) == 0 || got[0].Transport != "wss" || !strings.HasPrefix(got[0].Rule, "auth/") {
			t.Fatalf("journal of the refused REGISTER: %+v", got)
		}
	})
	t.Run("connection cap", func(t *testing.T) {
		// conncap counts WSS connections like any other: the third from
		// one source is closed before its TLS handshake.
		g := startWebRTCGWWith(t, "127.0.0.1:9", "  conncap: {per_source: 2}\n")
		conf := &tls.Config{RootCAs: g.cert.Pool, ServerName: "127.0.0.1"}
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for i := range 3 {
			d := &net.Dialer{Timeout: 5 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", g.wss4, conf)
			if i < 2 {
				if err != nil {
					t.Fatalf("connection %d: %v", i+1, err)
				}
				held = append(held, c)
				continue
			}
			if err == nil {
				c.Close()
				t.Fatal("a third WSS connection from one source was accepted")
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var got []core.Transaction
		waitUntil(ctx, 10*time.Second, func() bool {
			got = g.txs(t, journal.TxFilter{Rule: "conncap/source"})
			return len(got) > 0
		})
		if len(got) == 0 || got[0].Transport != "wss" {
			t.Fatalf("journal of conncap/source: %+v", got)
		}
	})
	t.Run("video codec", func(t *testing.T) {
		// sipp plays a trunk on 127.0.0.3 (an upstream: it may call the
		// browser user by name) offering H.263-only video.
		h.RequirePeer(t, "sipp")
		port := h.FreeUDPPort(t)
		g := startWebRTCGW(t, h.HostPort("127.0.0.3", port))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		b := startWebRTCBrowser(t, g, url.Values{
			"server": {"wss://" + g.wss4}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {webrtcPassword},
			"auto": {"1"}, "answer": {"1"},
		})
		if _, err := b.wait(ctx, "registered", "registrationFailed"); err != nil {
			t.Fatal(err)
		}
		xml, err := os.ReadFile("testdata/webrtc/uac-h263.xml")
		if err != nil {
			t.Fatal(err)
		}
		r := h.RunSipp(t, ctx, h.SippConfig{ScenarioXML: string(xml), Remote: g.udp, IP: "127.0.0.3", Port: port,
			Service: webrtcUser, Calls: 1, Timeout: 20 * time.Second})
		if !r.OK() {
			t.Fatalf("sipp did not get the 488 naming the video codec: %s", r)
		}
		b.mu.Lock()
		for _, e := range b.events {
			if e.Event == "incoming" {
				t.Errorf("the browser was offered a call it cannot decode")
			}
		}
		b.mu.Unlock()
		c := g.cdrs(t, journal.CDRFilter{Party: webrtcUser}, 1)
		if len(c) != 1 || c[0].Status != 488 || c[0].EndReason != "media" {
			t.Fatalf("CDRs %+v, want one refused 488 for its media", c)
		}
	})
	t.Run("fingerprint", func(t *testing.T) {
		trunk := webrtcTrunk(t)
		g := startWebRTCGW(t, trunk.SIPAddr)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		b := startWebRTCBrowser(t, g, url.Values{
			"server": {"wss://" + g.wss4}, "uri": {"sip:" + webrtcUser + "@127.0.0.1"}, "password": {webrtcPassword},
			"target": {"sip:callee@127.0.0.1"}, "auto": {"1"}, "hangup_after": {"8000"}, "tamper_fingerprint": {"1"},
		})
		if _, err := b.wait(ctx, "ended", "final"); err != nil {
			t.Fatal(err)
		}
		cdrs := g.cdrs(t, journal.CDRFilter{Party: webrtcUser}, 1)
		if len(cdrs) != 1 || cdrs[0].EndReason != "webrtc/fingerprint" || cdrs[0].EndedBy != core.RoleGateway {
			t.Fatalf("CDRs %+v, want one ended by the gateway for webrtc/fingerprint", cdrs)
		}
		if m, ok := mediaFrom(cdrs[0], core.RoleCaller); ok && m.Packets > 0 {
			t.Errorf("%d packets relayed from the browser whose handshake was refused", m.Packets)
		}
		var ev []core.SecurityEvent
		waitUntil(ctx, 10*time.Second, func() bool {
			ev = g.security(t, "webrtc/fingerprint")
			return len(ev) > 0
		})
		if len(ev) == 0 || ev[0].Session != cdrs[0].Session {
			t.Fatalf("security events %+v", ev)
		}
		if trunk.recorded() > 0 {
			webrtcHeardNothing(t, trunk)
		}
	})
}

// webrtcHeardNothing fails if the trunk heard the browser's tone
// from a browser the gateway refused.
func webrtcHeardNothing(t *testing.T, u *mediaUA) {
	t.Helper()
	b, err := os.ReadFile(u.recording())
	if err != nil {
		return
	}
	w, err := mediaParseWAV(b)
	if err != nil {
		return
	}
	if r := mediaAnalyse(w, webrtcBrowserHz); r.tone > 0.05 {
		t.Errorf("the trunk heard the refused browser: %s", r)
	}
}
