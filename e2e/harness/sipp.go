package harness

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SippConfig describes one sipp run. Zero values get safe defaults: free
// ports, 127.0.0.1, UDP, a 30 s hard time limit.
type SippConfig struct {
	// Name labels the run in logs; default "sipp-uac" or "sipp-uas".
	Name string
	// Scenario is a built-in scenario (-sn): "uac", "uas", "uac_pcap", ...
	// Ignored when ScenarioXML is set.
	Scenario string
	// ScenarioXML is a custom scenario (-sf), e.g. [ScenarioUASRingAnswer].
	ScenarioXML string
	// Remote is host:port to send to (a UAC); empty for a UAS.
	Remote string
	// Transport is sipp's -t: "u1" (default), "un", "t1" or "tn".
	Transport string
	// IP is -i, the address in SIP headers and the bind address;
	// default 127.0.0.1. Any 127.0.0.0/8 address works on lo; "::1" for IPv6.
	IP string
	// Port is -p, the local SIP port; default: a free port.
	Port int
	// MediaIP is -mi; default IP.
	MediaIP string
	// MediaPort is -mp (sipp also uses MediaPort+2); default: a free pair.
	MediaPort int
	// CtrlPort is -cp (with -ci 127.0.0.1); default: a free UDP port.
	CtrlPort int
	// Service is -s, the user part of the request URI.
	Service string
	// Calls is -m, the number of calls; default 1. Every run is bounded.
	Calls int
	// Rate is -r, calls per RatePeriod (default period 1 s); 0: sipp's default.
	Rate float64
	// RatePeriod is -rp.
	RatePeriod time.Duration
	// Limit is -l, the maximum number of simultaneous calls.
	Limit int
	// CallLength is -d: the length of an unqualified <pause/>.
	CallLength time.Duration
	// Timeout is the hard limit (-timeout N -timeout_error, exit 255);
	// default 30 s.
	Timeout time.Duration
	// RTPEcho is -rtp_echo: echo RTP arriving on MediaPort back.
	RTPEcho bool
	// TraceMsg adds -trace_msg: every message goes to messages.log in Dir.
	TraceMsg bool
	// Args are extra flags, appended last (e.g. "-deadcall_wait", "0").
	Args []string
	// Env is added to sipp's environment.
	Env []string
}

// SippStats is the last row of sipp's -stf statistics file: cumulative
// counters of the whole run.
type SippStats struct {
	OutgoingCall   int
	IncomingCall   int
	SuccessfulCall int
	FailedCall     int
	CurrentCall    int

	FailedCannotSendMessage int
	FailedMaxUDPRetrans     int
	FailedTcpConnect        int
	FailedTcpClosed         int
	FailedUnexpectedMessage int
	FailedCallRejected      int
	FailedCmdNotSent        int
	FailedRegexpDoesntMatch int
	FailedRegexpHdrNotFound int
	FailedTimeoutOnRecv     int
	FailedTimeoutOnSend     int
	OutOfCallMsgs           int
	DeadCallMsgs            int
	Retransmissions         int
	Warnings                int
	FatalErrors             int

	// Raw holds every column of the last row by header name, e.g.
	// Raw["ResponseTime1(C)"].
	Raw map[string]string
}

// SippResult is the outcome of a finished sipp run.
type SippResult struct {
	// ExitCode is sipp's exit code: 0 all calls successful, 1 some failed,
	// 255 hard timeout or fatal error, 254 bind failure; -1 if sipp was
	// stopped by a signal.
	ExitCode int
	// Stats comes from the statistics file; zero if sipp wrote none.
	Stats SippStats
	// StatsErr says why Stats could not be read, if so.
	StatsErr error
	// Dir holds sipp's files: stats.csv, screen.log, errors.log (only if
	// there were errors), messages.log (with TraceMsg).
	Dir string
	// Proc is the finished process; Proc.Log() is sipp's output.
	Proc *Proc
}

