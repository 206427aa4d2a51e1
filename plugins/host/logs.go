package host

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
)

// maxLine bounds one line of plugin output in the log; the rest of the
// line is cut.
const maxLine = 2048

// lineWriter turns a plugin's output into slog records, one per line,
// with plugin=<name> and stream=stdout|stderr. Lines are bounded and
// rate limited (a plugin flooding its output loses lines, counted, rather
// than the gateway's log).
type lineWriter struct {
	log    *slog.Logger
	stream string
	mu     sync.Mutex
	buf    []byte
	window time.Time
	n      int
	lost   int
}

const linesPerSecond = 200

func newLineWriter(l *slog.Logger, stream string) *lineWriter {
	return &lineWriter{log: l, stream: stream}
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			room := maxLine - len(w.buf)
			w.buf = append(w.buf, b[:min(len(b), max(room, 0))]...)
			break
		}
		room := maxLine - len(w.buf)
		w.buf = append(w.buf, b[:min(i, max(room, 0))]...)
		w.emit()
		b = b[i+1:]
	}
	return n, nil
}

func (w *lineWriter) emit() {
	line := string(bytes.TrimRight(w.buf, "\r"))
	w.buf = w.buf[:0]
	now := time.Now()
	if now.Sub(w.window) >= time.Second {
		if w.lost > 0 {
			w.log.Warn("plugin output lines dropped", "stream", w.stream, "lines", w.lost)
		}
		w.window, w.n, w.lost = now, 0, 0
	}
	if w.n >= linesPerSecond {
		w.lost++
		return
	}
	w.n++
	w.log.Info("plugin output", "stream", w.stream, "line", line)
}

// hclogger is go-plugin's hclog.Logger over slog: go-plugin's own
// messages (process exited, handshake problems) reach the gateway's log
// with plugin=<name>. The stderr lines go-plugin also logs through a
// logger named after the binary are dropped here: the lineWriter logs them.
type hclogger struct {
	log  *slog.Logger
	name string
	drop string // the binary's base name
	args []any
}

func newHCLogger(l *slog.Logger, binary string) hclog.Logger {
	return &hclogger{log: l, drop: filepath.Base(binary)}
}

func (h *hclogger) Log(level hclog.Level, msg string, args ...interface{}) {
	if h.name == h.drop || level == hclog.NoLevel || level < hclog.Debug {
		return
	}
	lv := slog.LevelDebug
	switch level {
	case hclog.Info:
		lv = slog.LevelInfo
	case hclog.Warn:
		lv = slog.LevelWarn
	case hclog.Error:
		lv = slog.LevelError
	}
	all := append(append([]any{}, h.args...), args...)
	if h.name != "" {
		all = append(all, "component", h.name)
	}
	h.log.Log(context.Background(), lv, "go-plugin: "+msg, all...)
}

func (h *hclogger) Trace(msg string, args ...interface{}) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogger) Debug(msg string, args ...interface{}) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogger) Info(msg string, args ...interface{})  { h.Log(hclog.Info, msg, args...) }
func (h *hclogger) Warn(msg string, args ...interface{})  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogger) Error(msg string, args ...interface{}) { h.Log(hclog.Error, msg, args...) }
func (h *hclogger) IsTrace() bool                         { return false }
func (h *hclogger) IsDebug() bool                         { return h.log.Enabled(context.Background(), slog.LevelDebug) }
func (h *hclogger) IsInfo() bool                          { return true }
func (h *hclogger) IsWarn() bool                          { return true }
func (h *hclogger) IsError() bool                         { return true }
func (h *hclogger) ImpliedArgs() []interface{}            { return h.args }
func (h *hclogger) With(args ...interface{}) hclog.Logger {
	c := *h
	c.args = append(append([]any{}, h.args...), args...)
	return &c
}
func (h *hclogger) Name() string { return h.name }
func (h *hclogger) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}
func (h *hclogger) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}
func (h *hclogger) SetLevel(hclog.Level) {}
func (h *hclogger) GetLevel() hclog.Level {
	if h.IsDebug() {
		return hclog.Debug
	}
	return hclog.Info
}
func (h *hclogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(h.log.Handler(), slog.LevelInfo)
}
func (h *hclogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return newLineWriter(h.log, "go-plugin")
}
