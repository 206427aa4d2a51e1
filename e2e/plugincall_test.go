package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/journal"
	h "github.com/ucgate/ucgate/e2e/harness"
)

// TestPluginCallToSIP: a protocol plugin (the Go test plugin, mode call)
// calls alice@sip.example.com, a SIP user reached along the routes (sipp
// as a UAS echoing RTP). The call reaches sipp as an INVITE whose media is
// anchored in the gateway; the plugin's RTP goes through the relay to
// sipp and back; the plugin ends the call and sipp gets its BYE. A second
// call is interrupted by killing the plugin with SIGKILL: sipp gets its
// BYE, the CDRs say plugin_crashed, the plugin is restarted (and places no
// call again) and the gateway keeps answering SIP.
func TestPluginCallToSIP(t *testing.T) {
	h.RequirePeer(t, "sipp")
	bin := testPlugin(t)
	dir := t.TempDir()
	pidfile, state, report := filepath.Join(dir, "pid"), filepath.Join(dir, "state"), filepath.Join(dir, "report")
	alice := h.StartSipp(t, h.SippConfig{Name: "sipp-alice", Scenario: "uas", RTPEcho: true, Calls: 2, Timeout: 90 * time.Second})
	gw, udp, admin := pluginGateway(t, fmt.Sprintf(`  - name: vendor
    kind: protocol
    binary: %s
    sha256: %s
    domain: vendor.example.com
    args: [-kind, protocol, -mode, call, -call-to, alice@sip.example.com, -hold, "3s,0", -state, %s, -report, %s, -pidfile, %s]
`, bin, sha256File(t, bin), state, report, pidfile), fmt.Sprintf(`  upstreams:
    - {name: alice, address: "%s", transport: udp, zone: trunk}
  routes:
    - {default: true, upstreams: [alice]}
  bridge:
    domain: sip.example.com
%s`, alice.Addr(), mediaSection("")))
	db := filepath.Join(gw.DataDir, "journal.db")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The first call: media both ways through the relay, ended by the plugin.
	var line string
	pluginWait(t, "the first call's report", 30*time.Second, func() bool {
		b, _ := os.ReadFile(report)
		line, _, _ = strings.Cut(string(b), "\n")
		return line != ""
	})
	t.Logf("plugin: %s", line)
	m := regexp.MustCompile(`^call 1 session (\S+) sent (\d+) received (\d+) end plugin_hangup$`).FindStringSubmatch(line)
	if m == nil {
		logTail(t, gw.Proc.LogPath())
		txs, _ := journal.QueryTransactions(ctx, filepath.Join(gw.DataDir, "journal.db"), journal.TxFilter{Limit: 20})
		for _, tx := range txs {
			t.Logf("journal: %+v", tx)
		}
		t.Fatalf("first call: %q", line)
	}
	sent, _ := strconv.Atoi(m[2])
	received, _ := strconv.Atoi(m[3])
	if sent < 100 || received < sent/2 {
		t.Fatalf("first call: sent %d, received %d back through sipp's echo", sent, received)
	}
	var cdrs []core.CDR
	pluginWait(t, "the first call's SIP CDR", 10*time.Second, func() bool {
		cdrs, _ = journal.QueryCDRs(ctx, db, journal.CDRFilter{EndReason: "normal", Limit: 10})
		for _, c := range cdrs {
			if len(c.Legs) == 2 && c.Legs[1].Protocol == "sip" {
				cdrs = []core.CDR{c}
				return true
			}
		}
		return false
	})
	c := cdrs[0]
	if c.From != "bob@vendor.example.com" || c.To != "alice@sip.example.com" || c.EndedBy != core.RoleCaller || c.Answer.IsZero() ||
		c.Legs[0].Protocol != "vendor" || c.Legs[0].CallID != m[1] {
		t.Fatalf("first call's CDR: %+v", c)
	}
	for _, role := range []string{core.RoleCaller, core.RoleCallee} {
		if ms, ok := mediaFrom(c, role); !ok || ms.Packets < 50 {
			t.Fatalf("first call: media from the %s through the relay: %+v", role, c.Media)
		}
	}

	// The second call: the plugin is killed while media flows.
	if _, err := gw.Proc.WaitLog(ctx, regexp.MustCompile(`call 2 session \S+ sent [1-9]\d* received [1-9]`)); err != nil {
		t.Fatalf("second call's media: %v", err)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// sipp's two calls both end with the BYE it waits for.
	if r := alice.Wait(ctx); !r.OK() || r.Stats.SuccessfulCall != 2 {
		t.Fatalf("sipp as alice: %s", r)
	}
	pluginWait(t, "the CDRs of the interrupted call", 15*time.Second, func() bool {
		cdrs, _ = journal.QueryCDRs(ctx, db, journal.CDRFilter{EndReason: "plugin_crashed", Limit: 10})
		return len(cdrs) == 2
	})
	sipLeg := false
	for _, c := range cdrs {
		if c.From != "bob@vendor.example.com" || c.Answer.IsZero() {
			t.Fatalf("interrupted call's CDR: %+v", c)
		}
		if len(c.Legs) == 2 && c.Legs[1].Protocol == "sip" {
			sipLeg = true
		}
	}
	if !sipLeg {
		t.Fatalf("no CDR of the SIP leg says plugin_crashed: %+v", cdrs)
	}
	if r := h.RunSipp(t, ctx, h.SippConfig{Name: "sipp-options", ScenarioXML: sippOptions, Remote: udp, Calls: 10, Rate: 20,
		Timeout: 20 * time.Second}); !r.OK() || r.Stats.SuccessfulCall != 10 {
		t.Fatalf("sipp OPTIONS after the kill: %s", r)
	}
	pluginWait(t, "the restart", 20*time.Second, func() bool {
		ps := plugins(t, admin)
		return ps[0].Restarts >= 1 && ps[0].State == "running"
	})
}

// sippCallsPlugin calls bob@vendor.example.com (a protocol plugin's user)
// from alice@sip.example.com, plays PCMA from a pcap for 3 s and hangs up.
const sippCallsPlugin = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAC: call a plugin's user, play a pcap, hang up">
  <send retrans="500">
    <![CDATA[
      INVITE sip:bob@vendor.example.com SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: Alice <sip:alice@sip.example.com>;tag=[pid]SIPpTag00[call_number]
      To: <sip:bob@vendor.example.com>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:alice@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000

    ]]>
  </send>
  <recv response="100" optional="true" />
  <recv response="180" optional="true" />
  <recv response="200" rrs="true" />
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: Alice <sip:alice@sip.example.com>;tag=[pid]SIPpTag00[call_number]
      To: <sip:bob@vendor.example.com>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <nop>
    <action>
      <exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap" />
    </action>
  </nop>
  <pause milliseconds="3000" />
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: Alice <sip:alice@sip.example.com>;tag=[pid]SIPpTag00[call_number]
      To: <sip:bob@vendor.example.com>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
</scenario>
`

// sippCallsPluginWaitsBye calls bob@vendor.example.com, plays PCMA and
// waits (up to 20 s) for the gateway's BYE, which it answers.
var sippCallsPluginWaitsBye = sippCallsPlugin[:strings.Index(sippCallsPlugin, `  <pause milliseconds="3000" />`)] + `  <recv request="BYE" timeout="20000" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
`

// TestSIPCallToPlugin: a SIP user agent (sipp playing a pcap of PCMA)
// calls bob@vendor.example.com, a user of a protocol plugin (the Go test
// plugin, mode answer, which echoes the RTP it receives). The INVITE
// reaches the plugin as a SESSION_OFFER, its answer comes back as the
// 200's SDP (the gateway's relay), the RTP flows through the relay both
// ways, and sipp's BYE reaches the plugin as a SESSION_END. A second call
// is cut by killing the plugin with SIGKILL: sipp gets the gateway's BYE
// and the CDR of its call says plugin_crashed.
func TestSIPCallToPlugin(t *testing.T) {
	h.RequirePeer(t, "sipp")
	if _, err := os.Stat("/usr/share/sip-tester/g711a.pcap"); err != nil {
		t.Fatalf("sipp's pcap: %v", err)
	}
	bin := testPlugin(t)
	report, pidfile := filepath.Join(t.TempDir(), "report"), filepath.Join(t.TempDir(), "pid")
	gw, udp, _ := pluginGateway(t, fmt.Sprintf(`  - name: vendor
    kind: protocol
    binary: %s
    sha256: %s
    domain: vendor.example.com
    args: [-kind, protocol, -mode, answer, -report, %s, -pidfile, %s]
`, bin, sha256File(t, bin), report, pidfile), fmt.Sprintf(`  bridge:
    domain: sip.example.com
%s`, mediaSection("")))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if r := h.RunSipp(t, ctx, h.SippConfig{Name: "sipp-alice", ScenarioXML: sippCallsPlugin, Remote: udp, Calls: 1,
		Timeout: 30 * time.Second}); !r.OK() {
		t.Fatalf("sipp's call to the plugin: %s", r)
	}
	var line string
	pluginWait(t, "the plugin's report", 10*time.Second, func() bool {
		b, _ := os.ReadFile(report)
		line = strings.TrimSpace(string(b))
		return line != ""
	})
	t.Logf("plugin: %s", line)
	m := regexp.MustCompile(`^answered session (\S+) received (\d+) echoed (\d+) end normal$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("plugin: %q", line)
	}
	if n, _ := strconv.Atoi(m[2]); n < 50 {
		t.Fatalf("the plugin received %d RTP packets", n)
	}
	db := filepath.Join(gw.DataDir, "journal.db")
	var cdrs []core.CDR
	pluginWait(t, "the CDRs", 10*time.Second, func() bool {
		cdrs, _ = journal.QueryCDRs(ctx, db, journal.CDRFilter{EndReason: "normal", Limit: 10})
		return len(cdrs) == 2
	})
	var sipCDR *core.CDR
	for i, c := range cdrs {
		if c.From != "Alice <alice@sip.example.com>" && c.From != "alice@sip.example.com" || c.Answer.IsZero() || c.EndedBy != core.RoleCaller {
			t.Fatalf("cdr: %+v", c)
		}
		if len(c.Legs) == 2 && c.Legs[0].Protocol == "sip" {
			sipCDR = &cdrs[i]
		}
	}
	if sipCDR == nil || sipCDR.Legs[1].Protocol != "vendor" {
		t.Fatalf("no SIP CDR of the call to the plugin: %+v", cdrs)
	}
	for _, role := range []string{core.RoleCaller, core.RoleCallee} {
		if ms, ok := mediaFrom(*sipCDR, role); !ok || ms.Packets < 50 {
			t.Fatalf("media from the %s through the relay: %+v", role, sipCDR.Media)
		}
	}

	// The second call: the plugin is killed while it holds it.
	second := h.StartSipp(t, h.SippConfig{Name: "sipp-alice-2", ScenarioXML: sippCallsPluginWaitsBye, Remote: udp, Calls: 1,
		Timeout: 40 * time.Second})
	answeredRE := regexp.MustCompile(`answered session \S+ media from`)
	pluginWait(t, "the second call answered", 15*time.Second, func() bool {
		b, _ := os.ReadFile(gw.Proc.LogPath())
		return len(answeredRE.FindAll(b, -1)) >= 2
	})
	time.Sleep(time.Second) // media flows
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if r := second.Wait(ctx); !r.OK() {
		t.Fatalf("sipp waiting for the BYE after the plugin's crash: %s", r)
	}
	pluginWait(t, "the CDRs of the interrupted call", 10*time.Second, func() bool {
		cdrs, _ = journal.QueryCDRs(ctx, db, journal.CDRFilter{EndReason: "plugin_crashed", Limit: 10})
		return len(cdrs) == 2
	})
	for _, c := range cdrs {
		if c.Answer.IsZero() || !strings.Contains(c.From, "alice@sip.example.com") {
			t.Fatalf("interrupted call's CDR: %+v", c)
		}
	}
}

// logTail logs the end of a log file (a failed test's gateway log).
func logTail(t *testing.T, path string) {
	t.Helper()
	b, _ := os.ReadFile(path)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	t.Logf("%s:\n%s", path, b)
}