// OK reports whether sipp exited 0 with no failed call.
func (r SippResult) OK() bool { return r.ExitCode == 0 && r.Stats.FailedCall == 0 && r.StatsErr == nil }

// String summarizes the result for test messages.
func (r SippResult) String() string {
	s := r.Stats
	msg := fmt.Sprintf("exit %d: outgoing=%d incoming=%d successful=%d failed=%d (unexpected=%d maxudpretrans=%d tcpclosed=%d tcpconnect=%d rejected=%d timeout_recv=%d) dir=%s",
		r.ExitCode, s.OutgoingCall, s.IncomingCall, s.SuccessfulCall, s.FailedCall,
		s.FailedUnexpectedMessage, s.FailedMaxUDPRetrans, s.FailedTcpClosed, s.FailedTcpConnect,
		s.FailedCallRejected, s.FailedTimeoutOnRecv, r.Dir)
	if r.StatsErr != nil {
		msg += " stats: " + r.StatsErr.Error()
	}
	if b, err := os.ReadFile(filepath.Join(r.Dir, "errors.log")); err == nil && len(b) > 0 {
		lines := splitLines(string(b))
		if len(lines) > 10 {
			lines = lines[len(lines)-10:]
		}
		msg += "\nerrors.log tail:\n" + strings.Join(lines, "\n")
	}
	return msg
}

// Sipp is a running sipp process started by [StartSipp].
type Sipp struct {
	// Proc is the sipp process.
	Proc *Proc
	cfg  SippConfig
	dir  string
}

// Addr returns sipp's SIP address, host:port (IPv6 in brackets): the
// address a UAS is reached at.
func (s *Sipp) Addr() string { return HostPort(s.cfg.IP, s.cfg.Port) }

// Config returns the configuration with every default filled in.
func (s *Sipp) Config() SippConfig { return s.cfg }

// Dir returns the directory with sipp's files.
func (s *Sipp) Dir() string { return s.dir }

// Wait waits for sipp to exit and returns the result. If ctx ends first,
// sipp is stopped and the result has ExitCode -1.
func (s *Sipp) Wait(ctx context.Context) SippResult {
	ctx, cancel := contextFor(ctx, s.cfg.Timeout+15*time.Second)
	defer cancel()
	if _, err := s.Proc.Wait(ctx); err != nil {
		s.Proc.Stop()
	}
	r := SippResult{ExitCode: s.Proc.ExitCode(), Dir: s.dir, Proc: s.Proc}
	r.Stats, r.StatsErr = ReadSippStats(filepath.Join(s.dir, "stats.csv"))
	return r
}

// Stop stops sipp (SIGTERM, then SIGKILL).
func (s *Sipp) Stop() { s.Proc.Stop() }

// StartSipp starts sipp in the background. For a UAS (no Remote) it returns
// once sipp's SIP port is bound, so a UAC may start right away. If sipp
// cannot bind a port it chose itself (exit 254), it retries with new ports.
func StartSipp(t testing.TB, cfg SippConfig) *Sipp {
	t.Helper()
	RequirePeer(t, "sipp")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := startSipp(t, cfg)
		if err == nil {
			return s
		}
		lastErr = err
		if !errors.Is(err, errExited) || s.Proc.ExitCode() != 254 || !portsAuto(cfg) {
			break
		}
		t.Logf("harness: %v; retrying with other ports", err)
	}
	t.Fatalf("harness: start sipp: %v", lastErr)
	return nil
}

// RunSipp runs sipp in the foreground until it exits (a UAC, typically) and
// returns the result. A bind failure (exit 254) on ports the harness chose
// is retried with new ports. It does not judge the result: check r.OK().
func RunSipp(t testing.TB, ctx context.Context, cfg SippConfig) SippResult {
	t.Helper()
	RequirePeer(t, "sipp")
	var r SippResult
	for attempt := 0; attempt < 3; attempt++ {
		s, err := startSipp(t, cfg)
		if err != nil {
			t.Fatalf("harness: start sipp: %v", err)
		}
		r = s.Wait(ctx)
		if r.ExitCode != 254 || !portsAuto(cfg) {
			return r
		}
		t.Logf("harness: %s exited 254 (port in use); retrying with other ports", s.cfg.Name)
	}
	return r
}

