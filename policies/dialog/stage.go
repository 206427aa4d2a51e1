package dialog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// Name is the stage's name, its YAML key under policies and the prefix of
// its rules.
const Name = "dialog"

// Rules the stage writes to the journal and puts on security events.
const (
	RuleUnknown  = "dialog/unknown"  // no such dialog (SIP 481)
	RuleSource   = "dialog/source"   // a known dialog, from another address (SIP 403)
	RuleSequence = "dialog/sequence" // sequence number or tags wrong (SIP 400)
)

// Details, the short reason phrases of the refusals.
const (
	detailUnknown  = "Unknown Dialog"
	detailSource   = "Dialog Source Mismatch"
	detailSequence = "CSeq Out Of Order"
)

// ErrConfig reports a configuration that does not validate.
var ErrConfig = errors.New("dialog: invalid configuration")

// Stage is the dialog stage. Decide is safe for concurrent use; an allowed
// request takes no lock and does not allocate.
type Stage struct {
	def    checks
	zones  map[string]checks
	alerts *core.Alerts
	now    func() time.Time

	events eventLimit

	refused    [3]prometheus.Counter // by rule: unknown, source, sequence
	raised     [2]prometheus.Counter // security events by rule: unknown, source
	suppressed prometheus.Counter
}

// checks are the checks on in one zone.
type checks struct {
	enabled, source, sequence bool
}

// New builds the stage from a configuration that Validate accepts. Its
// counters are registered on deps.Metrics when that is set; a second stage
// on the same registry (a reload) shares them. Security events go to
// deps.Alerts (none when it is nil).
func New(cfg Config, deps core.Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s := &Stage{
		def:    checks{cfg.Enabled, cfg.CheckSource, cfg.CheckSequence},
		alerts: deps.Alerts,
		now:    time.Now,
		events: eventLimit{interval: cfg.EventInterval, max: cfg.MaxSources, last: map[netip.Addr]time.Time{}},
	}
	if len(cfg.Zones) > 0 {
		s.zones = make(map[string]checks, len(cfg.Zones))
		for name, z := range cfg.Zones {
			c := s.def
			set(&c.enabled, z.Enabled)
			set(&c.source, z.CheckSource)
			set(&c.sequence, z.CheckSequence)
			s.zones[name] = c
		}
	}
	refused, err := core.RegisterMetric(deps.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_dialog_refused_total",
		Help: "In-dialog requests refused, by rule.",
	}, []string{"rule"}))
	if err != nil {
		return nil, fmt.Errorf("dialog: register metrics: %w", err)
	}
	raised, err := core.RegisterMetric(deps.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_dialog_security_events_total",
		Help: "Security events raised for in-dialog requests, by rule.",
	}, []string{"rule"}))
	if err != nil {
		return nil, fmt.Errorf("dialog: register metrics: %w", err)
	}
	s.suppressed, err = core.RegisterMetric(deps.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_dialog_events_suppressed_total",
		Help: "Security events not raised because their source raised one less than event_interval before.",
	}))
	if err != nil {
		return nil, fmt.Errorf("dialog: register metrics: %w", err)
	}
	for i, r := range []string{RuleUnknown, RuleSource, RuleSequence} {
		s.refused[i] = refused.WithLabelValues(r)
	}
	s.raised[0], s.raised[1] = raised.WithLabelValues(RuleUnknown), raised.WithLabelValues(RuleSource)
	return s, nil
}

func set(dst *bool, v *bool) {
	if v != nil {
		*dst = *v
	}
}

// Name returns "dialog".
func (s *Stage) Name() string { return Name }

// Layer returns core.Application.
func (s *Stage) Layer() core.Layer { return core.Application }

