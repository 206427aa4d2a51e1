package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// portBound reports whether a socket of the given kind ("udp" or "tcp") is
// bound to port on any local address (for TCP: listening), read from
// /proc/net. It sends nothing, so no peer sees a probe.
func portBound(kind string, port int) bool {
	files := []string{"/proc/net/" + kind, "/proc/net/" + kind + "6"}
	want := fmt.Sprintf(":%04X", port)
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || !strings.HasSuffix(fields[1], want) {
				continue
			}
			// st 0A is LISTEN for TCP; a bound UDP socket has 07 (CLOSE).
			if kind == "tcp" && fields[3] != "0A" {
				continue
			}
			fh.Close()
			return true
		}
		fh.Close()
	}
	return false
}

// waitBound waits until port is bound for kind, or p exits, or ctx ends.
func waitBound(ctx context.Context, p *Proc, kind string, port int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if portBound(kind, port) {
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%w: %s (pid %d) exited with %d before binding %s port %d",
				errExited, p.Name(), p.Pid(), p.ExitCode(), kind, port)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s port %d not bound: %w", kind, port, ctx.Err())
		case <-tick.C:
		}
	}
}

// WaitBound waits until p has bound port ("udp" or "tcp"), fails the test
// if p exits first or ctx ends.
func WaitBound(ctx context.Context, t testing.TB, p *Proc, kind string, port int) {
	t.Helper()
	if err := waitBound(ctx, p, kind, port); err != nil {
		t.Fatalf("harness: %v", err)
	}
}

// transportKind maps a sipp transport (u1, un, t1, tn) to "udp" or "tcp".
func transportKind(transport string) string {
	if strings.HasPrefix(transport, "t") {
		return "tcp"
	}
	return "udp"
}
