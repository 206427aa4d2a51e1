package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the xmpp.proxy section of ucgate.yaml.
type Config struct {
	// Enabled turns the proxy on. Default false.
	Enabled bool `yaml:"enabled"`
	// Listeners are the sockets clients connect to.
	Listeners []Listener `yaml:"listeners"`
	// Domains are the XMPP domains the protected server serves; a stream
	// to any other domain is refused with <host-unknown/>. At least one.
	Domains []string `yaml:"domains"`
	// TLS is the certificate shown to clients. Empty: the self-signed
	// certificate of the data directory (as for SIP).
	TLS TLS `yaml:"tls"`
	// Upstream is the protected XMPP server.
	Upstream Upstream `yaml:"upstream"`
	// Limits bound what one client may send.
	Limits Limits `yaml:"limits"`
	// Block lists the rules whose refusal also puts the source on the
	// blacklist (for the blacklist's block time): any of xmpp/flood,
	// xmpp/restricted-xml, xmpp/not-well-formed, xmpp/size, xmpp/depth,
	// xmpp/attributes, xmpp/unauthenticated. Default [xmpp/flood,
	// xmpp/restricted-xml].
	Block []string `yaml:"block"`
	// Capture is the compliance capture of messages.
	Capture Capture `yaml:"capture"`
}

// Listener is one socket clients connect to.
type Listener struct {
	// Listen is ip:port, "0.0.0.0:5222" or "[::]:5223".
	Listen string `yaml:"listen"`
	// Mode is starttls (RFC 6120, port 5222 style) or direct_tls
	// (XEP-0368, port 5223 style).
	Mode string `yaml:"mode"`
	// Zone names the trust zone of the listener's clients.
	Zone string `yaml:"zone"`
	// TLSRequired refuses a client that goes on without STARTTLS with
	// <policy-violation/> (rule xmpp/tls-required). The tlsrequired policy
	// can require it for the whole zone as well. Default true.
	TLSRequired *bool `yaml:"tls_required"`
}

// tlsRequired reports the listener's own rule.
func (l Listener) tlsRequired() bool { return l.TLSRequired == nil || *l.TLSRequired }

// TLS names a certificate and its key (PEM files).
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Upstream is the protected server and how the proxy talks to it.
type Upstream struct {
	// Address is ip:port of the server's client port.
	Address string `yaml:"address"`
	// TLS is none (plain TCP: the server on loopback or a trusted link),
	// starttls or direct_tls. Default none.
	TLS string `yaml:"tls"`
	// ServerName is the name the server's certificate must carry; default
	// the stream's domain.
	ServerName string `yaml:"server_name"`
	// CA is a PEM file of the authorities the server's certificate must
	// chain to; empty: the system's.
	CA string `yaml:"ca"`
	// InsecureSkipVerify accepts any server certificate. Only for a test.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// DialTimeout bounds connecting and negotiating TLS. Default 5s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
}

// Limits bound a client's stream.
type Limits struct {
	// MaxStanza is the most bytes of one top-level element (stanza,
	// negotiation element or stream header). Default 65536; at the limit
	// the stream ends with <policy-violation/> (rule xmpp/size).
	MaxStanza int `yaml:"max_stanza"`
	// MaxDepth is the deepest element nesting within a stanza (the stanza
	// is depth 1). Default 16 (rule xmpp/depth).
	MaxDepth int `yaml:"max_depth"`
	// MaxAttrs is the most attributes of one element, namespace
	// declarations included. Default 32 (rule xmpp/attributes).
	MaxAttrs int `yaml:"max_attrs"`
	// StanzaRate is the stanzas a second one connection may send, with
	// bursts of StanzaBurst; beyond it the stream ends with
	// <policy-violation/> (rule xmpp/flood). Defaults 20 and 100. The
	// ratelimit stage limits each source over all its connections.
	StanzaRate  float64 `yaml:"stanza_rate"`
	StanzaBurst int     `yaml:"stanza_burst"`
	// HandshakeTimeout bounds the time from connect to an authenticated
	// stream. Default 30s (<connection-timeout/>).
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// IdleTimeout ends a stream that sent nothing for this long (clients
	// send whitespace keepalives). Default 10m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnections bounds the client connections at once. Default 10000;
	// beyond it new connections are closed at once (rule xmpp/connections).
	MaxConnections int `yaml:"max_connections"`
}

// Capture is the compliance capture of instant messages: each <message/>
// with a body that a client sends is written to the journal's messages
// table.
type Capture struct {
	// Enabled turns capture on. Default false.
	Enabled bool `yaml:"enabled"`
	// Body keeps the message text; false keeps sender, recipient, time and
	// size only. Default false.
	Body bool `yaml:"body"`
}

