package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// GatewayConfig describes a ucgate run for [StartGateway].
type GatewayConfig struct {
	// YAML is the configuration text, written to a file for "run -c".
	// "{{DATA_DIR}}" in it is replaced by a fresh data directory; if it has
	// no top-level data_dir key, "data_dir: <that directory>" is prepended.
	YAML string
	// UDP lists SIP listen addresses (host:port) that must answer an
	// OPTIONS with any SIP response before StartGateway returns.
	UDP []string
	// TCP lists listen addresses that must accept a connection.
	TCP []string
	// Args are extra arguments after "run -c FILE".
	Args []string
	// Env is added to the gateway's environment.
	Env []string
	// Binary overrides the ucgate binary; default [GatewayBinary].
	Binary string
	// StartTimeout bounds the wait for the listeners; default 20 s.
	StartTimeout time.Duration
}

// Gateway is a running ucgate.
type Gateway struct {
	// Proc is the gateway process; Proc.Signal(syscall.SIGHUP) reloads.
	Proc *Proc
	// DataDir is the data directory the configuration names.
	DataDir string
	// ConfigPath is the configuration file.
	ConfigPath string
	// LogPath is the file with the gateway's stdout and stderr.
	LogPath string
}

// Stop stops the gateway: SIGTERM, then SIGKILL after 10 s.
func (g *Gateway) Stop() { g.Proc.Stop() }

var (
	gatewayOnce sync.Once
	gatewayBin  string
	gatewayErr  error
)

// GatewayBinary returns the ucgate binary: $UCGATE_BIN if set (make test
// sets it to bin/ucgate), otherwise one built with "go build" once per test
// binary.
func GatewayBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("UCGATE_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("harness: UCGATE_BIN=%s: %v", p, err)
		}
		return p
	}
	gatewayOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("ucgate-e2e-%d", os.Getuid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			gatewayErr = err
			return
		}
		tmp, err := os.CreateTemp(dir, "ucgate-build-*")
		if err != nil {
			gatewayErr = err
			return
		}
		tmp.Close()
		out, err := exec.Command("go", "build", "-o", tmp.Name(), "github.com/ucgate/ucgate/cmd/ucgate").CombinedOutput()
		if err != nil {
			os.Remove(tmp.Name())
			gatewayErr = fmt.Errorf("go build cmd/ucgate: %v\n%s", err, out)
			return
		}
		// Rename so that concurrent test binaries never run a half-written file.
		gatewayBin = filepath.Join(dir, "ucgate")
		gatewayErr = os.Rename(tmp.Name(), gatewayBin)
	})
	if gatewayErr != nil {
		t.Fatalf("harness: %v", gatewayErr)
	}
	return gatewayBin
}

var dataDirKey = regexp.MustCompile(`(?m)^data_dir:[ \t]*["']?([^"'\n#]+?)["']?[ \t]*(#.*)?$`)

// StartGateway writes the configuration, starts "ucgate run -c FILE" in a
// temp working directory, and waits until every address in UDP answers a SIP
// OPTIONS and every address in TCP accepts a connection. It fails the test,
// with the gateway's log, if the gateway exits or is not ready in time.
func StartGateway(t testing.TB, cfg GatewayConfig) *Gateway {
	t.Helper()
	bin := cfg.Binary
	if bin == "" {
		bin = GatewayBinary(t)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 20 * time.Second
	}
	work := t.TempDir()
	g := &Gateway{DataDir: filepath.Join(work, "data"), ConfigPath: filepath.Join(work, "ucgate.yaml")}
	yaml := strings.ReplaceAll(cfg.YAML, "{{DATA_DIR}}", g.DataDir)
	if m := dataDirKey.FindStringSubmatch(yaml); m != nil {
		g.DataDir = m[1]
		if !filepath.IsAbs(g.DataDir) {
			g.DataDir = filepath.Join(work, g.DataDir)
		}
	} else {
		yaml = fmt.Sprintf("data_dir: %q\n", g.DataDir) + yaml
	}
	if err := os.WriteFile(g.ConfigPath, []byte(yaml), 0o644); err != nil {
		t.Fatalf("harness: write gateway config: %v", err)
	}
	args := append([]string{"run", "-c", g.ConfigPath}, cfg.Args...)
	g.Proc = StartProc(t, ProcConfig{Name: "ucgate", Path: bin, Args: args, Env: cfg.Env, Dir: work, Grace: 10 * time.Second})
	g.LogPath = g.Proc.LogPath()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	defer cancel()
	for _, a := range cfg.TCP {
		if err := waitTCP(ctx, g.Proc, a); err != nil {
			t.Fatalf("harness: gateway not ready: %v\nconfig:\n%s\nlog tail:\n%s", err, yaml, g.Proc.Tail(40))
		}
	}
	for _, a := range cfg.UDP {
		if err := waitSIPUDP(ctx, g.Proc, a); err != nil {
			t.Fatalf("harness: gateway not ready: %v\nconfig:\n%s\nlog tail:\n%s", err, yaml, g.Proc.Tail(40))
		}
	}
	return g
}

