package harness

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Socat is a socat TLS relay started by [StartTLSClientProxy] or
// [StartTLSServerProxy]. Debian's sipp has no TLS (PEERS.md 1.4), so socat
// carries a TCP sipp to or from a TLS listener.
type Socat struct {
	// Proc is the socat process.
	Proc *Proc
	// Addr is where socat listens, host:port.
	Addr string
}

// StartTLSClientProxy starts socat listening on plain TCP at a free port on
// loopback (::1 if tlsAddr is IPv6) and forwarding every connection over TLS
// to tlsAddr, verifying the server certificate against caFile (and the host
// of tlsAddr against it). Point a TCP sipp (-t t1) at the returned Addr to
// reach a TLS listener.
func StartTLSClientProxy(t testing.TB, tlsAddr, caFile string) *Socat {
	t.Helper()
	RequirePeer(t, "socat")
	host, port := splitLoopback(t, tlsAddr)
	v6 := strings.Contains(host, ":")
	lhost, listen := "127.0.0.1", "TCP4-LISTEN"
	if v6 {
		lhost, listen = "::1", "TCP6-LISTEN"
	}
	lport := FreePort(t, map[bool]string{false: "tcp", true: "tcp6"}[v6])
	args := []string{
		"-d", // warnings and errors to the log
		fmt.Sprintf("%s:%d,bind=%s,reuseaddr,fork", listen, lport, socatHost(lhost)),
		fmt.Sprintf("OPENSSL:%s:%d,cafile=%s,verify=1,commonname=%s", socatHost(host), port, caFile, host),
	}
	return startSocat(t, "socat-tls-client", args, lhost, lport)
}

// StartTLSServerProxy starts socat listening for TLS on a free port on
// loopback (::1 if backendAddr is IPv6) with certFile/keyFile, and
// forwarding every connection in plain TCP to backendAddr (a TCP sipp UAS,
// say). Clients are not asked for a certificate.
func StartTLSServerProxy(t testing.TB, backendAddr, certFile, keyFile string) *Socat {
	t.Helper()
	RequirePeer(t, "socat")
	host, port := splitLoopback(t, backendAddr)
	v6 := strings.Contains(host, ":")
	lhost, listen, connect := "127.0.0.1", "OPENSSL-LISTEN", "TCP4"
	lnet := "tcp"
	if v6 {
		lhost, connect, lnet = "::1", "TCP6", "tcp6"
	}
	lport := FreePort(t, lnet)
	opts := ""
	if v6 {
		opts = ",pf=ip6"
	}
	args := []string{
		"-d",
		fmt.Sprintf("%s:%d,bind=%s%s,reuseaddr,fork,cert=%s,key=%s,verify=0", listen, lport, socatHost(lhost), opts, certFile, keyFile),
		fmt.Sprintf("%s:%s:%d", connect, socatHost(host), port),
	}
	return startSocat(t, "socat-tls-server", args, lhost, lport)
}

func startSocat(t testing.TB, name string, args []string, lhost string, lport int) *Socat {
	t.Helper()
	p := StartProc(t, ProcConfig{Name: name, Path: "socat", Args: args, Grace: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := waitBound(ctx, p, "tcp", lport); err != nil {
		t.Fatalf("harness: %s: %v\n%s", name, err, p.Tail(20))
	}
	return &Socat{Proc: p, Addr: HostPort(lhost, lport)}
}

// splitLoopback splits host:port and fails the test unless host is loopback.
func splitLoopback(t testing.TB, addr string) (string, int) {
	t.Helper()
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("harness: address %q: %v", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		t.Fatalf("harness: address %q: bad port", addr)
	}
	if !isLoopback(host) {
		t.Fatalf("harness: address %q is not on loopback", addr)
	}
	return host, port
}

// socatHost brackets IPv6 addresses, as socat's address syntax needs.
func socatHost(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}
