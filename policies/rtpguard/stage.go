package rtpguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// Name is the stage's name, its YAML key under policies and the prefix of
// its rules.
const Name = "rtpguard"

// Rules, as the relay records its drops and the journal shows them.
const (
	RuleHeader      = "rtpguard/header"       // not a well-formed RTP version 2 header
	RuleRTCP        = "rtpguard/rtcp"         // a packet the relay took for RTCP that is not RTCP
	RulePayloadType = "rtpguard/payload_type" // a payload type that was not negotiated
	RuleSSRC        = "rtpguard/ssrc"         // an SSRC other than the stream's
	RuleSequence    = "rtpguard/sequence"     // a sequence number far from the stream's
	RuleTimestamp   = "rtpguard/timestamp"    // a timestamp far from the stream's clock
	RuleRate        = "rtpguard/rate"         // the stream's packet or byte rate is spent
	// RuleRestart is the rule of the security event raised when the lock
	// moves to a new source after a validated restart; it drops nothing.
	RuleRestart = "rtpguard/restart"
)

// rule indexes verdicts, counters and a guard's alerted bits.
type rule uint8

const (
	rHeader rule = iota
	rRTCP
	rPayloadType
	rSSRC
	rSequence
	rTimestamp
	rRate
	nRules
)

var ruleNames = [nRules]string{RuleHeader, RuleRTCP, RulePayloadType, RuleSSRC, RuleSequence, RuleTimestamp, RuleRate}

// verdicts are the drops, one per rule, built once: Check returns them by
// value without allocating.
var verdicts = [nRules]core.Verdict{
	rHeader:      {Action: core.Drop, Reason: core.ReasonMalformed, Rule: RuleHeader, Detail: "Bad RTP Header"},
	rRTCP:        {Action: core.Drop, Reason: core.ReasonMalformed, Rule: RuleRTCP, Detail: "Bad RTCP Header"},
	rPayloadType: {Action: core.Drop, Reason: core.ReasonNotAcceptable, Rule: RulePayloadType, Detail: "Payload Type Not Negotiated"},
	rSSRC:        {Action: core.Drop, Reason: core.ReasonForbidden, Rule: RuleSSRC, Detail: "Foreign SSRC"},
	rSequence:    {Action: core.Drop, Reason: core.ReasonForbidden, Rule: RuleSequence, Detail: "Sequence Number Out Of Window"},
	rTimestamp:   {Action: core.Drop, Reason: core.ReasonForbidden, Rule: RuleTimestamp, Detail: "Timestamp Out Of Window"},
	rRate:        {Action: core.Drop, Reason: core.ReasonRateLimited, Rule: RuleRate, Detail: "Media Rate Exceeded"},
}

// ErrConfig reports a configuration that does not validate.
var ErrConfig = errors.New("rtpguard: invalid configuration")

// Stage is the RTP guard. It holds the compiled configuration and the
// metrics; the per-stream state lives in the guards it hands out, which
// keep the configuration of their start across reloads.
type Stage struct {
	enabled bool
	def     *limits
	zones   map[string]*limits // a nil value: the zone is not guarded
	log     *slog.Logger
	alerts  *core.Alerts
	now     func() time.Time // wall clock of security events

	dropped  [nRules]prometheus.Counter
	restarts prometheus.Counter
	streams  prometheus.Gauge
}

// limits are compiled Limits.
type limits struct {
	lenient       bool
	behind, ahead uint16
	jump          time.Duration
	restartN      int32
	restartAfter  int64 // ns
	audio, video  bucket
}

// bucket is a compiled Rate: GCRA over the relay's clock, in ns.
type bucket struct {
	pktInterval int64
	pktLimit    int64
	nsPerByte   float64
	byteLimit   int64
}

func compile(l Limits) *limits {
	return &limits{
		lenient:      l.PayloadTypes == PayloadLenient,
		behind:       uint16(l.SequenceBehind),
		ahead:        uint16(l.SequenceAhead),
		jump:         l.MaxTimestampJump,
		restartN:     int32(l.RestartPackets),
		restartAfter: int64(l.RestartAfter),
		audio:        compileRate(l.AudioRate),
		video:        compileRate(l.VideoRate),
	}
}

func compileRate(r Rate) bucket {
	b := bucket{pktInterval: max(int64(float64(time.Second)/r.Packets), 1), nsPerByte: float64(time.Second) / r.Bytes}
	b.pktLimit = int64(r.PacketBurst) * b.pktInterval
	b.byteLimit = int64(float64(r.ByteBurst) * b.nsPerByte)
	return b
}

// New builds the stage from a configuration that Validate accepts. Its
// metrics are registered on deps.Metrics when that is set (a stage built
// on a reload shares them); security events go to deps.Alerts.
func New(cfg Config, deps core.Deps) (*Stage, error) {
	return newStage(cfg, deps, time.Now)
}

