package bruteforce

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the bruteforce section of ucgate.yaml (policies.bruteforce).
type Config struct {
	// Enabled turns the stage on. Default true.
	Enabled bool `yaml:"enabled"`
	// SourceFailures is how many failures one source (an IPv4 address, an
	// IPv6 /64) may have within source_window; the next one blocks it for
	// source_lockout ("bruteforce/source"). Default 10; 0 turns the
	// per-source limit off; at most 1000.
	SourceFailures int `yaml:"source_failures"`
	// SourceWindow is the window of source_failures. Default 5m.
	SourceWindow time.Duration `yaml:"source_window"`
	// SourceLockout is how long this stage drops a blocked source (the
	// blacklist decides its own block time, growing with repeat offences).
	// Default 15m.
	SourceLockout time.Duration `yaml:"source_lockout"`
	// UserFailures is how many failures one username may have within
	// user_window, from any source; at the limit its requests are refused
	// for user_lockout ("bruteforce/user"), even with the right password.
	// Default 10; 0 turns it off; at most 1000. Anyone can lock a user out
	// by failing as them: that is the price of stopping a password spray
	// from many addresses.
	UserFailures int `yaml:"user_failures"`
	// UserWindow is the window of user_failures. Default 5m.
	UserWindow time.Duration `yaml:"user_window"`
	// UserLockout is how long a locked-out username is refused. Default 15m.
	UserLockout time.Duration `yaml:"user_lockout"`
	// HarvestUsers is how many distinct usernames one source may fail with
	// within harvest_window; at the limit it is blocked like a source
	// ("bruteforce/harvest"). Default 5; 0 turns it off; 2 to 1000.
	HarvestUsers int `yaml:"harvest_users"`
	// HarvestWindow is the window of harvest_users. Default 10m.
	HarvestWindow time.Duration `yaml:"harvest_window"`
	// FailureDelay holds the answer to a locked-out user this long. Default
	// 1s; at most 30s. Keep it equal to auth's failure_delay so that a
	// lockout looks like any failure.
	FailureDelay time.Duration `yaml:"failure_delay"`
	// Rules are the security event rules counted as failures. Default
	// [auth/failure, auth/nonce, auth/replay].
	Rules []string `yaml:"rules"`
	// Exempt lists source prefixes (CIDR or an address) that are never
	// locked out: an office whose phones share one NAT address, a monitoring
	// host. Their failures still count against the usernames they try.
	// Default none.
	Exempt []string `yaml:"exempt"`
	// IPv6Prefix is the prefix length that counts as one IPv6 source (a
	// host rotating through its /64 is still one source). Default 64;
	// 32 to 128.
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// MaxSources bounds the sources remembered (and the source lockouts).
	// Default 65536, about 20 MB at most with the default limits; when
	// full, the source quiet longest is forgotten. 16 to 16777216.
	MaxSources int `yaml:"max_sources"`
	// MaxUsers bounds the usernames remembered (and the user lockouts).
	// Default 65536; when full, the username quiet longest is forgotten.
	// 16 to 16777216.
	MaxUsers int `yaml:"max_users"`
}

// Defaults returns the configuration used when ucgate.yaml says nothing:
// 10 failures in 5 minutes lock a source or a user out, 5 usernames in 10
// minutes block a source.
func Defaults() Config {
	return Config{
		Enabled:        true,
		SourceFailures: 10,
		SourceWindow:   5 * time.Minute,
		SourceLockout:  15 * time.Minute,
		UserFailures:   10,
		UserWindow:     5 * time.Minute,
		UserLockout:    15 * time.Minute,
		HarvestUsers:   5,
		HarvestWindow:  10 * time.Minute,
		FailureDelay:   time.Second,
		Rules:          []string{"auth/failure", "auth/nonce", "auth/replay"},
		IPv6Prefix:     64,
		MaxSources:     65536,
		MaxUsers:       65536,
	}
}

const (
	maxCount   = 1000
	maxWindow  = 24 * time.Hour
	maxLockout = 7 * 24 * time.Hour
	maxTable   = 1 << 24
	minTable   = 16
)

// Validate reports every problem in c. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	count := func(path string, n, min int) {
		if n != 0 && (n < min || n > maxCount) {
			errs = append(errs, config.Invalid(path, "must be 0 (off) or between %d and %d, got %d", min, maxCount, n))
		}
	}
	window := func(path string, d time.Duration, max time.Duration) {
		if d < time.Second || d > max {
			errs = append(errs, config.Invalid(path, "must be between 1s and %v, got %v", max, d))
		}
	}
	count("source_failures", c.SourceFailures, 1)
	window("source_window", c.SourceWindow, maxWindow)
	window("source_lockout", c.SourceLockout, maxLockout)
	count("user_failures", c.UserFailures, 1)
	window("user_window", c.UserWindow, maxWindow)
	window("user_lockout", c.UserLockout, maxLockout)
	count("harvest_users", c.HarvestUsers, 2)
	window("harvest_window", c.HarvestWindow, maxWindow)
	if c.FailureDelay < 0 || c.FailureDelay > 30*time.Second {
		errs = append(errs, config.Invalid("failure_delay", "must be between 0s and 30s, got %v", c.FailureDelay))
	}
	if len(c.Rules) == 0 {
		errs = append(errs, config.Invalid("rules", "must list at least one rule"))
	}
	for i, r := range c.Rules {
		if s, n, ok := strings.Cut(r, "/"); !ok || s == "" || n == "" {
			errs = append(errs, config.Invalid(config.Index("rules", i), `must be a rule such as "auth/failure", got %q`, r))
		}
	}
	for i, p := range c.Exempt {
		if _, err := parsePrefix(p); err != nil {
			errs = append(errs, config.Invalid(config.Index("exempt", i), "must be a CIDR prefix or an address, got %q", p))
		}
	}
	if c.IPv6Prefix < 32 || c.IPv6Prefix > 128 {
		errs = append(errs, config.Invalid("ipv6_prefix", "must be between 32 and 128, got %d", c.IPv6Prefix))
	}
	if c.MaxSources < minTable || c.MaxSources > maxTable {
		errs = append(errs, config.Invalid("max_sources", "must be between %d and %d, got %d", minTable, maxTable, c.MaxSources))
	}
	if c.MaxUsers < minTable || c.MaxUsers > maxTable {
		errs = append(errs, config.Invalid("max_users", "must be between %d and %d, got %d", minTable, maxTable, c.MaxUsers))
	}
	return errors.Join(errs...)
}

// parsePrefix reads "192.0.2.0/24" or a bare address as its host prefix,
// IPv4-mapped IPv6 as IPv4.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("IPv4-mapped prefix %s is shorter than /96", s)
			}
			return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked(), nil
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
