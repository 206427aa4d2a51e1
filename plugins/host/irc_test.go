package host

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/plugins/sdk"
)

// sipSide stands for the adapter of the other side of the bridge: it
// records what the plugin's users send there.
type sipSide struct{ got chan *core.Message }

func (s sipSide) DeliverMessage(_ context.Context, m *core.Message) error {
	if m.To.User != "alice" {
		return &core.DeliveryError{Reason: core.ReasonNotFound}
	}
	s.got <- m
	return nil
}
func (s sipSide) DeliverPresence(context.Context, *core.Presence) error { return nil }

// TestPythonIRCPlugin runs the non-Go example plugin (plugins/irc) under
// the host, with AutoMTLS, and talks IRC to it.
func TestPythonIRCPlugin(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 missing (scripts/deps.sh installs it)")
		}
		t.Skip("python3 missing")
	}
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(file), "..", "irc", "ucgate-irc")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ircAddr := ln.Addr().String()
	ln.Close()
	c := Config{Name: "irc", Kind: sdk.KindProtocol, Binary: bin, SHA256: sum(t, bin), Domain: "irc.example.com",
		Args: []string{"--listen", ircAddr, "--peer-domain", "sip.example.com"}}
	env, err := start(t, c)
	if err != nil {
		t.Fatal(err)
	}
	st := env.h.Status()[0]
	if st.Contract != sdk.Latest || st.Software != "ucgate-irc" {
		t.Fatalf("status %+v", st)
	}
	side := sipSide{got: make(chan *core.Message, 1)}
	env.deps.Bridge.Serve("sip.example.com", side)

	conn, err := net.DialTimeout("tcp", ircAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	expect := func(want string) string {
		t.Helper()
		var seen []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v (got %q)", want, err, seen)
			}
			seen = append(seen, line)
			if strings.Contains(line, want) {
				return line
			}
		}
	}
	fmt.Fprintf(conn, "NICK bob\r\nUSER bob 0 * :Bob\r\n")
	expect(" 001 bob ")
	fmt.Fprintf(conn, "PRIVMSG alice :hello from irc\r\n")
	select {
	case m := <-side.got:
		if m.From.String() != "bob@irc.example.com" || m.To.String() != "alice@sip.example.com" || m.Body != "hello from irc" {
			t.Fatalf("message %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the IRC message did not cross the bridge")
	}
	fmt.Fprintf(conn, "PRIVMSG nobody :x\r\n")
	expect(" 401 bob nobody ")

	d, _ := env.deps.Bridge.For("irc.example.com")
	err = d.DeliverMessage(context.Background(), &core.Message{From: core.Identity{User: "alice", Domain: "sip.example.com"},
		To: core.Identity{User: "bob", Domain: "irc.example.com"}, Body: "hello from sip"})
	if err != nil {
		t.Fatal(err)
	}
	if line := expect("PRIVMSG bob"); !strings.HasPrefix(line, ":alice!alice@sip.example.com PRIVMSG bob :hello from sip") {
		t.Fatalf("line %q", line)
	}
	err = d.DeliverMessage(context.Background(), &core.Message{From: core.Identity{User: "alice", Domain: "sip.example.com"},
		To: core.Identity{User: "ghost", Domain: "irc.example.com"}, Body: "x"})
	if de, ok := err.(*core.DeliveryError); !ok || de.Reason != core.ReasonNotFound {
		t.Fatalf("to an absent nick: %v", err)
	}
	// A presence status with CR LF in it (a SIP or XMPP user's note) stays
	// on its NOTICE line: it cannot end it and forge a line of its own.
	err = d.DeliverPresence(context.Background(), &core.Presence{Kind: core.PresenceUpdate, Available: true,
		From: core.Identity{User: "alice", Domain: "sip.example.com"}, To: core.Identity{User: "bob", Domain: "irc.example.com"},
		Status: "away\r\n:mallory!m@evil PRIVMSG bob :forged\nPING :x"})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PING :after-presence\r\n")
	var notice string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for the PONG: %v", err)
		}
		if strings.HasPrefix(line, ":mallory") || strings.HasPrefix(line, "PING") {
			t.Fatalf("a forged line reached the IRC client: %q", line)
		}
		if strings.Contains(line, "NOTICE bob") {
			notice = line
		}
		if strings.Contains(line, "after-presence") {
			break
		}
	}
	if !strings.Contains(notice, "away  :mallory!m@evil PRIVMSG bob :forged PING :x") {
		t.Fatalf("presence notice %q", notice)
	}
	// An overlong line is refused, the connection goes on.
	fmt.Fprintf(conn, "PRIVMSG alice :%s\r\n", strings.Repeat("x", 600))
	expect(" 417 ")
	fmt.Fprintf(conn, "PING :still-here\r\n")
	expect("still-here")
	// A client's lines are read at 5 a second after a burst of 20: 30
	// lines at once take at least 2 s, so one client cannot spend the
	// plugin's event budget (events_per_second) for every IRC user.
	start := time.Now()
	for i := range 30 {
		fmt.Fprintf(conn, "PING :burst-%d\r\n", i)
	}
	expect("burst-29")
	if el := time.Since(start); el < 1900*time.Millisecond {
		t.Fatalf("30 lines answered in %v: the client is not throttled", el)
	}
}
