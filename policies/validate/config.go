package validate

import (
	"errors"
	"slices"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the validate section of ucgate.yaml (policies.validate).
type Config struct {
	// Enabled turns the stage on. Default true.
	Enabled bool `yaml:"enabled"`
	// Limits apply in every zone that Zones does not override.
	Limits `yaml:",inline"`
	// Zones overrides limits per zone (the zone names of the SIP listeners
	// and upstreams, "internet" and "trunk" in the default configuration).
	// A key left out of a zone keeps the value above. Default: none.
	Zones map[string]Zone `yaml:"zones"`
}

// Limits are the bounds a message must stay within.
type Limits struct {
	// MaxSize is the largest message accepted, in bytes on the wire.
	// Default 16384 (16 KiB: a SIP INVITE with a large WebRTC offer is
	// under 10 KiB). A larger request is refused as too large (SIP 513).
	// Between 512 and 16777216.
	MaxSize int `yaml:"max_size"`
	// MaxHeaders is the most header fields a message may carry. Default 64
	// (a busy INVITE has about 25). A message with more is refused with
	// "Too Many Headers". Between 8 and 4096.
	MaxHeaders int `yaml:"max_headers"`
	// MaxHeaderLength is the longest header field line accepted, in bytes.
	// Default 2048: long enough for a STIR/SHAKEN Identity header (about
	// 1 KiB) or a Record-Route through several proxies, short enough to
	// stop buffer-overflow probes. A longer line is refused with "Header
	// Too Long". Between 128 and 1048576.
	MaxHeaderLength int `yaml:"max_header_length"`
	// MaxHops is the most Via header field values a message may carry.
	// Default 16 (a request crossing a few proxies has 2 to 5). A message
	// with more is refused with "Too Many Via". Between 1 and 1024.
	MaxHops int `yaml:"max_hops"`
	// RequireMaxForwards lists the protocols whose requests must carry a
	// Max-Forwards header field (RFC 3261 section 8.1.1 makes it
	// mandatory in SIP; XMPP has none). Default [sip]. A request of a
	// listed protocol without one is refused with "Missing Max-Forwards";
	// an empty list turns the check off.
	RequireMaxForwards []string `yaml:"require_max_forwards"`
}

// Zone overrides Limits in one zone; a key left out keeps the value of the
// section above.
type Zone struct {
	MaxSize            *int      `yaml:"max_size"`
	MaxHeaders         *int      `yaml:"max_headers"`
	MaxHeaderLength    *int      `yaml:"max_header_length"`
	MaxHops            *int      `yaml:"max_hops"`
	RequireMaxForwards *[]string `yaml:"require_max_forwards"`
}

// Defaults returns the configuration used when ucgate.yaml says nothing:
// on, with limits a small office does not notice.
func Defaults() Config {
	return Config{
		Enabled: true,
		Limits: Limits{
			MaxSize:            16384,
			MaxHeaders:         64,
			MaxHeaderLength:    2048,
			MaxHops:            16,
			RequireMaxForwards: []string{"sip"},
		},
	}
}

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	errs := []error{c.Limits.validate()}
	for _, name := range sortedKeys(c.Zones) {
		if name == "" {
			errs = append(errs, config.Invalid("zones", "a zone name must not be empty"))
			continue
		}
		errs = append(errs, config.Nest("zones."+name, c.Zones[name].validate()))
	}
	return errors.Join(errs...)
}

// Bounds of each limit.
const (
	minSize, maxSize                 = 512, 16 << 20
	minHeaders, maxHeaders           = 8, 4096
	minHeaderLength, maxHeaderLength = 128, 1 << 20
	minHops, maxHops                 = 1, 1024
)

func (l Limits) validate() error {
	return Zone{&l.MaxSize, &l.MaxHeaders, &l.MaxHeaderLength, &l.MaxHops, &l.RequireMaxForwards}.validate()
}

// validate checks the values z sets.
func (z Zone) validate() error {
	var errs []error
	between := func(path string, v *int, lo, hi int) {
		if v != nil && (*v < lo || *v > hi) {
			errs = append(errs, config.Invalid(path, "must be between %d and %d, got %d", lo, hi, *v))
		}
	}
	between("max_size", z.MaxSize, minSize, maxSize)
	between("max_headers", z.MaxHeaders, minHeaders, maxHeaders)
	between("max_header_length", z.MaxHeaderLength, minHeaderLength, maxHeaderLength)
	between("max_hops", z.MaxHops, minHops, maxHops)
	if z.RequireMaxForwards != nil {
		for i, p := range *z.RequireMaxForwards {
			if !validProtocol(p) {
				errs = append(errs, config.Invalid(config.Index("require_max_forwards", i),
					"must be a protocol name in lower case (sip, xmpp, ...), got %q", p))
			}
		}
	}
	return errors.Join(errs...)
}

// with returns l overridden by z.
func (l Limits) with(z Zone) Limits {
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	set(&l.MaxSize, z.MaxSize)
	set(&l.MaxHeaders, z.MaxHeaders)
	set(&l.MaxHeaderLength, z.MaxHeaderLength)
	set(&l.MaxHops, z.MaxHops)
	if z.RequireMaxForwards != nil {
		l.RequireMaxForwards = *z.RequireMaxForwards
	}
	return l
}

// validProtocol accepts the names adapters put in core.Event.Protocol:
// lower-case letters, digits and dashes, 1 to 32 of them.
func validProtocol(p string) bool {
	if p == "" || len(p) > 32 {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
