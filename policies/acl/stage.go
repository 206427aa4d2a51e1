package acl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// Name is the stage's name, its YAML key and the prefix of its rules.
const Name = "acl"

// Rules, as the journal shows them.
const (
	RuleDeny          = "acl/deny"           // the source is on a deny list
	RuleNotAllowed    = "acl/not_allowed"    // the zone has an allow list and the source is not on it
	RuleInvalidSource = "acl/invalid_source" // the source address can never be a real peer
)

var (
	verdictDeny       = core.Verdict{Action: core.Drop, Reason: core.ReasonForbidden, Rule: RuleDeny}
	verdictNotAllowed = core.Verdict{Action: core.Drop, Reason: core.ReasonForbidden, Rule: RuleNotAllowed}
	verdictInvalid    = core.Verdict{Action: core.Drop, Reason: core.ReasonForbidden, Rule: RuleInvalidSource}
)

// invalidSources are the source addresses only a spoofed packet carries.
var invalidSources = []string{"0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "::/128", "ff00::/8"}

// Stage is the access list. It is immutable once built and safe for
// concurrent use.
type Stage struct {
	enabled bool
	log     *slog.Logger
	def     *rules
	zones   map[string]*rules // nil when no zone has its own lists
	invalid set               // empty unless deny_invalid

	denied, notAllowed, invalidSrc prometheus.Counter
}

// rules are one zone's compiled lists.
type rules struct {
	allow    set
	hasAllow bool
	deny     set
}

// ErrConfig reports a configuration that does not validate.
var ErrConfig = errors.New("acl: invalid configuration")

// New compiles the lists of cfg.
func New(cfg Config, deps core.Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stage{enabled: cfg.Enabled, log: log.With("stage", Name)}
	allow, deny := parseList(cfg.Allow), parseList(cfg.Deny)
	s.def = &rules{allow: newSet(allow), hasAllow: len(allow) > 0, deny: newSet(deny)}
	if len(cfg.Zones) > 0 {
		s.zones = make(map[string]*rules, len(cfg.Zones))
		for name, z := range cfg.Zones {
			r := &rules{allow: s.def.allow, hasAllow: s.def.hasAllow}
			if z.Allow != nil {
				za := parseList(z.Allow)
				r.allow, r.hasAllow = newSet(za), len(za) > 0
			}
			r.deny = newSet(append(append([]netip.Prefix(nil), deny...), parseList(z.Deny)...))
			s.zones[name] = r
		}
	}
	if cfg.DenyInvalid {
		s.invalid = newSet(parseList(invalidSources))
	}
	vec, _ := core.RegisterMetric(deps.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_acl_dropped_total",
		Help: "Packets, connections and events the access list dropped, by rule.",
	}, []string{"rule"}))
	s.denied = vec.WithLabelValues("deny")
	s.notAllowed = vec.WithLabelValues("not_allowed")
	s.invalidSrc = vec.WithLabelValues("invalid_source")
	s.log.Debug("access list compiled", "allow", len(allow), "deny", len(deny), "zones", len(cfg.Zones), "deny_invalid", cfg.DenyInvalid)
	return s, nil
}

// Name implements core.Stage.
func (s *Stage) Name() string { return Name }

// Layer implements core.Stage.
func (s *Stage) Layer() core.Layer { return core.Network }

// Decide implements core.Stage: the same verdict as DecidePacket, on the
// event's source.
func (s *Stage) Decide(_ context.Context, ev *core.Event) (core.Verdict, error) {
	return s.check(ev.Src.Addr.Addr(), ev.Src.Zone), nil
}

// DecidePacket implements core.PacketStage. It does not allocate.
func (s *Stage) DecidePacket(p *core.PacketMeta) core.Verdict {
	return s.check(p.Src.Addr(), p.Zone)
}

func (s *Stage) check(a netip.Addr, zone string) core.Verdict {
	if !s.enabled {
		return core.Verdict{}
	}
	a = a.Unmap()
	r := s.def
	if s.zones != nil {
		if zr, ok := s.zones[zone]; ok {
			r = zr
		}
	}
	switch {
	case s.invalid.contains(a):
		s.invalidSrc.Inc()
		return verdictInvalid
	case r.deny.contains(a):
		s.denied.Inc()
		return verdictDeny
	case r.hasAllow && !r.allow.contains(a):
		s.notAllowed.Inc()
		return verdictNotAllowed
	}
	return core.Verdict{}
}

var (
	_ core.Stage       = (*Stage)(nil)
	_ core.PacketStage = (*Stage)(nil)
)
