package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the auth section of ucgate.yaml (policies.auth).
type Config struct {
	// Enabled turns digest authentication on. Default true: with no users
	// configured or added (`ucgate users add`), every required request
	// from an untrusted zone is challenged and none can answer.
	Enabled bool `yaml:"enabled"`
	// Realm is the digest realm offered in challenges; a user's HA1 is
	// bound to it. Default "ucgate". Credentials for another realm are
	// ignored (the request is challenged again).
	Realm string `yaml:"realm"`
	// Require lists the requests that must authenticate: register
	// (REGISTER), invite (a new call), message (MESSAGE), subscribe and
	// publish (presence), notify, refer and options (keep-alive probes).
	// Default [register, invite, message, subscribe]. In-dialog requests
	// of a known dialog, ACK and CANCEL are never challenged.
	Require []string `yaml:"require"`
	// Protocols lists the event protocols this stage judges; others (XMPP
	// authenticates with SASL) pass. Default [sip].
	Protocols []string `yaml:"protocols"`
	// Trusted lists source prefixes (CIDR, or a bare address) whose
	// requests are never challenged: a trunk provider, a PBX. Default none.
	Trusted []string `yaml:"trusted"`
	// Proxy challenges requests other than REGISTER as a proxy (407 and
	// Proxy-Authenticate) rather than as the server (401). Default true.
	Proxy bool `yaml:"proxy"`
	// Algorithms are offered in this order, one challenge each, and only
	// these are accepted: SHA-256, MD5, SHA-256-sess, MD5-sess. Default
	// [SHA-256, MD5] (RFC 8760: SHA-256 first, MD5 for older phones).
	Algorithms []string `yaml:"algorithms"`
	// MatchIdentity lists the requests (names as in require) whose digest
	// username must equal the From user, and for register also the To user
	// (the address of record), so that one user cannot register or call as
	// another. Default [register]. A mismatch is refused with
	// "auth/user_mismatch".
	MatchIdentity []string `yaml:"match_identity"`
	// NonceTTL is how long a nonce may be used. Default 5m. A correct
	// answer with an older nonce gets a new challenge marked stale, which
	// phones answer without asking the user.
	NonceTTL time.Duration `yaml:"nonce_ttl"`
	// NonceKeyFile holds the 32-byte key nonces are signed with, relative
	// to data_dir; created (mode 0600) if missing. Default
	// "auth_nonce.key". Keeping it lets nonces survive a restart; empty, or
	// no data_dir, uses a random key per start.
	NonceKeyFile string `yaml:"nonce_key_file"`
	// MaxNonces bounds the replay table: the nonces in use, with the
	// nonce-counts seen. Default 65536 (about 5 MB). When full, the oldest
	// are forgotten and their clients get a stale challenge.
	MaxNonces int `yaml:"max_nonces"`
	// FailureDelay holds every failed answer this long (a wrong password,
	// an unknown user, a bad nonce, a replay), the same for all so timing
	// tells nothing. Default 1s; at most 30s. Keep it equal to the
	// bruteforce stage's failure_delay.
	FailureDelay time.Duration `yaml:"failure_delay"`
	// Users are users defined in this file, looked up before those in the
	// state database. Passwords are never accepted here: give the HA1
	// hashes. Default none.
	Users []User `yaml:"users"`
	// Zones override the settings above for requests arriving in a zone
	// (the zone of a SIP listener or upstream). Default: trunk is not
	// challenged ({trunk: {enabled: false}}).
	Zones map[string]Zone `yaml:"zones"`
}

// Zone overrides Config for one zone; a field left out keeps the value of
// the top level.
type Zone struct {
	Enabled *bool    `yaml:"enabled"`
	Realm   string   `yaml:"realm"`
	Require []string `yaml:"require"`
	Trusted []string `yaml:"trusted"`
	Proxy   *bool    `yaml:"proxy"`
}

