package journal

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ucgate/ucgate/core"
)

// sdID names ucgate's structured data element. 32473 is the private
// enterprise number RFC 5612 reserves for documentation.
const sdID = "ucgate@32473"

// Severities (RFC 5424).
const (
	sevWarning = 4
	sevNotice  = 5
	sevInfo    = 6
)

// maxDatagram bounds a UDP message: longer ones are cut.
const maxDatagram = 65000

var errCollectorDown = errors.New("journal: syslog collector unreachable, waiting to reconnect")

// syslogSink sends RFC 5424 messages to a collector. Formatting happens in
// the journal's writers; sending happens in the sink's own goroutine behind
// a bounded queue, so a slow or absent collector never blocks the journal:
// what does not fit is counted as dropped and reported in the log.
type syslogSink struct {
	network, address string
	facility         int
	host, app, pid   string
	log              *slog.Logger

	queue   chan []byte
	dropped atomic.Uint64
	stop    context.CancelFunc
	ctx     context.Context
	done    chan struct{}

	// Tunables, fixed before run starts.
	timeout      time.Duration // dial and write deadline
	minBackoff   time.Duration
	maxBackoff   time.Duration
	closeTimeout time.Duration

	// Owned by run.
	conn     net.Conn
	backoff  time.Duration
	nextDial time.Time
	frame    []byte
}

// startSyslog returns a running syslog sink. It dials lazily, so that a
// collector that is not up yet does not stop the gateway from starting.
func startSyslog(cfg SyslogConfig, log *slog.Logger) *syslogSink {
	s := newSyslog(cfg, log)
	go s.run()
	return s
}

func newSyslog(cfg SyslogConfig, log *slog.Logger) *syslogSink {
	host, _ := os.Hostname()
	if !printASCII(host, 255) {
		host = "-"
	}
	ctx, stop := context.WithCancel(context.Background())
	return &syslogSink{
		network: cfg.Network, address: cfg.Address, facility: facilities[cfg.Facility],
		host: host, app: cfg.AppName, pid: strconv.Itoa(os.Getpid()), log: log,
		queue: make(chan []byte, 4096), ctx: ctx, stop: stop, done: make(chan struct{}),
		timeout: 2 * time.Second, minBackoff: time.Second, maxBackoff: 30 * time.Second,
		closeTimeout: 5 * time.Second,
	}
}

func (s *syslogSink) name() string { return "syslog" }

func (s *syslogSink) write(b *batch) (txErr, secErr, cdrErr error) {
	for _, t := range b.txs {
		m, err := s.formatTx(t)
		if err != nil {
			txErr = err
			break
		}
		s.enqueue(m)
	}
	for _, e := range b.secs {
		m, err := s.formatSec(e)
		if err != nil {
			secErr = err
			break
		}
		s.enqueue(m)
	}
	for _, c := range b.cdrs {
		m, err := s.formatCDR(c)
		if err != nil {
			cdrErr = err
			break
		}
		s.enqueue(m)
	}
	return txErr, secErr, cdrErr
}

func (s *syslogSink) enqueue(m []byte) {
	select {
	case s.queue <- m:
	default:
		s.dropped.Add(1)
	}
}

// close sends what is queued, giving up after closeTimeout.
func (s *syslogSink) close() error {
	close(s.queue)
	select {
	case <-s.done:
	case <-time.After(s.closeTimeout):
		s.stop()
		<-s.done
	}
	s.stop()
	if n := s.dropped.Load(); n > 0 {
		s.log.Warn("journal syslog sink dropped records", "records", n)
	}
	return nil
}

func (s *syslogSink) run() {
	defer close(s.done)
	s.backoff = s.minBackoff
	var lastReport time.Time
	for m := range s.queue {
		if s.ctx.Err() != nil {
			s.dropped.Add(1)
			continue
		}
		if err := s.send(m); err != nil {
			s.dropped.Add(1)
			if now := time.Now(); now.Sub(lastReport) >= time.Minute {
				s.log.Warn("journal syslog sink dropping records", "address", s.address, "dropped", s.dropped.Load(), "err", err)
				lastReport = now
			}
		}
	}
	if s.conn != nil {
		s.conn.Close()
	}
}

// send writes one message, dialing first if needed. A TCP connection that
// fails is replaced once at once (the collector may have restarted), then
// no more often than the backoff allows.
func (s *syslogSink) send(m []byte) error {
	if s.network == "udp" {
		if len(m) > maxDatagram {
			m = m[:maxDatagram]
		}
		s.frame = append(s.frame[:0], m...)
	} else {
		s.frame = append(strconv.AppendInt(s.frame[:0], int64(len(m)), 10), ' ')
		s.frame = append(s.frame, m...)
	}
	for attempt := 0; ; attempt++ {
		if s.conn == nil {
			now := time.Now()
			if now.Before(s.nextDial) {
				return errCollectorDown
			}
			d := net.Dialer{Timeout: s.timeout}
			c, err := d.DialContext(s.ctx, s.network, s.address)
			if err != nil {
				s.nextDial = now.Add(s.backoff)
				s.backoff = min(2*s.backoff, s.maxBackoff)
				return err
			}
			s.conn, s.backoff = c, s.minBackoff
		}
		s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
		_, err := s.conn.Write(s.frame)
		if err == nil || s.network == "udp" {
			return err // a refused datagram does not spoil the socket
		}
		s.conn.Close()
		s.conn = nil
		if attempt > 0 {
			return err
		}
	}
}

