package scan

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the scan section of ucgate.yaml (policies.scan).
type Config struct {
	// Enabled turns the stage on. Default true.
	Enabled bool `yaml:"enabled"`
	// Agents are the User-Agent signatures of scanning tools. A signature
	// matches when it appears in the User-Agent, ignoring case, and is
	// not part of a longer word (no letter right before or after it:
	// "iwar" matches "iWar/1.0", not "Kiwari"). Setting the list replaces
	// the defaults: friendly-scanner and sipvicious (SIPVicious), sipcli,
	// sundayddr, vaxsipuseragent, pplsip (SIPPTS), sip-scan, iwar, sivus.
	// Administrators' tools (sipsak, sipp) are not in it: add them where
	// nobody monitors the gateway with them. Up to 256 entries of 3 to 64
	// printable ASCII characters, with a letter or digit and no space at
	// either end.
	Agents []string `yaml:"agents"`
	// FromNames are signatures matched the same way against the From
	// display name and user (svmap announces itself as "sipvicious" there
	// even with its User-Agent removed). Default [sipvicious].
	FromNames []string `yaml:"from_names"`
	// Response is how a detected source is answered: "drop" (no answer)
	// or "forbidden" (SIP 403). Default "forbidden", and "drop" in the
	// internet zone (see Zones).
	Response string `yaml:"response"`
	// Window is the period over which one source's distinct targets,
	// OPTIONS targets and registered users are counted; each source's
	// window starts with its first request and restarts when it ends.
	// Default 60s; between 1s and 1h.
	Window time.Duration `yaml:"window"`
	// MaxTargets is the most distinct users one source may address in a
	// window with requests outside a dialog other than REGISTER and
	// OPTIONS (INVITE, MESSAGE, SUBSCRIBE: the request-URI's user, or the
	// To user); one more is extension enumeration or dial-plan probing.
	// Default 60 (an office of 20 phones behind one NAT, subscribing to
	// each other's lines at boot, stays far below). 0 turns the check off;
	// at most 1000.
	MaxTargets int `yaml:"max_targets"`
	// MaxOptionsTargets is the most distinct request-URIs one source may
	// send OPTIONS to in a window; one more is a sweep. Default 20 (a phone
	// or a PBX keeps one target alive per trunk). 0 turns the check off;
	// at most 1000.
	MaxOptionsTargets int `yaml:"max_options_targets"`
	// MaxRegisterUsers is the most distinct users one source may REGISTER
	// in a window; one more is enumeration or a password-guessing sweep.
	// Default 60 (every phone of a small office registering at once after
	// a power cut). 0 turns the check off; at most 1000.
	MaxRegisterUsers int `yaml:"max_register_users"`
	// RefuseFor is how long a detected source's requests go on being
	// answered as Response by this stage, whatever they carry (the
	// blacklist's block, when there is one, drops them earlier, at the
	// network layer). Default 15m; between 1s and 24h.
	RefuseFor time.Duration `yaml:"refuse_for"`
	// MaxSources bounds how many source addresses are tracked at once.
	// Default 16384: an ordinary source takes about 250 bytes, one that
	// reached every default threshold about 1.4 KiB, so at most about
	// 24 MiB under attack. Sources idle for a window are forgotten; when
	// the table is full an arbitrary source is, and counted in
	// ucgate_scan_evicted_total. Between 1 and 1048576.
	MaxSources int `yaml:"max_sources"`
	// Exempt lists sources that are never checked: CIDR prefixes or
	// addresses ("192.0.2.10", "198.51.100.0/24", "2001:db8::/48"), for
	// the hosts that monitor the gateway and the peers that must never be
	// blocked. Default: none. At most 1024 entries.
	Exempt []string `yaml:"exempt"`
	// IPv6Prefix is the prefix length that counts as one IPv6 source: a
	// host rotating through the addresses of its /64 is still one source,
	// as an office behind one IPv4 address is. Default 64; between 32 and
	// 128.
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// Zones overrides the behaviour per zone (the zone names of the SIP
	// listeners and upstreams). Two zones of the default configuration
	// have defaults of their own, which override the section's values:
	// internet answers with drop (a sweep learns nothing) and trunk is
	// not checked (carriers legitimately address many users, and a
	// spoofed scan must never get an upstream's address blocked). A zone
	// listed here starts from those defaults: a key left out keeps them,
	// then the section's value.
	Zones map[string]Zone `yaml:"zones"`
}

// Zone overrides the behaviour in one zone; a key left out keeps the
// section's value.
type Zone struct {
	Enabled           *bool   `yaml:"enabled"`
	Response          *string `yaml:"response"`
	MaxTargets        *int    `yaml:"max_targets"`
	MaxOptionsTargets *int    `yaml:"max_options_targets"`
	MaxRegisterUsers  *int    `yaml:"max_register_users"`
}

