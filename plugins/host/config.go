package host

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
	"github.com/ucgate/ucgate/plugins/sdk"
)

// Config is one entry of the plugins section of ucgate.yaml.
type Config struct {
	// Name names the plugin in logs (plugin=<name>), metrics, the journal
	// and `ucgate plugins`: lowercase letters, digits, - and _.
	Name string `yaml:"name"`
	// Kind is protocol, media or stage.
	Kind string `yaml:"kind"`
	// Binary is the plugin executable (an absolute path, or relative to the
	// working directory).
	Binary string `yaml:"binary"`
	// SHA256 is the hex SHA-256 of Binary. A binary that does not match is
	// not started. Required.
	SHA256 string `yaml:"sha256"`
	// Args are passed to the binary.
	Args []string `yaml:"args"`
	// Domain (protocol plugins) is the domain the plugin's users have on
	// the bridge: a SIP MESSAGE to someone@Domain reaches the plugin.
	Domain string `yaml:"domain"`
	// Protocol (protocol plugins) names the plugin's protocol in the
	// journal; default the plugin's name.
	Protocol string `yaml:"protocol"`
	// Deadline (stage plugins) bounds each Decide call. Default 200ms.
	Deadline time.Duration `yaml:"deadline"`
	// FailureMode (stage plugins) says what an event gets when the plugin
	// cannot decide in time (error, deadline, plugin down): "closed"
	// (refused, the default) or "open" (allowed).
	FailureMode string `yaml:"failure_mode"`
	// Kinds (stage plugins) are the events the plugin judges, by core kind
	// name: session_offer, session_update, message, presence, register,
	// probe, ... Default session_offer, message, presence and register.
	Kinds []string `yaml:"kinds"`
	// Limits bound what the plugin may send and hold.
	Limits Limits `yaml:"limits"`
}

// Limits bound one plugin.
type Limits struct {
	// MaxMessage is the largest gRPC message accepted from the plugin, in
	// bytes; a larger one is refused (the call or stream fails and is
	// journaled). Default 65536.
	MaxMessage int `yaml:"max_message"`
	// EventsPerSecond and Burst bound the events a protocol plugin may
	// submit; excess events are refused (rate_limited) and journaled.
	// Defaults 200 and 400.
	EventsPerSecond float64 `yaml:"events_per_second"`
	Burst           int     `yaml:"burst"`
	// MaxSessions is the most sessions a protocol plugin may hold open;
	// further offers are refused (busy). Default 1000.
	MaxSessions int `yaml:"max_sessions"`
	// HealthInterval is how often the host checks the plugin (process
	// alive, gRPC health answered within the interval). Default 1s. Three
	// missed checks in a row count as a hang: the plugin is restarted.
	HealthInterval time.Duration `yaml:"health_interval"`
	// HangAfter is how many stage deadlines in a row count as a hang
	// (restart). Default 3.
	HangAfter int `yaml:"hang_after"`
	// StartTimeout bounds the plugin's start and handshake. Default 10s.
	StartTimeout time.Duration `yaml:"start_timeout"`
	// BackoffMin and BackoffMax bound the wait before a restart; it
	// doubles after each quick failure. Defaults 100ms and 30s.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// MediaNetworks (protocol plugins) are the networks, CIDR, where the
	// RTP addresses a plugin declares in its session offers and answers
	// may be: the relay sends media there, so a plugin must not point it
	// at a third party. Default loopback only: 127.0.0.0/8 and ::1/128.
	MediaNetworks []string `yaml:"media_networks"`
}

// Failure modes.
const (
	FailClosed = "closed"
	FailOpen   = "open"
)

