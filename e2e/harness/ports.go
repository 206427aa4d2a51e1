package harness

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Ports are drawn from [portLow, portHigh]: below Linux's default ephemeral
// range (32768-60999), so outgoing connections never take them, and above
// the fixed ports of shared/PEERS.md (15000-16999) and shared/bench (17xxx).
const (
	portLow  = 20000
	portHigh = 32767
)

var ports struct {
	sync.Mutex
	used map[int]bool
	next int
}

// FreePort returns a port on which nothing listens, for network:
//
//	"udp", "tcp"            127.0.0.1
//	"udp6", "tcp6"          ::1
//	"udp+tcp", "udp6+tcp6"  free for both transports (a SIP listener on both)
//
// A port is never returned twice within one test binary. Another process may
// still take it before the caller binds it; callers that can retry (sipp's
// exit code 254) do.
func FreePort(t testing.TB, network string) int {
	t.Helper()
	var checks []string
	switch network {
	case "udp", "udp4", "tcp", "tcp4", "udp6", "tcp6":
		checks = []string{network}
	case "udp+tcp", "udp4+tcp4":
		checks = []string{"udp", "tcp"}
	case "udp6+tcp6":
		checks = []string{"udp6", "tcp6"}
	default:
		t.Fatalf("harness: FreePort: unknown network %q", network)
	}
	p, err := reservePorts(1, func(p int) bool { return portFree(checks, p) })
	if err != nil {
		t.Fatalf("harness: FreePort(%s): %v", network, err)
	}
	return p
}

// FreeUDPPort returns a free UDP port on 127.0.0.1.
func FreeUDPPort(t testing.TB) int { t.Helper(); return FreePort(t, "udp") }

// FreeTCPPort returns a free TCP port on 127.0.0.1.
func FreeTCPPort(t testing.TB) int { t.Helper(); return FreePort(t, "tcp") }

// FreePortPair returns an even UDP port p such that p, p+1, p+2 and p+3 are
// free on 127.0.0.1 (and on ::1 when ipv6 is true): what sipp's -mp needs
// (RTP on p and p+2, RTCP next to each).
func FreePortPair(t testing.TB, ipv6 bool) int {
	t.Helper()
	network := "udp"
	if ipv6 {
		network = "udp6"
	}
	p, err := reservePorts(4, func(p int) bool {
		if p%2 != 0 {
			return false
		}
		for i := range 4 {
			if !portFree([]string{network}, p+i) {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("harness: FreePortPair: %v", err)
	}
	return p
}

// reservePorts finds the first port p (from a random start) where ok(p)
// holds and p..p+n-1 were not handed out before, and marks them used.
func reservePorts(n int, ok func(int) bool) (int, error) {
	ports.Lock()
	defer ports.Unlock()
	if ports.used == nil {
		ports.used = map[int]bool{}
		ports.next = portLow + rand.IntN(portHigh-portLow)
	}
	span := portHigh - portLow + 1
	for i := 0; i < span; i++ {
		p := portLow + (ports.next-portLow+i)%span
		if p+n-1 > portHigh {
			continue
		}
		taken := false
		for j := range n {
			taken = taken || ports.used[p+j]
		}
		if taken || !ok(p) {
			continue
		}
		for j := range n {
			ports.used[p+j] = true
		}
		ports.next = p + n
		return p, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d", portLow, portHigh)
}

// portFree reports whether port can be bound on every network in checks.
func portFree(checks []string, port int) bool {
	for _, network := range checks {
		host := "127.0.0.1"
		if network == "udp6" || network == "tcp6" {
			host = "::1"
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		switch network {
		case "udp", "udp4", "udp6":
			c, err := net.ListenPacket(network, addr)
			if err != nil {
				return false
			}
			c.Close()
		default:
			l, err := net.Listen(network, addr)
			if err != nil {
				return false
			}
			l.Close()
		}
	}
	return true
}

// HostPort joins host and port, bracketing IPv6 hosts: "[::1]:5060".
func HostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