// portsAuto reports whether the harness chooses every port of cfg.
func portsAuto(cfg SippConfig) bool { return cfg.Port == 0 && cfg.MediaPort == 0 && cfg.CtrlPort == 0 }

func startSipp(t testing.TB, cfg SippConfig) (*Sipp, error) {
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	ipv6 := strings.Contains(cfg.IP, ":")
	if cfg.MediaIP == "" {
		cfg.MediaIP = cfg.IP
	}
	if cfg.Transport == "" {
		cfg.Transport = "u1"
	}
	kind := transportKind(cfg.Transport)
	if cfg.Port == 0 {
		network := kind
		if ipv6 {
			network += "6"
		}
		cfg.Port = FreePort(t, network)
	}
	if cfg.MediaPort == 0 {
		cfg.MediaPort = FreePortPair(t, ipv6)
	}
	if cfg.CtrlPort == 0 {
		cfg.CtrlPort = FreePort(t, "udp")
	}
	if cfg.Calls <= 0 {
		cfg.Calls = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Name == "" {
		cfg.Name = "sipp-uas"
		if cfg.Remote != "" {
			cfg.Name = "sipp-uac"
		}
	}
	dir := t.TempDir()

	var args []string
	switch {
	case cfg.ScenarioXML != "":
		f := filepath.Join(dir, "scenario.xml")
		if err := os.WriteFile(f, []byte(cfg.ScenarioXML), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "-sf", f)
	case cfg.Scenario != "":
		args = append(args, "-sn", cfg.Scenario)
	default:
		return nil, errors.New("SippConfig needs Scenario or ScenarioXML")
	}
	if cfg.Remote != "" {
		host, _, err := net.SplitHostPort(cfg.Remote)
		if err != nil {
			return nil, fmt.Errorf("remote %q: %w", cfg.Remote, err)
		}
		if !isLoopback(host) {
			return nil, fmt.Errorf("remote %q is not a loopback address", cfg.Remote)
		}
		args = append(args, cfg.Remote)
	}
	args = append(args,
		"-t", cfg.Transport,
		"-i", cfg.IP, "-p", strconv.Itoa(cfg.Port),
		"-mi", cfg.MediaIP, "-mp", strconv.Itoa(cfg.MediaPort),
		"-cp", strconv.Itoa(cfg.CtrlPort), "-ci", "127.0.0.1",
		"-m", strconv.Itoa(cfg.Calls),
		"-nostdin",
		"-timeout", fmt.Sprintf("%ds", int((cfg.Timeout+time.Second-1)/time.Second)), "-timeout_error",
		"-trace_stat", "-stf", filepath.Join(dir, "stats.csv"),
		"-trace_screen", "-screen_file", filepath.Join(dir, "screen.log"),
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
	)
	if cfg.Service != "" {
		args = append(args, "-s", cfg.Service)
	}
	if cfg.Rate > 0 {
		args = append(args, "-r", strconv.FormatFloat(cfg.Rate, 'f', -1, 64))
	}
	if cfg.RatePeriod > 0 {
		args = append(args, "-rp", strconv.FormatInt(cfg.RatePeriod.Milliseconds(), 10))
	}
	if cfg.Limit > 0 {
		args = append(args, "-l", strconv.Itoa(cfg.Limit))
	}
	if cfg.CallLength > 0 {
		args = append(args, "-d", strconv.FormatInt(cfg.CallLength.Milliseconds(), 10))
	}
	if cfg.RTPEcho {
		args = append(args, "-rtp_echo")
	}
	if cfg.Transport == "tn" && !slices.Contains(cfg.Args, "-max_socket") {
		// sipp refuses tn unless -max_socket (default 50000) is below the
		// open-files limit; 900 stays below the usual soft limit of 1024.
		args = append(args, "-max_socket", "900")
	}
	if cfg.TraceMsg {
		args = append(args, "-trace_msg", "-message_file", filepath.Join(dir, "messages.log"))
	}
	args = append(args, cfg.Args...)

	p, err := startProc(t, ProcConfig{Name: cfg.Name, Path: "sipp", Args: args, Env: cfg.Env, Dir: dir, Grace: 3 * time.Second})
	if err != nil {
		return nil, err
	}
	s := &Sipp{Proc: p, cfg: cfg, dir: dir}
	if cfg.Remote == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := waitBound(ctx, p, kind, cfg.Port); err != nil {
			p.Stop()
			return s, err
		}
	}
	return s, nil
}

