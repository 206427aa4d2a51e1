package dialog

import (
	"errors"
	"slices"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the dialog section of ucgate.yaml (policies.dialog).
type Config struct {
	// Enabled turns the stage on. Default true.
	Enabled bool `yaml:"enabled"`
	// CheckSource refuses an in-dialog request from another IP address
	// than the one the dialog's peer was established with (SIP 403).
	// Default true. Turn it off in a zone whose peers legitimately move
	// mid-call (mobile phones handing over between networks).
	CheckSource bool `yaml:"check_source"`
	// CheckSequence refuses an in-dialog request whose sequence number
	// does not move forward or whose tags do not match the dialog (SIP
	// 400 "CSeq Out Of Order"). Default true.
	CheckSequence bool `yaml:"check_sequence"`
	// EventInterval is the least time between two security events raised
	// for one source: the refusals in between are counted in
	// ucgate_dialog_events_suppressed_total, and each is still journaled
	// as a transaction. Default 10s; 0 raises one per refusal; at most 1h.
	EventInterval time.Duration `yaml:"event_interval"`
	// MaxSources bounds how many sources the event limit remembers.
	// Default 4096 (a few hundred KiB at most). When it is full, sources
	// whose last event is older than event_interval are forgotten first,
	// then an arbitrary one; a forgotten source may raise its next event
	// early. Between 1 and 1048576.
	MaxSources int `yaml:"max_sources"`
	// Zones overrides the checks per zone (the zone names of the SIP
	// listeners and upstreams). Default: none.
	Zones map[string]Zone `yaml:"zones"`
}

// Zone overrides the checks in one zone; a key left out keeps the
// section's value.
type Zone struct {
	Enabled       *bool `yaml:"enabled"`
	CheckSource   *bool `yaml:"check_source"`
	CheckSequence *bool `yaml:"check_sequence"`
}

// Defaults returns the configuration used when ucgate.yaml says nothing:
// every check on, at most one security event per source per 10 s.
func Defaults() Config {
	return Config{
		Enabled:       true,
		CheckSource:   true,
		CheckSequence: true,
		EventInterval: 10 * time.Second,
		MaxSources:    4096,
	}
}

const (
	maxInterval = time.Hour
	maxSources  = 1 << 20
)

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	if c.EventInterval < 0 || c.EventInterval > maxInterval {
		errs = append(errs, config.Invalid("event_interval", "must be between 0s and %v, got %v", maxInterval, c.EventInterval))
	}
	if c.MaxSources < 1 || c.MaxSources > maxSources {
		errs = append(errs, config.Invalid("max_sources", "must be between 1 and %d, got %d", maxSources, c.MaxSources))
	}
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
