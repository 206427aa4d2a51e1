package blacklist

import (
	"errors"
	"fmt"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the blacklist section of ucgate.yaml (policies.blacklist).
type Config struct {
	// Enabled turns enforcement on: blocked sources are dropped and Block
	// blocks. When off, packets pass and Block does nothing; the operator
	// API still lists, adds and removes blocks. Default true.
	Enabled bool `yaml:"enabled"`
	// BlockTime is how long a first offence blocks a source (a Go duration:
	// "10m", "1h"). It is also the default of an operator block without a
	// duration. Default 10m.
	BlockTime time.Duration `yaml:"block_time"`
	// Growth multiplies the block time at each repeat offence: with the
	// defaults a source is blocked 10m, then 20m, 40m, 80m... At least 1
	// (1: every block lasts block_time). Default 2.
	Growth float64 `yaml:"growth"`
	// MaxBlockTime caps the growth: no automatic block lasts longer.
	// Default 24h.
	MaxBlockTime time.Duration `yaml:"max_block_time"`
	// ForgetAfter is how long after a block ends its offences are
	// remembered: a source that offends again within it is blocked longer,
	// one that stayed clean that long starts over at block_time. 0 forgets
	// at once (no growth). Default 24h.
	ForgetAfter time.Duration `yaml:"forget_after"`
	// AllowNeverBlock lists sources Block ignores, addresses or CIDR
	// prefixes (your trunks, your monitoring): other stages cannot
	// blacklist them, though the operator still can. Default empty.
	AllowNeverBlock []string `yaml:"allow_never_block"`
	// MaxEntries bounds the sources the blacklist holds, blocked or
	// remembered for their offences. At the limit, Block of a new source
	// is refused (and counted in ucgate_blacklist_overflow_total) until
	// entries expire; the sources already blocked stay blocked. Default
	// 100000 (about 30 MB).
	MaxEntries int `yaml:"max_entries"`
}

// maxGrowth bounds Config.Growth: beyond it the second offence is the
// maximum anyway.
const maxGrowth = 1000

// Defaults returns the blacklist configuration used when ucgate.yaml says
// nothing.
func Defaults() Config {
	return Config{
		Enabled:      true,
		BlockTime:    10 * time.Minute,
		Growth:       2,
		MaxBlockTime: 24 * time.Hour,
		ForgetAfter:  24 * time.Hour,
		MaxEntries:   100000,
	}
}

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	if c.BlockTime < time.Second {
		errs = append(errs, config.Invalid("block_time", "must be at least 1s, got %v", c.BlockTime))
	}
	if !(c.Growth >= 1 && c.Growth <= maxGrowth) { // also refuses NaN
		errs = append(errs, config.Invalid("growth", "must be between 1 and %d, got %v", maxGrowth, c.Growth))
	}
	if c.MaxBlockTime < c.BlockTime {
		errs = append(errs, config.Invalid("max_block_time", "must be at least block_time (%v), got %v", c.BlockTime, c.MaxBlockTime))
	}
	if c.ForgetAfter < 0 {
		errs = append(errs, config.Invalid("forget_after", "must not be negative, got %v", c.ForgetAfter))
	}
	for i, s := range c.AllowNeverBlock {
		if _, _, msg := parseKey(s); msg != "" {
			errs = append(errs, config.Invalid(fmt.Sprintf("allow_never_block[%d]", i), "%s", msg))
		}
	}
	if c.MaxEntries < 1 {
		errs = append(errs, config.Invalid("max_entries", "must be at least 1, got %d", c.MaxEntries))
	}
	return errors.Join(errs...)
}
