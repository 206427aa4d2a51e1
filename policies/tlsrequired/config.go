package tlsrequired

import (
	"errors"
	"slices"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the tlsrequired section of ucgate.yaml (policies.tlsrequired).
type Config struct {
	// Enabled turns the stage on. Default true; with no zone requiring
	// encryption it refuses nothing.
	Enabled bool `yaml:"enabled"`
	// Required says whether zones that Zones does not name require an
	// encrypted transport (TLS or WSS). Default false: the default
	// configuration serves plain UDP and TCP on loopback for its demo.
	Required bool `yaml:"required"`
	// Zones sets the requirement per zone (the zone names of the SIP
	// listeners and upstreams: "internet" and "trunk" in the default
	// configuration). Default: none.
	Zones map[string]Zone `yaml:"zones"`
}

// Zone is one zone's requirement.
type Zone struct {
	// Required: a request arriving in the zone over a plain transport is
	// refused (SIP 403). Left out, the zone follows the section's
	// required.
	Required *bool `yaml:"required"`
}

// Defaults returns the configuration used when ucgate.yaml says nothing:
// on, with no zone requiring encryption.
func Defaults() Config {
	return Config{Enabled: true}
}

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	for _, name := range sortedKeys(c.Zones) {
		if name == "" {
			errs = append(errs, config.Invalid("zones", "a zone name must not be empty"))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
