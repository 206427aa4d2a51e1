package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
	h "github.com/ucgate/ucgate/e2e/harness"
	"github.com/ucgate/ucgate/protocols/xmpp/wire"
)

// TestShutdown: Close ends the streams of clients in every state (one that
// has only sent its header, one in the middle of its STARTTLS handshake)
// with <system-shutdown/> or by closing the connection, and returns; no
// goroutine is left (run with -race: Close reads what the client goroutines
// write).
func TestShutdown(t *testing.T) {
	cert := h.NewTestCert(t, "example.test")
	cfg := Defaults()
	cfg.Enabled = true
	cfg.Domains = []string{"example.test"}
	cfg.Listeners = []Listener{{Listen: "127.0.0.1:0", Mode: "starttls", Zone: "internet"}}
	cfg.Upstream.Address = "127.0.0.1:1" // never reached: TLS comes first
	p, err := New(cfg, core.Deps{}, Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert.Certificate}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := p.Addrs()[0]
	dial := func() (net.Conn, *wire.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.test' version='1.0'>`)); err != nil {
			t.Fatal(err)
		}
		r := wire.NewReader(c, wire.Limits{})
		for {
			it, err := r.Next()
			if err != nil {
				t.Fatalf("features: %v", err)
			}
			if it.Kind == wire.KindElement && it.El.Is(wire.NSStream, "features") {
				return c, r
			}
		}
	}
	idle, idleR := dial()
	_ = idle
	tlsC, tlsR := dial()
	if _, err := tlsC.Write([]byte("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")); err != nil {
		t.Fatal(err)
	}
	if it, err := tlsR.Next(); err != nil || !it.El.Is(nsTLS, "proceed") {
		t.Fatalf("proceed: %v %v", it, err)
	}
	for p.Conns() != 2 {
		time.Sleep(time.Millisecond)
	}
	// The second client never sends its ClientHello: its handshake waits.
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
	var cond string
	for {
		it, err := idleR.Next()
		if err != nil {
			t.Fatalf("the idle client's stream: %v (no stream error)", err)
		}
		if it.Kind == wire.KindElement && it.El.Is(wire.NSStream, "error") {
			cond = it.El.Children[0].Name.Local
			break
		}
	}
	if cond != "system-shutdown" {
		t.Fatalf("idle client: %s, want system-shutdown", cond)
	}
	if p.Conns() != 0 {
		t.Fatalf("%d connections left", p.Conns())
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("listener still open: %v", err)
	}
}
