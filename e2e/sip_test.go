package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/journal"
	h "github.com/ucgate/ucgate/e2e/harness"
)

// gw is a gateway started for one test with its listen addresses.
type gw struct {
	*h.Gateway
	udp, tcp, tls, udp6, tcp6 string
}

// trustLoopback is the policies section of the gateways that test the
// back-to-back user agent itself: the sipp and baresip peers on loopback
// play trunks and PBXs, which an operator lists as trusted; every control
// stays on. The security tests configure the controls for themselves.
const trustLoopback = `policies:
  auth: {trusted: [127.0.0.0/8, "::1"]}
  ratelimit: {trusted: [127.0.0.0/8, "::1"]}
  admission:
    source: {concurrent: 0, rate: 0}
    user: {concurrent: 0, rate: 0}
`

// startGW starts ucgate with UDP, TCP and TLS listeners on 127.0.0.1 and
// UDP and TCP on ::1, and the given upstream section.
func startGW(t *testing.T, upstreams string) *gw {
	return startGWWith(t, upstreams, trustLoopback)
}

// startGWWith is startGW with a policies section of the caller's.
func startGWWith(t *testing.T, upstreams, policies string) *gw {
	t.Helper()
	g := &gw{}
	p4, ptls, p6 := h.FreePort(t, "udp"), h.FreeTCPPort(t), h.FreePort(t, "udp6")
	g.udp, g.tcp = h.HostPort("127.0.0.1", p4), h.HostPort("127.0.0.1", p4)
	g.tls = h.HostPort("127.0.0.1", ptls)
	g.udp6, g.tcp6 = h.HostPort("::1", p6), h.HostPort("::1", p6)
	yaml := fmt.Sprintf(`admin:
  listen: ""
sip:
  ring_timeout: 20s
  listeners:
    - {zone: internet, transport: udp, listen: "%s"}
    - {zone: internet, transport: tcp, listen: "%s"}
    - {zone: internet, transport: tls, listen: "%s"}
    - {zone: internet, transport: udp, listen: "%s"}
    - {zone: internet, transport: tcp, listen: "%s"}
%s%s`, g.udp, g.tcp, g.tls, g.udp6, g.tcp6, upstreams, policies)
	g.Gateway = h.StartGateway(t, h.GatewayConfig{YAML: yaml, UDP: []string{g.udp, g.udp6}, TCP: []string{g.tcp, g.tls, g.tcp6}})
	return g
}

// trunk is the upstream section for one sipp UAS at addr.
func trunk(addr, transport string) string {
	return fmt.Sprintf(`  upstreams:
    - {name: trunk, address: "%s", transport: %s, zone: trunk}
  routes:
    - {default: true, upstreams: [trunk]}
`, addr, transport)
}