// severity of a transaction: refusals are notices, the rest information.
func severity(action string) int {
	switch action {
	case "refuse", "drop", "tarpit":
		return sevNotice
	}
	return sevInfo
}

func (s *syslogSink) formatTx(t *core.Transaction) ([]byte, error) {
	body, err := encodeTx(t)
	if err != nil {
		return nil, err
	}
	b := s.header(make([]byte, 0, 256+2*len(body)), severity(t.Action), t.Time, "TX")
	b = append(b, '[')
	b = append(b, sdID...)
	b = param(b, "protocol", t.Protocol)
	b = param(b, "zone", t.Zone)
	b = param(b, "src", t.Src)
	b = param(b, "dst", t.Dst)
	b = param(b, "transport", t.Transport)
	b = param(b, "encrypted", strconv.FormatBool(t.Encrypted))
	b = param(b, "method", t.Method)
	b = param(b, "from", t.From)
	b = param(b, "to", t.To)
	b = param(b, "call_id", t.CallID)
	b = param(b, "peer_call_id", t.PeerCall)
	b = param(b, "session", string(t.Session))
	b = param(b, "status", strconv.Itoa(t.Status))
	b = param(b, "action", t.Action)
	b = param(b, "rule", t.Rule)
	b = param(b, "reason", t.Reason)
	b = param(b, "elapsed_ms", strconv.FormatFloat(millis(t.Elapsed), 'f', -1, 64))
	b = append(b, "] "...)
	return append(b, body...), nil
}

// formatSec formats a security event: severity warning, MSGID SEC.
func (s *syslogSink) formatSec(e *core.SecurityEvent) ([]byte, error) {
	body, err := encodeSec(e)
	if err != nil {
		return nil, err
	}
	b := s.header(make([]byte, 0, 192+2*len(body)), sevWarning, e.Time, "SEC")
	b = append(b, '[')
	b = append(b, sdID...)
	b = param(b, "rule", e.Rule)
	b = param(b, "action", e.Action)
	b = param(b, "src", e.Src)
	b = param(b, "zone", e.Zone)
	b = param(b, "user", e.User)
	b = param(b, "session", string(e.Session))
	b = param(b, "protocol", e.Protocol)
	b = append(b, "] "...)
	return append(b, body...), nil
}

func (s *syslogSink) formatCDR(c *core.CDR) ([]byte, error) {
	body, err := encodeCDR(c)
	if err != nil {
		return nil, err
	}
	caller, callee := legsOf(c)
	b := s.header(make([]byte, 0, 384+2*len(body)), sevInfo, c.End, "CDR")
	b = append(b, '[')
	b = append(b, sdID...)
	b = param(b, "session", string(c.Session))
	b = param(b, "kind", c.Kind)
	b = param(b, "from", c.From)
	b = param(b, "to", c.To)
	b = param(b, "start", formatTime(c.Start))
	if !c.Answer.IsZero() {
		b = param(b, "answer", formatTime(c.Answer))
	}
	b = param(b, "end", formatTime(c.End))
	b = param(b, "duration_ms", strconv.FormatFloat(millis(c.Duration), 'f', -1, 64))
	b = param(b, "status", strconv.Itoa(c.Status))
	b = param(b, "end_reason", c.EndReason)
	b = param(b, "ended_by", c.EndedBy)
	b = param(b, "caller_transport", caller.Transport)
	b = param(b, "caller_encrypted", strconv.FormatBool(caller.Encrypted))
	b = param(b, "caller_media_encrypted", strconv.FormatBool(caller.MediaEncrypted))
	b = param(b, "caller_call_id", caller.CallID)
	b = param(b, "callee_transport", callee.Transport)
	b = param(b, "callee_encrypted", strconv.FormatBool(callee.Encrypted))
	b = param(b, "callee_media_encrypted", strconv.FormatBool(callee.MediaEncrypted))
	b = param(b, "callee_call_id", callee.CallID)
	b = append(b, "] "...)
	return append(b, body...), nil
}

// header appends "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID ".
func (s *syslogSink) header(b []byte, sev int, t time.Time, msgid string) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(s.facility*8+sev), 10)
	b = append(b, ">1 "...)
	if t.IsZero() {
		b = append(b, '-')
	} else {
		b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	}
	for _, f := range [...]string{s.host, s.app, s.pid, msgid} {
		b = append(b, ' ')
		b = append(b, f...)
	}
	return append(b, ' ')
}

// param appends ` name="value"` with the value escaped as RFC 5424 section
// 6.3.3 asks (`"`, `\` and `]` get a backslash) and made valid UTF-8. Empty
// values are left out.
func param(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	if !utf8.ValidString(value) {
		value = strings.ToValidUTF8(value, "\uFFFD")
	}
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, '=', '"')
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