// Rules this package writes into the journal.
const (
	RuleRestricted      = "xmpp/restricted-xml"
	RuleNotWellFormed   = "xmpp/not-well-formed"
	RuleSize            = "xmpp/size"
	RuleDepth           = "xmpp/depth"
	RuleAttributes      = "xmpp/attributes"
	RuleFlood           = "xmpp/flood"
	RuleUnauthenticated = "xmpp/unauthenticated"
	RuleJID             = "xmpp/jid-malformed"
	RuleInvalidFrom     = "xmpp/invalid-from"
	RuleHost            = "xmpp/host-unknown"
	RuleNamespace       = "xmpp/invalid-namespace"
	RuleVersion         = "xmpp/unsupported-version"
	RuleTLSRequired     = "xmpp/tls-required"
	RuleUnsupported     = "xmpp/unsupported-stanza-type"
	RuleTimeout         = "xmpp/timeout"
	RuleConnections     = "xmpp/connections"
	RuleUpstream        = "xmpp/upstream"
	RuleSASLFailure     = "xmpp/sasl-failure"
	RuleSASLMechanism   = "xmpp/sasl-mechanism"
	RuleSequence        = "xmpp/sequence"
	RuleBlocked         = "xmpp/blocked"
)

var blockable = []string{RuleFlood, RuleRestricted, RuleNotWellFormed, RuleSize, RuleDepth, RuleAttributes, RuleUnauthenticated}

// Defaults returns the section's defaults.
func Defaults() Config {
	return Config{
		Upstream: Upstream{TLS: "none", DialTimeout: 5 * time.Second},
		Limits: Limits{MaxStanza: 65536, MaxDepth: 16, MaxAttrs: 32, StanzaRate: 20, StanzaBurst: 100,
			HandshakeTimeout: 30 * time.Second, IdleTimeout: 10 * time.Minute, MaxConnections: 10000},
		Block: []string{RuleFlood, RuleRestricted},
	}
}

// Validate reports every problem; it does no I/O.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	bad := func(path, f string, a ...any) { errs = append(errs, config.Invalid(path, f, a...)) }
	if len(c.Listeners) == 0 {
		bad("listeners", "must name at least one listener")
	}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		if _, err := netip.ParseAddrPort(l.Listen); err != nil {
			bad(p+".listen", "must be ip:port, got %q", l.Listen)
		}
		if l.Mode != "starttls" && l.Mode != "direct_tls" {
			bad(p+".mode", `must be starttls or direct_tls, got %q`, l.Mode)
		}
		if l.Zone == "" {
			bad(p+".zone", "must name a zone")
		}
	}
	if len(c.Domains) == 0 {
		bad("domains", "must name at least one domain")
	}
	for i, d := range c.Domains {
		if j, err := jid.Parse(d); err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
			bad(fmt.Sprintf("domains[%d]", i), "must be a domain name, got %q", d)
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls", "cert and key must be given together")
	}
	if _, err := netip.ParseAddrPort(c.Upstream.Address); err != nil {
		bad("upstream.address", "must be ip:port, got %q", c.Upstream.Address)
	}
	switch c.Upstream.TLS {
	case "none", "starttls", "direct_tls":
	default:
		bad("upstream.tls", `must be none, starttls or direct_tls, got %q`, c.Upstream.TLS)
	}
	if c.Upstream.DialTimeout <= 0 {
		bad("upstream.dial_timeout", "must be above 0")
	}
	l := c.Limits
	if l.MaxStanza < 1024 || l.MaxStanza > 16<<20 {
		bad("limits.max_stanza", "must be 1024 to 16777216, got %d", l.MaxStanza)
	}
	if l.MaxDepth < 2 || l.MaxDepth > 256 {
		bad("limits.max_depth", "must be 2 to 256, got %d", l.MaxDepth)
	}
	if l.MaxAttrs < 4 || l.MaxAttrs > 1024 {
		bad("limits.max_attrs", "must be 4 to 1024, got %d", l.MaxAttrs)
	}
	if l.StanzaRate <= 0 {
		bad("limits.stanza_rate", "must be above 0, got %v", l.StanzaRate)
	}
	if l.StanzaBurst < 1 {
		bad("limits.stanza_burst", "must be at least 1, got %d", l.StanzaBurst)
	}
	if l.HandshakeTimeout <= 0 {
		bad("limits.handshake_timeout", "must be above 0")
	}
	if l.IdleTimeout <= 0 {
		bad("limits.idle_timeout", "must be above 0")
	}
	if l.MaxConnections < 1 {
		bad("limits.max_connections", "must be at least 1, got %d", l.MaxConnections)
	}
	for i, r := range c.Block {
		if !slices.Contains(blockable, r) {
			bad(fmt.Sprintf("block[%d]", i), "must be one of %v, got %q", blockable, r)
		}
	}
	return errors.Join(errs...)
}
