package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/plugins/sdk"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

var testBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ucgate-host-test")
	if err != nil {
		panic(err)
	}
	testBinary = filepath.Join(dir, "testplugin")
	out, err := exec.Command("go", "build", "-o", testBinary, "github.com/ucgate/ucgate/plugins/examples/testplugin").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build testplugin: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// recJournal records what the host journals.
type recJournal struct {
	mu   sync.Mutex
	txs  []core.Transaction
	cdrs chan *core.CDR
}

func newRecJournal() *recJournal { return &recJournal{cdrs: make(chan *core.CDR, 16)} }

func (j *recJournal) Transaction(t *core.Transaction) {
	j.mu.Lock()
	j.txs = append(j.txs, *t)
	j.mu.Unlock()
}

func (j *recJournal) CDR(_ context.Context, c *core.CDR) error {
	j.cdrs <- c
	return nil
}

func (j *recJournal) rules() map[string]int {
	j.mu.Lock()
	defer j.mu.Unlock()
	m := map[string]int{}
	for _, t := range j.txs {
		m[t.Rule]++
	}
	return m
}

func sum(t testing.TB, path string) string {
	b, err := fileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

type testEnv struct {
	h       *Host
	journal *recJournal
	deps    core.Deps
}

func start(t *testing.T, cfgs ...Config) (*testEnv, error) {
	t.Helper()
	j := newRecJournal()
	deps := core.Deps{Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Journal: j, Sessions: core.NewSessions(), Metrics: prometheus.NewRegistry(), Bridge: core.NewBridge()}
	h, err := New(cfgs, deps)
	if err != nil {
		return nil, err
	}
	if err := h.Start(context.Background()); err != nil {
		return nil, err
	}
	t.Cleanup(func() { h.Close() })
	return &testEnv{h: h, journal: j, deps: deps}, nil
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func stageConfig(t *testing.T, name string, args ...string) Config {
	return Config{Name: name, Kind: sdk.KindStage, Binary: testBinary, SHA256: sum(t, testBinary),
		Args: append([]string{"-kind", "stage"}, args...)}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestChecksumRefused(t *testing.T) {
	c := stageConfig(t, "bad")
	c.SHA256 = strings.Repeat("ab", 32)
	_, err := start(t, c)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if !strings.Contains(err.Error(), "plugin bad") || !strings.Contains(err.Error(), "the configuration says "+c.SHA256) {
		t.Fatalf("error does not say what was refused: %v", err)
	}
}

func TestVersionNegotiation(t *testing.T) {
	t.Run("older contract runs", func(t *testing.T) {
		env, err := start(t, stageConfig(t, "old", "-versions", "1"))
		if err != nil {
			t.Fatal(err)
		}
		st := env.h.Status()[0]
		if st.State != StateRunning || st.Contract != 1 || st.Software != "" {
			t.Fatalf("status = %+v, want running on contract 1 without a description", st)
		}
	})
	t.Run("current contract describes itself", func(t *testing.T) {
		env, err := start(t, stageConfig(t, "cur"))
		if err != nil {
			t.Fatal(err)
		}
		st := env.h.Status()[0]
		if st.Contract != sdk.Latest || st.Software != "ucgate-testplugin" || st.Version != "1.0.0" {
			t.Fatalf("status = %+v", st)
		}
	})
	t.Run("newer contract refused", func(t *testing.T) {
		_, err := start(t, stageConfig(t, "new", "-versions", "99"))
		if !errors.Is(err, ErrVersion) {
			t.Fatalf("err = %v, want ErrVersion", err)
		}
		if !strings.Contains(err.Error(), "this gateway speaks contract versions 1, 2") || !strings.Contains(err.Error(), "99") {
			t.Fatalf("message does not list the versions: %v", err)
		}
	})
}

func TestStageVerdicts(t *testing.T) {
	env, err := start(t, stageConfig(t, "rep", "-mode", "refuse-mallory"))
	if err != nil {
		t.Fatal(err)
	}
	s := env.h.Stage()
	for _, tc := range []struct {
		user string
		kind core.Kind
		want core.Action
		rule string
	}{
		{"alice", core.KindSessionOffer, core.Allow, ""},
		{"mallory", core.KindSessionOffer, core.Refuse, "plugins/rep/reputation"},
		{"mallory", core.KindProbe, core.Allow, ""}, // not a kind the plugin judges
	} {
		v, err := s.Decide(context.Background(), &core.Event{Kind: tc.kind, From: core.Identity{User: tc.user, Domain: "example.com"}})
		if err != nil || v.Action != tc.want || v.Rule != tc.rule {
			t.Errorf("%s %v: verdict %+v err %v, want %v %q", tc.user, tc.kind, v, err, tc.want, tc.rule)
		}
	}
}

func TestStageHangFailureMode(t *testing.T) {
	for _, mode := range []string{FailClosed, FailOpen} {
		t.Run(mode, func(t *testing.T) {
			c := stageConfig(t, "slow", "-mode", "hang")
			c.Deadline, c.FailureMode = 50*time.Millisecond, mode
			c.Limits.HangAfter = 2
			env, err := start(t, c)
			if err != nil {
				t.Fatal(err)
			}
			ev := &core.Event{Kind: core.KindSessionOffer, From: core.Identity{User: "alice", Domain: "example.com"}}
			for i := 0; i < 2; i++ {
				v, _ := env.h.Stage().Decide(context.Background(), ev)
				if mode == FailClosed && (v.Action != core.Refuse || v.Reason != core.ReasonUnavailable || v.Rule != "plugins/slow/deadline") {
					t.Fatalf("fail closed: verdict %+v", v)
				}
				if mode == FailOpen && v.Action != core.Allow {
					t.Fatalf("fail open: verdict %+v", v)
				}
			}
			// Two deadlines in a row are a hang: the plugin is restarted.
			waitFor(t, "restart after hang", 15*time.Second, func() bool {
				st := env.h.Status()[0]
				return st.Restarts >= 1 && st.State == StateRunning
			})
		})
	}
}

func protocolConfig(t *testing.T, name string, args ...string) Config {
	return Config{Name: name, Kind: sdk.KindProtocol, Binary: testBinary, SHA256: sum(t, testBinary), Domain: "test.example.com",
		Args: append([]string{"-kind", "protocol"}, args...)}
}

func TestCrashEndsSessionsAndRestarts(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pid")
	env, err := start(t, protocolConfig(t, "proto", "-mode", "offer", "-pidfile", pidfile))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the plugin's session", 10*time.Second, func() bool { return env.deps.Sessions.Len() == 1 })
	var sess *core.Session
	env.deps.Sessions.Range(func(s *core.Session) bool { sess = s; return false })
	waitFor(t, "answer", 5*time.Second, func() bool { return sess.State() == core.StateAnswered })
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case cdr := <-env.journal.cdrs:
		if cdr.Session != sess.ID || cdr.EndReason != "plugin_crashed" || cdr.EndedBy != core.RoleGateway || cdr.Status != 200 {
			t.Fatalf("cdr = %+v", cdr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no CDR for the interrupted session")
	}
	// Restarted, and the new process offers its session again.
	waitFor(t, "restart", 15*time.Second, func() bool {
		st := env.h.Status()[0]
		return st.Restarts >= 1 && st.State == StateRunning && st.Sessions == 1
	})
}

func TestHostilePlugin(t *testing.T) {
	c := protocolConfig(t, "evil", "-mode", "hostile")
	c.Limits.EventsPerSecond, c.Limits.Burst = 50, 50
	env, err := start(t, c)
	if err != nil {
		t.Fatal(err)
	}
	flooded := func() int {
		var m dto.Metric
		if err := env.h.m.refused.WithLabelValues("evil", "plugin/flood").Write(&m); err != nil {
			t.Fatal(err)
		}
		return int(m.GetCounter().GetValue())
	}
	waitFor(t, "every refusal", 20*time.Second, func() bool {
		r := env.journal.rules()
		return r["plugin/not_owner"] == 1 && r["plugin/foreign_sender"] == 1 && r["plugin/malformed"] >= 1 && r["plugin/media_address"] == 1 &&
			r["plugin/flood"] >= 1 && flooded() > 100 && r["plugin/too_large"] == 1
	})
	// The oversized message broke the stream: the plugin is restarted, the
	// host goes on.
	waitFor(t, "restart", 15*time.Second, func() bool { return env.h.Status()[0].Restarts >= 1 })
	// The flood is journaled once, then as one summary of the rest (at the
	// end of the interval; Close ends it), not once per event.
	env.h.Close()
	var records, summarised int
	env.journal.mu.Lock()
	for _, tx := range env.journal.txs {
		if tx.Rule != "plugin/flood" {
			continue
		}
		records++
		if n, ok := strings.CutPrefix(tx.Detail, "plugin evil: "); ok {
			k, _ := strconv.Atoi(strings.TrimSuffix(n, " more in 10s"))
			summarised += k
		}
	}
	env.journal.mu.Unlock()
	if records > 4 || 1+summarised != flooded() {
		t.Fatalf("%d plugin/flood records summarising %d refusals after the first, want a few for all %d", records, summarised, flooded())
	}
}

func TestBridgeDeliveryToPlugin(t *testing.T) {
	env, err := start(t, protocolConfig(t, "chat"))
	if err != nil {
		t.Fatal(err)
	}
	d, ok := env.deps.Bridge.For("TEST.example.com")
	if !ok {
		t.Fatal("plugin does not serve its domain on the bridge")
	}
	from := core.Identity{User: "alice", Domain: "sip.example.com"}
	if err := d.DeliverMessage(context.Background(), &core.Message{From: from, To: core.Identity{User: "carol", Domain: "test.example.com"}, Body: "hi"}); err != nil {
		t.Fatalf("delivery to carol: %v", err)
	}
	err = d.DeliverMessage(context.Background(), &core.Message{From: from, To: core.Identity{User: "nobody", Domain: "test.example.com"}, Body: "hi"})
	var de *core.DeliveryError
	if !errors.As(err, &de) || de.Reason != core.ReasonNotFound {
		t.Fatalf("delivery to nobody: %v, want not_found", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Name: "irc", Kind: "protocol", Binary: "/x", SHA256: hex.EncodeToString(make([]byte, 32)), Domain: "irc.example.com"}
	if err := ValidateAll([]Config{good}); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.Kind, bad.SHA256, bad.FailureMode = "video", "zz", "sometimes"
	bad.Limits.MediaNetworks = []string{"127.0.0.1"}
	err := ValidateAll([]Config{bad, good})
	for _, want := range []string{"[0].kind", "[0].sha256", "[0].failure_mode", "[0].limits.media_networks[0]", "[1].name: \"irc\" is used twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	_ = sha256.New
}

func TestMediaPluginStreamsAndCrash(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pid")
	env, err := start(t, Config{Name: "xcode", Kind: sdk.KindMedia, Binary: testBinary, SHA256: sum(t, testBinary),
		Args: []string{"-kind", "media", "-pidfile", pidfile}})
	if err != nil {
		t.Fatal(err)
	}
	lost, other := make(chan string, 1), make(chan string, 1)
	env.h.OnMediaLost(func(id core.SessionID, reason string) { lost <- string(id) + " " + reason })
	// A second user of media plugins is told too (each ignores the
	// sessions it does not know).
	env.h.OnMediaLost(func(id core.SessionID, reason string) { other <- string(id) + " " + reason })
	got := make(chan []byte, 1)
	mc, err := env.h.OpenMedia(context.Background(), "xcode", "s1", &pb.MediaOpen{Session: "s1", In: &pb.Codec{Name: "VP8"}, Out: &pb.Codec{Name: "H264"}},
		func(p *pb.Packet) { got <- p.GetData() })
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.Send(&pb.Packet{Data: []byte{0x80, 96, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if len(b) != 4 {
			t.Fatalf("packet %x", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no packet back from the media plugin")
	}
	b, _ := os.ReadFile(pidfile)
	pid, _ := strconv.Atoi(string(b))
	syscall.Kill(pid, syscall.SIGKILL)
	select {
	case l := <-lost:
		if l != "s1 plugin_crashed" {
			t.Fatalf("lost %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the media engine was not told")
	}
	select {
	case l := <-other:
		if l != "s1 plugin_crashed" {
			t.Fatalf("second callback: lost %q", l)
		}
	case <-time.After(time.Second):
		t.Fatal("the second OnMediaLost callback was not called")
	}
	if _, err := env.h.OpenMedia(context.Background(), "nope", "s2", &pb.MediaOpen{}, func(*pb.Packet) {}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown plugin: %v", err)
	}
}

// TestFrozenPluginIsHung: a protocol plugin stopped with SIGSTOP answers
// no health check; after three misses it is killed and restarted, its
// session ended with a CDR that says it hung.
func TestFrozenPluginIsHung(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pid")
	c := protocolConfig(t, "frozen", "-mode", "offer", "-pidfile", pidfile)
	c.Limits.HealthInterval = 100 * time.Millisecond
	env, err := start(t, c)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the plugin's session", 10*time.Second, func() bool { return env.h.Status()[0].Sessions == 1 })
	b, _ := os.ReadFile(pidfile)
	pid, _ := strconv.Atoi(string(b))
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	select {
	case cdr := <-env.journal.cdrs:
		if cdr.EndReason != "plugin_hung" {
			t.Fatalf("cdr %+v", cdr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no CDR for the frozen plugin's session")
	}
	waitFor(t, "restart", 15*time.Second, func() bool {
		st := env.h.Status()[0]
		return st.Restarts >= 1 && st.State == StateRunning
	})
}
