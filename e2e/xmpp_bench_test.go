package e2e

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	h "github.com/ucgate/ucgate/e2e/harness"
	"github.com/ucgate/ucgate/protocols/xmpp/wire"
)

// benchPolicies keep every stage on except the per-source budgets, which
// a benchmark from one loopback address would otherwise measure instead
// of the relay.
const benchPolicies = `policies:
  ratelimit: {enabled: false}
  conncap: {enabled: false}
`

const benchProxy = "    limits: {stanza_rate: 1000000, stanza_burst: 1000000}\n"

// BenchmarkXMPPRelay: chat messages per second from one client to another
// through Prosody, straight (Prosody's direct TLS port) and through the
// gateway's proxy (direct TLS to ucgate, plain TCP to Prosody); one op is
// one message sent and received. scripts/bench.sh prints the ratio.
func BenchmarkXMPPRelay(b *testing.B) {
	g := startXMPPGW(b, h.ProsodyConfig{}, benchProxy, benchPolicies)
	for _, mode := range []string{"direct", "proxy"} {
		b.Run(mode, func(b *testing.B) {
			addr := g.direct
			if mode == "direct" {
				addr = g.pr.C2STLS
			}
			recv := dialRaw(b, addr, "127.0.0.1", true)
			recv.login(b, "bob")
			recv.send(b, "<presence/>")
			send := dialRaw(b, addr, "127.0.0.1", true)
			send.login(b, "alice")
			_ = recv.c.SetDeadline(time.Now().Add(10 * time.Minute))
			_ = send.c.SetDeadline(time.Now().Add(10 * time.Minute))
			msg := "<message to='bob@example.test/raw' type='chat'><body>" + strings.Repeat("x", 100) + "</body></message>"
			b.ResetTimer()
			errc := make(chan error, 1)
			go func() {
				w := bufio.NewWriterSize(send.c, 64<<10)
				for range b.N {
					if _, err := w.WriteString(msg); err != nil {
						errc <- err
						return
					}
				}
				errc <- w.Flush()
			}()
			for n := 0; n < b.N; {
				it, err := recv.r.Next()
				if err != nil {
					b.Fatalf("receiver after %d of %d: %v", n, b.N, err)
				}
				if it.Kind == wire.KindElement && it.El.Is("jabber:client", "message") {
					n++
				}
			}
			b.StopTimer()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

var clientsOnce struct {
	sync.Once
	perK float64 // MiB of the gateway's RSS per 1000 connected clients
	n    int
	err  error
}

// BenchmarkXMPPClients: the gateway's resident memory per 1000 clients
// logged in through the proxy (direct TLS, PLAIN), from the growth of the
// ucgate process's RSS while XMPP_BENCH_CLIENTS clients (default 1000)
// connect. It is measured once per test binary; an op does nothing.
func BenchmarkXMPPClients(b *testing.B) {
	clientsOnce.Do(func() {
		n := 1000
		if v, err := strconv.Atoi(os.Getenv("XMPP_BENCH_CLIENTS")); err == nil && v > 0 {
			n = v
		}
		g := startXMPPGW(b, h.ProsodyConfig{}, benchProxy, benchPolicies)
		before, err := rss(g.Proc.Pid())
		if err != nil {
			clientsOnce.err = err
			return
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s := dialRaw(b, g.direct, "127.0.0.1", true)
				s.login(b, "carol")
				_ = s.c.SetDeadline(time.Time{})
			}()
		}
		wg.Wait()
		time.Sleep(500 * time.Millisecond) // let the gateway's heap settle after the handshakes
		after, err := rss(g.Proc.Pid())
		if err != nil {
			clientsOnce.err = err
			return
		}
		clientsOnce.n = n
		clientsOnce.perK = float64(after-before) / (1 << 20) * 1000 / float64(n)
	})
	if clientsOnce.err != nil {
		b.Fatal(clientsOnce.err)
	}
	for b.Loop() {
	}
	b.ReportMetric(clientsOnce.perK, "MiB/1000clients")
	b.ReportMetric(float64(clientsOnce.n), "clients")
}

// rss returns the resident set size of process pid, in bytes.
func rss(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
