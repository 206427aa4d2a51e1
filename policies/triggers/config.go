package triggers

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the policies.triggers section of ucgate.yaml.
type Config struct {
	// Enabled turns the triggers on. Default true (with no triggers
	// listed, nothing happens).
	Enabled bool `yaml:"enabled"`
	// List is the triggers, each acting on the events it matches. An
	// event may fire several triggers. Default none.
	List []Trigger `yaml:"list"`
}

// Trigger is one action on matching security events.
type Trigger struct {
	// Name names the trigger in metrics, logs and its blocks' rule
	// ("triggers/<name>"): lower-case letters, digits, "-" and "_", up to
	// 64 bytes, unique.
	Name string `yaml:"name"`
	// Match are glob patterns on the event's rule: "*" is any run of
	// characters ("/" included), "?" one character; "scan/*" matches
	// every scan rule, "*" every rule. Rules starting with "triggers/"
	// (the triggers' own blocks) match only patterns that start with
	// "triggers/" themselves. At least one; up to 32 of up to 128 bytes.
	Match []string `yaml:"match"`
	// Zones, when not empty, restrict the trigger to events of these
	// zones (events without a zone do not match).
	Zones []string `yaml:"zones"`
	// Webhook posts each event as JSON to a URL. Exactly one of webhook
	// and blacklist is set.
	Webhook *Webhook `yaml:"webhook"`
	// Blacklist blocks the event's source (events without a source
	// address do not match).
	Blacklist *Blacklist `yaml:"blacklist"`
	// Rate limits how often the trigger fires: at most Events per Per,
	// in fixed windows opened by the first event; the rest are counted
	// and summed up in one event when the window reopens. Default 60 per
	// 1m; events: 0 removes the limit.
	Rate *Rate `yaml:"rate"`
}

// Webhook is an HTTP POST of the event as JSON.
type Webhook struct {
	// URL is where events go: http or https (certificates are verified),
	// without credentials (put them in headers). Redirects are not
	// followed: a 3xx is a failure.
	URL string `yaml:"url"`
	// Timeout bounds one attempt. Default 5s; 1ms to 1m.
	Timeout time.Duration `yaml:"timeout"`
	// Headers are sent with every request (an Authorization token, say).
	// Content-Type, Content-Length, Host, Connection and
	// Transfer-Encoding are the gateway's.
	Headers map[string]string `yaml:"headers"`
	// Retries is how many times a failed delivery (network error,
	// timeout, 408, 429 or 5xx) is tried again, after 1s, 2s, 4s ... (at
	// most 30s). Default 3; 0 to 10.
	Retries *int `yaml:"retries"`
	// Queue is how many events may wait for delivery; when it is full
	// new events are dropped and counted. Default 256; 1 to 65536.
	Queue int `yaml:"queue"`
	// Workers is how many deliveries run at once. Default 2; 1 to 64.
	Workers int `yaml:"workers"`
}

// Blacklist blocks the event's source through the gateway's blacklist.
type Blacklist struct {
	// Duration is how long the block lasts. 0 (the default): the
	// blacklist's own block time, growing with repeat offences. A
	// duration needs a blacklist that blocks for a given time
	// (DurationBlocker); the gateway refuses to start otherwise.
	Duration time.Duration `yaml:"duration"`
}

// Rate is a trigger's rate limit.
type Rate struct {
	// Events is how many events fire the trigger per window; 0: no limit.
	Events int `yaml:"events"`
	// Per is the window. Default 1m; 1s to 24h.
	Per time.Duration `yaml:"per"`
}

// Defaults returns the built-in configuration: on, with no triggers.
func Defaults() Config { return Config{Enabled: true} }

// Defaults of a trigger's optional values.
const (
	defaultTimeout = 5 * time.Second
	defaultRetries = 3
	defaultQueue   = 256
	defaultWorkers = 2
	defaultEvents  = 60
	defaultPer     = time.Minute
)

// Bounds.
const (
	maxTriggers   = 64
	maxName       = 64
	maxPatterns   = 32
	maxPattern    = 128
	maxURL        = 2048
	maxHeaders    = 32
	maxHeaderLen  = 4096
	maxDuration   = 100 * 365 * 24 * time.Hour
	triggerPrefix = "triggers/"
)

// reservedHeaders are set by the gateway, never by configuration.
var reservedHeaders = map[string]bool{"content-type": true, "content-length": true, "host": true,
	"connection": true, "transfer-encoding": true}

