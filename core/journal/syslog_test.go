package journal

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

// message is one parsed RFC 5424 message.
type message struct {
	pri                                 int
	version, ts, host, app, proc, msgid string
	sdID                                string
	params                              map[string]string
	msg                                 string
}

// parseSyslog parses a message with exactly one SD element, strictly: an
// unescaped ']' or '"' inside a value is an error.
func parseSyslog(s string) (message, error) {
	var m message
	if !strings.HasPrefix(s, "<") {
		return m, fmt.Errorf("no PRI: %q", s)
	}
	end := strings.IndexByte(s, '>')
	if end < 0 {
		return m, fmt.Errorf("no PRI end: %q", s)
	}
	var err error
	if m.pri, err = strconv.Atoi(s[1:end]); err != nil {
		return m, err
	}
	f := strings.SplitN(s[end+1:], " ", 7)
	if len(f) != 7 {
		return m, fmt.Errorf("short header: %q", s)
	}
	m.version, m.ts, m.host, m.app, m.proc, m.msgid = f[0], f[1], f[2], f[3], f[4], f[5]
	rest := f[6]
	if !strings.HasPrefix(rest, "[") {
		return m, fmt.Errorf("no SD: %q", rest)
	}
	sp := strings.IndexAny(rest, " ]")
	if sp < 0 {
		return m, fmt.Errorf("SD-ID not ended: %q", rest)
	}
	m.sdID, rest = rest[1:sp], rest[sp:]
	m.params = map[string]string{}
	for rest[0] == ' ' {
		eq := strings.IndexByte(rest, '=')
		name := rest[1:eq]
		if rest[eq+1] != '"' {
			return m, fmt.Errorf("param %s not quoted", name)
		}
		var v strings.Builder
		i := eq + 2
		for ; rest[i] != '"'; i++ {
			switch c := rest[i]; c {
			case '\\':
				i++
				if n := rest[i]; n != '"' && n != '\\' && n != ']' {
					v.WriteByte('\\')
				}
				v.WriteByte(rest[i])
			case ']':
				return m, fmt.Errorf("unescaped ] in param %s", name)
			default:
				v.WriteByte(c)
			}
		}
		m.params[name] = v.String()
		rest = rest[i+1:]
	}
	if !strings.HasPrefix(rest, "] ") {
		return m, fmt.Errorf("SD not closed: %q", rest)
	}
	m.msg = rest[2:]
	return m, nil
}

func syslogConfig(network, addr string) Config {
	cfg := testConfig()
	cfg.SQLite.Enabled = false
	cfg.Syslog = SyslogConfig{Address: addr, Network: network, Facility: "local3", AppName: "ucgate-test"}
	return cfg
}

// checkTx checks a TX message against the transaction it came from.
func checkTx(t *testing.T, raw string, tx *core.Transaction) {
	t.Helper()
	m, err := parseSyslog(raw)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	wantPRI := 19*8 + 6
	if tx.Action == "refuse" {
		wantPRI = 19*8 + 5
	}
	ts := tx.Time.UTC().Format("2006-01-02T15:04:05.000000Z")
	if m.pri != wantPRI || m.version != "1" || m.ts != ts || m.host != host || m.app != "ucgate-test" ||
		m.proc != strconv.Itoa(os.Getpid()) || m.msgid != "TX" || m.sdID != "ucgate@32473" {
		t.Errorf("header %+v, want PRI %d, version 1, time %s, host %s", m, wantPRI, ts, host)
	}
	want := map[string]string{
		"protocol": tx.Protocol, "zone": tx.Zone, "src": tx.Src, "dst": tx.Dst, "transport": tx.Transport,
		"encrypted": strconv.FormatBool(tx.Encrypted), "method": tx.Method, "from": tx.From, "to": tx.To,
		"call_id": tx.CallID, "peer_call_id": tx.PeerCall, "session": string(tx.Session),
		"status": strconv.Itoa(tx.Status), "action": tx.Action, "rule": tx.Rule, "reason": tx.Reason,
		"elapsed_ms": strconv.FormatFloat(float64(tx.Elapsed)/1e6, 'f', -1, 64),
	}
	for k, v := range want {
		if v == "" {
			delete(want, k)
		}
	}
	if !reflect.DeepEqual(m.params, want) {
		t.Errorf("SD params\n got %q\nwant %q", m.params, want)
	}
	var got core.Transaction
	if err := json.Unmarshal([]byte(m.msg), &got); err != nil || !reflect.DeepEqual(&got, tx) {
		t.Errorf("MSG %s: %v", m.msg, err)
	}
}

