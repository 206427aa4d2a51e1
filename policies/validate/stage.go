package validate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// Name is the stage's name, its YAML key under policies and the prefix of
// its rules.
const Name = "validate"

// Rules the stage writes to the journal.
const (
	RuleSize          = "validate/size"           // larger than max_size
	RuleHeaders       = "validate/headers"        // more header fields than max_headers
	RuleHeaderLength  = "validate/header_length"  // a header line longer than max_header_length
	RuleHops          = "validate/hops"           // more Via values than max_hops
	RuleContentLength = "validate/content_length" // Content-Length invalid or not the body's length
	RuleProtocol      = "validate/protocol"       // a protocol rule the adapter found broken
	RuleMaxForwards   = "validate/max_forwards"   // Max-Forwards missing or out of range
	RuleResponse      = "validate/response"       // a response that failed any check (dropped)
)

// ErrConfig reports a configuration that does not validate.
var ErrConfig = errors.New("validate: invalid configuration")

// check names one way a message can fail; ok is none.
type check uint8

const (
	ok check = iota
	checkSize
	checkHeaders
	checkHeaderLength
	checkHops
	checkContentLength
	checkProtocol
	checkMaxForwards
	checkResponse
	numChecks
)

var rules = [numChecks]string{
	checkSize:          RuleSize,
	checkHeaders:       RuleHeaders,
	checkHeaderLength:  RuleHeaderLength,
	checkHops:          RuleHops,
	checkContentLength: RuleContentLength,
	checkProtocol:      RuleProtocol,
	checkMaxForwards:   RuleMaxForwards,
	checkResponse:      RuleResponse,
}

// Details, the short reason phrases a refusal carries (the SIP adapter
// answers a 400 with them).
const (
	detailTooLarge       = "Message Too Large"
	detailHeaders        = "Too Many Headers"
	detailHeaderLength   = "Header Too Long"
	detailHops           = "Too Many Via"
	detailBadLength      = "Invalid Content-Length"
	detailLengthMismatch = "Content-Length Mismatch"
	detailBadMaxFwd      = "Invalid Max-Forwards"
	detailNoMaxFwd       = "Missing Max-Forwards"
	detailBadRequest     = "Bad Request"
)

// maxDetail bounds a reason phrase taken from Shape.Problems.
const maxDetail = 64

// Stage is the validate stage. It keeps no state between events: Decide is
// safe for concurrent use and does not allocate.
type Stage struct {
	enabled bool
	def     limits
	zones   map[string]*limits
	failed  [numChecks]prometheus.Counter
}

// limits is Limits resolved for one zone.
type limits struct {
	maxSize, maxHeaders, maxHeaderLength, maxHops int
	requireMaxForwards                            []string
}

func resolve(l Limits) limits {
	return limits{
		maxSize:            l.MaxSize,
		maxHeaders:         l.MaxHeaders,
		maxHeaderLength:    l.MaxHeaderLength,
		maxHops:            l.MaxHops,
		requireMaxForwards: slices.Clone(l.RequireMaxForwards),
	}
}

// New builds the stage from a configuration that Validate accepts. Its
// counters are registered on deps.Metrics when that is set; building a
// second stage on the same registry (a reload) shares them. With enabled
// false the stage allows everything.
func New(cfg Config, deps core.Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s := &Stage{enabled: cfg.Enabled, def: resolve(cfg.Limits)}
	if len(cfg.Zones) > 0 {
		s.zones = make(map[string]*limits, len(cfg.Zones))
		for name, z := range cfg.Zones {
			l := resolve(cfg.Limits.with(z))
			s.zones[name] = &l
		}
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_validate_failures_total",
		Help: "Messages that failed validation, by the rule that refused (requests) or dropped (responses) them.",
	}, []string{"rule"})
	vec, err := core.RegisterMetric(deps.Metrics, vec)
	if err != nil {
		return nil, fmt.Errorf("validate: register metrics: %w", err)
	}
	for c := checkSize; c < numChecks; c++ {
		s.failed[c] = vec.WithLabelValues(rules[c])
	}
	return s, nil
}

// Name returns "validate".
func (s *Stage) Name() string { return Name }

// Layer returns core.Application.
func (s *Stage) Layer() core.Layer { return core.Application }

// Decide checks ev.Shape against the limits of ev's zone. A request that
// fails is refused: core.ReasonTooLarge for its size, core.ReasonMalformed
// otherwise, with a reason phrase in Detail. A response (core.KindResponse)
// that fails is dropped with rule validate/response. It never errs.
func (s *Stage) Decide(_ context.Context, ev *core.Event) (core.Verdict, error) {
	if !s.enabled {
		return core.Verdict{}, nil
	}
	l := &s.def
	if s.zones != nil {
		if z, ok := s.zones[ev.Src.Zone]; ok {
			l = z
		}
	}
	c, detail := l.check(ev)
	switch {
	case c == ok:
		return core.Verdict{}, nil
	case ev.Kind == core.KindResponse:
		s.failed[checkResponse].Inc()
		return core.Verdict{Action: core.Drop, Rule: RuleResponse, Detail: detail}, nil
	}
	s.failed[c].Inc()
	reason := core.ReasonMalformed
	if c == checkSize {
		reason = core.ReasonTooLarge
	}
	return core.Verdict{Action: core.Refuse, Reason: reason, Rule: rules[c], Detail: detail}, nil
}

// check returns the first check ev fails and its reason phrase, or ok.
// Bounds come first (they are the cheapest and the most telling of an
// attack), then the framing, then the protocol's own rules.
func (l *limits) check(ev *core.Event) (check, string) {
	sh := &ev.Shape
	request := ev.Kind != core.KindResponse
	switch {
	case sh.Size > l.maxSize:
		return checkSize, detailTooLarge
	case sh.Headers > l.maxHeaders:
		return checkHeaders, detailHeaders
	case sh.LongestHeader > l.maxHeaderLength:
		return checkHeaderLength, detailHeaderLength
	case sh.Hops > l.maxHops:
		return checkHops, detailHops
	case sh.DeclaredLength < -1:
		return checkContentLength, detailBadLength
	case sh.DeclaredLength >= 0 && sh.DeclaredLength != sh.BodyLength:
		return checkContentLength, detailLengthMismatch
	case len(sh.Problems) > 0:
		return checkProtocol, phrase(sh.Problems[0])
	case request && (sh.MaxForwards < -1 || sh.MaxForwards > 255):
		return checkMaxForwards, detailBadMaxFwd
	case request && sh.MaxForwards == -1 && slices.Contains(l.requireMaxForwards, ev.Protocol):
		return checkMaxForwards, detailNoMaxFwd
	}
	return ok, ""
}

// phrase returns p as a reason phrase: printable ASCII, at most maxDetail
// bytes, never empty. The adapter's phrases pass unchanged and without
// allocating; anything else is cleaned.
func phrase(p string) string {
	if p != "" && len(p) <= maxDetail && printable(p) {
		return p
	}
	b := make([]byte, 0, min(len(p), maxDetail))
	for i := 0; i < len(p) && len(b) < maxDetail; i++ {
		if c := p[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return detailBadRequest
	}
	return string(b)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return s[len(s)-1] != ' '
}

// Close releases nothing; it is here so that every stage can be closed.
func (s *Stage) Close() error { return nil }

var (
	_ core.Stage = (*Stage)(nil)
	_ io.Closer  = (*Stage)(nil)
)
