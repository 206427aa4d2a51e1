package e2e

// The security controls against the attack tools an operator meets on the
// internet: sipvicious (svmap, svwar, svcrack) and sipp as a flooder, plus
// forged BYEs and the RFC 4475 torture corpus. Each test starts its own
// gateway with a policies section of its own (so the blacklist of one never
// touches another), and each checks the control's effect where an operator
// would: the attacker's own output, the admin API's blacklist and the
// journal.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/journal"
	h "github.com/ucgate/ucgate/e2e/harness"
	"github.com/ucgate/ucgate/policies/auth"
)

// secGW is a gateway for one security test: UDP and TCP on 127.0.0.1 in
// zone internet, and the admin API on a port of its own.
type secGW struct {
	*h.Gateway
	sip     string // host:port, UDP and TCP
	admin   string // http://host:port
	dataDir string
	yaml    string
}

// newSecGW prepares (but does not start) a gateway with the given
// sip.upstreams/routes part (indented under sip:, right after the
// listeners, so it may begin with more listener items) and top-level
// policies section. The data directory is known before the start, so that users
// can be added with `ucgate users add` first.
func newSecGW(t *testing.T, upstreams, policies string) *secGW {
	t.Helper()
	g := &secGW{}
	port := h.FreePort(t, "udp+tcp")
	adminPort := h.FreeTCPPort(t)
	g.sip = h.HostPort("127.0.0.1", port)
	g.admin = "http://" + h.HostPort("127.0.0.1", adminPort)
	g.dataDir = filepath.Join(t.TempDir(), "data")
	g.yaml = fmt.Sprintf(`data_dir: %q
admin:
  listen: "127.0.0.1:%d"
sip:
  ring_timeout: 20s
  listeners:
    - {zone: internet, transport: udp, listen: "%s"}
    - {zone: internet, transport: tcp, listen: "%s"}
%s%s`, g.dataDir, adminPort, g.sip, g.sip, upstreams, policies)
	return g
}

func (g *secGW) start(t *testing.T) *secGW {
	t.Helper()
	g.Gateway = h.StartGateway(t, h.GatewayConfig{YAML: g.yaml, UDP: []string{g.sip}, TCP: []string{g.sip}})
	return g
}

// startSecGW is newSecGW and start.
func startSecGW(t *testing.T, upstreams, policies string) *secGW {
	t.Helper()
	return newSecGW(t, upstreams, policies).start(t)
}

