package e2e

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core/journal"
	h "github.com/ucgate/ucgate/e2e/harness"
)

// malformedCases are hostile or broken requests and what the gateway must
// answer: a status line prefix, or "" for silence.
var malformedCases = []struct {
	name string
	msg  string
	udp  string // expected over UDP
	rule string // journal rule
	tcp  string // expected over TCP ("" = the connection is closed unanswered)
}{
	{"no start line", "hello there\r\n\r\n", "", "sip/parse", ""},
	{"bad content-length", invite("Content-Length: abc\r\n", ""), "SIP/2.0 400", "sip/parse", ""},
	{"missing call-id", strings.Replace(invite("", ""), "Call-ID: {cid}\r\n", "", 1), "SIP/2.0 400 Missing Call-ID", "sip/malformed", "SIP/2.0 400 Missing Call-ID"},
	{"missing via", strings.Replace(invite("", ""), "Via: SIP/2.0/{T} {SRC};branch=z9hG4bK{cid}\r\n", "", 1), "", "sip/malformed", "SIP/2.0 400"},
	{"cseq method mismatch", strings.Replace(invite("", ""), "CSeq: 1 INVITE", "CSeq: 1 BYE", 1), "SIP/2.0 400 CSeq Method Mismatch", "sip/malformed", "SIP/2.0 400 CSeq Method Mismatch"},
	{"max-forwards zero", strings.Replace(invite("", ""), "Max-Forwards: 70", "Max-Forwards: 0", 1), "SIP/2.0 483", "sip/max_forwards", "SIP/2.0 483"},
	{"bad sdp", invite("Content-Type: application/sdp\r\n", "this is not a session description"), "SIP/2.0 400 Malformed SDP", "sip/sdp", "SIP/2.0 400 Malformed SDP"},
	{"nul bytes in the method", "\x00\x01\x02INVITE\x00 sip:x SIP/2.0\r\nVia: SIP/2.0/{T} {SRC};branch=z9hG4bK{cid}\r\n\r\n", "SIP/2.0 400", "sip/malformed", ""},
}

// invite builds a request template; {T}, {SRC} and {cid} are filled per send.
func invite(extra, body string) string {
	return "INVITE sip:4711@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/{T} {SRC};branch=z9hG4bK{cid}\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:mallory@example.com>;tag=m{cid}\r\n" +
		"To: <sip:4711@127.0.0.1>\r\n" +
		"Call-ID: {cid}\r\n" +
		"CSeq: 1 INVITE\r\n" + extra +
		"Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func fill(tmpl, transport, src, cid string) string {
	r := strings.NewReplacer("{T}", transport, "{SRC}", src, "{cid}", cid)
	out := r.Replace(tmpl)
	// The template's Content-Length: abc case must keep its lie; others
	// are already consistent.
	return out
}

func TestMalformedRequests(t *testing.T) {
	uasPort := h.FreeUDPPort(t)
	g := startGW(t, trunk(h.HostPort("127.0.0.1", uasPort), "udp"))
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst, _ := net.ResolveUDPAddr("udp", g.udp)
	buf := make([]byte, 65536)
	for i, tc := range malformedCases {
		msg := fill(tc.msg, "UDP", conn.LocalAddr().String(), "bad"+itoa(i))
		if _, err := conn.WriteTo([]byte(msg), dst); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		n, _, err := conn.ReadFrom(buf)
		got := ""
		if err == nil {
			got = string(buf[:n])
		}
		if tc.udp == "" && tc.name != "missing via" && got != "" {
			t.Errorf("%s over UDP: answered %q, want silence", tc.name, firstLine(got))
		}
		if tc.udp != "" && !strings.HasPrefix(got, tc.udp) {
			t.Errorf("%s over UDP: got %q, want %q", tc.name, firstLine(got), tc.udp)
		}
	}
	// Over TCP every case goes on its own connection: the gateway answers
	// what it can and closes a connection whose framing is lost.
	for i, tc := range malformedCases {
		c, err := net.DialTimeout("tcp", g.tcp, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		msg := fill(tc.msg, "TCP", c.LocalAddr().String(), "tcpbad"+itoa(i))
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if tc.tcp != "" && !strings.HasPrefix(line, tc.tcp) || tc.tcp == "" && line != "" {
			t.Errorf("%s over TCP: got %q, want %q", tc.name, line, tc.tcp)
		}
	}
	// Every case is in the journal with the rule that decided.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db := filepath.Join(g.DataDir, "journal.db")
	deadline := time.Now().Add(10 * time.Second)
	for _, tc := range malformedCases {
		for {
			txs, err := journal.QueryTransactions(ctx, db, journal.TxFilter{Rule: tc.rule, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if len(txs) >= 2 || time.Now().After(deadline) {
				if len(txs) < 2 {
					t.Errorf("%s: %d journal records with rule %s, want one per transport", tc.name, len(txs), tc.rule)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// And the gateway still answers.
	if res, err := h.SIPOptions(ctx, g.udp); err != nil || !strings.HasPrefix(res, "SIP/2.0 200") {
		t.Fatalf("OPTIONS after the corpus: %q %v", firstLine(res), err)
	}
}

func firstLine(s string) string {
	if i := strings.Index(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