// User is a user defined in the configuration.
type User struct {
	// Name is the digest username.
	Name string `yaml:"name"`
	// Realm is the realm the HA1 hashes were made for. Default: the
	// top-level realm.
	Realm string `yaml:"realm"`
	// HA1 maps an algorithm (MD5, SHA-256) to the hex digest
	// H(name:realm:password), e.g. `printf '%s' 'alice:ucgate:secret' |
	// sha256sum`. Every base algorithm offered needs one.
	HA1 map[string]string `yaml:"ha1"`
	// Disabled users fail as if they did not exist.
	Disabled bool `yaml:"disabled"`
}

// DefaultRealm is the realm of the default configuration.
const DefaultRealm = "ucgate"

// Defaults returns the configuration used when ucgate.yaml says nothing.
func Defaults() Config {
	off := false
	return Config{
		Enabled:       true,
		Realm:         DefaultRealm,
		Require:       []string{"register", "invite", "message", "subscribe"},
		Protocols:     []string{"sip"},
		Proxy:         true,
		Algorithms:    []string{"SHA-256", "MD5"},
		MatchIdentity: []string{"register"},
		NonceTTL:      5 * time.Minute,
		NonceKeyFile:  "auth_nonce.key",
		MaxNonces:     65536,
		FailureDelay:  time.Second,
		Zones:         map[string]Zone{"trunk": {Enabled: &off}},
	}
}

// requestClass is one of the request names in require, as a bit.
type requestClass uint16

const (
	classRegister requestClass = 1 << iota
	classInvite
	classMessage
	classSubscribe
	classPublish
	classNotify
	classRefer
	classOptions
)

var classNames = map[string]requestClass{
	"register":  classRegister,
	"invite":    classInvite,
	"message":   classMessage,
	"subscribe": classSubscribe,
	"publish":   classPublish,
	"notify":    classNotify,
	"refer":     classRefer,
	"options":   classOptions,
}

const classList = "register, invite, message, subscribe, publish, notify, refer, options"

// Validate reports every problem in c. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, checkRealm("realm", c.Realm))
	errs = append(errs, checkClasses("require", c.Require)...)
	if len(c.Protocols) == 0 {
		errs = append(errs, config.Invalid("protocols", "must name at least one protocol"))
	}
	for i, p := range c.Protocols {
		if p == "" {
			errs = append(errs, config.Invalid(config.Index("protocols", i), "must not be empty"))
		}
	}
	errs = append(errs, checkPrefixes("trusted", c.Trusted)...)
	if len(c.Algorithms) == 0 {
		errs = append(errs, config.Invalid("algorithms", "must offer at least one algorithm"))
	}
	for i, a := range c.Algorithms {
		alg, ok := parseAlgorithm(a)
		switch {
		case !ok || a == "":
			errs = append(errs, config.Invalid(config.Index("algorithms", i), "must be one of %s; got %q", strings.Join(SupportedAlgorithms(), ", "), a))
		case a != alg.name:
			errs = append(errs, config.Invalid(config.Index("algorithms", i), "must be spelled %q", alg.name))
		case slices.Index(c.Algorithms, a) < i:
			errs = append(errs, config.Invalid(config.Index("algorithms", i), "%s is listed twice", a))
		}
	}
	errs = append(errs, checkClasses("match_identity", c.MatchIdentity)...)
	if c.NonceTTL < 10*time.Second || c.NonceTTL > 24*time.Hour {
		errs = append(errs, config.Invalid("nonce_ttl", "must be between 10s and 24h, got %s", c.NonceTTL))
	}
	if c.MaxNonces < 1024 || c.MaxNonces > 1<<24 {
		errs = append(errs, config.Invalid("max_nonces", "must be between 1024 and 16777216, got %d", c.MaxNonces))
	}
	if c.FailureDelay < 0 || c.FailureDelay > 30*time.Second {
		errs = append(errs, config.Invalid("failure_delay", "must be between 0s and 30s, got %s", c.FailureDelay))
	}
	errs = append(errs, c.checkUsers()...)
	for _, name := range sortedKeys(c.Zones) {
		z := c.Zones[name]
		p := "zones." + name
		if name == "" {
			errs = append(errs, config.Invalid("zones", "a zone name must not be empty"))
		}
		if z.Realm != "" {
			errs = append(errs, checkRealm(p+".realm", z.Realm))
		}
		if z.Require != nil {
			errs = append(errs, checkClasses(p+".require", z.Require)...)
		}
		errs = append(errs, checkPrefixes(p+".trusted", z.Trusted)...)
	}
	return errors.Join(errs...)
}