// addUser stores a user with `ucgate users add -c FILE -realm ucgate
// -password-stdin NAME`, the password on standard input, before the
// gateway starts. The shell only redirects standard input and execs
// ucgate, so the harness stops ucgate itself by its PID.
func (g *secGW) addUser(t *testing.T, name, password string) {
	t.Helper()
	dir := t.TempDir()
	cfg, pw := filepath.Join(dir, "ucgate.yaml"), filepath.Join(dir, "password")
	if err := os.WriteFile(cfg, []byte(g.yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pw, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	p := h.StartProc(t, h.ProcConfig{Name: "ucgate-users-" + name, Path: "/bin/sh", Dir: dir,
		Args: []string{"-c", `exec "$0" users add -c "$1" -realm ucgate -password-stdin "$2" < "$3"`,
			h.GatewayBinary(t), cfg, name, pw}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if rc, err := p.Wait(ctx); rc != 0 || err != nil {
		t.Fatalf("ucgate users add %s: rc %d %v\n%s", name, rc, err, p.Log())
	}
}

func (g *secGW) db() string { return filepath.Join(g.DataDir, "journal.db") }

// blocks is GET /blacklist on the admin API.
func (g *secGW) blocks(t *testing.T) []core.Block {
	t.Helper()
	var out []core.Block
	g.adminGet(t, "/blacklist", &out)
	return out
}

func (g *secGW) adminGet(t *testing.T, path string, v any) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(g.admin + path)
	if err != nil {
		t.Fatalf("admin GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("admin GET %s: %s: %s", path, res.Status, b)
	}
	if s, ok := v.(*string); ok {
		*s = string(b)
		return
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("admin GET %s: %v: %s", path, err, b)
	}
}

// block returns the blacklist entry for key, if there is one.
func (g *secGW) block(t *testing.T, key string) (core.Block, bool) {
	t.Helper()
	for _, b := range g.blocks(t) {
		if b.Key == key {
			return b, true
		}
	}
	return core.Block{}, false
}

// waitBlock polls the admin API until key is blocked, for at most d.
func (g *secGW) waitBlock(t *testing.T, key string, d time.Duration) (core.Block, bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if b, ok := g.block(t, key); ok || time.Now().After(deadline) {
			return b, ok
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// txs queries the journal's transactions.
func (g *secGW) txs(t *testing.T, f journal.TxFilter) []core.Transaction {
	t.Helper()
	if f.Limit == 0 {
		f.Limit = 100000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := journal.QueryTransactions(ctx, g.db(), f)
	if err != nil {
		t.Fatalf("journal: %v", err)
	}
	return out
}

// waitTxs polls the journal until at least n transactions match f (the
// journal writes at most 100 ms after the fact), for at most d.
// events returns the security events in the journal that match f.
func (g *secGW) events(t *testing.T, f journal.SecFilter) []core.SecurityEvent {
	t.Helper()
	if f.Limit == 0 {
		f.Limit = 100000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := journal.QuerySecurity(ctx, g.db(), f)
	if err != nil {
		t.Fatalf("journal: %v", err)
	}
	return out
}

// waitEvents waits until n security events match f.
func (g *secGW) waitEvents(t *testing.T, f journal.SecFilter, n int, d time.Duration) []core.SecurityEvent {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := g.events(t, f)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (g *secGW) waitTxs(t *testing.T, f journal.TxFilter, n int, d time.Duration) []core.Transaction {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := g.txs(t, f)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric returns the sum of the samples of a Prometheus metric on the
// admin listener whose labels contain every one of labels ("rule=\"x\"").
func (g *secGW) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	var text string
	g.adminGet(t, "/metrics", &text)
	sum := 0.0
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func randID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// sipFrom sends msg over UDP from a socket bound to ip (any 127.0.0.0/8
// address: sipvicious's svwar and svcrack always send from 127.0.0.1, so a
// legitimate peer or a witness uses another) to dst, retransmitting every
// 200 ms, and returns the first response with its status line first, or
// an error when ctx ends first. {SRC} in msg is the socket's address.
func sipFrom(ctx context.Context, ip, dst, msg string) (string, error) {
	raddr, err := net.ResolveUDPAddr("udp", dst)
	if err != nil {
		return "", err
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	b := []byte(strings.ReplaceAll(msg, "{SRC}", conn.LocalAddr().String()))
	buf := make([]byte, 65536)
	for {
		if _, err := conn.WriteToUDP(b, raddr); err != nil {
			return "", err
		}
		next := time.Now().Add(200 * time.Millisecond)
		if dl, ok := ctx.Deadline(); ok && dl.Before(next) {
			next = dl
		}
		conn.SetReadDeadline(next)
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				break
			}
			if res := string(buf[:n]); strings.HasPrefix(res, "SIP/2.0 ") && !strings.HasPrefix(res, "SIP/2.0 1") {
				return res, nil
			}
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
}

// optionsFrom sends an OPTIONS for the gateway itself from ip and returns
// the status line of the answer.
func optionsFrom(ctx context.Context, ip, dst string) (string, error) {
	id := randID()
	res, err := sipFrom(ctx, ip, dst, "OPTIONS sip:"+dst+" SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP {SRC};branch=z9hG4bK-"+id+";rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:monitor@"+ip+">;tag="+id+"\r\n"+
		"To: <sip:"+dst+">\r\n"+
		"Call-ID: "+id+"@"+ip+"\r\n"+
		"CSeq: 1 OPTIONS\r\n"+
		"User-Agent: ucgate-e2e-monitor\r\n"+
		"Content-Length: 0\r\n\r\n")
	return firstLine(res), err
}

// expectOptions checks the gateway answers an OPTIONS from ip with 200.
func expectOptions(t *testing.T, g *secGW, ip string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if res, err := optionsFrom(ctx, ip, g.sip); err != nil || !strings.HasPrefix(res, "SIP/2.0 200") {
		t.Errorf("OPTIONS from %s: %q %v, want 200", ip, res, err)
	}
}

// expectSilence checks the gateway does not answer an OPTIONS from ip (its
// source is blocked and dropped at the network layer).
func expectSilence(t *testing.T, g *secGW, ip string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if res, err := optionsFrom(ctx, ip, g.sip); err == nil {
		t.Errorf("OPTIONS from blocked %s answered %q, want silence", ip, res)
	}
}

// sipStub is a stand-in PBX or trunk over UDP: it answers every request
// with the status answer gives, and remembers what it received.
type sipStub struct {
	addr string
	mu   sync.Mutex
	got  []string // request lines received
}

func startStub(t *testing.T, ip string, answer func(method, user string) int) *sipStub {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	s := &sipStub{addr: conn.LocalAddr().String()}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			if strings.HasPrefix(msg, "SIP/2.0") {
				continue
			}
			line := firstLine(msg)
			s.mu.Lock()
			s.got = append(s.got, line)
			s.mu.Unlock()
			f := strings.Fields(line)
			if len(f) < 2 || f[0] == "ACK" {
				continue
			}
			user := ""
			if m := uriUser.FindStringSubmatch(headerOf(msg, "To", "t")); m != nil {
				user = m[1]
			}
			code := answer(f[0], user)
			res := fmt.Sprintf("SIP/2.0 %d %s\r\n", code, reasonPhrase[code])
			for _, ln := range strings.Split(msg, "\r\n")[1:] {
				if ln == "" {
					break
				}
				name, _, _ := strings.Cut(ln, ":")
				switch strings.ToLower(strings.TrimSpace(name)) {
				case "via", "v", "from", "f", "call-id", "i", "cseq":
					res += ln + "\r\n"
				case "to", "t":
					if !strings.Contains(ln, "tag=") {
						ln += ";tag=" + randID()
					}
					res += ln + "\r\n"
				}
			}
			if code == 401 {
				res += `WWW-Authenticate: Digest realm="pbx", nonce="` + randID() + `", algorithm=MD5, qop="auth"` + "\r\n"
			}
			res += "Contact: <sip:pbx@" + s.addr + ">\r\nContent-Length: 0\r\n\r\n"
			conn.WriteToUDP([]byte(res), from)
		}
	}()
	return s
}

func (s *sipStub) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

var (
	uriUser      = regexp.MustCompile(`sips?:([^@;>\s]+)@`)
	reasonPhrase = map[int]string{200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 486: "Busy Here"}
)

// headerOf returns the value of the first header field named name (or
// its compact form) in msg.
func headerOf(msg, name, compact string) string {
	for _, ln := range strings.Split(msg, "\r\n")[1:] {
		if ln == "" {
			break
		}
		k, v, ok := strings.Cut(ln, ":")
		k = strings.TrimSpace(k)
		if ok && (strings.EqualFold(k, name) || compact != "" && strings.EqualFold(k, compact)) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// sipvicious runs one sipvicious tool (svmap, svwar, svcrack) to its end,
// with HOME in a temp dir (its sessions go to ~/.sipvicious), and returns
// stdout and stderr. sipvicious always exits 0: the output is the verdict.
func sipvicious(t *testing.T, tool string, timeout time.Duration, args ...string) (stdout, stderr string) {
	t.Helper()
	h.RequirePeer(t, tool)
	dir := t.TempDir()
	// The harness logs stdout and stderr together; a shell that only
	// redirects and then execs the tool keeps them apart and the PID.
	p := h.StartProc(t, h.ProcConfig{Name: tool, Path: "/bin/sh", Dir: dir, Env: []string{"HOME=" + dir},
		Args: append([]string{"-c", `exec "$@" 2>stderr.txt >stdout.txt`, "sh", tool}, args...)})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := p.Wait(ctx); err != nil {
		p.Stop()
		t.Errorf("%s did not finish within %v", tool, timeout)
	}
	o, _ := os.ReadFile(filepath.Join(dir, "stdout.txt"))
	e, _ := os.ReadFile(filepath.Join(dir, "stderr.txt"))
	t.Logf("%s %s: stdout:\n%s\nstderr:\n%s", tool, strings.Join(args, " "), o, e)
	return string(o), string(e)
}

// tableRows parses sipvicious's result table: the rows after the header
// separator (+===+), each as its cells.
func tableRows(out string) [][]string {
	var rows [][]string
	body := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		ln := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(ln, "+="):
			body = true
		case body && strings.HasPrefix(ln, "|"):
			var cells []string
			for _, c := range strings.Split(strings.Trim(ln, "|"), "|") {
				cells = append(cells, strings.TrimSpace(c))
			}
			rows = append(rows, cells)
		}
	}
	return rows
}

// TestSecuritySvmapSweep: svmap sweeps the gateway from 127.0.0.1 (with its
// own User-Agent) and from 127.0.0.4 (compact mode, no User-Agent, only
// its From name "sipvicious" gives it away). The scan stage knows both:
// each sweeping source is blocked in the blacklist (rule scan/agent),
// svmap finds no SIP device, the sources get no answer afterwards, and a
// monitor at 127.0.0.3 still gets 200.
func TestSecuritySvmapSweep(t *testing.T) {
	h.RequirePeer(t, "svmap")
	start := time.Now()
	pbx := startStub(t, "127.0.0.5", func(string, string) int { return 404 })
	g := startSecGW(t, fmt.Sprintf(`  upstreams:
    - {name: pbx, address: "%s", transport: udp, zone: trunk}
  routes:
    - {default: true, upstreams: [pbx]}
`, pbx.addr), `policies:
  scan:
    window: 60s
    refuse_for: 15m
  blacklist:
    block_time: 10m
`)
	_, port, _ := net.SplitHostPort(g.sip)
	sweeps := []struct {
		name, ip, detail string
		args             []string
	}{
		{"options with user-agent", "127.0.0.1", "Scanner User-Agent", nil},
		{"compact invite", "127.0.0.4", "Scanner From", []string{"-c", "-m", "INVITE"}},
	}
	t.Run("sweeps", func(t *testing.T) {
		for _, s := range sweeps {
			t.Run(s.name, func(t *testing.T) {
				t.Parallel()
				args := append([]string{"-p", port, "-P", strconv.Itoa(h.FreeUDPPort(t)), "-b", s.ip}, s.args...)
				out, errOut := sipvicious(t, "svmap", 30*time.Second, append(args, "127.0.0.1")...)
				if rows := tableRows(out); len(rows) != 0 || !strings.Contains(errOut, "found nothing") {
					t.Errorf("svmap found %v, want nothing", rows)
				}
				b, ok := g.waitBlock(t, s.ip, 5*time.Second)
				if !ok || b.Rule != "scan/agent" {
					t.Errorf("blacklist entry for %s = %+v (%v), want rule scan/agent; blacklist %+v", s.ip, b, ok, g.blocks(t))
				}
				got := g.waitTxs(t, journal.TxFilter{Src: s.ip, Rule: "scan/agent"}, 1, 5*time.Second)
				if len(got) == 0 {
					t.Errorf("no journal record with rule scan/agent from %s", s.ip)
				}
				for _, tx := range got {
					if tx.Status != 0 || tx.Detail != s.detail {
						t.Errorf("journal %+v, want dropped with detail %q", tx, s.detail)
					}
				}
				expectSilence(t, g, s.ip)
			})
		}
	})
	expectOptions(t, g, "127.0.0.3")
	if reqs := pbx.requests(); len(reqs) != 0 {
		t.Errorf("the PBX received %q from the sweeps", reqs)
	}
	t.Logf("svmap sweeps blocked in %v", time.Since(start).Round(time.Millisecond))
}

// ha1User is the users section entry of name with MD5 and SHA-256 hashes of
// password in realm ucgate, made by auth.HA1 (the configuration takes
// hashes, never passwords).
func ha1User(name, password string) string {
	return fmt.Sprintf("      - {name: %q, ha1: {MD5: %s, SHA-256: %s}}\n", name,
		auth.HA1("MD5", name, "ucgate", password), auth.HA1("SHA-256", name, "ucgate", password))
}

// pbxKnows is a PBX that knows extensions 1001 and 1002: it challenges
// requests for them and answers 404 for any other, as real PBXs do, so
// that without the gateway's auth stage svwar would tell them apart.
func pbxKnows(_ string, user string) int {
	if user == "1001" || user == "1002" {
		return 401
	}
	return 404
}

// TestSecuritySvwarEnumeration: users 1001 and 1002 exist, the PBX behind
// the gateway answers differently for them, and every request from the
// internet needs a password (options included, as the auth README's
// internet example has it). svwar enumerates 1000-1010 with REGISTER,
// INVITE and OPTIONS in compact mode (no User-Agent: the scan stage's
// signatures do not see it and the requests stay under its thresholds, so
// what svwar learns is what the auth stage answers): it finds no
// extension, and nothing reaches the PBX. svwar first asks for a random
// extension to learn the answer for "no such user"; the gateway challenges
// it like any other, and svwar, forced on, stops at the first extension
// whose answer is that same challenge ("We got an unknown response"). So
// the test also compares the answers for an existing and a missing user
// itself, for each method. A last svwar run with its own User-Agent is
// blocked by the scan stage at its first request.
func TestSecuritySvwarEnumeration(t *testing.T) {
	h.RequirePeer(t, "svwar")
	start := time.Now()
	pbx := startStub(t, "127.0.0.5", pbxKnows)
	g := startSecGW(t, fmt.Sprintf(`  upstreams:
    - {name: pbx, address: "%s", transport: udp, zone: trunk}
  routes:
    - {default: true, upstreams: [pbx]}
  registrar: pbx
`, pbx.addr), `policies:
  auth:
    require: [register, invite, message, subscribe, options]
    users:
`+ha1User("1001", "Zq8#rT2!vLp")+ha1User("1002", "Hm4$wN9?cXe"))
	_, port, _ := net.SplitHostPort(g.sip)
	svwar := func(t *testing.T, extra ...string) (string, string) {
		args := append([]string{"-e", "1000-1010", "-p", port, "-P", strconv.Itoa(h.FreeUDPPort(t)), "-x", "127.0.0.1"}, extra...)
		return sipvicious(t, "svwar", 40*time.Second, append(args, "127.0.0.1")...)
	}
	methods := []string{"REGISTER", "INVITE", "OPTIONS"}
	t.Run("compact", func(t *testing.T) {
		for _, method := range methods {
			t.Run(method, func(t *testing.T) {
				t.Parallel()
				// --force: without it svwar stops as soon as the random
				// extension is challenged.
				out, errOut := svwar(t, "-m", method, "--force", "-c")
				if rows := tableRows(out); len(rows) != 0 || !strings.Contains(errOut, "found nothing") {
					t.Errorf("svwar -m %s found %v, want nothing", method, rows)
				}
			})
		}
	})
	for _, method := range methods {
		if got := g.waitTxs(t, journal.TxFilter{Src: "127.0.0.1", Method: method, Rule: "auth/challenge"}, 2, 5*time.Second); len(got) < 2 {
			t.Errorf("svwar -m %s: %d auth/challenge records, want its probe and 1000 challenged", method, len(got))
		}
	}
	// The same question for 1001 (exists) and 1005 (does not), from
	// 127.0.0.2: the answers differ only in their nonce, tag and branch.
	for _, method := range methods {
		var answers []string
		for _, user := range []string{"1001", "1005"} {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			id := randID()
			res, err := sipFrom(ctx, "127.0.0.2", g.sip, method+" sip:"+user+"@127.0.0.1 SIP/2.0\r\n"+
				"Via: SIP/2.0/UDP {SRC};branch=z9hG4bK-"+id+";rport\r\n"+
				"Max-Forwards: 70\r\n"+
				"From: <sip:"+user+"@127.0.0.1>;tag="+id+"\r\n"+
				"To: <sip:"+user+"@127.0.0.1>\r\n"+
				"Call-ID: "+id+"\r\n"+
				"CSeq: 1 "+method+"\r\n"+
				"Contact: <sip:"+user+"@127.0.0.2>\r\n"+
				"Content-Length: 0\r\n\r\n")
			cancel()
			if err != nil {
				t.Fatalf("%s for %s from 127.0.0.2: %v", method, user, err)
			}
			res = regexp.MustCompile(`127\.0\.0\.2:\d+`).ReplaceAllString(strings.ReplaceAll(res, user, "USER"), "SRC")
			answers = append(answers, sameShape.ReplaceAllString(res, "$1*"))
		}
		if answers[0] != answers[1] {
			t.Errorf("%s: the gateway tells an existing user from a missing one:\n%s\n---\n%s", method, answers[0], answers[1])
		}
		if !strings.HasPrefix(answers[0], "SIP/2.0 40") {
			t.Errorf("%s for a user: %q, want a challenge", method, firstLine(answers[0]))
		}
	}
	if _, ok := g.block(t, "127.0.0.1"); ok {
		t.Errorf("compact svwar runs got 127.0.0.1 blocked: %+v", g.blocks(t))
	}
	t.Run("user-agent", func(t *testing.T) {
		out, errOut := svwar(t, "-m", "REGISTER", "--force")
		if rows := tableRows(out); len(rows) != 0 || strings.Contains(errOut, "Ok SIP device found") {
			t.Errorf("svwar with its User-Agent found %v, want nothing", rows)
		}
		if b, ok := g.waitBlock(t, "127.0.0.1", 5*time.Second); !ok || b.Rule != "scan/agent" {
			t.Errorf("blacklist entry for 127.0.0.1 = %+v (%v), want rule scan/agent", b, ok)
		}
	})
	if reqs := pbx.requests(); len(reqs) != 0 {
		t.Errorf("the PBX received %d requests from svwar, want none: %q", len(reqs), reqs)
	}
	t.Logf("svwar runs in %v", time.Since(start).Round(time.Millisecond))
}

// sameShape blanks what differs between two answers to the same question:
// tags, branches, nonces, received ports.
var sameShape = regexp.MustCompile(`((?:tag|branch|nonce|rport|received|Call-ID:)=?"?\s*)[^;,"\r\n]+`)

// scenarioRegisterAuth registers [service] with digest credentials from
// -au/-ap (PEERS.md 1.8): REGISTER, 401, REGISTER with [authentication],
// 200.
const scenarioRegisterAuth = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER with digest auth">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Expires: 60
      User-Agent: sipp-e2e
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true" />
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      [authentication]
      Max-Forwards: 70
      Expires: 60
      User-Agent: sipp-e2e
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
</scenario>
`

// TestSecuritySvcrack: svcrack guesses the password of 1001 from a
// dictionary of 15 wrong passwords followed by the right one. The
// bruteforce stage blocks its source after 5 failures (source_failures),
// before the 16th guess, so svcrack finds nothing; the user is not locked
// out (user_failures 10 is above what the source could try before its
// block), so 1001 still registers with its password from 127.0.0.2.
//
// The auth stage offers MD5 only here: svcrack and sipp 3.6.1 compute MD5
// digests only (svcrack dies on a SHA-256 challenge, which would pass for
// a defence). svcrack runs in compact mode, without its User-Agent, which
// the scan stage would block at the first request (the svmap test covers
// that). A control run first proves svcrack cracks the password through
// this gateway when the right one comes first.
func TestSecuritySvcrack(t *testing.T) {
	h.RequirePeer(t, "svcrack")
	h.RequirePeer(t, "sipp")
	start := time.Now()
	const password = "Kw7!mQ2#xR"
	// The PBX is at 127.0.0.5: the blacklist blocks addresses, and svcrack
	// sends from 127.0.0.1 whatever it is told.
	reg := h.StartRegistrar(t, h.SippConfig{IP: "127.0.0.5", Timeout: 60 * time.Second}, 4)
	g := newSecGW(t, fmt.Sprintf(`  upstreams:
    - {name: pbx, address: "%s", transport: udp, zone: trunk}
  routes:
    - {default: true, upstreams: [pbx]}
  registrar: pbx
`, reg.Addr()), `policies:
  auth:
    algorithms: [MD5]
    failure_delay: 1s
  bruteforce:
    source_failures: 5
    source_window: 5m
    source_lockout: 15m
    user_failures: 10
    user_window: 5m
    failure_delay: 1s
  blacklist:
    block_time: 15m
`)
	g.addUser(t, "1001", password)
	g.addUser(t, "1002", "Lp3?vB8$nT")
	g.start(t)
	_, port, _ := net.SplitHostPort(g.sip)
	svcrack := func(t *testing.T, words []string) (string, string) {
		dict := filepath.Join(t.TempDir(), "dict.txt")
		if err := os.WriteFile(dict, []byte(strings.Join(words, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return sipvicious(t, "svcrack", 40*time.Second, "-u", "1001", "-d", dict, "-c", "-x", "127.0.0.1",
			"--maximumtime", "3", "-p", port, "-P", strconv.Itoa(h.FreeUDPPort(t)), "127.0.0.1")
	}
	t.Run("control", func(t *testing.T) {
		out, _ := svcrack(t, []string{password})
		if rows := tableRows(out); len(rows) != 1 || rows[0][0] != "1001" || rows[0][1] != password {
			t.Fatalf("svcrack with the right password first found %v: it cannot crack this gateway's challenges, so the attack below proves nothing", rows)
		}
	})
	wrong := []string{"123456", "password", "1001", "1234", "0000", "admin", "letmein", "qwerty",
		"111111", "12345678", "secret", "changeme", "1001pass", "welcome", "abc123"}
	attack := time.Now()
	t.Run("attack", func(t *testing.T) {
		out, errOut := svcrack(t, append(wrong, password))
		if rows := tableRows(out); len(rows) != 0 || !strings.Contains(errOut, "found nothing") {
			t.Errorf("svcrack found %v, want nothing", rows)
		}
	})
	b, ok := g.waitBlock(t, "127.0.0.1", 5*time.Second)
	if !ok || b.Rule != "bruteforce/source" {
		t.Errorf("blacklist entry for 127.0.0.1 = %+v (%v), want rule bruteforce/source; blacklist %+v", b, ok, g.blocks(t))
	}
	fails := g.txs(t, journal.TxFilter{Src: "127.0.0.1", Rule: "auth/failure", Method: "REGISTER", Since: attack})
	accepted := g.txs(t, journal.TxFilter{Src: "127.0.0.1", Method: "REGISTER", Action: "allow", Since: attack})
	dropped := g.txs(t, journal.TxFilter{Src: "127.0.0.1", Since: attack, Action: "drop"})
	t.Logf("svcrack: %d wrong guesses judged (auth/failure), %d REGISTERs allowed, %d drop records after the block", len(fails), len(accepted), len(dropped))
	if len(fails) < 5 || len(fails) >= len(wrong) {
		t.Errorf("%d auth/failure records, want at least source_failures (5) and fewer than the %d wrong guesses", len(fails), len(wrong))
	}
	if ctrl := g.txs(t, journal.TxFilter{Src: "127.0.0.1", Method: "REGISTER", Action: "allow", Until: attack}); len(ctrl) != 1 {
		t.Errorf("%d REGISTERs allowed for the control run, want 1", len(ctrl))
	}
	if len(accepted) != 0 {
		t.Errorf("REGISTERs from the attacker allowed after the attack began: %+v", accepted)
	}
	if ev := g.events(t, journal.SecFilter{Rule: "bruteforce/lockout", Since: attack}); len(ev) == 0 {
		t.Errorf("no bruteforce/lockout security event in the journal")
	}
	var locks []map[string]any
	g.adminGet(t, "/lockouts", &locks)
	for _, l := range locks {
		if l["key"] == "1001" {
			t.Errorf("user 1001 is locked out: %v", l)
		}
	}
	expectSilence(t, g, "127.0.0.1")
	// The user registers from its own phone, at another address.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := h.RunSipp(t, ctx, h.SippConfig{Name: "sipp-1001", ScenarioXML: scenarioRegisterAuth, Remote: g.sip, IP: "127.0.0.2",
		Service: "1001", Timeout: 10 * time.Second, TraceMsg: true, Args: []string{"-au", "1001", "-ap", password}})
	if !r.OK() {
		msgs, _ := os.ReadFile(filepath.Join(r.Dir, "messages.log"))
		t.Errorf("1001 registering from 127.0.0.2 after the attack: %s\nmessages:\n%s\njournal: %+v", r, msgs,
			g.txs(t, journal.TxFilter{Src: "127.0.0.2"}))
	}
	t.Logf("svcrack test in %v (lockouts %v)", time.Since(start).Round(time.Millisecond), locks)
}

// scenarioInviteFlood sends one INVITE per call and never waits for an
// answer: each "call" ends as soon as its INVITE is out, so -r sets the
// packet rate and -m bounds the flood.
const scenarioInviteFlood = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="INVITE flood: send and forget">
  <send>
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: flood <sip:flood@[local_ip]:[local_port]>;tag=[pid]F[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:flood@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=flood 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
</scenario>
`

// TestSecurityFlood: an office PBX at 127.0.0.1 places 200 calls at 20
// calls/s through the gateway to a carrier trunk (a sipp UAS at
// 127.0.0.5) while sipp at 127.0.0.2 floods the gateway with INVITEs at
// 2000/s for 5 s. Every legitimate call succeeds, and the flooder is
// blacklisted by the ratelimit stage (rule ratelimit/flood). The budget
// of an untrusted source is raised to 100 packets/s (bursts of 200): the
// PBX sends about 60 a second (INVITE, ACK, BYE per call), more than the
// default 50 that a handful of phones never reach. The trunk is listed as
// trusted: it answers on the gateway's internet listener, so the
// network-layer zone it is judged in is the listener's.
func TestSecurityFlood(t *testing.T) {
	h.RequirePeer(t, "sipp")
	start := time.Now()
	const calls, rate = 200, 20
	uasPort := h.FreeUDPPort(t)
	g := startSecGW(t, trunk(h.HostPort("127.0.0.5", uasPort), "udp"), `policies:
  ratelimit:
    budget: {packets: 100, packet_burst: 200}
    trusted: [127.0.0.5]
    flood_drops: 250
    flood_window: 10s
  blacklist:
    block_time: 10m
  auth:
    trusted: [127.0.0.1]
  admission:
    source: {concurrent: 40, rate: 25, burst: 50}
    user: {concurrent: 40, rate: 25, burst: 50}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	uas := h.StartSipp(t, h.SippConfig{ScenarioXML: h.ScenarioUASRingAnswer, IP: "127.0.0.5", Port: uasPort, Calls: calls, Timeout: 60 * time.Second})
	uac := h.StartSipp(t, h.SippConfig{Scenario: "uac", Remote: g.sip, IP: "127.0.0.1", Service: "4711", Calls: calls,
		Rate: rate, Limit: 50, CallLength: time.Second, Timeout: 60 * time.Second})
	// The flood starts once the calls are going.
	if _, err := waitUntil(ctx, 10*time.Second, func() bool {
		return len(g.txs(t, journal.TxFilter{Src: "127.0.0.1", Method: "INVITE", Limit: 10})) >= 5
	}); err != nil {
		t.Fatalf("the PBX's calls did not start: %v", err)
	}
	floodStart := time.Now()
	fr := h.RunSipp(t, ctx, h.SippConfig{Name: "sipp-flood", ScenarioXML: scenarioInviteFlood, Remote: g.sip, IP: "127.0.0.2",
		Service: "4711", Calls: 10000, Rate: 2000, Limit: 10000, Timeout: 30 * time.Second})
	floodTime := time.Since(floodStart)
	r := uac.Wait(ctx)
	ur := uas.Wait(ctx)
	sent := fr.Stats.OutgoingCall
	t.Logf("flood: %d INVITEs from 127.0.0.2 in %v (%.0f/s); the PBX: %d of %d calls ok at %d/s", sent, floodTime.Round(time.Millisecond),
		float64(sent)/floodTime.Seconds(), r.Stats.SuccessfulCall, calls, rate)
	t.Logf("gateway: %.0f packets dropped by ratelimit, %.0f by the blacklist",
		g.metric(t, "ucgate_ratelimit_dropped_total"), g.metric(t, "ucgate_blacklist_dropped_total"))
	if sent < 5000 {
		t.Errorf("the flooder sent only %d INVITEs (%s): not a flood", sent, fr)
	}
	if r.ExitCode != 0 || r.Stats.SuccessfulCall != calls || r.Stats.FailedCall != 0 {
		t.Errorf("the PBX's calls during the flood: %s", r)
	}
	if !ur.OK() {
		t.Errorf("trunk: %s", ur)
	}
	if got := waitCDRs(t, &gw{Gateway: g.Gateway}, journal.CDRFilter{EndReason: "normal"}, calls); len(got) != calls {
		t.Errorf("%d normal CDRs, want %d", len(got), calls)
	}
	b, ok := g.block(t, "127.0.0.2")
	if !ok || b.Rule != "ratelimit/flood" {
		t.Errorf("blacklist entry for 127.0.0.2 = %+v (%v), want rule ratelimit/flood; blacklist %+v", b, ok, g.blocks(t))
	} else {
		t.Logf("the flooder was blacklisted %v after its first INVITE", b.Created.Sub(floodStart).Round(time.Millisecond))
	}
	for _, ip := range []string{"127.0.0.1", "127.0.0.5"} {
		if b, ok := g.block(t, ip); ok {
			t.Errorf("%s is blocked: %+v", ip, b)
		}
	}
	if ev := g.events(t, journal.SecFilter{Rule: "ratelimit/flood"}); len(ev) == 0 {
		t.Errorf("no ratelimit/flood security event in the journal")
	}
	// Admitted before the flood was detected: the first burst of INVITEs,
	// challenged by the auth stage. Nothing of the flood reached the trunk.
	if n := len(g.txs(t, journal.TxFilter{Src: "127.0.0.2", Method: "INVITE", Action: "allow"})); n != 0 {
		t.Errorf("%d INVITEs of the flood were let through", n)
	}
	t.Logf("flood test in %v", time.Since(start).Round(time.Millisecond))
}

// waitUntil polls cond every 50 ms until it holds or d passes.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		if cond() {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dialogOf reads the dialog of a call as its caller sees it from a sipp
// -trace_msg log: the Call-ID, From and To (with both tags) and Contact
// of the first 200 OK to the INVITE.
func dialogOf(log string) (callID, from, to, contact string, ok bool) {
	for _, block := range strings.Split(log, "-----------------------------------------------") {
		i := strings.Index(block, "SIP/2.0 200")
		if !strings.Contains(block, "message received") || i < 0 {
			continue
		}
		msg := strings.ReplaceAll(block[i:], "\n", "\r\n")
		msg = strings.ReplaceAll(msg, "\r\r\n", "\r\n")
		if !strings.Contains(headerOf(msg, "CSeq", ""), "INVITE") {
			continue
		}
		callID, from, to = headerOf(msg, "Call-ID", "i"), headerOf(msg, "From", "f"), headerOf(msg, "To", "t")
		contact = strings.Trim(headerOf(msg, "Contact", "m"), "<>")
		if c, _, found := strings.Cut(contact, ">"); found {
			contact = c
		}
		return callID, from, to, contact, callID != "" && strings.Contains(to, "tag=")
	}
	return "", "", "", "", false
}

// TestSecuritySpoofedBye: (a) a BYE for a dialog that never existed gets
// 481 (rule dialog/unknown); (b) during a live call, a BYE for that call's
// dialog, exact in every identifier the caller sees, sent from another
// address (127.0.0.9) is refused with 403 (rule dialog/source) and does
// not end the call: the caller hangs up at the end of its 5 s, its own BYE
// gets 200, and the CDR says the caller ended a call of 5 s.
func TestSecuritySpoofedBye(t *testing.T) {
	h.RequirePeer(t, "sipp")
	start := time.Now()
	uasPort := h.FreeUDPPort(t)
	g := startSecGW(t, trunk(h.HostPort("127.0.0.5", uasPort), "udp"), `policies:
  auth:
    trusted: [127.0.0.1]
  dialog:
    check_source: true
    check_sequence: true
`)
	bye := func(uri, from, to, callID string, cseq int) string {
		return "BYE " + uri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP {SRC};branch=z9hG4bK-" + randID() + ";rport\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: " + from + "\r\n" +
			"To: " + to + "\r\n" +
			"Call-ID: " + callID + "\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " BYE\r\n" +
			"Content-Length: 0\r\n\r\n"
	}
	t.Run("unknown dialog", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		cid := randID() + "@127.0.0.8"
		res, err := sipFrom(ctx, "127.0.0.8", g.sip, bye("sip:4711@"+g.sip, "<sip:mallory@127.0.0.8>;tag="+randID(),
			"<sip:4711@"+g.sip+">;tag="+randID(), cid, 2))
		if err != nil || !strings.HasPrefix(res, "SIP/2.0 481") {
			t.Errorf("BYE for no dialog: %q %v, want 481", firstLine(res), err)
		}
		got := g.waitTxs(t, journal.TxFilter{CallID: cid}, 1, 5*time.Second)
		if len(got) != 1 || got[0].Rule != "dialog/unknown" || got[0].Status != 481 || got[0].Method != "BYE" {
			t.Errorf("journal for the BYE: %+v, want one BYE refused 481 by dialog/unknown", got)
		}
		if ev := g.waitEvents(t, journal.SecFilter{Rule: "dialog/unknown", Src: "127.0.0.8"}, 1, 5*time.Second); len(ev) != 1 {
			t.Errorf("%d dialog/unknown security events, want 1", len(ev))
		}
	})
	t.Run("live call", func(t *testing.T) {
		const callLen = 5 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// A UAS without the built-in one's trailing 4 s pause.
		uas := h.StartSipp(t, h.SippConfig{ScenarioXML: h.ScenarioUASRingAnswer, IP: "127.0.0.5", Port: uasPort, Calls: 1, Timeout: 30 * time.Second})
		uac := h.StartSipp(t, h.SippConfig{Scenario: "uac", Remote: g.sip, Service: "4711", Calls: 1, CallLength: callLen,
			Timeout: 30 * time.Second, TraceMsg: true})
		var callID, from, to, contact string
		if _, err := waitUntil(ctx, 5*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(uac.Dir(), "messages.log"))
			var ok bool
			callID, from, to, contact, ok = dialogOf(string(b))
			return ok
		}); err != nil {
			t.Fatalf("no 200 OK in the caller's messages: %v", err)
		}
		answered := time.Now()
		t.Logf("the caller's dialog: Call-ID %s, From %s, To %s, Contact %s", callID, from, to, contact)
		sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
		res, err := sipFrom(sctx, "127.0.0.9", g.sip, bye(contact, from, to, callID, 2))
		scancel()
		if err != nil || !strings.HasPrefix(res, "SIP/2.0 403") {
			t.Errorf("spoofed BYE from 127.0.0.9: %q %v, want 403", firstLine(res), err)
		}
		if time.Since(answered) > callLen-time.Second {
			t.Fatalf("the spoofed BYE came too late in the call to prove anything")
		}
		r := uac.Wait(ctx)
		ur := uas.Wait(ctx)
		if !r.OK() || r.Stats.SuccessfulCall != 1 {
			t.Errorf("caller: %s (its BYE must get 200: the call must still exist)", r)
		}
		if !ur.OK() {
			t.Errorf("callee: %s", ur)
		}
		got := g.waitTxs(t, journal.TxFilter{CallID: callID, Method: "BYE"}, 2, 5*time.Second)
		var spoofed, real int
		for _, tx := range got {
			switch {
			case strings.HasPrefix(tx.Src, "127.0.0.9:") && tx.Status == 403 && tx.Rule == "dialog/source":
				spoofed++
			case strings.HasPrefix(tx.Src, "127.0.0.1:") && tx.Status == 200:
				real++
			default:
				t.Errorf("unexpected BYE in the journal: %+v", tx)
			}
		}
		if spoofed != 1 || real != 1 {
			t.Errorf("journal: %d spoofed BYEs refused by dialog/source, %d BYEs from the caller answered 200; want 1 and 1: %+v", spoofed, real, got)
		}
		cdr := waitCDRs(t, &gw{Gateway: g.Gateway}, journal.CDRFilter{}, 1)
		if len(cdr) != 1 || cdr[0].EndedBy != core.RoleCaller || cdr[0].EndReason != "normal" ||
			cdr[0].Duration < callLen || cdr[0].Duration > callLen+time.Second {
			t.Errorf("CDR %+v, want one normal call of %v ended by the caller", cdr, callLen)
		}
		if ev := g.events(t, journal.SecFilter{Rule: "dialog/source"}); len(ev) != 1 || !strings.HasPrefix(ev[0].Src, "127.0.0.9") {
			t.Errorf("dialog/source security events: %+v, want one from 127.0.0.9", ev)
		}
	})
	t.Logf("spoofed BYE test in %v", time.Since(start).Round(time.Millisecond))
}

// corpusCase is one hostile message of the malformed corpus.
type corpusCase struct {
	name string
	msg  []byte
}

// malformedCorpus is RFC 4475's invalid messages (testdata/rfc4475), our
// own hostile ones (testdata/hostile) and three generated large ones.
func malformedCorpus(t *testing.T) []corpusCase {
	t.Helper()
	var out []corpusCase
	for _, dir := range []string{"rfc4475", "hostile"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.dat"))
		if err != nil || len(files) == 0 {
			t.Fatalf("testdata/%s: %v (%d files)", dir, err, len(files))
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, corpusCase{dir + "/" + strings.TrimSuffix(filepath.Base(f), ".dat"), b})
		}
	}
	options := func(name, extra, body string) []byte {
		return []byte("OPTIONS sip:4711@example.com SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bK-" + name + "\r\n" + extra +
			"Max-Forwards: 70\r\n" +
			"From: <sip:mallory@example.com>;tag=" + name + "\r\n" +
			"To: <sip:4711@example.com>\r\n" +
			"Call-ID: " + name + "@192.0.2.66\r\n" +
			"CSeq: 1 OPTIONS\r\n" +
			"Content-Type: text/plain\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	}
	var vias, headers strings.Builder
	for i := range 99 {
		fmt.Fprintf(&vias, "Via: SIP/2.0/UDP 192.0.2.%d:5060;branch=z9hG4bK-deep%d\r\n", i%250+1, i)
	}
	for i := range 10000 {
		fmt.Fprintf(&headers, "X:%d\r\n", i%10)
	}
	return append(out,
		corpusCase{"generated/oversized", options("oversized", "", strings.Repeat("A", 20*1024))},
		corpusCase{"generated/deepvia", options("deepvia", vias.String(), "")},
		corpusCase{"generated/10k-headers", options("manyheaders", headers.String(), "")},
	)
}

// topVia is the sent-by of a message's first Via, and its transport.
var topVia = regexp.MustCompile(`(?im)^((?:via|v)[ \t]*:[ \t]*SIP/[0-9.]+/)[a-z]+([ \t]+)[^;,\r\n]+`)

// adapt points the first Via of msg at the sender (transport and address),
// the only change made to the corpus (testdata/README.md).
func adapt(msg []byte, transport, src string) []byte {
	loc := topVia.FindSubmatchIndex(msg)
	if loc == nil {
		return msg
	}
	var b []byte
	b = append(b, msg[:loc[3]]...)
	b = append(b, transport...)
	b = append(b, msg[loc[4]:loc[5]]...)
	b = append(b, src...)
	return append(b, msg[loc[1]:]...)
}

var statusLine = regexp.MustCompile(`SIP/[0-9]+\.[0-9]+ (\d{3}) `)

// outcome is what a corpus message got: the status codes of every
// response, and for TCP how the connection ended.
type outcome struct {
	codes []int
	other string // the first line of an answer that is not a SIP/2.0 response
	end   string // udp: "silent" or "answered"; tcp: "closed", "open" (no more data within the wait) or a write error
}

func (o outcome) String() string {
	if o.other != "" {
		return fmt.Sprintf("%q %s", o.other, o.end)
	}
	if len(o.codes) == 0 {
		return o.end
	}
	return fmt.Sprintf("%v %s", o.codes, o.end)
}

func codesIn(b []byte) []int {
	var out []int
	for _, m := range statusLine.FindAllSubmatch(b, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		out = append(out, n)
	}
	return out
}

// sendUDP sends msg from a fresh socket on 127.0.0.1 and collects what
// comes back within wait.
func sendUDP(dst string, msg []byte, wait time.Duration) outcome {
	raddr, _ := net.ResolveUDPAddr("udp", dst)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return outcome{end: err.Error()}
	}
	defer conn.Close()
	if _, err := conn.WriteToUDP(adapt(msg, "UDP", conn.LocalAddr().String()), raddr); err != nil {
		return outcome{end: "write: " + err.Error()}
	}
	o := outcome{end: "silent"}
	buf := make([]byte, 65536)
	conn.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return o
		}
		o.end = "answered"
		o.codes = append(o.codes, codesIn(buf[:n])...)
		if len(o.codes) == 0 {
			o.other = firstLine(string(buf[:n]))
		}
	}
}

// sendTCP sends msg on a fresh connection from 127.0.0.1 and collects what
// comes back within wait.
func sendTCP(dst string, msg []byte, wait time.Duration) outcome {
	c, err := net.DialTimeout("tcp", dst, 2*time.Second)
	if err != nil {
		return outcome{end: "dial: " + err.Error()}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	o := outcome{}
	if _, err := c.Write(adapt(msg, "TCP", c.LocalAddr().String())); err != nil {
		o.end = "closed while written"
	}
	b, err := io.ReadAll(c)
	o.codes = codesIn(b)
	if len(o.codes) == 0 && len(b) > 0 {
		o.other = firstLine(string(b))
	}
	switch {
	case o.end != "":
	case err == nil:
		o.end = "closed"
	case os.IsTimeout(err):
		o.end = "open"
	default:
		o.end = "reset"
	}
	return o
}

// refusal reports whether a status code refuses: any 4xx, 513 Message Too
// Large (validate's answer to an oversized request) or 505 Version Not
// Supported (RFC 4475's badvers).
func refusal(code int) bool { return code >= 400 && code < 500 || code == 513 || code == 505 }

// knownGaps are corpus messages the gateway still accepts, with why.
var knownGaps = map[string]string{
	// sipgo parses an unquoted display name with a comma into the same
	// value as a quoted one and keeps no raw header, so nothing after the
	// parser can tell; RFC 4475 3.1.2.15 calls rejecting it "reasonable".
	"rfc4475/baddn": "unquoted non-token display name is not detected after sipgo's parse",
}

// TestSecurityMalformedCorpus sends each message of the malformed corpus
// (RFC 4475's invalid messages and our own hostile ones) over UDP and over
// TCP, a fresh socket or connection each, to a gateway with every control
// at its defaults. Each is refused (4xx, or 513 for the oversized one) or
// dropped (no answer, or the connection closed): never 2xx, never relayed
// to the upstream (a stub that would answer anything with 200), and the
// gateway survives each one. Afterwards it answers OPTIONS, from
// 127.0.0.3 and from the sender too unless the corpus got it blocked.
//
// Messages go one at a time (UDP and TCP together), so that a message that
// kills the gateway is named; the test then starts a new gateway and goes
// on with the rest. The budget of a source is raised so that the corpus
// (some messages of 50 KiB) is judged by the SIP layers, not dropped by the
// rate limit; the test checks that no packet of the sender was
// rate-limited.
func TestSecurityMalformedCorpus(t *testing.T) {
	start := time.Now()
	stub := startStub(t, "127.0.0.5", func(string, string) int { return 200 })
	upstreams := fmt.Sprintf(`  upstreams:
    - {name: pbx, address: "%s", transport: udp, zone: trunk}
  routes:
    - {default: true, upstreams: [pbx]}
  registrar: pbx
`, stub.addr)
	const policies = `policies:
  ratelimit:
    budget: {packets: 500, packet_burst: 1000, bytes: 4194304, byte_burst: 8388608}
`
	g := startSecGW(t, upstreams, policies)
	cases := malformedCorpus(t)
	// Long enough for any answer the gateway makes at once (they come
	// within milliseconds); auth's failure delay does not apply to the
	// challenges a corpus can get.
	const wait = 400 * time.Millisecond
	var table strings.Builder
	crashed := 0
	outer := t
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if why, ok := knownGaps[c.name]; ok {
				t.Skip("known gap: " + why)
			}
			relayed := len(stub.requests())
			var r [2]outcome
			var wg sync.WaitGroup
			for i, send := range []func(string, []byte, time.Duration) outcome{sendUDP, sendTCP} {
				wg.Add(1)
				go func() { defer wg.Done(); r[i] = send(g.sip, c.msg, wait) }()
			}
			wg.Wait()
			fmt.Fprintf(&table, "  %-28s udp: %-16s tcp: %s\n", c.name, r[0], r[1])
			for i, o := range r {
				for _, code := range o.codes {
					if !refusal(code) && code >= 200 {
						t.Errorf("over %s: answered %d, want a refusal or nothing (%s)", []string{"UDP", "TCP"}[i], code, o)
					}
				}
			}
			if got := stub.requests()[relayed:]; len(got) != 0 {
				t.Errorf("relayed to the upstream as %q", got)
			}
			select {
			case <-g.Proc.Done():
			case <-time.After(100 * time.Millisecond):
			}
			if g.Proc.Exited() {
				crashed++
				var panicLines []string
				for _, ln := range strings.Split(g.Proc.Log(), "\n") {
					if strings.HasPrefix(ln, "panic:") || strings.Contains(ln, "/protocols/sip/") {
						panicLines = append(panicLines, strings.TrimSpace(ln))
					}
				}
				t.Errorf("killed the gateway (exit %d): %s", g.Proc.ExitCode(), strings.Join(panicLines, " | "))
				fmt.Fprintf(&table, "  %-28s ^ the gateway died\n", "")
				g = startSecGW(outer, upstreams, policies) // the rest of the corpus goes to a new one
			}
		})
	}
	t.Logf("what each message got (%d gateway deaths):\n%s", crashed, table.String())
	if n := len(g.txs(t, journal.TxFilter{Src: "127.0.0.1", Rule: "ratelimit/packets"})) +
		len(g.txs(t, journal.TxFilter{Src: "127.0.0.1", Rule: "ratelimit/bytes"})); n != 0 {
		t.Errorf("%d rate-limit drops of the sender: some messages were never judged", n)
	}
	if g.Proc.Exited() {
		t.Fatalf("the gateway is not running")
	}
	expectOptions(t, g, "127.0.0.3")
	if b, ok := g.block(t, "127.0.0.1"); ok {
		t.Logf("the corpus got its sender blocked: %+v", b)
	} else {
		expectOptions(t, g, "127.0.0.1")
	}
	t.Logf("malformed corpus (%d messages, UDP and TCP) in %v", len(cases), time.Since(start).Round(time.Millisecond))
}

// TestSecurityTrunkNotLimited: a carrier trunk (zone trunk) answers an
// office PBX's 200 calls at 40 calls/s, about 120 packets a second from
// the trunk: more than the untrusted budget (50/s), well within the
// trusted one. The ratelimit README says the zone trunk is trusted by
// default, and the gateway has a listener in zone trunk for it; the trunk
// must be neither rate-limited nor blacklisted, and every call must
// succeed. (TestSecurityFlood lists its trunk in ratelimit.trusted
// instead, and does not depend on this.)
func TestSecurityTrunkNotLimited(t *testing.T) {
	h.RequirePeer(t, "sipp")
	start := time.Now()
	const calls = 200
	uasPort := h.FreeUDPPort(t)
	trunkListener := h.HostPort("127.0.0.1", h.FreeUDPPort(t))
	g := startSecGW(t, fmt.Sprintf("    - {zone: trunk, transport: udp, listen: %q}\n", trunkListener)+
		trunk(h.HostPort("127.0.0.5", uasPort), "udp"), `policies:
  ratelimit:
    trusted: [127.0.0.1]
  auth:
    trusted: [127.0.0.1]
  admission:
    source: {concurrent: 0, rate: 0}
    user: {concurrent: 0, rate: 0}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	uas := h.StartSipp(t, h.SippConfig{ScenarioXML: h.ScenarioUASRingAnswer, IP: "127.0.0.5", Port: uasPort, Calls: calls, Timeout: 15 * time.Second})
	// 5 s of calls; a blocked trunk fails them, bounded by the timeout.
	r := h.RunSipp(t, ctx, h.SippConfig{Scenario: "uac", Remote: g.sip, Service: "4711", Calls: calls, Rate: 40, Limit: 100,
		CallLength: 200 * time.Millisecond, Timeout: 12 * time.Second})
	uas.Stop()
	if r.ExitCode != 0 || r.Stats.SuccessfulCall != calls {
		t.Errorf("the PBX's calls through the trunk: %s", r)
	}
	if b, ok := g.block(t, "127.0.0.5"); ok {
		t.Errorf("the trunk is blacklisted: %+v", b)
	}
	for _, rule := range []string{"ratelimit/packets", "ratelimit/bytes"} {
		if got := g.txs(t, journal.TxFilter{Src: "127.0.0.5", Rule: rule}); len(got) != 0 {
			t.Errorf("the trunk's packets were dropped by %s: %+v", rule, got[0])
		}
	}
	if c := cdrs(t, &gw{Gateway: g.Gateway}, journal.CDRFilter{Limit: 1}); len(c) == 1 && len(c[0].Legs) == 2 {
		t.Logf("trunk leg: zone %s, local %v, remote %v (the trunk listener is %s)", c[0].Legs[1].Zone, c[0].Legs[1].Local, c[0].Legs[1].Remote, trunkListener)
	}
	t.Logf("trunk test in %v", time.Since(start).Round(time.Millisecond))
}
