package scan

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// Name is the stage's name, its YAML key under policies and the prefix of
// its rules.
const Name = "scan"

// Rules the stage writes to the journal, puts on security events and
// blocks with.
const (
	RuleAgent     = "scan/agent"     // a scanner's User-Agent or From name
	RuleBehaviour = "scan/behaviour" // enumeration or a sweep
)

// ErrConfig reports a configuration that does not validate.
var ErrConfig = errors.New("scan: invalid configuration")

// signal is what gave a scanner away.
type signal uint8

const (
	sigAgent    signal = iota // User-Agent signature
	sigFrom                   // From name signature
	sigTargets                // too many distinct targets
	sigOptions                // too many distinct OPTIONS targets
	sigRegister               // too many distinct users registered
	numSignals
	sigNone = numSignals
)

var (
	signalNames   = [numSignals]string{"user_agent", "from", "targets", "options", "register"}
	signalRules   = [numSignals]string{RuleAgent, RuleAgent, RuleBehaviour, RuleBehaviour, RuleBehaviour}
	signalDetails = [numSignals]string{"Scanner User-Agent", "Scanner From", "Target Enumeration", "OPTIONS Sweep", "REGISTER Enumeration"}
	setSignals    = [numSets]signal{setTargets: sigTargets, setOptions: sigOptions, setRegister: sigRegister}
	setWhat       = [numSets]string{setTargets: "distinct targets", setOptions: "distinct OPTIONS targets", setRegister: "distinct users registered"}
)

// Stage is the scan stage. Decide is safe for concurrent use; it
// allocates only to remember a source it has not seen and to report a
// detection.
type Stage struct {
	def   policy
	zones map[string]*policy

	agents, froms signatures
	window        time.Duration
	refuseFor     time.Duration
	exempt        []netip.Prefix
	ipv6Prefix    int
	table         *table

	blocker core.Blocker
	alerts  *core.Alerts
	log     *slog.Logger
	now     func() time.Time

	detections [numSignals]prometheus.Counter
	refused    [2]prometheus.Counter // agent, behaviour
}

// policy is the behaviour in one zone.
type policy struct {
	enabled bool
	drop    bool
	limits  [numSets]int // 0: not checked
}

// New builds the stage from a configuration that Validate accepts. Its
// collectors are registered on deps.Metrics when that is set; a second
// stage on the same registry (a reload) shares them. Detected sources are
// blocked through deps.Blocker and reported to deps.Alerts, each when set.
func New(cfg Config, deps core.Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stage{
		def:        policy{enabled: cfg.Enabled, drop: cfg.Response == "drop", limits: [numSets]int{cfg.MaxTargets, cfg.MaxOptionsTargets, cfg.MaxRegisterUsers}},
		agents:     newSignatures(cfg.Agents),
		froms:      newSignatures(cfg.FromNames),
		window:     cfg.Window,
		refuseFor:  cfg.RefuseFor,
		ipv6Prefix: cfg.IPv6Prefix,
		blocker:    deps.Blocker,
		alerts:     deps.Alerts,
		log:        log.With("stage", Name),
		now:        time.Now,
	}
	for _, e := range cfg.Exempt {
		p, _ := parsePrefix(e) // validated
		s.exempt = append(s.exempt, p)
	}
	builtin := zoneDefaults()
	s.zones = make(map[string]*policy, len(cfg.Zones)+len(builtin))
	for _, zones := range []map[string]Zone{builtin, cfg.Zones} {
		for name := range zones {
			if _, done := s.zones[name]; !done {
				p := s.def
				p.apply(builtin[name])
				p.apply(cfg.Zones[name])
				s.zones[name] = &p
			}
		}
	}
	if err := s.metrics(deps.Metrics, cfg.MaxSources); err != nil {
		return nil, err
	}
	return s, nil
}

// apply overrides p with what z sets.
func (p *policy) apply(z Zone) {
	if z.Enabled != nil {
		p.enabled = *z.Enabled
	}
	if z.Response != nil {
		p.drop = *z.Response == "drop"
	}
	for k, v := range [numSets]*int{z.MaxTargets, z.MaxOptionsTargets, z.MaxRegisterUsers} {
		if v != nil {
			p.limits[k] = *v
		}
	}
}

