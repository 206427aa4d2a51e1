package sip

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// quietHandler bounds what sipgo logs: sipgo logs one error line per bad
// connection or message, which an attacker could use to fill the disk.
// Each distinct message is passed at most once per interval; the next
// one that passes says how many were held back.
type quietHandler struct {
	slog.Handler
	st *quietState
}

type quietState struct {
	interval time.Duration
	mu       sync.Mutex
	seen     map[string]*quietCount
}

type quietCount struct {
	last       time.Time
	suppressed int
}

func newQuietHandler(h slog.Handler, interval time.Duration) *quietHandler {
	return &quietHandler{Handler: h, st: &quietState{interval: interval, seen: map[string]*quietCount{}}}
}

func (q *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return q.Handler.Handle(ctx, r)
	}
	st := q.st
	st.mu.Lock()
	c := st.seen[r.Message]
	if c == nil {
		if len(st.seen) > 1024 { // messages are sipgo's constants; bound it anyway
			st.seen = map[string]*quietCount{}
		}
		c = &quietCount{}
		st.seen[r.Message] = c
	}
	if !c.last.IsZero() && r.Time.Sub(c.last) < st.interval {
		c.suppressed++
		st.mu.Unlock()
		return nil
	}
	n := c.suppressed
	c.last, c.suppressed = r.Time, 0
	st.mu.Unlock()
	if n > 0 {
		r.AddAttrs(slog.Int("suppressed_since_last", n))
	}
	return q.Handler.Handle(ctx, r)
}

func (q *quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &quietHandler{Handler: q.Handler.WithAttrs(attrs), st: q.st}
}

func (q *quietHandler) WithGroup(name string) slog.Handler {
	return &quietHandler{Handler: q.Handler.WithGroup(name), st: q.st}
}
