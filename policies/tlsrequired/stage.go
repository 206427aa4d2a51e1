package tlsrequired

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// Name is the stage's name, its YAML key under policies and the prefix of
// its rules.
const Name = "tlsrequired"

// RulePlain is the rule of a refusal: a plain transport in a zone that
// requires encryption.
const RulePlain = "tlsrequired/plain"

// detail is the refusal's reason phrase.
const detail = "TLS Required"

// ErrConfig reports a configuration that does not validate.
var ErrConfig = errors.New("tlsrequired: invalid configuration")

// Stage is the tlsrequired stage. It keeps no state between events:
// Decide is safe for concurrent use and does not allocate.
type Stage struct {
	enabled  bool
	required bool            // zones not listed
	zones    map[string]zone // zones listed
}

// zone is one listed zone: whether it requires encryption, and its count
// of refusals.
type zone struct {
	required bool
	refused  prometheus.Counter
}

// New builds the stage from a configuration that Validate accepts. Its
// counter is registered on deps.Metrics when that is set; a second stage
// on the same registry (a reload) shares it. With enabled false the stage
// allows everything.
func New(cfg Config, deps core.Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_tlsrequired_refused_total",
		Help: "Requests refused because they arrived unencrypted in a zone that requires encryption, by zone (\"other\" for zones the configuration does not name).",
	}, []string{"zone"})
	vec, err := core.RegisterMetric(deps.Metrics, vec)
	if err != nil {
		return nil, fmt.Errorf("tlsrequired: register metrics: %w", err)
	}
	s := &Stage{enabled: cfg.Enabled, required: cfg.Required, zones: map[string]zone{}}
	for name, z := range cfg.Zones {
		req := cfg.Required
		if z.Required != nil {
			req = *z.Required
		}
		s.zones[name] = zone{required: req, refused: vec.WithLabelValues(name)}
	}
	// Zones the configuration does not name share one label, so that a
	// zone name never grows the label set beyond what the operator wrote.
	s.zones[""] = zone{required: cfg.Required, refused: vec.WithLabelValues("other")}
	return s, nil
}

// Name returns "tlsrequired".
func (s *Stage) Name() string { return Name }

// Layer returns core.Application.
func (s *Stage) Layer() core.Layer { return core.Application }

// Decide refuses a request that arrived unencrypted in a zone requiring
// encryption, with core.ReasonEncryptionRequired and rule
// tlsrequired/plain. Responses pass: they answer what the gateway sent. It
// never errs.
func (s *Stage) Decide(_ context.Context, ev *core.Event) (core.Verdict, error) {
	if !s.enabled || ev.Src.Encrypted || ev.Kind == core.KindResponse {
		return core.Verdict{}, nil
	}
	z, ok := s.zones[ev.Src.Zone]
	if !ok {
		z = s.zones[""]
	}
	if !z.required {
		return core.Verdict{}, nil
	}
	z.refused.Inc()
	return core.Verdict{Action: core.Refuse, Reason: core.ReasonEncryptionRequired, Rule: RulePlain, Detail: detail}, nil
}

// Close releases nothing; it is here so that every stage can be closed.
func (s *Stage) Close() error { return nil }

var (
	_ core.Stage = (*Stage)(nil)
	_ io.Closer  = (*Stage)(nil)
)
