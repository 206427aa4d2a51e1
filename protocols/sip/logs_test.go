package sip

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestQuietHandlerBoundsRepeatedErrors(t *testing.T) {
	var buf bytes.Buffer
	h := newQuietHandler(slog.NewTextHandler(&buf, nil), 10*time.Second)
	log := slog.New(h).With("component", "sipgo")
	for i := 0; i < 1000; i++ {
		log.Error("Read filter error", "raddr", "192.0.2.7:1234")
	}
	log.Info("info passes", "i", 1)
	log.Info("info passes", "i", 2)
	if n := strings.Count(buf.String(), "Read filter error"); n != 1 {
		t.Fatalf("%d error lines logged, want 1:\n%s", n, buf.String())
	}
	if n := strings.Count(buf.String(), "info passes"); n != 2 {
		t.Fatalf("info lines: %d", n)
	}
}