func (c Config) checkUsers() []error {
	var errs []error
	need := map[hashID]bool{}
	for _, a := range c.Algorithms {
		if alg, ok := parseAlgorithm(a); ok {
			need[alg.hash] = true
		}
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		p := config.Index("users", i)
		if err := CheckUser(u.Name); err != nil {
			errs = append(errs, config.Invalid(p+".name", "%v", err))
		} else if seen[u.Name] {
			errs = append(errs, config.Invalid(p+".name", "user %q is defined twice", u.Name))
		}
		seen[u.Name] = true
		if u.Realm != "" {
			errs = append(errs, checkRealm(p+".realm", u.Realm))
		}
		for _, alg := range sortedKeys(u.HA1) {
			a, ok := parseAlgorithm(alg)
			if !ok || alg == "" || a.sess || alg != a.name {
				errs = append(errs, config.Invalid(p+".ha1."+alg, "must be MD5 or SHA-256"))
				continue
			}
			if !validHA1(a.hash, u.HA1[alg]) {
				errs = append(errs, config.Invalid(p+".ha1."+alg, "must be %d hex digits (the %s of name:realm:password), not a password", 2*a.hash.size(), a.name))
			}
		}
		for _, h := range []hashID{hashSHA256, hashMD5} {
			if need[h] && u.HA1[h.name()] == "" {
				errs = append(errs, config.Invalid(p+".ha1", "needs the %s HA1: algorithms offers %s", h.name(), h.name()))
			}
		}
	}
	return errs
}

// CheckUser reports why name cannot be a digest username: it is quoted in
// header fields and joined with ':' in H(A1), so it must be 1 to 128 bytes
// with no '"', ':', '\' or control characters.
func CheckUser(name string) error {
	switch {
	case name == "":
		return errors.New("must not be empty")
	case len(name) > 128:
		return fmt.Errorf("must be at most 128 bytes, got %d", len(name))
	case strings.ContainsAny(name, "\":\\"):
		return fmt.Errorf(`must not contain '"', ':' or '\'; got %q`, name)
	case strings.ContainsFunc(name, isControl):
		return fmt.Errorf("must not contain control characters; got %q", name)
	}
	return nil
}

// CheckRealm reports why realm cannot be a digest realm: 1 to 128 bytes
// with no '"', '\' or control characters.
func CheckRealm(realm string) error {
	switch {
	case realm == "":
		return errors.New("must not be empty")
	case len(realm) > 128 || strings.ContainsAny(realm, "\"\\") || strings.ContainsFunc(realm, isControl):
		return fmt.Errorf(`must be at most 128 bytes with no '"', '\' or control characters; got %q`, realm)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func checkRealm(path, s string) error {
	if err := CheckRealm(s); err != nil {
		return config.Invalid(path, "%v", err)
	}
	return nil
}

func checkClasses(path string, names []string) []error {
	var errs []error
	for i, n := range names {
		if _, ok := classNames[n]; !ok {
			errs = append(errs, config.Invalid(config.Index(path, i), "must be one of %s; got %q", classList, n))
		}
	}
	return errs
}

func classMask(names []string) requestClass {
	var m requestClass
	for _, n := range names {
		m |= classNames[n]
	}
	return m
}

func checkPrefixes(path string, ps []string) []error {
	var errs []error
	for i, p := range ps {
		if _, err := parsePrefix(p); err != nil {
			errs = append(errs, config.Invalid(config.Index(path, i), "must be a CIDR prefix or an address, got %q", p))
		}
	}
	return errs
}

// parsePrefix reads "192.0.2.0/24" or a bare address as its host prefix.
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

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