func cdrs(t *testing.T, g *gw, f journal.CDRFilter) []core.CDR {
	t.Helper()
	if f.Limit == 0 {
		f.Limit = 10000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := journal.QueryCDRs(ctx, filepath.Join(g.DataDir, "journal.db"), f)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitCDRs waits until n CDRs match f (CDRs are written as calls end).
func waitCDRs(t *testing.T, g *gw, f journal.CDRFilter, n int) []core.CDR {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := cdrs(t, g, f)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func runUASUAC(t *testing.T, uas, uac h.SippConfig) (h.SippResult, h.SippResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := h.StartSipp(t, uas)
	r := h.RunSipp(t, ctx, uac)
	ur := s.Wait(ctx)
	return r, ur
}

// TestCallsThroughGateway places a few hundred calls sipp -> ucgate ->
// sipp over each transport and address family, and checks every call
// succeeded and left a CDR with the right duration.
func TestCallsThroughGateway(t *testing.T) {
	h.RequirePeer(t, "sipp")
	cases := []struct {
		name       string
		uacIP      string
		uacTr      string
		uasIP      string
		uasTr      string
		upstreamTr string
		tls        bool
		calls      int
	}{
		{"udp", "127.0.0.1", "u1", "127.0.0.1", "u1", "udp", false, 300},
		{"tcp", "127.0.0.1", "t1", "127.0.0.1", "t1", "tcp", false, 200},
		{"tls", "127.0.0.1", "t1", "127.0.0.1", "u1", "udp", true, 100},
		{"ipv6", "::1", "u1", "::1", "u1", "udp", false, 200},
		{"ipv6 caller to ipv4 trunk", "::1", "u1", "127.0.0.1", "u1", "udp", false, 200},
		{"ipv4 caller to ipv6 trunk over tcp", "127.0.0.1", "t1", "::1", "t1", "tcp", false, 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			uasPort := h.FreePort(t, map[bool]string{true: "udp6", false: "udp"}[strings.Contains(tc.uasIP, ":")])
			uasAddr := h.HostPort(tc.uasIP, uasPort)
			g := startGW(t, trunk(uasAddr, tc.upstreamTr))
			target := g.udp
			switch {
			case tc.tls:
				target = h.StartTLSClientProxy(t, g.tls, filepath.Join(g.DataDir, "tls", "cert.pem")).Addr
			case strings.Contains(tc.uacIP, ":"):
				target = g.udp6
			}
			const callMS = 300
			uac := h.SippConfig{Scenario: "uac", Remote: target, IP: tc.uacIP, Transport: tc.uacTr, Service: "4711",
				Calls: tc.calls, Rate: 100, Limit: 100, CallLength: callMS * time.Millisecond, Timeout: 90 * time.Second}
			uas := h.SippConfig{Scenario: "uas", IP: tc.uasIP, Port: uasPort, Transport: tc.uasTr, Calls: tc.calls, Timeout: 100 * time.Second}
			r, _ := runUASUAC(t, uas, uac)
			if r.ExitCode != 0 || r.Stats.SuccessfulCall != tc.calls || r.Stats.FailedCall != 0 {
				t.Fatalf("uac: %s", r)
			}
			got := waitCDRs(t, g, journal.CDRFilter{}, tc.calls)
			if len(got) != tc.calls {
				t.Fatalf("%d CDRs for %d calls", len(got), tc.calls)
			}
			for _, c := range got {
				if c.EndReason != "normal" || c.EndedBy != core.RoleCaller || c.Status != 200 {
					t.Fatalf("cdr %+v", c)
				}
				if d := c.Duration; d < callMS*time.Millisecond || d > callMS*time.Millisecond+2*time.Second {
					t.Fatalf("cdr duration %v for a %d ms call", d, callMS)
				}
				caller, callee := c.Legs[0], c.Legs[1]
				if tc.tls && (caller.Transport != "tls" || !caller.Encrypted) {
					t.Fatalf("tls caller leg recorded as %+v", caller)
				}
				if strings.Contains(tc.uacIP, ":") != caller.Remote.Addr().Is6() || strings.Contains(tc.uasIP, ":") != callee.Remote.Addr().Is6() {
					t.Fatalf("address families in CDR: caller %v callee %v", caller.Remote, callee.Remote)
				}
				if caller.CallID == callee.CallID {
					t.Fatal("both legs share a Call-ID")
				}
			}
		})
	}
}

// TestCancelBeforeAnswer: the caller cancels while the callee rings; the
// callee gets CANCEL, the caller 487, and the CDR says canceled by the
// caller.
func TestCancelBeforeAnswer(t *testing.T) {
	h.RequirePeer(t, "sipp")
	uasPort := h.FreeUDPPort(t)
	g := startGW(t, trunk(h.HostPort("127.0.0.1", uasPort), "udp"))
	const n = 20
	uas := h.SippConfig{ScenarioXML: h.ScenarioUASRingNoAnswer, Port: uasPort, Calls: n, Timeout: 60 * time.Second}
	uac := h.SippConfig{ScenarioXML: h.ScenarioUACCancel, Remote: g.udp, Service: "4711", Calls: n, Rate: 10, Timeout: 60 * time.Second}
	r, ur := runUASUAC(t, uas, uac)
	if !r.OK() || r.Stats.SuccessfulCall != n {
		t.Fatalf("uac: %s", r)
	}
	if !ur.OK() {
		t.Fatalf("uas: %s", ur)
	}
	got := waitCDRs(t, g, journal.CDRFilter{EndReason: "canceled"}, n)
	if len(got) != n {
		t.Fatalf("%d canceled CDRs, want %d: %+v", len(got), n, cdrs(t, g, journal.CDRFilter{}))
	}
	for _, c := range got {
		if c.EndedBy != core.RoleCaller || !c.Answer.IsZero() || c.Duration != 0 || c.Status != 487 {
			t.Fatalf("cdr %+v", c)
		}
	}
}

// TestCalleeHangsUp: the callee sends BYE; it reaches the caller through
// the gateway, and the CDR says the callee ended the call.
func TestCalleeHangsUp(t *testing.T) {
	h.RequirePeer(t, "sipp")
	uasPort := h.FreeUDPPort(t)
	g := startGW(t, trunk(h.HostPort("127.0.0.1", uasPort), "udp"))
	const n = 20
	uas := h.SippConfig{ScenarioXML: h.ScenarioUASCalleeHangup, Port: uasPort, Calls: n, CallLength: 500 * time.Millisecond, Timeout: 60 * time.Second}
	uac := h.SippConfig{ScenarioXML: h.ScenarioUACWaitBye, Remote: g.udp, Service: "4711", Calls: n, Rate: 10, Timeout: 60 * time.Second}
	r, ur := runUASUAC(t, uas, uac)
	if !r.OK() || r.Stats.SuccessfulCall != n {
		t.Fatalf("uac: %s", r)
	}
	if !ur.OK() {
		t.Fatalf("uas: %s", ur)
	}
	got := waitCDRs(t, g, journal.CDRFilter{EndedBy: core.RoleCallee}, n)
	if len(got) != n {
		t.Fatalf("%d CDRs ended by the callee, want %d", len(got), n)
	}
	for _, c := range got {
		if c.EndReason != "normal" || c.Duration < 500*time.Millisecond || c.Duration > 3*time.Second {
			t.Fatalf("cdr %+v", c)
		}
	}
}

// TestRegisteredUserCalledFromUpstream: baresip registers through the
// gateway to an upstream registrar; the PBX (from the upstream's signalling
// address) calls the user's address of record; the gateway reaches
// baresip where it registered from, and baresip answers.
func TestRegisteredUserCalledFromUpstream(t *testing.T) {
	h.RequirePeer(t, "sipp")
	h.RequirePeer(t, "baresip")
	regPort := h.FreeUDPPort(t)
	regAddr := h.HostPort("127.0.0.1", regPort)
	g := startGW(t, fmt.Sprintf(`  upstreams:
    - {name: pbx, address: "%s", transport: udp, zone: trunk, sources: [127.0.0.2/32]}
  routes:
    - {default: true, upstreams: [pbx]}
  registrar: pbx
`, regAddr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg := h.StartRegistrar(t, h.SippConfig{Port: regPort, Timeout: 60 * time.Second}, 2)
	_ = reg
	b := h.StartBaresip(t, h.BaresipConfig{
		Account:        fmt.Sprintf("<sip:1001@%s;transport=udp>;auth_pass=x;answermode=auto;regint=60", g.udp),
		WaitRegistered: true, Timeout: 50 * time.Second,
	})
	// The PBX calls the registered user from 127.0.0.2 (a source of the
	// upstream), addressing its address of record at the gateway.
	var wg sync.WaitGroup
	var established error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, established = b.WaitEvent(ctx, "CALL_ESTABLISHED")
	}()
	uac := h.SippConfig{Scenario: "uac", Remote: g.udp, IP: "127.0.0.2", Service: "1001", Calls: 1,
		CallLength: time.Second, Timeout: 30 * time.Second}
	r := h.RunSipp(t, ctx, uac)
	wg.Wait()
	if !r.OK() {
		t.Fatalf("PBX call to the registered user: %s", r)
	}
	if established != nil {
		t.Fatalf("baresip never established the call: %v", established)
	}
	got := waitCDRs(t, g, journal.CDRFilter{Party: "1001"}, 1)
	if len(got) != 1 || got[0].EndReason != "normal" || got[0].Legs[0].Upstream != "pbx" || got[0].Legs[1].Zone != "internet" {
		t.Fatalf("cdrs %+v", got)
	}
	// Someone on the internet zone cannot reach the user by name: the call
	// goes to the PBX route instead (where the registrar stub does not
	// answer INVITEs, so it is not answered by baresip).
	if tx, err := h.SIPOptions(ctx, g.udp); err != nil || !strings.HasPrefix(tx, "SIP/2.0 200") {
		t.Fatalf("gateway OPTIONS after the call: %q %v", tx, err)
	}
}
