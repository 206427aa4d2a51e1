package harness

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestFreePort(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for _, network := range []string{"udp", "tcp", "udp+tcp", "udp", "tcp"} {
		p := FreePort(t, network)
		if p < portLow || p > portHigh || seen[p] {
			t.Fatalf("FreePort(%s) = %d: out of range or repeated", network, p)
		}
		seen[p] = true
	}
	u := FreeUDPPort(t)
	c, err := net.ListenPacket("udp", HostPort("127.0.0.1", u))
	if err != nil {
		t.Fatalf("bind free UDP port %d: %v", u, err)
	}
	c.Close()
	p := FreePortPair(t, false)
	if p%2 != 0 {
		t.Fatalf("FreePortPair = %d, want even", p)
	}
	for i := range 4 {
		if seen[p+i] {
			t.Fatalf("FreePortPair %d overlaps earlier ports", p)
		}
	}
	if hasIPv6() {
		p := FreePort(t, "udp6+tcp6")
		l, err := net.Listen("tcp6", HostPort("::1", p))
		if err != nil {
			t.Fatalf("bind free tcp6 port %d: %v", p, err)
		}
		l.Close()
	}
}

func TestProcStop(t *testing.T) {
	t.Parallel()
	p := StartProc(t, ProcConfig{Path: "sleep", Args: []string{"30"}})
	start := time.Now()
	p.Stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Stop of sleep took %v", d)
	}
	if !p.Exited() || p.ExitCode() != -1 {
		t.Fatalf("after Stop: exited=%v code=%d, want true -1 (signal)", p.Exited(), p.ExitCode())
	}
	p.Stop() // idempotent
}

