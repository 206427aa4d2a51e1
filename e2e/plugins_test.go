package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/journal"
	h "github.com/ucgate/ucgate/e2e/harness"
)

// The plugin system end to end: the gateway runs real plugin binaries
// (the Go test plugin of plugins/examples/testplugin, the Python IRC
// plugin of plugins/irc) and real peers talk to it (sipp, baresip, ii).

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// testPlugin builds plugins/examples/testplugin into the test's directory.
func testPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testplugin")
	cmd := exec.Command("go", "build", "-o", bin, "./plugins/examples/testplugin")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testplugin: %v\n%s", err, out)
	}
	return bin
}

type pluginStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Contract int    `json:"contract_version"`
	Software string `json:"software"`
	Restarts int    `json:"restarts"`
	Sessions int    `json:"sessions"`
}

// plugins asks the admin API what `ucgate plugins` shows.
func plugins(t *testing.T, admin string) []pluginStatus {
	t.Helper()
	res, err := http.Get("http://" + admin + "/plugins")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out []pluginStatus
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func pluginWait(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-time.After(50 * time.Millisecond)
	}
}

func pluginGateway(t *testing.T, pluginsYAML, sipExtra string) (gw *h.Gateway, udp, admin string) {
	t.Helper()
	udp = h.HostPort("127.0.0.1", h.FreeUDPPort(t))
	admin = h.HostPort("127.0.0.1", h.FreeTCPPort(t))
	yaml := fmt.Sprintf(`admin:
  listen: "%s"
sip:
  listeners:
    - {zone: internet, transport: udp, listen: "%s"}
%s
%s
plugins:
%s`, admin, udp, sipExtra, trustLoopback, pluginsYAML)
	gw = h.StartGateway(t, h.GatewayConfig{YAML: yaml, UDP: []string{udp}, TCP: []string{admin}})
	return gw, udp, admin
}

// sippOptions sends one OPTIONS per call and wants 200.
const sippOptions = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="OPTIONS">
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:probe@[local_ip]:[local_port]>;tag=[pid]opt[call_number]
      To: <sip:[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Contact: <sip:probe@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
</scenario>
`

// TestPluginKilledMidSession: a protocol plugin holding an answered
// session is killed with SIGKILL; the gateway keeps answering SIP, ends
// the session with a CDR that says why, and restarts the plugin (which
// offers its session again). `ucgate plugins` shows it all.
func TestPluginKilledMidSession(t *testing.T) {
	h.RequirePeer(t, "sipp")
	bin := testPlugin(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	gw, udp, admin := pluginGateway(t, fmt.Sprintf(`  - name: vendor
    kind: protocol
    binary: %s
    sha256: %s
    domain: vendor.example.com
    args: [-kind, protocol, -mode, offer, -pidfile, %s]
`, bin, sha256File(t, bin), pidfile), "")
	pluginWait(t, "the plugin's session", 15*time.Second, func() bool {
		ps := plugins(t, admin)
		return len(ps) == 1 && ps[0].State == "running" && ps[0].Sessions == 1
	})
	if ps := plugins(t, admin); ps[0].Contract != 2 || ps[0].Software != "ucgate-testplugin" {
		t.Fatalf("plugins: %+v", ps)
	}
	out, err := exec.Command(h.GatewayBinary(t), "plugins", "-admin", admin).CombinedOutput()
	if err != nil || !regexp.MustCompile(`vendor\s+protocol\s+v2\s+ucgate-testplugin 1.0.0\s+running`).Match(out) {
		t.Fatalf("ucgate plugins: %v\n%s", err, out)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// SIP goes on while the plugin is down and restarting: sipp's OPTIONS
	// are all answered 200.
	if r := h.RunSipp(t, ctx, h.SippConfig{Name: "sipp-options", ScenarioXML: sippOptions, Remote: udp, Calls: 10, Rate: 20,
		Timeout: 20 * time.Second}); !r.OK() || r.Stats.SuccessfulCall != 10 {
		t.Fatalf("sipp OPTIONS after the kill: %s", r)
	}
	pluginWait(t, "the restart", 20*time.Second, func() bool {
		ps := plugins(t, admin)
		return ps[0].Restarts >= 1 && ps[0].State == "running" && ps[0].Sessions == 1
	})
	var cdrs []core.CDR
	pluginWait(t, "the CDR", 10*time.Second, func() bool {
		cdrs, _ = journal.QueryCDRs(ctx, filepath.Join(gw.DataDir, "journal.db"), journal.CDRFilter{EndReason: "plugin_crashed", Limit: 10})
		return len(cdrs) == 1
	})
	c := cdrs[0]
	if c.EndedBy != core.RoleGateway || c.From != "bob@vendor.example.com" || c.Answer.IsZero() || c.Legs[0].Protocol != "vendor" {
		t.Fatalf("cdr %+v", c)
	}
}

// TestStagePluginHangs: a stage plugin that never answers hits its
// deadline on every call; fail closed (the default) refuses with 503,
// fail open lets the request through; the journal names the rule.
func TestStagePluginHangs(t *testing.T) {
	bin := testPlugin(t)
	for _, tc := range []struct {
		mode, want string
	}{{"closed", "503"}, {"open", "200"}} {
		t.Run(tc.mode, func(t *testing.T) {
			gw, udp, _ := pluginGateway(t, fmt.Sprintf(`  - name: fraud
    kind: stage
    binary: %s
    sha256: %s
    args: [-kind, stage, -mode, hang]
    deadline: 100ms
    failure_mode: %s
    kinds: [probe]
`, bin, sha256File(t, bin), tc.mode), "")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			st, err := h.SIPOptions(ctx, udp)
			if err != nil || !strings.Contains(st, tc.want) {
				t.Fatalf("OPTIONS: %q %v, want %s", st, err, tc.want)
			}
			if el := time.Since(start); el < 100*time.Millisecond {
				t.Fatalf("answered in %v, before the plugin's deadline", el)
			}
			if tc.mode == "closed" {
				pluginWait(t, "the journal", 10*time.Second, func() bool {
					txs, _ := journal.QueryTransactions(ctx, filepath.Join(gw.DataDir, "journal.db"), journal.TxFilter{Rule: "plugins/fraud/deadline", Limit: 10})
					return len(txs) >= 1
				})
			}
		})
	}
}

// sippInviteRefused sends an INVITE from [service] and wants 403.
const sippInviteRefused = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="INVITE refused">
  <send retrans="500">
    <![CDATA[
      INVITE sip:bob@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@example.com>;tag=[pid]inv[call_number]
      To: <sip:bob@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Max-Forwards: 70
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv response="403" />
  <send>
    <![CDATA[
      ACK sip:bob@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
`

// TestStagePluginRefusesCall: a stage plugin (a reputation check) refuses
// a call from a caller it knows, in its place in the stage order; the
// journal names the plugin's rule.
func TestStagePluginRefusesCall(t *testing.T) {
	h.RequirePeer(t, "sipp")
	bin := testPlugin(t)
	gw, udp, _ := pluginGateway(t, fmt.Sprintf(`  - name: rep
    kind: stage
    binary: %s
    sha256: %s
    args: [-kind, stage, -mode, refuse-mallory]
`, bin, sha256File(t, bin)), "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r := h.RunSipp(t, ctx, h.SippConfig{Name: "sipp-mallory", ScenarioXML: sippInviteRefused, Remote: udp, Service: "mallory",
		Calls: 1, Timeout: 20 * time.Second}); !r.OK() {
		t.Fatalf("mallory's INVITE was not refused with 403: %s", r)
	}
	pluginWait(t, "the journal", 10*time.Second, func() bool {
		txs, _ := journal.QueryTransactions(ctx, filepath.Join(gw.DataDir, "journal.db"), journal.TxFilter{Rule: "plugins/rep/reputation", Limit: 10})
		return len(txs) == 1 && txs[0].Method == "INVITE" && txs[0].Status == 403 && strings.HasPrefix(txs[0].From, "mallory@")
	})
}

