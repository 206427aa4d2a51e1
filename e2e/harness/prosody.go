package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// ProsodyConfig describes a throwaway Prosody for [StartProsody].
type ProsodyConfig struct {
	// Domain is the VirtualHost; default "example.test".
	Domain string
	// Users are created with prosodyctl before the server starts:
	// localpart -> password.
	Users map[string]string
	// Component, when set, is an external component domain (XEP-0114)
	// accepted with ComponentSecret on ComponentAddr.
	Component       string
	ComponentSecret string
	// RequireEncryption sets c2s_require_encryption (default false: the
	// gateway in front terminates the clients' TLS and talks plain TCP
	// on loopback).
	RequireEncryption bool
	// Extra is Lua appended to the global section.
	Extra string
}

// Prosody is a running Prosody 0.12 on loopback.
type Prosody struct {
	Proc *Proc
	// C2S is the client port (STARTTLS offered), C2STLS the direct TLS
	// port, ComponentAddr the component port (empty without Component).
	C2S, C2STLS, ComponentAddr string
	// Dir holds the configuration, data, certificates and log.
	Dir string
	// Cert is the server's certificate (names Domain), also its own CA.
	Cert *TestCert
	// ConfigPath is the Lua configuration file.
	ConfigPath string
}

// StartProsody writes a configuration into a temp dir (ports on
// 127.0.0.1 chosen free), creates the users with prosodyctl, starts
// "prosody -F" and waits until its pidfile exists and its ports accept.
// It needs prosody and prosodyctl (Debian package prosody; see
// RequirePeer for what happens when they are missing).
func StartProsody(t testing.TB, cfg ProsodyConfig) *Prosody {
	t.Helper()
	bin := RequirePeer(t, "prosody")
	ctl := RequirePeer(t, "prosodyctl")
	if cfg.Domain == "" {
		cfg.Domain = "example.test"
	}
	dir := t.TempDir()
	p := &Prosody{Dir: dir, ConfigPath: filepath.Join(dir, "prosody.cfg.lua")}
	for _, d := range []string{"data", "certs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	p.Cert = NewTestCert(t, cfg.Domain)
	copyFile(t, p.Cert.CertFile, filepath.Join(dir, "certs", cfg.Domain+".crt"), 0o644)
	copyFile(t, p.Cert.KeyFile, filepath.Join(dir, "certs", cfg.Domain+".key"), 0o600)
	c2s, c2stls := FreeTCPPort(t), FreeTCPPort(t)
	p.C2S, p.C2STLS = HostPort("127.0.0.1", c2s), HostPort("127.0.0.1", c2stls)
	comp := ""
	if cfg.Component != "" {
		cp := FreeTCPPort(t)
		p.ComponentAddr = HostPort("127.0.0.1", cp)
		comp = fmt.Sprintf("component_ports = { %d }\ncomponent_interfaces = { \"127.0.0.1\" }\n", cp)
	}
	lua := fmt.Sprintf(`-- written by the ucgate e2e harness
run_as_root = %t
pidfile = %q
data_path = %q
certificates = %q
log = { debug = %q; info = "*console" }
interfaces = { "127.0.0.1" }
c2s_ports = { %d }
c2s_direct_tls_ports = { %d }
s2s_ports = { }
s2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
%smodules_disabled = { "s2s"; "s2s_auth_certs"; "offline" }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix" }
authentication = "internal_hashed"
c2s_require_encryption = %t
allow_unencrypted_plain_auth = true
allow_registration = false
%s
VirtualHost %q
`, os.Getuid() == 0, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), filepath.Join(dir, "certs"),
		filepath.Join(dir, "prosody.log"), c2s, c2stls, comp, cfg.RequireEncryption, cfg.Extra, cfg.Domain)
	if cfg.Component != "" {
		lua += fmt.Sprintf("Component %q\n    component_secret = %q\n", cfg.Component, cfg.ComponentSecret)
	}
	if err := os.WriteFile(p.ConfigPath, []byte(lua), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	for user, pass := range cfg.Users {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, ctl, "--config", p.ConfigPath, "register", user, cfg.Domain, pass).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("harness: prosodyctl register %s: %v\n%s", user, err, out)
		}
	}
	p.Proc = StartProc(t, ProcConfig{Name: "prosody", Path: bin, Args: []string{"-F", "--config", p.ConfigPath}, Dir: dir, Grace: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(filepath.Join(dir, "prosody.pid")); err == nil {
			break
		}
		if p.Proc.Exited() || ctx.Err() != nil {
			t.Fatalf("harness: prosody did not start\n%s", p.Proc.Tail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
	addrs := []string{p.C2S, p.C2STLS}
	if p.ComponentAddr != "" {
		addrs = append(addrs, p.ComponentAddr)
	}
	for _, a := range addrs {
		if err := waitTCP(ctx, p.Proc, a); err != nil {
			t.Fatalf("harness: prosody not ready: %v\n%s", err, p.Proc.Tail(40))
		}
	}
	return p
}

// DebugLog returns Prosody's debug log (every stanza it received).
func (p *Prosody) DebugLog() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "prosody.log"))
	return string(b)
}

// Alive reports whether Prosody still runs and accepts clients.
func (p *Prosody) Alive() bool {
	if p.Proc.Exited() {
		return false
	}
	c, err := net.DialTimeout("tcp", p.C2S, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatalf("harness: %v", err)
	}
}
