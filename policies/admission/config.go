package admission

import (
	"errors"
	"math"
	"slices"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the policies.admission section of ucgate.yaml.
type Config struct {
	// Enabled turns admission control on. Default true.
	Enabled bool `yaml:"enabled"`
	// Over is what a caller over a limit hears: "unavailable" (SIP 503
	// Service Unavailable with Retry-After) or "busy" (SIP 486 Busy Here,
	// with Retry-After too when retry_after is set). Default "unavailable".
	Over string `yaml:"over"`
	// RetryAfter is offered to a refused caller (SIP Retry-After, whole
	// seconds, at least 1). 0 offers none. Default 5s; at most 1h.
	RetryAfter time.Duration `yaml:"retry_after"`

	// Source limits the calls of one source address (IPv4 address, or
	// IPv6 prefix of ipv6_prefix bits). Default 20 concurrent calls, 5 new
	// calls per second with bursts of 10; the next call is refused with
	// rule admission/source or admission/source_rate.
	Source Limit `yaml:"source"`
	// User limits the calls of one calling user (From user@domain, the
	// domain compared case-insensitively). Default 10 concurrent calls, 2
	// new calls per second with bursts of 4; the next is refused with rule
	// admission/user or admission/user_rate.
	User Limit `yaml:"user"`
	// Global limits the calls through the whole gateway. Default 2000
	// concurrent calls, 200 new calls per second with bursts of 400; the
	// next is refused with rule admission/global or admission/global_rate.
	Global Limit `yaml:"global"`
	// Trunks limits the calls to named upstreams (the names of
	// sip.upstreams), rules admission/trunk and admission/trunk_rate. A
	// trunk not listed is unlimited (its calls are still counted). Default
	// none.
	Trunks map[string]Limit `yaml:"trunks"`
	// Zones override the source and user limits for calls arriving in a
	// zone (the listener's or upstream's zone); a key left out keeps the
	// value above. Default: zone "trunk" (calls from upstreams, where one
	// PBX is one source for every call) has no source or user limits.
	Zones map[string]Zone `yaml:"zones"`

	// IPv6Prefix is how many leading bits of an IPv6 source address make
	// one source: a host usually holds a whole /64. Default 64; 128
	// counts every address apart.
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// ReserveTimeout is how long a slot reserved for an admitted offer
	// waits for its session to start before it is released (the offer was
	// refused by a later stage or found no route). Default 5s; 1s to 5m.
	ReserveTimeout time.Duration `yaml:"reserve_timeout"`
	// MaxKeys bounds how many sources and how many users are tracked at
	// once (each table has 32 shards of max_keys/32 entries). Entries
	// leave when they have no calls and their bucket is full again; when
	// a shard is full of busy entries, an offer from a new source or user
	// is refused (admission/source or admission/user, detail "too many
	// sources tracked"). Default 65536; 1024 to 16777216.
	MaxKeys int `yaml:"max_keys"`
}

// Limit is one set of limits. 0 turns a limit off.
type Limit struct {
	// Concurrent is the most calls at once (admitted and not yet ended).
	Concurrent int `yaml:"concurrent"`
	// Rate is the sustained new calls per second (fractions allowed: 0.5
	// is one call every two seconds).
	Rate float64 `yaml:"rate"`
	// Burst is how many calls may arrive at once (the bucket's size); it
	// does nothing without a rate. 0: the rate rounded up, at least 1.
	Burst int `yaml:"burst"`
}

// Zone overrides limits for one zone; a key left out keeps the default.
type Zone struct {
	Source ZoneLimit `yaml:"source"`
	User   ZoneLimit `yaml:"user"`
}

// ZoneLimit is a Limit whose fields may be left out.
type ZoneLimit struct {
	Concurrent *int     `yaml:"concurrent"`
	Rate       *float64 `yaml:"rate"`
	Burst      *int     `yaml:"burst"`
}

// Defaults returns the built-in configuration: on, with limits a small
// office does not notice.
func Defaults() Config {
	zero, none := 0, 0.0
	return Config{
		Enabled:        true,
		Over:           "unavailable",
		RetryAfter:     5 * time.Second,
		Source:         Limit{Concurrent: 20, Rate: 5, Burst: 10},
		User:           Limit{Concurrent: 10, Rate: 2, Burst: 4},
		Global:         Limit{Concurrent: 2000, Rate: 200, Burst: 400},
		Zones:          map[string]Zone{"trunk": {Source: ZoneLimit{Concurrent: &zero, Rate: &none}, User: ZoneLimit{Concurrent: &zero, Rate: &none}}},
		IPv6Prefix:     64,
		ReserveTimeout: 5 * time.Second,
		MaxKeys:        65536,
	}
}

// Bounds of the configuration values.
const (
	maxConcurrent = 1 << 30
	maxRate       = 1e6
	maxRetryAfter = time.Hour
)

// Validate reports every problem in c.
func (c Config) Validate() error {
	var errs []error
	bad := func(path, f string, a ...any) { errs = append(errs, config.Invalid(path, f, a...)) }
	if c.Over != "unavailable" && c.Over != "busy" {
		bad("over", `must be "unavailable" or "busy", got %q`, c.Over)
	}
	if c.RetryAfter < 0 || c.RetryAfter > maxRetryAfter {
		bad("retry_after", "must be from 0 to 1h, got %v", c.RetryAfter)
	}
	errs = append(errs, c.Source.validate("source"), c.User.validate("user"), c.Global.validate("global"))
	for _, name := range sortedKeys(c.Trunks) {
		if name == "" {
			bad("trunks", "a trunk must have a name")
			continue
		}
		errs = append(errs, c.Trunks[name].validate("trunks."+name))
	}
	for _, name := range sortedKeys(c.Zones) {
		if name == "" {
			bad("zones", "a zone must have a name")
			continue
		}
		z := c.Zones[name]
		p := "zones." + name
		errs = append(errs, z.Source.validate(p+".source"), z.User.validate(p+".user"))
	}
	if c.IPv6Prefix < 32 || c.IPv6Prefix > 128 {
		bad("ipv6_prefix", "must be from 32 to 128, got %d", c.IPv6Prefix)
	}
	if c.ReserveTimeout < time.Second || c.ReserveTimeout > 5*time.Minute {
		bad("reserve_timeout", "must be from 1s to 5m, got %v", c.ReserveTimeout)
	}
	if c.MaxKeys < 1024 || c.MaxKeys > 1<<24 {
		bad("max_keys", "must be from 1024 to %d, got %d", 1<<24, c.MaxKeys)
	}
	return errors.Join(errs...)
}

func (l Limit) validate(path string) error {
	var errs []error
	if l.Concurrent < 0 || l.Concurrent > maxConcurrent {
		errs = append(errs, config.Invalid(path+".concurrent", "must be from 0 (no limit) to %d, got %d", maxConcurrent, l.Concurrent))
	}
	if math.IsNaN(l.Rate) || l.Rate < 0 || l.Rate > maxRate {
		errs = append(errs, config.Invalid(path+".rate", "must be from 0 (no limit) to %g calls per second, got %v", maxRate, l.Rate))
	}
	if l.Burst < 0 || l.Burst > maxConcurrent {
		errs = append(errs, config.Invalid(path+".burst", "must be from 0 (the rate, rounded up) to %d, got %d", maxConcurrent, l.Burst))
	}
	return errors.Join(errs...)
}

// validate checks the fields z sets.
func (z ZoneLimit) validate(path string) error {
	var l Limit
	if z.Concurrent != nil {
		l.Concurrent = *z.Concurrent
	}
	if z.Rate != nil {
		l.Rate = *z.Rate
	}
	if z.Burst != nil {
		l.Burst = *z.Burst
	}
	return l.validate(path)
}

// apply returns base with the fields z sets replaced.
func (z ZoneLimit) apply(base Limit) Limit {
	if z.Concurrent != nil {
		base.Concurrent = *z.Concurrent
	}
	if z.Rate != nil {
		base.Rate = *z.Rate
	}
	if z.Burst != nil {
		base.Burst = *z.Burst
	}
	return base
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