// TestPluginIRCAndSIPMessages: a real IRC client (ii) on the Python IRC
// plugin and a real SIP user agent (baresip, registered through the
// gateway) exchange messages both ways through ucgate.
func TestPluginIRCAndSIPMessages(t *testing.T) {
	h.RequirePeer(t, "sipp")
	h.RequirePeer(t, "baresip")
	ii := h.RequirePeer(t, "ii")
	ircBin := filepath.Join(repoRoot(t), "plugins", "irc", "ucgate-irc")
	ircPort := h.FreeTCPPort(t)
	regPort := h.FreeUDPPort(t)
	rep := testPlugin(t)
	h.StartRegistrar(t, h.SippConfig{Port: regPort, Timeout: 120 * time.Second}, 8)
	gw, udp, admin := pluginGateway(t, fmt.Sprintf(`  - name: irc
    kind: protocol
    binary: %s
    sha256: %s
    domain: irc.example.com
    args: [--listen, "127.0.0.1:%d", --peer-domain, sip.example.com]
  - name: rep
    kind: stage
    binary: %s
    sha256: %s
    args: [-kind, stage, -mode, refuse-mallory]
    kinds: [message]
`, ircBin, sha256File(t, ircBin), ircPort, rep, sha256File(t, rep)), fmt.Sprintf(`  upstreams:
    - {name: pbx, address: "%s", transport: udp, zone: trunk}
  routes:
    - {default: true, upstreams: [pbx]}
  registrar: pbx
  bridge:
    domain: sip.example.com`, h.HostPort("127.0.0.1", regPort)))
	if ps := plugins(t, admin); len(ps) != 2 || ps[0].State != "running" || ps[0].Software != "ucgate-irc" {
		t.Fatalf("plugins: %+v", ps)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	b := h.StartBaresip(t, h.BaresipConfig{
		Name:           "baresip-alice",
		Account:        fmt.Sprintf(`"Alice" <sip:alice@sip.example.com>;outbound="sip:%s";regint=60;pubint=0;answermode=manual`, udp),
		Contacts:       "\"Bob\" <sip:bob@irc.example.com>\n",
		Args:           []string{"-s"}, // the SIP trace shows the MESSAGEs baresip receives
		WaitRegistered: true,
		Timeout:        60 * time.Second,
	})

	dir := t.TempDir()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		txs, _ := journal.QueryTransactions(context.Background(), filepath.Join(gw.DataDir, "journal.db"), journal.TxFilter{Limit: 200})
		for _, tx := range txs {
			t.Logf("journal: %s %s %s -> %s %d %s %s %s %s", tx.Protocol, tx.Method, tx.From, tx.To, tx.Status, tx.Action, tx.Rule, tx.Reason, tx.Detail)
		}
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Name() == "out" {
				b, _ := os.ReadFile(p)
				t.Logf("ii %s:\n%s", p, b)
			}
			return nil
		})
	})
	h.StartProc(t, h.ProcConfig{Name: "ii-bob", Path: ii, Args: []string{"-s", "127.0.0.1", "-p", strconv.Itoa(ircPort), "-n", "bob", "-i", dir}})
	in := filepath.Join(dir, "127.0.0.1", "in")
	pluginWait(t, "ii's FIFO", 10*time.Second, func() bool { _, err := os.Stat(in); return err == nil })
	pluginWait(t, "ii registered", 10*time.Second, func() bool {
		out, _ := os.ReadFile(filepath.Join(dir, "127.0.0.1", "out"))
		return strings.Contains(string(out), "Welcome to ucgate")
	})
	say := func(line string) {
		f, err := os.OpenFile(in, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(line + "\n"); err != nil {
			t.Fatal(err)
		}
	}

	// IRC to SIP: bob's PRIVMSG to alice becomes a SIP MESSAGE to her phone.
	say("/j alice hello alice, from irc")
	if _, err := b.Proc.WaitLog(ctx, regexp.MustCompile(`hello alice, from irc`)); err != nil {
		t.Fatalf("baresip never got bob's message: %v\n%s", err, b.Proc.Tail(40))
	}

	// SIP to IRC: alice's MESSAGE to bob@irc.example.com reaches ii.
	if r, err := b.Command(ctx, "message", "hello bob, from sip"); err != nil || !r.OK {
		t.Fatalf("baresip message: %+v %v", r, err)
	}
	pluginWait(t, "ii to get alice's message", 20*time.Second, func() bool {
		out, _ := os.ReadFile(filepath.Join(dir, "127.0.0.1", "alice", "out"))
		return strings.Contains(string(out), "<alice> hello bob, from sip")
	})

	// The stages judge the IRC side too: the reputation plugin refuses
	// mallory's message, and ii shows the refusal.
	mdir := t.TempDir()
	h.StartProc(t, h.ProcConfig{Name: "ii-mallory", Path: ii, Args: []string{"-s", "127.0.0.1", "-p", strconv.Itoa(ircPort), "-n", "mallory", "-i", mdir}})
	mallIn := filepath.Join(mdir, "127.0.0.1", "in")
	pluginWait(t, "mallory registered", 10*time.Second, func() bool {
		out, _ := os.ReadFile(filepath.Join(mdir, "127.0.0.1", "out"))
		return strings.Contains(string(out), "Welcome to ucgate")
	})
	f, err := os.OpenFile(mallIn, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("/j alice buy my bitcoins\n")
	f.Close()
	pluginWait(t, "mallory's refusal", 10*time.Second, func() bool {
		out, _ := os.ReadFile(filepath.Join(mdir, "127.0.0.1", "out"))
		return strings.Contains(string(out), "message to alice refused: forbidden")
	})

	// The journal has both messages on the plugin's side (protocol irc),
	// after the stages, and mallory's refusal with the plugin's rule.
	db := filepath.Join(gw.DataDir, "journal.db")
	pluginWait(t, "the journal", 10*time.Second, func() bool {
		txs, _ := journal.QueryTransactions(ctx, db, journal.TxFilter{Limit: 200})
		var in, out bool
		for _, tx := range txs {
			in = in || tx.Protocol == "irc" && tx.Method == "PRIVMSG" && tx.From == "bob@irc.example.com" && tx.To == "alice@sip.example.com" && tx.Action == "allow" && tx.Status == 200
			out = out || tx.Protocol == "irc" && tx.Method == "MESSAGE" && tx.To == "bob@irc.example.com" && tx.Action == "allow"
		}
		return in && out
	})
	pluginWait(t, "mallory's refusal in the journal", 10*time.Second, func() bool {
		txs, _ := journal.QueryTransactions(ctx, db, journal.TxFilter{Rule: "plugins/rep/reputation", Limit: 10})
		return len(txs) == 1 && txs[0].Protocol == "irc" && txs[0].From == "mallory@irc.example.com" && txs[0].Action == "refuse"
	})
	if strings.Contains(b.Proc.Log(), "buy my bitcoins") {
		t.Fatal("mallory's refused message reached baresip")
	}
}