// Validate reports every problem in c.
func (c Config) Validate() error {
	var errs []error
	bad := func(path, f string, a ...any) { errs = append(errs, config.Invalid(path, f, a...)) }
	if len(c.List) > maxTriggers {
		bad("list", "at most %d triggers, got %d", maxTriggers, len(c.List))
	}
	names := map[string]bool{}
	for i, t := range c.List {
		p := config.Index("list", i)
		switch {
		case t.Name == "":
			bad(p+".name", "must be set")
		case !validName(t.Name):
			bad(p+".name", "must be 1 to %d lower-case letters, digits, - or _, got %q", maxName, t.Name)
		case names[t.Name]:
			bad(p+".name", "%q is used twice", t.Name)
		}
		names[t.Name] = true
		if len(t.Match) == 0 {
			bad(p+".match", "at least one rule pattern is needed")
		} else if len(t.Match) > maxPatterns {
			bad(p+".match", "at most %d patterns, got %d", maxPatterns, len(t.Match))
		}
		for j, m := range t.Match {
			if msg := checkPattern(m); msg != "" {
				bad(fmt.Sprintf("%s.match[%d]", p, j), "%s, got %q", msg, m)
			} else if t.Blacklist != nil && strings.HasPrefix(m, triggerPrefix) {
				bad(fmt.Sprintf("%s.match[%d]", p, j), "a blacklist action cannot match the triggers' own events, got %q", m)
			}
		}
		for j, z := range t.Zones {
			if z == "" {
				bad(fmt.Sprintf("%s.zones[%d]", p, j), "must name a zone")
			}
		}
		switch {
		case t.Webhook == nil && t.Blacklist == nil:
			bad(p, "needs an action: webhook or blacklist")
		case t.Webhook != nil && t.Blacklist != nil:
			bad(p, "has two actions: keep webhook or blacklist")
		case t.Webhook != nil:
			errs = append(errs, config.Nest(p+".webhook", t.Webhook.validate()))
		default:
			if d := t.Blacklist.Duration; d < 0 || d > maxDuration {
				bad(p+".blacklist.duration", "must be from 0 (the blacklist's block time) to 100 years, got %v", d)
			}
		}
		if r := t.Rate; r != nil {
			if r.Events < 0 || r.Events > 1_000_000 {
				bad(p+".rate.events", "must be from 0 (no limit) to 1000000, got %d", r.Events)
			}
			if r.Per != 0 && (r.Per < time.Second || r.Per > 24*time.Hour) {
				bad(p+".rate.per", "must be from 1s to 24h, got %v", r.Per)
			}
		}
	}
	return errors.Join(errs...)
}

func (w *Webhook) validate() error {
	var errs []error
	bad := func(path, f string, a ...any) { errs = append(errs, config.Invalid(path, f, a...)) }
	if msg := checkURL(w.URL); msg != "" {
		bad("url", "%s", msg)
	}
	if w.Timeout != 0 && (w.Timeout < time.Millisecond || w.Timeout > time.Minute) {
		bad("timeout", "must be from 1ms to 1m, got %v", w.Timeout)
	}
	if len(w.Headers) > maxHeaders {
		bad("headers", "at most %d headers, got %d", maxHeaders, len(w.Headers))
	}
	for _, name := range sortedKeys(w.Headers) {
		switch {
		case !validHeaderName(name):
			bad("headers", "%q is not a header field name", name)
		case reservedHeaders[strings.ToLower(name)]:
			bad("headers."+name, "is set by the gateway")
		case !validHeaderValue(w.Headers[name]):
			bad("headers."+name, "must be at most %d bytes without control characters", maxHeaderLen)
		}
	}
	if w.Retries != nil && (*w.Retries < 0 || *w.Retries > 10) {
		bad("retries", "must be from 0 to 10, got %d", *w.Retries)
	}
	if w.Queue != 0 && (w.Queue < 1 || w.Queue > 65536) {
		bad("queue", "must be from 1 to 65536, got %d", w.Queue)
	}
	if w.Workers != 0 && (w.Workers < 1 || w.Workers > 64) {
		bad("workers", "must be from 1 to 64, got %d", w.Workers)
	}
	return errors.Join(errs...)
}

// checkURL says what is wrong with a webhook URL, or "".
func checkURL(s string) string {
	if s == "" {
		return "must be set"
	}
	if len(s) > maxURL {
		return fmt.Sprintf("must be at most %d bytes", maxURL)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("must be an http or https URL, got scheme %q", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return "must name a host"
	case u.User != nil:
		return "must not carry credentials: put them in headers"
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "must not have a fragment"
	}
	return ""
}

func validName(s string) bool {
	if s == "" || len(s) > maxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// checkPattern says what is wrong with a rule pattern, or "".
func checkPattern(p string) string {
	if p == "" || len(p) > maxPattern {
		return fmt.Sprintf("must be 1 to %d bytes", maxPattern)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f {
			return "must be printable ASCII without spaces"
		}
	}
	return ""
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s may be sent as a field value: no
// control characters but tab, no leading or trailing white space.
func validHeaderValue(s string) bool {
	if len(s) > maxHeaderLen || strings.TrimSpace(s) != s {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