// Decide judges an in-dialog request (ev.InDialog) by the adapter's facts:
//
//   - a dialog the adapter does not know: refused with core.ReasonNoDialog
//     (SIP 481), rule dialog/unknown, and a security event;
//   - a known dialog, from another address than its peer's (check_source):
//     refused with core.ReasonForbidden (SIP 403), rule dialog/source, and
//     a security event;
//   - a known dialog, sequence number not moving forward or tags not the
//     dialog's (check_sequence): refused with core.ReasonMalformed and
//     detail "CSeq Out Of Order", rule dialog/sequence.
//
// An ACK cannot be answered: for an unknown dialog it is dropped, without a
// security event (stray ACKs after a call ended are normal). Requests
// outside a dialog and responses pass. It never errs.
func (s *Stage) Decide(_ context.Context, ev *core.Event) (core.Verdict, error) {
	if !ev.InDialog || ev.Kind == core.KindResponse {
		return core.Verdict{}, nil
	}
	c := s.def
	if s.zones != nil {
		if z, ok := s.zones[ev.Src.Zone]; ok {
			c = z
		}
	}
	switch {
	case !c.enabled:
		return core.Verdict{}, nil
	case !ev.DialogKnown:
		s.refused[0].Inc()
		if ev.Method == "ACK" {
			return core.Verdict{Action: core.Drop, Reason: core.ReasonNoDialog, Rule: RuleUnknown, Detail: detailUnknown}, nil
		}
		v := core.RefuseWith(core.ReasonNoDialog, RuleUnknown, detailUnknown)
		s.alert(ev, v, 0, "for a dialog that does not exist")
		return v, nil
	case c.source && !ev.DialogSameSource:
		s.refused[1].Inc()
		v := core.RefuseWith(core.ReasonForbidden, RuleSource, detailSource)
		s.alert(ev, v, 1, "for a live dialog, from another address than its peer's")
		return v, nil
	case c.sequence && !ev.DialogSeqOK:
		s.refused[2].Inc()
		return core.RefuseWith(core.ReasonMalformed, RuleSequence, detailSequence), nil
	}
	return core.Verdict{}, nil
}

// alert raises a security event for ev's refusal, unless its source raised
// one less than event_interval ago.
func (s *Stage) alert(ev *core.Event, v core.Verdict, i int, what string) {
	if s.alerts == nil {
		return
	}
	now := s.now()
	if !s.events.allow(ev.Src.Addr.Addr(), now) {
		s.suppressed.Inc()
		return
	}
	s.raised[i].Inc()
	e := &core.SecurityEvent{
		Time:     now,
		Rule:     v.Rule,
		Action:   v.Action.String(),
		Zone:     ev.Src.Zone,
		User:     clean(ev.From.User, 64),
		Session:  ev.Session,
		Protocol: ev.Protocol,
		Detail:   method(ev.Method) + " " + what,
	}
	if ev.Src.Addr.IsValid() {
		e.Src = ev.Src.Addr.String()
	}
	s.alerts.Alert(e)
}

// eventLimit remembers when each source last raised a security event.
type eventLimit struct {
	interval time.Duration
	max      int

	mu        sync.Mutex
	last      map[netip.Addr]time.Time
	lastSweep time.Time
}

// allow reports whether src may raise an event at now, and if so records
// it. Entries older than the interval are swept at most once per
// interval; when the table is full of fresh entries an arbitrary one is
// forgotten.
func (l *eventLimit) allow(src netip.Addr, now time.Time) bool {
	if l.interval <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t, seen := l.last[src]
	if seen && now.Sub(t) < l.interval {
		return false
	}
	if !seen && len(l.last) >= l.max {
		if now.Sub(l.lastSweep) >= l.interval {
			l.lastSweep = now
			for k, t := range l.last {
				if now.Sub(t) >= l.interval {
					delete(l.last, k)
				}
			}
		}
		if len(l.last) >= l.max {
			for k := range l.last {
				delete(l.last, k)
				break
			}
		}
	}
	l.last[src] = now
	return true
}

// size is how many sources the limit remembers.
func (l *eventLimit) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.last)
}

// method names a request's method in an event's detail: the SIP methods
// as they are, anything else as "request" (the method is the peer's text).
func method(m string) string {
	switch m {
	case "BYE", "INVITE", "UPDATE", "INFO", "PRACK", "NOTIFY", "REFER", "SUBSCRIBE", "MESSAGE", "OPTIONS", "CANCEL", "ACK", "PUBLISH":
		return m
	}
	return "request"
}

// clean bounds peer-controlled text for a security event: printable ASCII,
// at most n bytes.
func clean(s string, n int) string {
	ok := len(s) <= n
	for i := 0; ok && i < len(s); i++ {
		ok = s[i] >= 0x20 && s[i] < 0x7f
	}
	if ok {
		return s
	}
	b := make([]byte, 0, n)
	for i := 0; i < len(s) && len(b) < n; i++ {
		if s[i] >= 0x20 && s[i] < 0x7f {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// Close releases nothing; it is here so that every stage can be closed.
func (s *Stage) Close() error { return nil }

var (
	_ core.Stage = (*Stage)(nil)
	_ io.Closer  = (*Stage)(nil)
)