func checkCDR(t *testing.T, raw string, c *core.CDR) {
	t.Helper()
	m, err := parseSyslog(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.pri != 19*8+6 || m.version != "1" || m.msgid != "CDR" || m.ts != c.End.UTC().Format("2006-01-02T15:04:05.000000Z") {
		t.Errorf("header %+v", m)
	}
	for k, v := range map[string]string{
		"session": string(c.Session), "from": c.From, "to": c.To, "status": strconv.Itoa(c.Status),
		"start": formatTime(c.Start), "end": formatTime(c.End), "end_reason": c.EndReason, "ended_by": c.EndedBy,
		"caller_transport": "tls", "caller_encrypted": "true", "caller_media_encrypted": "true",
		"callee_transport": "udp", "callee_encrypted": "false", "callee_call_id": c.Legs[1].CallID,
	} {
		if m.params[k] != v {
			t.Errorf("SD param %s = %q, want %q", k, m.params[k], v)
		}
	}
	var got core.CDR
	if err := json.Unmarshal([]byte(m.msg), &got); err != nil || !reflect.DeepEqual(&got, c) {
		t.Errorf("MSG %s: %v", m.msg, err)
	}
}

// checkSec checks a SEC message against the security event it came from.
func checkSec(t *testing.T, raw string, e *core.SecurityEvent) {
	t.Helper()
	m, err := parseSyslog(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.pri != 19*8+4 || m.version != "1" || m.msgid != "SEC" || m.sdID != "ucgate@32473" ||
		m.ts != e.Time.UTC().Format("2006-01-02T15:04:05.000000Z") {
		t.Errorf("header %+v, want PRI %d (local3.warning), MSGID SEC", m, 19*8+4)
	}
	want := map[string]string{
		"rule": e.Rule, "action": e.Action, "src": e.Src, "zone": e.Zone, "user": e.User,
		"session": string(e.Session), "protocol": e.Protocol,
	}
	if !reflect.DeepEqual(m.params, want) {
		t.Errorf("SD params\n got %q\nwant %q", m.params, want)
	}
	var got core.SecurityEvent
	if err := json.Unmarshal([]byte(m.msg), &got); err != nil || !reflect.DeepEqual(&got, e) {
		t.Errorf("MSG %s: %v", m.msg, err)
	}
}

// escapedHostile is hostile as an SD-PARAM value must carry it.
const escapedHostile = `eve\"\]\\ [x=\"1\"\]` + "\n\té"

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	j := open(t, syslogConfig("udp", pc.LocalAddr().String()), t.TempDir())
	tx := sampleTx(3) // a refusal: severity notice
	tx.From = hostile
	j.Transaction(tx)
	allowed := sampleTx(4)
	j.Transaction(allowed)
	sec := sampleSec(7)
	sec.User = hostile
	j.Alert(sec)
	c := sampleCDR(2)
	c.From = hostile
	if err := j.CDR(context.Background(), c); err != nil {
		t.Fatal(err)
	}

	got := map[string]string{}
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range 4 {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		m, err := parseSyslog(string(buf[:n]))
		if err != nil {
			t.Fatal(err)
		}
		got[m.msgid+m.params["session"]] = string(buf[:n])
	}
	checkTx(t, got["TXs00003"], tx)
	checkTx(t, got["TXs00004"], allowed)
	checkCDR(t, got["CDRc00002"], c)
	checkSec(t, got["SECe00007"], sec)
	if !strings.Contains(got["TXs00003"], ` from="`+escapedHostile+`" `) {
		t.Errorf("from not escaped as RFC 5424 asks: %s", got["TXs00003"])
	}
	if !strings.Contains(got["SECe00007"], ` user="`+escapedHostile+`" `) {
		t.Errorf("user not escaped as RFC 5424 asks: %s", got["SECe00007"])
	}
}

// readFrame reads one RFC 6587 octet-counted frame: "LEN SP MSG".
func readFrame(r *bufio.Reader) (string, error) {
	n, err := r.ReadString(' ')
	if err != nil {
		return "", err
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
	if err != nil || size <= 0 {
		return "", fmt.Errorf("bad octet count %q", n)
	}
	b := make([]byte, size)
	_, err = io.ReadFull(r, b)
	return string(b), err
}

func TestSyslogTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	j := open(t, syslogConfig("tcp", ln.Addr().String()), t.TempDir())
	tx := sampleTx(6)
	tx.Detail = "multi\nline\ndetail" // octet counting keeps it one frame
	tx.From = hostile
	j.Transaction(tx)
	c := sampleCDR(4)
	if err := j.CDR(context.Background(), c); err != nil {
		t.Fatal(err)
	}

	conn1 := <-conns
	conn1.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn1)
	for range 2 {
		f, err := readFrame(r)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(f, " TX ") {
			checkTx(t, f, tx)
		} else {
			checkCDR(t, f, c)
		}
	}

	// The collector goes away: the sink reconnects and goes on.
	conn1.Close()
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	deadline := time.After(10 * time.Second)
	var conn2 net.Conn
	for i := 100; conn2 == nil; i++ {
		j.Transaction(sampleTx(i))
		select {
		case conn2 = <-conns:
		case <-ticker.C:
		case <-deadline:
			t.Fatal("no reconnection in 10s")
		}
	}
	defer conn2.Close()
	conn2.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := readFrame(bufio.NewReader(conn2))
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseSyslog(f)
	if err != nil || m.msgid != "TX" {
		t.Fatalf("after reconnecting: %+v, %v", m, err)
	}
}

