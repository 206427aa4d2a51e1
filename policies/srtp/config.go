package srtp

import (
	"errors"
	"slices"
	"strings"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the srtp section of ucgate.yaml (policies.srtp).
type Config struct {
	// Enabled turns the stage on. Default true; with no zone requiring
	// SRTP it refuses nothing.
	Enabled bool `yaml:"enabled"`
	// Required says whether zones that Zones does not name require
	// encrypted media. Default false: the embedded demo and most desk
	// phones speak plain RTP.
	Required bool `yaml:"required"`
	// Zones sets the requirement per zone (the zone names of the SIP
	// listeners and upstreams: "internet" and "trunk" in the default
	// configuration). Default: none.
	Zones map[string]Zone `yaml:"zones"`
	// Suites are the SDES crypto suites (RFC 4568, 6188, 7714) a stream
	// may be protected with in a zone that requires SRTP: a stream whose
	// every crypto attribute names another suite, and which has no DTLS
	// fingerprint, is refused (rule srtp/suite, SIP 488). Names are
	// matched without regard to case. Default AES_CM_128_HMAC_SHA1_80,
	// AES_CM_128_HMAC_SHA1_32 and AEAD_AES_128_GCM; at least one.
	Suites []string `yaml:"suites"`
}

// Zone is one zone's requirement.
type Zone struct {
	// Required: an offer or update from the zone without encrypted media
	// is refused (SIP 488). Left out, the zone follows the section's
	// required.
	Required *bool `yaml:"required"`
}

// KnownSuites are the SDES crypto suites the configuration may name:
// RFC 4568's, RFC 6188's AES-192 and AES-256 and RFC 7714's AEAD-GCM.
var KnownSuites = []string{
	"AES_CM_128_HMAC_SHA1_80",
	"AES_CM_128_HMAC_SHA1_32",
	"F8_128_HMAC_SHA1_80",
	"AES_192_CM_HMAC_SHA1_80",
	"AES_192_CM_HMAC_SHA1_32",
	"AES_256_CM_HMAC_SHA1_80",
	"AES_256_CM_HMAC_SHA1_32",
	"AEAD_AES_128_GCM",
	"AEAD_AES_256_GCM",
}

// Defaults returns the configuration used when ucgate.yaml says nothing:
// on, with no zone requiring SRTP, and the suites every SRTP stack
// implements plus AES-GCM.
func Defaults() Config {
	return Config{
		Enabled: true,
		Suites:  []string{"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"},
	}
}

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	names := make([]string, 0, len(c.Zones))
	for n := range c.Zones {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if strings.TrimSpace(n) == "" {
			errs = append(errs, config.Invalid("zones", "a zone name must not be empty"))
		}
	}
	if len(c.Suites) == 0 {
		errs = append(errs, config.Invalid("suites", "must name at least one suite (known: %s)", strings.Join(KnownSuites, ", ")))
	}
	for i, s := range c.Suites {
		path := config.Index("suites", i)
		if canonicalSuite(s) == "" {
			errs = append(errs, config.Invalid(path, "unknown suite %q (known: %s)", s, strings.Join(KnownSuites, ", ")))
			continue
		}
		for j := range i {
			if strings.EqualFold(c.Suites[j], s) {
				errs = append(errs, config.Invalid(path, "%q is listed twice", s))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// canonicalSuite returns the known suite named s (case aside), or "".
func canonicalSuite(s string) string {
	for _, k := range KnownSuites {
		if strings.EqualFold(k, s) {
			return k
		}
	}
	return ""
}
