// Package harness runs real third-party peers (sipp, baresip, socat) and the
// ucgate binary for end-to-end tests, on loopback only.
//
// Every process is started by [StartProc]: its output goes to a log file in
// the test's temp dir, it is stopped by its own PID (SIGTERM, then SIGKILL
// after a grace period) when the test ends, and the tail of its log is
// printed when the test fails. Nothing is ever stopped by name.
//
// Ports come from [FreePort] and friends: random free ports in 20000-32767
// (below the kernel's ephemeral range, away from the fixed 15000-17999 ports
// of the shared recipes and benchmarks), never handed out twice by one test
// binary.
//
// A test that needs a peer calls [RequirePeer] first: a missing binary skips
// the test on a developer's machine and fails it when the CI environment
// variable is set.
//
// A typical test, a call through the gateway to a sipp UAS:
//
//	uas := harness.StartSipp(t, harness.SippConfig{ScenarioXML: harness.ScenarioUASRingAnswer, Calls: 1})
//	sip := harness.HostPort("127.0.0.1", harness.FreePort(t, "udp+tcp"))
//	harness.StartGateway(t, harness.GatewayConfig{YAML: yamlWith(sip, uas.Addr()), UDP: []string{sip}})
//	r := harness.RunSipp(t, ctx, harness.SippConfig{Scenario: "uac", Remote: sip, Service: "bob", Calls: 1})
//	if !r.OK() {
//		t.Fatalf("call: %v", r)
//	}
//
// The recipes behind the flags used here (sipp -nostdin -mp -cp
// -timeout_error, baresip's headless config, socat as a TLS front-end for
// Debian's TLS-less sipp) are documented in shared/PEERS.md.
package harness
