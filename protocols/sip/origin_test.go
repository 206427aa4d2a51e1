package sip

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

func TestValidOrigin(t *testing.T) {
	for o, want := range map[string]bool{
		"https://phone.example.com": true, "http://127.0.0.1:8060": true, "http://[::1]:8060": true,
		"phone.example.com": false, "https://a/b": false, "ftp://x": false, "https://": false, "https://u@x": false,
	} {
		if got := validOrigin(o); got != want {
			t.Errorf("validOrigin(%q) = %v", o, got)
		}
	}
}

// TestOriginConn runs handshakes through an originConn over a real TCP
// connection: an allowed Origin and none pass byte for byte, another gets
// 403 and nothing reaches the reader behind it.
func TestOriginConn(t *testing.T) {
	hs := func(origin string) string {
		s := "GET / HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: sip\r\n"
		if origin != "" {
			s += "Origin: " + origin + "\r\n"
		}
		return s + "\r\nREST"
	}
	ol := &originListener{allowed: map[string]bool{"https://phone.example.com": true}}
	for _, tc := range []struct {
		origin string
		pass   bool
	}{{"https://phone.example.com", true}, {"HTTPS://Phone.Example.com/", true}, {"", true}, {"https://evil.example", false}} {
		a, b := net.Pipe()
		c := &originConn{Conn: a, ol: ol}
		if !tc.pass {
			// refuse journals through the adapter: give it a minimal one.
			ol.a, ol.l = testAdapterForOrigin(t), &listener{transport: "wss"}
		}
		go func() {
			b.Write([]byte(hs(tc.origin)))
		}()
		got := make(chan string, 1)
		go func() {
			r, _ := io.ReadAll(io.LimitReader(c, int64(len(hs(tc.origin)))))
			got <- string(r)
		}()
		if tc.pass {
			select {
			case s := <-got:
				if s != hs(tc.origin) {
					t.Errorf("origin %q: reader got %q", tc.origin, s)
				}
			case <-time.After(2 * time.Second):
				t.Errorf("origin %q: nothing passed", tc.origin)
			}
		} else {
			line, _ := bufio.NewReader(b).ReadString('\n')
			if !strings.HasPrefix(line, "HTTP/1.1 403") {
				t.Errorf("origin %q: answer %q, want 403", tc.origin, line)
			}
			if s := <-got; s != "" {
				t.Errorf("origin %q: reader got %q", tc.origin, s)
			}
		}
		a.Close()
		b.Close()
	}
}

// TestOriginListenerFailsClosed: a WebSocket listener with no origins
// configured refuses every browser (a handshake with Origin) and lets a
// SIP client without Origin through; "*" lets any origin through.
func TestOriginListenerFailsClosed(t *testing.T) {
	head := func(origin string) string {
		s := "GET / HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		if origin != "" {
			s += "Origin: " + origin + "\r\n"
		}
		return s + "\r\n"
	}
	for _, tc := range []struct {
		origins []string
		origin  string
		pass    bool
	}{
		{nil, "https://phone.example.com", false},
		{nil, "null", false},
		{nil, "", true},
		{[]string{AnyOrigin}, "https://anything.example", true},
		{[]string{"https://phone.example.com"}, "https://phone.example.com.evil.example", false},
	} {
		ol := newOriginListener(nil, testAdapterForOrigin(t), &listener{transport: "wss"}, tc.origins)
		a, b := net.Pipe()
		c := &originConn{Conn: a, ol: ol}
		go b.Write([]byte(head(tc.origin)))
		got := make(chan string, 1)
		go func() {
			r, _ := io.ReadAll(io.LimitReader(c, int64(len(head(tc.origin)))))
			got <- string(r)
		}()
		if !tc.pass {
			_ = b.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(b).ReadString('\n')
			if !strings.HasPrefix(line, "HTTP/1.1 403") {
				t.Errorf("origins %v, Origin %q: answer %q, want 403", tc.origins, tc.origin, line)
				a.Close()
			}
		}
		select {
		case s := <-got:
			if tc.pass != (s == head(tc.origin)) {
				t.Errorf("origins %v, Origin %q: reader got %q, want pass %v", tc.origins, tc.origin, s, tc.pass)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("origins %v, Origin %q: reader got nothing", tc.origins, tc.origin)
		}
		a.Close()
		b.Close()
	}
}

// FuzzOriginOf: any handshake head reads without a crash.
func FuzzOriginOf(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nOrigin: https://a\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\norigin: x\r\nOrigin: y\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, ok := originOf(b)
		if !ok && o != "" {
			t.Fatal("an origin without ok")
		}
	})
}

func testAdapterForOrigin(t *testing.T) *Adapter {
	t.Helper()
	cfg := Defaults()
	cfg.Listeners = []Listener{{Zone: "internet", Transport: "udp", Listen: "127.0.0.1:0"}}
	a, err := New(cfg, core.Deps{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}