// TestSyslogDown: a collector that refuses connections costs records in
// syslog only; the journal, its CDRs and Close go on.
func TestSyslogDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := syslogConfig("tcp", addr)
	cfg.SQLite.Enabled = true
	j := open(t, cfg, dir)
	s := j.others[0].(*syslogSink)
	for i := range 100 {
		j.Transaction(sampleTx(i))
	}
	if err := j.CDR(context.Background(), sampleCDR(1)); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if n := s.dropped.Load(); n != 101 {
		t.Errorf("dropped %d, want 101", n)
	}
	txs, err := QueryTransactions(context.Background(), dbPath(dir), TxFilter{Limit: 1000})
	if err != nil || len(txs) != 100 {
		t.Fatalf("%d transactions in SQLite, err %v", len(txs), err)
	}
}

func TestParamEscaping(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", ` k="plain"`},
		{`a"b`, ` k="a\"b"`},
		{`a\b`, ` k="a\\b"`},
		{`a]b`, ` k="a\]b"`},
		{`[]`, ` k="[\]"`},
		{"bad\xffutf8", ` k="bad` + "\uFFFD" + `utf8"`},
	}
	for _, tt := range tests {
		if got := string(param(nil, "k", tt.in)); got != tt.want {
			t.Errorf("param(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzParam: whatever the value, the SD element parses back strictly to
// it (made valid UTF-8) and never ends early.
func FuzzParam(f *testing.F) {
	for _, s := range []string{"", hostile, `\]`, `"]"`, "\xff\xfe]", `a\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		b := []byte("<134>1 - h app 1 TX [ucgate@32473")
		b = param(b, "v", v)
		b = append(b, "] {}"...)
		m, err := parseSyslog(string(b))
		if err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		if want := strings.ToValidUTF8(v, "\uFFFD"); m.params["v"] != want || m.msg != "{}" {
			t.Fatalf("param %q parsed as %q, msg %q", want, m.params["v"], m.msg)
		}
	})
}