// ReadSippStats parses the last row of a sipp -stf file.
func ReadSippStats(path string) (SippStats, error) {
	var st SippStats
	f, err := os.Open(path)
	if err != nil {
		return st, fmt.Errorf("read sipp stats: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	rows, err := r.ReadAll()
	if err != nil {
		return st, fmt.Errorf("parse sipp stats %s: %w", path, err)
	}
	if len(rows) < 2 {
		return st, fmt.Errorf("sipp stats %s: no data row", path)
	}
	head, last := rows[0], rows[len(rows)-1]
	st.Raw = make(map[string]string, len(head))
	for i, h := range head {
		if i < len(last) {
			st.Raw[h] = last[i]
		}
	}
	n := func(col string) int {
		v, _ := strconv.Atoi(strings.TrimSpace(st.Raw[col]))
		return v
	}
	st.OutgoingCall = n("OutgoingCall(C)")
	st.IncomingCall = n("IncomingCall(C)")
	st.SuccessfulCall = n("SuccessfulCall(C)")
	st.FailedCall = n("FailedCall(C)")
	st.CurrentCall = n("CurrentCall")
	st.FailedCannotSendMessage = n("FailedCannotSendMessage(C)")
	st.FailedMaxUDPRetrans = n("FailedMaxUDPRetrans(C)")
	st.FailedTcpConnect = n("FailedTcpConnect(C)")
	st.FailedTcpClosed = n("FailedTcpClosed(C)")
	st.FailedUnexpectedMessage = n("FailedUnexpectedMessage(C)")
	st.FailedCallRejected = n("FailedCallRejected(C)")
	st.FailedCmdNotSent = n("FailedCmdNotSent(C)")
	st.FailedRegexpDoesntMatch = n("FailedRegexpDoesntMatch(C)")
	st.FailedRegexpHdrNotFound = n("FailedRegexpHdrNotFound(C)")
	st.FailedTimeoutOnRecv = n("FailedTimeoutOnRecv(C)")
	st.FailedTimeoutOnSend = n("FailedTimeoutOnSend(C)")
	st.OutOfCallMsgs = n("OutOfCallMsgs(C)")
	st.DeadCallMsgs = n("DeadCallMsgs(C)")
	st.Retransmissions = n("Retransmissions(C)")
	st.Warnings = n("Warnings(C)")
	st.FatalErrors = n("FatalErrors(C)")
	return st, nil
}

// isLoopback reports whether host is a loopback IP or "localhost".
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// StartRegistrar starts a sipp registrar stub ([ScenarioUASRegistrar]) that
// answers up to registrations REGISTERs with 200 OK, including re- and
// un-REGISTERs that reuse a Call-ID (-deadcall_wait 0). cfg may set IP,
// Transport, Port and Timeout; its scenario and Calls are replaced.
func StartRegistrar(t testing.TB, cfg SippConfig, registrations int) *Sipp {
	t.Helper()
	cfg.Scenario = ""
	cfg.ScenarioXML = ScenarioUASRegistrar
	cfg.Calls = registrations
	if cfg.Name == "" {
		cfg.Name = "sipp-registrar"
	}
	cfg.Args = append(append([]string(nil), cfg.Args...), "-deadcall_wait", "0")
	return StartSipp(t, cfg)
}
