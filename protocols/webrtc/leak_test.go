package webrtc

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"
)

// transportGoroutines counts the goroutines running this package's
// transports and handshakes (pion/dtls's under them included).
func transportGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	var keep []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "protocols/webrtc.(*transport)") || strings.Contains(s, "protocols/webrtc.(*Leg)") ||
			strings.Contains(s, "protocols/webrtc.(*dtlsConn)") {
			n++
			keep = append(keep, s)
		}
	}
	return n, strings.Join(keep, "\n\n")
}

// TestLegCallEndsMidHandshake: a call that ends while its browser leg's
// ICE and DTLS are under way (the SIP side hangs up, the media call
// closes) leaves no goroutine of the leg behind, and is not reported as
// a failed handshake (no onFail, no security event).
func TestLegCallEndsMidHandshake(t *testing.T) {
	for _, when := range []time.Duration{0, 5 * time.Millisecond, 30 * time.Millisecond} {
		b := newBrowser(t)
		rc := newRelayCall(t, b, b.offer) // the leg started; the browser has the answer
		time.Sleep(when)
		if n, _ := transportGoroutines(); n < 2 {
			t.Fatalf("%d goroutines of the leg before the close; the count sees nothing", n)
		}
		rc.call.Close()
		var n int
		var stacks string
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if n, stacks = transportGoroutines(); n == 0 {
				break
			}
		}
		if n != 0 {
			t.Fatalf("closed %v after the start: %d goroutines left:\n%s", when, n, stacks)
		}
		select {
		case r := <-rc.failed:
			t.Errorf("closed %v after the start: reported as failed (%s)", when, r)
		case ev := <-rc.alerts:
			t.Errorf("closed %v after the start: security event %+v", when, ev)
		default:
		}
		b.pc.Close()
	}
}
