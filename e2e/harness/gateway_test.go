package harness

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestGatewayRealBinary starts the real ucgate ($UCGATE_BIN, or built from
// cmd/ucgate) with a UDP and a TCP listener in front of a sipp UAS, waits
// for both listeners through StartGateway, and sends a few sipp calls
// through it.
func TestGatewayRealBinary(t *testing.T) {
	t.Parallel()
	RequirePeer(t, "sipp")
	if os.Getenv("UCGATE_BIN") == "" {
		if _, err := os.Stat("../../cmd/ucgate"); err != nil {
			t.Skip("cmd/ucgate not in this tree and UCGATE_BIN unset")
		}
	}
	uas := StartSipp(t, SippConfig{ScenarioXML: ScenarioUASRingAnswer, Calls: 3})
	sipPort := FreePort(t, "udp+tcp")
	udp := HostPort("127.0.0.1", sipPort)
	g := StartGateway(t, GatewayConfig{
		YAML: fmt.Sprintf(`admin:
  listen: ""
sip:
  listeners:
    - {zone: internet, transport: udp, listen: %q}
    - {zone: internet, transport: tcp, listen: %q}
  upstreams:
    - {name: uas, address: %q, transport: udp, zone: trunk}
  routes:
    - {default: true, upstreams: [uas]}
journal:
  sqlite: {enabled: true}
policies:
  auth: {trusted: [127.0.0.0/8]} # sipp here plays a trusted PBX: no credentials
`, udp, udp, uas.Addr()),
		UDP: []string{udp},
		TCP: []string{udp},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := RunSipp(t, ctx, SippConfig{Scenario: "uac", Remote: udp, Service: "test", Calls: 3, Rate: 10, CallLength: 200 * time.Millisecond, Timeout: 20 * time.Second})
	if !r.OK() || r.Stats.SuccessfulCall != 3 {
		t.Fatalf("uac through ucgate: %v", r)
	}
	if u := uas.Wait(ctx); !u.OK() || u.Stats.SuccessfulCall != 3 {
		t.Fatalf("uas behind ucgate: %v", u)
	}
	if fi, err := os.Stat(g.DataDir); err != nil || !fi.IsDir() {
		t.Fatalf("data dir %s: %v", g.DataDir, err)
	}
	g.Stop()
	if code := g.Proc.ExitCode(); code != 0 {
		t.Errorf("ucgate exit %d after SIGTERM, want 0", code)
	}
}