// waitTCP waits until addr accepts a TCP connection (then closes it).
func waitTCP(ctx context.Context, p *Proc, addr string) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%w: %s exited with %d (waiting for tcp %s)", errExited, p.Name(), p.ExitCode(), addr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tcp %s: %v: %w", addr, err, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// waitSIPUDP sends OPTIONS to addr until any SIP response comes back.
func waitSIPUDP(ctx context.Context, p *Proc, addr string) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		_, err := SIPOptions(attempt, addr)
		cancel()
		if err == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%w: %s exited with %d (waiting for udp %s)", errExited, p.Name(), p.ExitCode(), addr)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("udp %s: no SIP response to OPTIONS: %v", addr, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// SIPOptions sends one SIP OPTIONS over UDP from an ephemeral loopback port
// to addr (host:port on loopback) and returns the status line of the first
// SIP response, e.g. "SIP/2.0 200 OK". It retransmits every 100 ms until a
// response arrives or ctx ends.
func SIPOptions(ctx context.Context, addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if !isLoopback(host) {
		return "", fmt.Errorf("SIPOptions: %s is not on loopback", addr)
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return "", err
	}
	laddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if raddr.IP.To4() == nil {
		laddr = &net.UDPAddr{IP: net.IPv6loopback}
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	local := conn.LocalAddr().(*net.UDPAddr)
	lhp := HostPort(local.IP.String(), local.Port)
	id := randHex(8)
	msg := strings.Join([]string{
		"OPTIONS sip:" + addr + " SIP/2.0",
		"Via: SIP/2.0/UDP " + lhp + ";branch=z9hG4bK-" + id + ";rport",
		"Max-Forwards: 70",
		"From: <sip:harness@" + lhp + ">;tag=" + id,
		"To: <sip:" + addr + ">",
		"Call-ID: " + id + "@harness",
		"CSeq: 1 OPTIONS",
		"Contact: <sip:harness@" + lhp + ">",
		"Accept: application/sdp",
		"User-Agent: ucgate-e2e-harness",
		"Content-Length: 0",
		"", "",
	}, "\r\n")
	buf := make([]byte, 65536)
	for {
		if _, err := conn.WriteToUDP([]byte(msg), raddr); err != nil {
			// ICMP port unreachable from an earlier send shows up here.
			if ctx.Err() != nil {
				return "", err
			}
		}
		deadline := time.Now().Add(100 * time.Millisecond)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = conn.SetReadDeadline(deadline)
		n, _, rerr := conn.ReadFromUDP(buf)
		if rerr == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
			line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
			return line, nil
		}
		if ctx.Err() != nil {
			if rerr == nil {
				rerr = fmt.Errorf("no SIP response")
			}
			return "", fmt.Errorf("OPTIONS %s: %v: %w", addr, rerr, ctx.Err())
		}
		if rerr != nil && !isTimeout(rerr) {
			// e.g. connection refused: wait a little before trying again
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