func TestProcStopKillsAfterGrace(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := StartProc(t, ProcConfig{Name: "ignore-term", Path: exe, Env: []string{"HARNESS_HELPER=ignore-term"}, Grace: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.WaitLog(ctx, regexp.MustCompile(`ignoring SIGTERM`)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Stop()
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("Stop took %v, want about the 300ms grace", d)
	}
}

func TestProcWaitAndExitCode(t *testing.T) {
	t.Parallel()
	p := StartProc(t, ProcConfig{Path: "sh", Args: []string{"-c", "printf 'one\\rtwo\\n'; exit 7"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, err := p.Wait(ctx)
	if err != nil || code != 7 {
		t.Fatalf("Wait = %d, %v; want 7, nil", code, err)
	}
	if got := p.Tail(2); got != "one\ntwo" {
		t.Fatalf("Tail = %q, want \"one\\ntwo\" (split on \\r)", got)
	}
	if _, err := p.WaitLog(ctx, regexp.MustCompile(`never`)); err == nil {
		t.Fatal("WaitLog on an exited process without the line succeeded")
	}
}

func TestSippUDP(t *testing.T) {
	t.Parallel()
	uas := StartSipp(t, SippConfig{Scenario: "uas", Calls: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := RunSipp(t, ctx, SippConfig{Scenario: "uac", Remote: uas.Addr(), Calls: 5, Rate: 20, Limit: 5, CallLength: 100 * time.Millisecond, Timeout: 15 * time.Second})
	if !r.OK() || r.Stats.SuccessfulCall != 5 || r.Stats.OutgoingCall != 5 {
		t.Fatalf("uac: %v", r)
	}
	u := uas.Wait(ctx)
	if !u.OK() || u.Stats.IncomingCall != 5 || u.Stats.SuccessfulCall != 5 {
		t.Fatalf("uas: %v", u)
	}
}

func TestSippTCP(t *testing.T) {
	t.Parallel()
	for _, tr := range []string{"t1", "tn"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			uas := StartSipp(t, SippConfig{ScenarioXML: ScenarioUASRingAnswer, Transport: tr, Calls: 4})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			r := RunSipp(t, ctx, SippConfig{Scenario: "uac", Transport: tr, Remote: uas.Addr(), Calls: 4, Rate: 20, CallLength: 100 * time.Millisecond, Timeout: 15 * time.Second})
			if !r.OK() || r.Stats.SuccessfulCall != 4 {
				t.Fatalf("uac: %v", r)
			}
			if u := uas.Wait(ctx); !u.OK() || u.Stats.SuccessfulCall != 4 {
				t.Fatalf("uas: %v", u)
			}
		})
	}
}

func TestSippIPv6(t *testing.T) {
	t.Parallel()
	if !hasIPv6() {
		t.Skip("no ::1 on this host")
	}
	uas := StartSipp(t, SippConfig{ScenarioXML: ScenarioUASRingAnswer, IP: "::1", Calls: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := RunSipp(t, ctx, SippConfig{Scenario: "uac", IP: "::1", Remote: uas.Addr(), Calls: 2, Timeout: 15 * time.Second})
	if !r.OK() || r.Stats.SuccessfulCall != 2 {
		t.Fatalf("uac: %v", r)
	}
	if u := uas.Wait(ctx); !u.OK() {
		t.Fatalf("uas: %v", u)
	}
}

// A UAS that rejects with 486 turns the built-in uac's call into a failure:
// exit 1 and the cause counters are parsed.
func TestSippFailureCounted(t *testing.T) {
	t.Parallel()
	const busy = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="486">
  <recv request="INVITE" />
  <send><![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
  <recv request="ACK" />
</scenario>`
	uas := StartSipp(t, SippConfig{ScenarioXML: busy, Calls: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := RunSipp(t, ctx, SippConfig{Scenario: "uac", Remote: uas.Addr(), Calls: 1, Timeout: 10 * time.Second})
	if r.OK() || r.ExitCode != 1 || r.Stats.FailedCall != 1 || r.Stats.FailedUnexpectedMessage != 1 {
		t.Fatalf("uac against 486: %v; want exit 1, FailedCall 1, FailedUnexpectedMessage 1", r)
	}
	if r.Stats.Raw["OutgoingCall(C)"] != "1" {
		t.Fatalf("Raw[OutgoingCall(C)] = %q", r.Stats.Raw["OutgoingCall(C)"])
	}
}

func TestSippTimeoutIsHard(t *testing.T) {
	t.Parallel()
	// Nobody answers on this port: -timeout 2s -timeout_error must end the
	// run with 255 long before INVITE retransmissions give up.
	port := FreeUDPPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	r := RunSipp(t, ctx, SippConfig{Scenario: "uac", Remote: HostPort("127.0.0.1", port), Timeout: 2 * time.Second})
	if r.ExitCode != 255 || time.Since(start) > 10*time.Second {
		t.Fatalf("unanswered uac: %v after %v; want exit 255 within seconds", r, time.Since(start))
	}
}

func TestSippCancel(t *testing.T) {
	t.Parallel()
	for _, tr := range []string{"u1", "t1"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			uas := StartSipp(t, SippConfig{ScenarioXML: ScenarioUASRingNoAnswer, Transport: tr, Calls: 3})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			r := RunSipp(t, ctx, SippConfig{ScenarioXML: ScenarioUACCancel, Transport: tr, Remote: uas.Addr(), Service: "cancelme", Calls: 3, Rate: 10, Timeout: 15 * time.Second})
			if !r.OK() || r.Stats.SuccessfulCall != 3 {
				t.Fatalf("uac: %v", r)
			}
			if u := uas.Wait(ctx); !u.OK() || u.Stats.SuccessfulCall != 3 {
				t.Fatalf("uas: %v", u)
			}
		})
	}
}

func TestSippCalleeHangup(t *testing.T) {
	t.Parallel()
	for _, tr := range []string{"u1", "t1"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			uas := StartSipp(t, SippConfig{ScenarioXML: ScenarioUASCalleeHangup, Transport: tr, Calls: 3, CallLength: 200 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			r := RunSipp(t, ctx, SippConfig{ScenarioXML: ScenarioUACWaitBye, Transport: tr, Remote: uas.Addr(), Service: "callee", Calls: 3, Rate: 10, Timeout: 15 * time.Second, TraceMsg: true})
			if !r.OK() || r.Stats.SuccessfulCall != 3 {
				t.Fatalf("uac: %v", r)
			}
			msgs, _ := os.ReadFile(r.Dir + "/messages.log")
			if n := strings.Count(string(msgs), "\nBYE sip:"); n != 3 {
				t.Fatalf("uac received %d BYEs, want 3", n)
			}
			if u := uas.Wait(ctx); !u.OK() || u.Stats.SuccessfulCall != 3 {
				t.Fatalf("uas: %v", u)
			}
		})
	}
}

func TestSocatTLS(t *testing.T) {
	t.Parallel()
	RequirePeer(t, "socat")
	cert := NewTestCert(t)
	uas := StartSipp(t, SippConfig{ScenarioXML: ScenarioUASRingAnswer, Transport: "t1", Calls: 3})
	server := StartTLSServerProxy(t, uas.Addr(), cert.CertFile, cert.KeyFile)

	// The server side really speaks TLS with our certificate.
	conn, err := tls.Dial("tcp", server.Addr, &tls.Config{RootCAs: cert.Pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", server.Addr, err)
	}
	if st := conn.ConnectionState(); !st.HandshakeComplete {
		t.Fatal("handshake not complete")
	}
	conn.Close()

	client := StartTLSClientProxy(t, server.Addr, cert.CertFile)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := RunSipp(t, ctx, SippConfig{Scenario: "uac", Transport: "t1", Remote: client.Addr, Calls: 3, Rate: 10, CallLength: 100 * time.Millisecond, Timeout: 15 * time.Second})
	if !r.OK() || r.Stats.SuccessfulCall != 3 {
		t.Fatalf("uac over TLS: %v", r)
	}
	if u := uas.Wait(ctx); !u.OK() || u.Stats.SuccessfulCall != 3 {
		t.Fatalf("uas behind TLS: %v", u)
	}
}

func TestSocatTLSRejectsUnknownCA(t *testing.T) {
	t.Parallel()
	RequirePeer(t, "socat")
	good, other := NewTestCert(t), NewTestCert(t)
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	server := StartTLSServerProxy(t, backend.Addr().String(), good.CertFile, good.KeyFile)
	client := StartTLSClientProxy(t, server.Addr, other.CertFile) // wrong CA
	c, err := net.Dial("tcp", client.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes through a client proxy that should refuse the certificate", n)
	}
}

func TestBaresipAnswersSippCall(t *testing.T) {
	t.Parallel()
	b := StartBaresip(t, BaresipConfig{Account: "<sip:1001@127.0.0.1>;answermode=auto;regint=0", Timeout: 40 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	line, err := SIPOptions(ctx, b.SIPAddr)
	if err != nil || !strings.HasPrefix(line, "SIP/2.0 ") {
		t.Fatalf("OPTIONS to baresip: %q, %v", line, err)
	}

	r := RunSipp(t, ctx, SippConfig{Scenario: "uac", Remote: b.SIPAddr, Service: "1001", Calls: 1, CallLength: time.Second, Timeout: 15 * time.Second})
	if !r.OK() || r.Stats.SuccessfulCall != 1 {
		t.Fatalf("sipp -> baresip: %v", r)
	}
	ev, err := b.WaitEvent(ctx, "CALL_ESTABLISHED")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Direction != "incoming" || !strings.Contains(ev.PeerURI, "sipp@") {
		t.Fatalf("CALL_ESTABLISHED = %+v", ev)
	}
	if _, err := b.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	if err := b.Quit(ctx); err != nil {
		t.Fatalf("quit: %v", err)
	}
	if code := b.Proc.ExitCode(); code != 0 {
		t.Fatalf("baresip exit %d after quit", code)
	}
}

func TestBaresipDialsSipp(t *testing.T) {
	t.Parallel()
	uas := StartSipp(t, SippConfig{ScenarioXML: ScenarioUASRingAnswer, Calls: 1})
	b := StartBaresip(t, BaresipConfig{Account: "<sip:1002@127.0.0.1>;regint=0", Timeout: 40 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Dial(ctx, "sip:echo@"+uas.Addr()+";transport=udp"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	if err := b.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	if u := uas.Wait(ctx); !u.OK() || u.Stats.SuccessfulCall != 1 {
		t.Fatalf("uas: %v", u)
	}
}

func TestBaresipRegistersWithStub(t *testing.T) {
	t.Parallel()
	reg := StartRegistrar(t, SippConfig{Timeout: 40 * time.Second}, 2) // REGISTER + un-REGISTER
	b := StartBaresip(t, BaresipConfig{
		Account:        "<sip:1003@" + reg.Addr() + ";transport=udp>;regint=60",
		WaitRegistered: true,
		Timeout:        40 * time.Second,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := b.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("quit took %v: the stub did not answer the un-REGISTER", d)
	}
	if r := reg.Wait(ctx); !r.OK() || r.Stats.SuccessfulCall != 2 {
		t.Fatalf("registrar: %v", r)
	}
}

func TestBaresipIPv6(t *testing.T) {
	t.Parallel()
	if !hasIPv6() {
		t.Skip("no ::1 on this host")
	}
	b := StartBaresip(t, BaresipConfig{IP: "::1", Account: "<sip:1004@[::1]>;answermode=auto;regint=0", Timeout: 40 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := RunSipp(t, ctx, SippConfig{Scenario: "uac", IP: "::1", Remote: b.SIPAddr, Service: "1004", Calls: 1, CallLength: 500 * time.Millisecond, Timeout: 15 * time.Second})
	if !r.OK() {
		t.Fatalf("sipp -> baresip over IPv6: %v", r)
	}
	if _, err := b.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
}

func TestGatewayWithFakeBinary(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	udp := HostPort("127.0.0.1", FreePort(t, "udp"))
	tcp := HostPort("127.0.0.1", FreePort(t, "tcp"))
	g := StartGateway(t, GatewayConfig{
		Binary: exe,
		YAML:   "sip:\n  listeners: []\n",
		UDP:    []string{udp},
		TCP:    []string{tcp},
		Env:    []string{"HARNESS_HELPER=fakegw", "FAKEGW_UDP=" + udp, "FAKEGW_TCP=" + tcp},
	})
	if fi, err := os.Stat(g.DataDir); err != nil || !fi.IsDir() {
		t.Fatalf("data dir %s not created: %v", g.DataDir, err)
	}
	cfg, _ := os.ReadFile(g.ConfigPath)
	if !strings.HasPrefix(string(cfg), "data_dir: \""+g.DataDir+"\"\n") {
		t.Fatalf("config does not start with data_dir:\n%s", cfg)
	}
	g.Stop()
	if code := g.Proc.ExitCode(); code != 0 {
		t.Fatalf("fake gateway exit %d after Stop, want 0 (SIGTERM handled)", code)
	}
	log, _ := os.ReadFile(g.LogPath)
	if !strings.Contains(string(log), "fake gateway stopping") {
		t.Fatalf("log lacks the SIGTERM line:\n%s", log)
	}
}

func TestGatewayDataDirPlaceholder(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	udp := HostPort("127.0.0.1", FreePort(t, "udp"))
	g := StartGateway(t, GatewayConfig{
		Binary: exe,
		YAML:   "data_dir: {{DATA_DIR}}/x\n",
		UDP:    []string{udp},
		Env:    []string{"HARNESS_HELPER=fakegw", "FAKEGW_UDP=" + udp, "FAKEGW_TCP=127.0.0.1:0"},
	})
	if !strings.HasSuffix(g.DataDir, "/data/x") {
		t.Fatalf("DataDir = %s, want .../data/x", g.DataDir)
	}
}

func hasIPv6() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}