// newStage is New with a wall clock, for tests.
func newStage(cfg Config, deps core.Deps, now func() time.Time) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stage{
		enabled: cfg.Enabled,
		def:     compile(cfg.Limits),
		zones:   make(map[string]*limits, len(cfg.Zones)),
		log:     log.With("stage", Name),
		alerts:  deps.Alerts,
		now:     now,
	}
	for name, z := range cfg.Zones {
		if z.Enabled != nil && !*z.Enabled {
			s.zones[name] = nil
			continue
		}
		s.zones[name] = compile(z.Limits.merge(cfg.Limits))
	}
	dropped, err := core.RegisterMetric(deps.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_rtpguard_dropped_total",
		Help: "Media packets the RTP guard told the relay to drop, by rule.",
	}, []string{"rule"}))
	if err != nil {
		return nil, fmt.Errorf("rtpguard: register metrics: %w", err)
	}
	for i, n := range ruleNames {
		s.dropped[i] = dropped.WithLabelValues(n)
	}
	if s.restarts, err = core.RegisterMetric(deps.Metrics, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_rtpguard_restarts_total",
		Help: "Validated restarts: the lock of a stream direction moved to a new SSRC or sequence after the old one fell silent.",
	})); err != nil {
		return nil, fmt.Errorf("rtpguard: register metrics: %w", err)
	}
	if s.streams, err = core.RegisterMetric(deps.Metrics, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ucgate_rtpguard_streams",
		Help: "Stream directions guarded now.",
	})); err != nil {
		return nil, fmt.Errorf("rtpguard: register metrics: %w", err)
	}
	return s, nil
}

// Name returns "rtpguard".
func (s *Stage) Name() string { return Name }

// Layer returns core.Content.
func (s *Stage) Layer() core.Layer { return core.Content }

// Decide allows every event: the stage judges packets, through Guard.
func (s *Stage) Decide(context.Context, *core.Event) (core.Verdict, error) {
	return core.Verdict{}, nil
}

// Guard implements core.MediaStage: it returns the guard of a new stream
// direction, or nil when the stage is off, the sending leg's zone is not
// guarded, or nothing was negotiated for the stream (no RTP payload
// format: a T.38 UDPTL or data channel stream is not RTP).
func (s *Stage) Guard(info *core.StreamInfo) core.StreamGuard {
	if !s.enabled || info == nil || len(info.Codecs) == 0 {
		return nil
	}
	lim, ok := s.zones[info.Zone]
	if !ok {
		lim = s.def
	}
	if lim == nil {
		return nil
	}
	g := &guard{st: s}
	g.neg.Store(s.negotiate(info, lim))
	s.streams.Inc()
	return g
}

// Close releases nothing: guards outlive their stage across a reload and
// are closed by the relay.
func (s *Stage) Close() error { return nil }

// negotiated is what a guard checks a stream direction against: its
// limits and payload types. It is immutable; Renegotiate swaps in a new
// one.
type negotiated struct {
	lim   *limits
	rate  *bucket
	pt    [128]ptInfo
	other ptInfo // a dynamic type accepted by payload_types: lenient
	// For security events.
	session core.SessionID
	zone    string
	from    string
	index   int
	typ     string
}

// ptInfo is one payload type of a stream.
type ptInfo struct {
	ok     bool
	repair bool  // a retransmission or FEC format, sent on an SSRC of its own
	rate   int64 // clock rate, Hz
	win    int64 // max_timestamp_jump in clock ticks
}

// Clock rates are bounded so that tick arithmetic cannot overflow.
const maxClockRate = 10_000_000

// staticRates are the clock rates of the static payload types (RFC 3551),
// for a negotiation that gave none.
var staticRates = [35]int64{0: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000, 9: 8000,
	10: 44100, 11: 44100, 12: 8000, 13: 8000, 14: 90000, 15: 8000, 16: 11025, 17: 22050, 18: 8000,
	25: 90000, 26: 90000, 28: 90000, 31: 90000, 32: 90000, 33: 90000, 34: 90000}

// negotiate compiles a stream direction's description.
func (s *Stage) negotiate(info *core.StreamInfo, lim *limits) *negotiated {
	n := &negotiated{lim: lim, rate: &lim.video, session: info.Session, zone: info.Zone,
		from: info.From, index: info.Index, typ: info.Type}
	fallback := int64(90000)
	if strings.EqualFold(info.Type, "audio") {
		n.rate = &lim.audio
		fallback = 48000
	}
	var top int64
	for _, c := range info.Codecs {
		if c.PT > 127 {
			continue
		}
		rate := int64(c.Rate)
		if rate == 0 && int(c.PT) < len(staticRates) {
			rate = staticRates[c.PT]
		}
		if rate == 0 {
			rate = fallback
		}
		rate = min(rate, maxClockRate)
		n.pt[c.PT] = ptInfo{ok: true, repair: repairFormat(c.Name), rate: rate, win: ticks(lim.jump, rate)}
		top = max(top, rate)
	}
	if top == 0 {
		top = fallback
	}
	n.other = ptInfo{ok: true, rate: top, win: ticks(lim.jump, top)}
	return n
}

// ticks is d at rate Hz, at most 2^31-1 (half the timestamp space).
func ticks(d time.Duration, rate int64) int64 {
	return min(rate*d.Milliseconds()/1000, 1<<31-1)
}

// repairFormat reports whether an encoding is sent on an SSRC of its
// own beside the media: retransmissions (RFC 4588) and FEC.
func repairFormat(name string) bool {
	return strings.EqualFold(name, "rtx") || strings.EqualFold(name, "ulpfec") ||
		len(name) >= 7 && strings.EqualFold(name[:7], "flexfec")
}

var (
	_ core.Stage       = (*Stage)(nil)
	_ core.MediaStage  = (*Stage)(nil)
	_ io.Closer        = (*Stage)(nil)
	_ core.StreamGuard = (*guard)(nil)
)