func (s *Stage) metrics(reg prometheus.Registerer, maxSources int) error {
	detections, err := core.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_scan_detections_total",
		Help: "Scanners detected, by what gave them away (user_agent, from, targets, options, register).",
	}, []string{"signal"}))
	if err != nil {
		return fmt.Errorf("scan: register metrics: %w", err)
	}
	refused, err := core.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_scan_refused_total",
		Help: "Requests refused or dropped as a scanner's, by rule.",
	}, []string{"rule"}))
	if err != nil {
		return fmt.Errorf("scan: register metrics: %w", err)
	}
	evicted, err := core.RegisterMetric(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_scan_evicted_total",
		Help: "Sources forgotten before they were idle because the table was full (max_sources).",
	}))
	if err != nil {
		return fmt.Errorf("scan: register metrics: %w", err)
	}
	tracked, err := core.RegisterMetric(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ucgate_scan_sources",
		Help: "Source addresses the scan stage tracks.",
	}))
	if err != nil {
		return fmt.Errorf("scan: register metrics: %w", err)
	}
	for g := range numSignals {
		s.detections[g] = detections.WithLabelValues(signalNames[g])
	}
	s.refused[0], s.refused[1] = refused.WithLabelValues(RuleAgent), refused.WithLabelValues(RuleBehaviour)
	s.table = newTable(maxSources, s.window, evicted, tracked)
	return nil
}

// Name returns "scan".
func (s *Stage) Name() string { return Name }

// Layer returns core.Application.
func (s *Stage) Layer() core.Layer { return core.Application }

// Decide detects scanners. A request whose User-Agent or From name
// matches a signature, or that takes its source past a threshold, is
// answered as the zone's response says (drop, or refuse with
// core.ReasonForbidden), with rule scan/agent or scan/behaviour; the
// source is blocked through the Blocker, a security event is raised, and
// the source's requests for refuse_for are answered the same way without
// further blocks or events. Responses pass. It never errs.
func (s *Stage) Decide(_ context.Context, ev *core.Event) (core.Verdict, error) {
	if ev.Kind == core.KindResponse {
		return core.Verdict{}, nil
	}
	p := &s.def
	if z, ok := s.zones[ev.Src.Zone]; ok {
		p = z
	}
	addr := ev.Src.Addr.Addr().Unmap()
	if !p.enabled || s.exempted(addr) {
		return core.Verdict{}, nil
	}
	det, which := sigAgent, s.agents.match(ev.Agent)
	if which < 0 {
		det, which = sigFrom, s.froms.match(ev.From.Display)
		if which < 0 {
			which = s.froms.match(ev.From.User)
		}
	}
	if which < 0 {
		det = sigNone
	}
	if !addr.IsValid() { // nothing to remember or block: judge the request alone
		if det == sigNone {
			return core.Verdict{}, nil
		}
		s.detected(ev, p, det, which, 0, s.now())
		return s.verdict(p, det), nil
	}
	id := s.sourceOf(addr)
	set, key := s.behaviour(ev, p)
	if det == sigNone && set < 0 {
		// Nothing to record: only a flagged source is refused.
		return s.flagged(id, p), nil
	}
	now := s.now()
	sh := s.table.shard(id)
	sh.mu.Lock()
	src := sh.m[id]
	if src != nil {
		src.lastSeen = now
		if now.Before(src.flaggedUntil) {
			flag := src.flag
			sh.mu.Unlock()
			return s.verdict(p, flag), nil
		}
	}
	count := 0
	if det == sigNone {
		if src == nil {
			src = s.table.insert(sh, id, now)
		}
		limit := p.limits[set]
		if count = src.record(set, maphash.String(s.table.seed, key), now, s.window, limit); count > limit {
			det = setSignals[set]
		}
	}
	if det != sigNone {
		if src == nil {
			src = s.table.insert(sh, id, now)
		}
		src.flaggedUntil, src.flag = now.Add(s.refuseFor), det
		src.restart(now)
	}
	sh.mu.Unlock()
	if det == sigNone {
		return core.Verdict{}, nil
	}
	s.detected(ev, p, det, which, count, now)
	return s.verdict(p, det), nil
}

// sourceOf is the source an address counts as: itself for IPv4, its
// ipv6_prefix for IPv6.
func (s *Stage) sourceOf(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(s.ipv6Prefix)
	return p
}

