package srtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// Name is the stage's name, its YAML key under policies and the prefix of
// its rules.
const Name = "srtp"

// Rules, as the journal shows them.
const (
	// RuleRequired: an offer or update without encrypted media from a
	// zone that requires it.
	RuleRequired = "srtp/required"
	// RuleSuite: an offer or update from a zone that requires SRTP with a
	// stream protected only by crypto suites outside the configured list.
	RuleSuite = "srtp/suite"
)

// detail is the refusals' reason phrase (SIP 488 SRTP Required).
const detail = "SRTP Required"

var (
	verdictRequired = core.RefuseWith(core.ReasonNotAcceptable, RuleRequired, detail)
	verdictSuite    = core.RefuseWith(core.ReasonNotAcceptable, RuleSuite, detail)
)

// ErrConfig reports a configuration that does not validate.
var ErrConfig = errors.New("srtp: invalid configuration")

// Stage is the srtp stage. It keeps no state between events: Decide is
// safe for concurrent use and does not allocate.
type Stage struct {
	enabled bool
	zones   map[string]zone // zones listed, and "" for the rest
	suites  []string        // canonical names
}

// zone is one zone's requirement and its refusal counters.
type zone struct {
	required      bool
	plain, suites prometheus.Counter
}

// New builds the stage from a configuration that Validate accepts. Its
// counter is registered on deps.Metrics when that is set; a second stage
// on the same registry (a reload) shares it. With enabled false the stage
// allows everything.
func New(cfg Config, deps core.Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	vec, err := core.RegisterMetric(deps.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_srtp_refused_total",
		Help: "Session offers and updates refused for unencrypted media or crypto suites outside the list, by zone (\"other\" for zones the configuration does not name) and rule.",
	}, []string{"zone", "rule"}))
	if err != nil {
		return nil, fmt.Errorf("srtp: register metrics: %w", err)
	}
	s := &Stage{enabled: cfg.Enabled, zones: make(map[string]zone, len(cfg.Zones)+1)}
	for _, n := range cfg.Suites {
		s.suites = append(s.suites, canonicalSuite(n))
	}
	mk := func(label string, required bool) zone {
		return zone{required: required, plain: vec.WithLabelValues(label, RuleRequired), suites: vec.WithLabelValues(label, RuleSuite)}
	}
	for name, z := range cfg.Zones {
		req := cfg.Required
		if z.Required != nil {
			req = *z.Required
		}
		s.zones[name] = mk(name, req)
	}
	// Zones the configuration does not name share one label, so that a
	// zone name never grows the label set beyond what the operator wrote.
	s.zones[""] = mk("other", cfg.Required)
	return s, nil
}

// Name returns "srtp".
func (s *Stage) Name() string { return Name }

// Layer returns core.Application.
func (s *Stage) Layer() core.Layer { return core.Application }

// Decide judges session offers and updates that carry media
// (core.KindSessionOffer and KindSessionUpdate with ev.Media set) from a
// zone that requires SRTP: unencrypted media is refused with rule
// srtp/required, a stream protected by SDES alone whose every crypto
// attribute names a suite outside the list with rule srtp/suite; both
// with core.ReasonNotAcceptable and the detail "SRTP Required". Every
// other event passes. It never errs.
func (s *Stage) Decide(_ context.Context, ev *core.Event) (core.Verdict, error) {
	if !s.enabled || ev.Media == nil || (ev.Kind != core.KindSessionOffer && ev.Kind != core.KindSessionUpdate) {
		return core.Verdict{}, nil
	}
	z, ok := s.zones[ev.Src.Zone]
	if !ok {
		z = s.zones[""]
	}
	if !z.required {
		return core.Verdict{}, nil
	}
	if !ev.Media.Encrypted() {
		z.plain.Inc()
		return verdictRequired, nil
	}
	for i := range ev.Media.Streams {
		st := &ev.Media.Streams[i]
		// A DTLS fingerprint protects the stream whatever SDES lines sit
		// beside it: the media engine keys it through DTLS.
		if st.Disabled || st.Fingerprint != "" {
			continue
		}
		if !s.anyAllowed(st.Crypto) {
			z.suites.Inc()
			return verdictSuite, nil
		}
	}
	return core.Verdict{}, nil
}

// anyAllowed reports whether one of the crypto attributes names a suite
// of the list.
func (s *Stage) anyAllowed(cs []core.Crypto) bool {
	for i := range cs {
		for _, ok := range s.suites {
			if strings.EqualFold(cs[i].Suite, ok) {
				return true
			}
		}
	}
	return false
}

// Close releases nothing; it is here so that every stage can be closed.
func (s *Stage) Close() error { return nil }

var (
	_ core.Stage = (*Stage)(nil)
	_ io.Closer  = (*Stage)(nil)
)