// WithDefaults fills the fields left zero.
func (c Config) WithDefaults() Config {
	if c.Deadline == 0 {
		c.Deadline = 200 * time.Millisecond
	}
	if c.FailureMode == "" {
		c.FailureMode = FailClosed
	}
	if c.Protocol == "" {
		c.Protocol = c.Name
	}
	if c.Kinds == nil {
		c.Kinds = []string{"session_offer", "message", "presence", "register"}
	}
	l := &c.Limits
	if l.MaxMessage == 0 {
		l.MaxMessage = 64 << 10
	}
	if l.EventsPerSecond == 0 {
		l.EventsPerSecond = 200
	}
	if l.Burst == 0 {
		l.Burst = 400
	}
	if l.MaxSessions == 0 {
		l.MaxSessions = 1000
	}
	if l.HealthInterval == 0 {
		l.HealthInterval = time.Second
	}
	if l.HangAfter == 0 {
		l.HangAfter = 3
	}
	if l.StartTimeout == 0 {
		l.StartTimeout = 10 * time.Second
	}
	if l.BackoffMin == 0 {
		l.BackoffMin = 100 * time.Millisecond
	}
	if l.BackoffMax == 0 {
		l.BackoffMax = 30 * time.Second
	}
	if l.MediaNetworks == nil {
		l.MediaNetworks = []string{"127.0.0.0/8", "::1/128"}
	}
	return c
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
var domainRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// Validate reports every problem of c (after WithDefaults).
func (c Config) Validate() error {
	var errs []error
	if !nameRE.MatchString(c.Name) {
		errs = append(errs, config.Invalid("name", "must be 1-32 of a-z, 0-9, - and _, got %q", c.Name))
	}
	switch c.Kind {
	case sdk.KindProtocol, sdk.KindMedia, sdk.KindStage:
	default:
		errs = append(errs, config.Invalid("kind", "must be protocol, media or stage, got %q", c.Kind))
	}
	if c.Binary == "" {
		errs = append(errs, config.Invalid("binary", "must be set"))
	}
	if b, err := hex.DecodeString(c.SHA256); err != nil || len(b) != 32 {
		errs = append(errs, config.Invalid("sha256", "must be the 64 hex digits of the binary's SHA-256 (sha256sum BINARY)"))
	}
	if c.Kind == sdk.KindProtocol {
		if c.Domain == "" || len(c.Domain) > 253 || !domainRE.MatchString(c.Domain) {
			errs = append(errs, config.Invalid("domain", "a protocol plugin needs the domain its users have on the bridge, got %q", c.Domain))
		}
		if !nameRE.MatchString(c.Protocol) {
			errs = append(errs, config.Invalid("protocol", "must be 1-32 of a-z, 0-9, - and _, got %q", c.Protocol))
		}
	}
	if c.Deadline < time.Millisecond || c.Deadline > time.Minute {
		errs = append(errs, config.Invalid("deadline", "must be between 1ms and 1m, got %v", c.Deadline))
	}
	if c.FailureMode != FailClosed && c.FailureMode != FailOpen {
		errs = append(errs, config.Invalid("failure_mode", `must be "closed" or "open", got %q`, c.FailureMode))
	}
	for _, k := range c.Kinds {
		if _, ok := coreKind(k); !ok {
			errs = append(errs, config.Invalid("kinds", "unknown event kind %q", k))
		}
	}
	l := c.Limits
	if l.MaxMessage < 1024 || l.MaxMessage > 64<<20 {
		errs = append(errs, config.Invalid("limits.max_message", "must be between 1024 and 67108864 bytes, got %d", l.MaxMessage))
	}
	if l.EventsPerSecond <= 0 || l.Burst < 1 {
		errs = append(errs, config.Invalid("limits.events_per_second", "rate and burst must be above 0, got %v and %d", l.EventsPerSecond, l.Burst))
	}
	if l.MaxSessions < 1 {
		errs = append(errs, config.Invalid("limits.max_sessions", "must be at least 1, got %d", l.MaxSessions))
	}
	for i, n := range l.MediaNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			errs = append(errs, config.Invalid(fmt.Sprintf("limits.media_networks[%d]", i), "must be a CIDR prefix such as 192.0.2.0/24, got %q", n))
		}
	}
	if l.HealthInterval < 10*time.Millisecond {
		errs = append(errs, config.Invalid("limits.health_interval", "must be at least 10ms, got %v", l.HealthInterval))
	}
	if l.HangAfter < 1 {
		errs = append(errs, config.Invalid("limits.hang_after", "must be at least 1, got %d", l.HangAfter))
	}
	if l.StartTimeout < 100*time.Millisecond {
		errs = append(errs, config.Invalid("limits.start_timeout", "must be at least 100ms, got %v", l.StartTimeout))
	}
	if l.BackoffMin <= 0 || l.BackoffMax < l.BackoffMin {
		errs = append(errs, config.Invalid("limits.backoff_min", "must be above 0 and at most backoff_max, got %v and %v", l.BackoffMin, l.BackoffMax))
	}
	return errors.Join(errs...)
}

// ValidateAll validates a plugins section: each entry, and names and
// domains unique.
func ValidateAll(cs []Config) error {
	var errs []error
	names, domains := map[string]bool{}, map[string]bool{}
	for i, c := range cs {
		c = c.WithDefaults()
		errs = append(errs, config.Nest(fmt.Sprintf("[%d]", i), c.Validate()))
		if names[c.Name] {
			errs = append(errs, config.Invalid(fmt.Sprintf("[%d].name", i), "%q is used twice", c.Name))
		}
		names[c.Name] = true
		if c.Kind == sdk.KindProtocol && c.Domain != "" {
			if domains[c.Domain] {
				errs = append(errs, config.Invalid(fmt.Sprintf("[%d].domain", i), "%q is served by two plugins", c.Domain))
			}
			domains[c.Domain] = true
		}
	}
	return errors.Join(errs...)
}

// coreKind finds a core event kind by name.
func coreKind(name string) (core.Kind, bool) {
	for k := core.KindOther; k <= core.KindResponse; k++ {
		if k.String() == name {
			return k, true
		}
	}
	return 0, false
}