// exempted reports whether a is in an exempt prefix.
func (s *Stage) exempted(a netip.Addr) bool {
	for _, p := range s.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// flagged answers a request that records nothing: refused if its source
// was detected less than refuse_for ago.
func (s *Stage) flagged(id netip.Prefix, p *policy) core.Verdict {
	sh := s.table.shard(id)
	sh.mu.Lock()
	src := sh.m[id]
	if src == nil {
		sh.mu.Unlock()
		return core.Verdict{}
	}
	now := s.now()
	src.lastSeen = now
	if !now.Before(src.flaggedUntil) {
		sh.mu.Unlock()
		return core.Verdict{}
	}
	flag := src.flag
	sh.mu.Unlock()
	return s.verdict(p, flag)
}

// behaviour returns the set a request counts in and the key it counts
// (-1 if none): REGISTER counts its To user, OPTIONS its request-URI, and
// other requests that open something (a call, a message, a subscription)
// the user they address. Requests inside a dialog count nowhere.
func (s *Stage) behaviour(ev *core.Event, p *policy) (int, string) {
	if ev.InDialog {
		return -1, ""
	}
	set, key := -1, ""
	switch ev.Kind {
	case core.KindRegister:
		set, key = setRegister, ev.To.User
	case core.KindProbe:
		set, key = setOptions, ev.Target
	case core.KindSessionOffer, core.KindMessage, core.KindPresence, core.KindOther:
		set, key = setTargets, userOf(ev.Target)
		if key == "" {
			key = ev.To.User
		}
	default:
		return -1, ""
	}
	if key == "" || p.limits[set] == 0 {
		return -1, ""
	}
	return set, key
}

// verdict is the answer to a scanner's request in p's zone.
func (s *Stage) verdict(p *policy, det signal) core.Verdict {
	rule := signalRules[det]
	if rule == RuleAgent {
		s.refused[0].Inc()
	} else {
		s.refused[1].Inc()
	}
	v := core.Verdict{Action: core.Refuse, Reason: core.ReasonForbidden, Rule: rule, Detail: signalDetails[det]}
	if p.drop {
		v.Action = core.Drop
	}
	return v
}

// detected blocks the source of ev and raises a security event. It runs
// once per detection, outside the table's locks.
func (s *Stage) detected(ev *core.Event, p *policy, det signal, which, count int, now time.Time) {
	s.detections[det].Inc()
	var reason string
	switch det {
	case sigAgent:
		reason = "User-Agent matches " + strconv.Quote(s.agents.names[which])
	case sigFrom:
		reason = "From matches " + strconv.Quote(s.froms.names[which])
	default:
		set := int(det - sigTargets)
		reason = fmt.Sprintf("%d %s within %v (limit %d)", count, setWhat[set], s.window, p.limits[set])
	}
	rule := signalRules[det]
	action := core.Refuse.String()
	if p.drop {
		action = core.Drop.String()
	}
	addr := ev.Src.Addr.Addr().Unmap()
	if s.blocker != nil && addr.IsValid() {
		s.blocker.Block(addr, rule, reason)
		action = "block"
	}
	s.log.Debug("scanner detected", "src", ev.Src.Addr, "rule", rule, "reason", reason)
	if s.alerts == nil {
		return
	}
	e := &core.SecurityEvent{
		Time:     now,
		Rule:     rule,
		Action:   action,
		Zone:     ev.Src.Zone,
		User:     clean(ev.From.User, 64),
		Protocol: ev.Protocol,
		Detail:   reason,
	}
	if ev.Src.Addr.IsValid() {
		e.Src = ev.Src.Addr.String()
	}
	s.alerts.Alert(e)
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

// Inherit takes over what prev knows of its sources (their counts and
// whether they were detected), so that a configuration reload does not
// give a scanner a fresh start. Call it before s decides anything; prev
// may go on deciding until it is closed.
func (s *Stage) Inherit(prev *Stage) {
	if prev == nil || prev == s {
		return
	}
	s.table.copyFrom(prev.table)
}

// Close forgets every source.
func (s *Stage) Close() error {
	s.table.clear()
	return nil
}

var (
	_ core.Stage = (*Stage)(nil)
	_ io.Closer  = (*Stage)(nil)
)