// DefaultAgents are the User-Agent signatures of Defaults, in lower case.
// Each is what a tool announces unless told otherwise: SIPVicious
// (friendly-scanner, hard-coded in svmap, svwar and svcrack), sipcli,
// sundayddr, VaxSIPUserAgent (the VaxVoIP SDK of brute-force bots),
// pplsip (SIPPTS), sip-scan, iWar and SiVuS.
var DefaultAgents = []string{
	"friendly-scanner", "sipvicious", "sipcli", "sundayddr", "vaxsipuseragent",
	"pplsip", "sip-scan", "iwar", "sivus",
}

// zoneDefaults are the defaults of the zones of the default
// configuration, under what the operator configures for them.
func zoneDefaults() map[string]Zone {
	drop, off := "drop", false
	return map[string]Zone{
		"internet": {Response: &drop},
		"trunk":    {Enabled: &off},
	}
}

// Defaults returns the configuration used when ucgate.yaml says nothing.
func Defaults() Config {
	return Config{
		Enabled:           true,
		Agents:            slices.Clone(DefaultAgents),
		FromNames:         []string{"sipvicious"},
		Response:          "forbidden",
		Window:            time.Minute,
		MaxTargets:        60,
		MaxOptionsTargets: 20,
		MaxRegisterUsers:  60,
		RefuseFor:         15 * time.Minute,
		MaxSources:        16384,
		IPv6Prefix:        64,
		Zones:             zoneDefaults(),
	}
}

// Bounds.
const (
	maxSignatures   = 256
	minSignatureLen = 3
	maxSignatureLen = 64
	maxThreshold    = 1000
	minWindow       = time.Second
	maxWindow       = time.Hour
	minRefuseFor    = time.Second
	maxRefuseFor    = 24 * time.Hour
	maxSources      = 1 << 20
	maxExempt       = 1024
)

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(validSignatures("agents", c.Agents))
	add(validSignatures("from_names", c.FromNames))
	if c.Window < minWindow || c.Window > maxWindow {
		add(config.Invalid("window", "must be between %v and %v, got %v", minWindow, maxWindow, c.Window))
	}
	if c.RefuseFor < minRefuseFor || c.RefuseFor > maxRefuseFor {
		add(config.Invalid("refuse_for", "must be between %v and %v, got %v", minRefuseFor, maxRefuseFor, c.RefuseFor))
	}
	if c.MaxSources < 1 || c.MaxSources > maxSources {
		add(config.Invalid("max_sources", "must be between 1 and %d, got %d", maxSources, c.MaxSources))
	}
	if len(c.Exempt) > maxExempt {
		add(config.Invalid("exempt", "must have at most %d entries, got %d", maxExempt, len(c.Exempt)))
	}
	for i, p := range c.Exempt {
		if _, err := parsePrefix(p); err != nil {
			add(config.Invalid(config.Index("exempt", i), "must be a CIDR prefix or an address, got %q", p))
		}
	}
	if c.IPv6Prefix < 32 || c.IPv6Prefix > 128 {
		add(config.Invalid("ipv6_prefix", "must be between 32 and 128, got %d", c.IPv6Prefix))
	}
	add(Zone{nil, &c.Response, &c.MaxTargets, &c.MaxOptionsTargets, &c.MaxRegisterUsers}.validate())
	for _, name := range sortedKeys(c.Zones) {
		if name == "" {
			add(config.Invalid("zones", "a zone name must not be empty"))
			continue
		}
		add(config.Nest("zones."+name, c.Zones[name].validate()))
	}
	return errors.Join(errs...)
}

// validate checks the values z sets.
func (z Zone) validate() error {
	var errs []error
	if z.Response != nil && *z.Response != "drop" && *z.Response != "forbidden" {
		errs = append(errs, config.Invalid("response", `must be "drop" or "forbidden", got %q`, *z.Response))
	}
	for _, f := range []struct {
		path string
		v    *int
	}{{"max_targets", z.MaxTargets}, {"max_options_targets", z.MaxOptionsTargets}, {"max_register_users", z.MaxRegisterUsers}} {
		if f.v != nil && (*f.v < 0 || *f.v > maxThreshold) {
			errs = append(errs, config.Invalid(f.path, "must be between 0 (off) and %d, got %d", maxThreshold, *f.v))
		}
	}
	return errors.Join(errs...)
}

func validSignatures(path string, list []string) error {
	var errs []error
	if len(list) > maxSignatures {
		errs = append(errs, config.Invalid(path, "must have at most %d entries, got %d", maxSignatures, len(list)))
	}
	for i, s := range list {
		if !validSignature(s) {
			errs = append(errs, config.Invalid(config.Index(path, i),
				"must be %d to %d printable ASCII characters with a letter or digit and no space at either end, got %q",
				minSignatureLen, maxSignatureLen, s))
		}
	}
	return errors.Join(errs...)
}

func validSignature(s string) bool {
	if len(s) < minSignatureLen || len(s) > maxSignatureLen || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	alnum := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			return false
		}
		alnum = alnum || isLetter(c) || c >= '0' && c <= '9'
	}
	return alnum
}

// parsePrefix reads "192.0.2.0/24" or a bare address (as its host
// prefix); IPv4-mapped IPv6 is read as IPv4.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
