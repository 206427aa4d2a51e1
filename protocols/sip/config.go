package sip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the sip section of ucgate.yaml.
type Config struct {
	// Listeners are the sockets the gateway accepts SIP on.
	Listeners []Listener `yaml:"listeners"`
	// Upstreams are the trunks, PBXs and registrars the gateway sends to.
	Upstreams []Upstream `yaml:"upstreams"`
	// Routes choose upstreams for requests that are not for a registered
	// user; the first matching route wins.
	Routes []Route `yaml:"routes"`
	// Registrar is the upstream REGISTER requests are relayed to. Empty:
	// REGISTER is refused with 405.
	Registrar string `yaml:"registrar"`
	// UserAgent is what the gateway calls itself in User-Agent and Server.
	// Default "ucgate".
	UserAgent string `yaml:"user_agent"`
	// TLS is the certificate for TLS and WSS listeners. Empty: a self-signed
	// certificate is generated into the data directory on first start.
	TLS TLS `yaml:"tls"`
	// RingTimeout is how long a call may ring before the gateway cancels it
	// and answers 408. Default 120s.
	RingTimeout time.Duration `yaml:"ring_timeout"`
	// MaxCallDuration ends an answered call after this long (0: no limit).
	MaxCallDuration time.Duration `yaml:"max_call_duration"`
	// RegistrationMaxExpires caps the Expires the gateway accepts from a
	// registering user agent, in seconds. Default 3600.
	RegistrationMaxExpires int `yaml:"registration_max_expires"`
	// Bridge gives SIP users an address on the other side of the core
	// bridge (XMPP users chat with alice@<domain> and see her presence)
	// and carries their messages and presence to the domains other
	// adapters serve (RFC 7247, 7248, 7572).
	Bridge Bridge `yaml:"bridge"`
}

// Bridge is the SIP side of interworking with the other adapters.
type Bridge struct {
	// Domain is the domain SIP users have on the other side: a message to
	// alice@<domain> becomes a SIP MESSAGE to alice, and a SIP user's
	// message to a domain another adapter serves is sent from
	// alice@<domain>. Empty (the default): the adapter serves no bridged
	// domain and relays everything as SIP.
	Domain string `yaml:"domain"`
	// Expires is the presence subscription lifetime the gateway asks for
	// in the SUBSCRIBEs it sends to SIP users, and the most it grants to a
	// SIP user's SUBSCRIBE, in seconds. Default 3600. Subscriptions are
	// refreshed before they lapse.
	Expires int `yaml:"expires"`
	// MaxSubscriptions bounds the presence subscriptions held across the
	// bridge, both ways together. Default 10000; beyond it a new
	// subscription is refused (SIP 503, or unavailable to the other side),
	// rule sip/bridge_subscriptions.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxSubscriptionsPerUser bounds the subscriptions one SIP user takes
	// part in, both ways together (those she holds on parties of the other
	// side and theirs on her), so that one user cannot take them all.
	// Default 200; beyond it a new one is refused the same way.
	MaxSubscriptionsPerUser int `yaml:"max_subscriptions_per_user"`
}

// Listener is one SIP socket.
type Listener struct {
	// Zone names the trust zone traffic on this listener belongs to.
	Zone string `yaml:"zone"`
	// Transport is udp, tcp, tls, ws or wss.
	Transport string `yaml:"transport"`
	// Listen is the local address, "127.0.0.1:5060" or "[::1]:5060".
	Listen string `yaml:"listen"`
	// Advertise is the host:port written into Via, Contact and SDP origin
	// instead of the listen address (a public address in front of NAT).
	Advertise string `yaml:"advertise"`
	// Origins are the web origins ("https://phone.example.com") whose
	// pages may open a WebSocket to a ws or wss listener; a browser's
	// handshake with another Origin is refused (403, rule sip/origin).
	// Empty: no browser at all (a handshake without Origin, from a SIP
	// client that is not a browser, still passes); ["*"]: any origin.
	Origins []string `yaml:"origins"`
}

// Upstream is a trunk, a PBX or a registrar.
type Upstream struct {
	Name string `yaml:"name"`
	// Address is host:port of the upstream. A builtin upstream has none.
	Address string `yaml:"address"`
	// Transport is udp, tcp, tls, ws or wss. Default udp.
	Transport string `yaml:"transport"`
	// Zone is the trust zone of this upstream's leg.
	Zone string `yaml:"zone"`
	// Domain is written as the host of the Request-URI and To header sent to
	// this upstream. Default: the host of Address.
	Domain string `yaml:"domain"`
	// Sources are networks (CIDR) this upstream also sends from, besides
	// Address: a PBX cluster, a carrier's signalling range. Requests from
	// them are in the upstream's zone and may reach registered users.
	Sources []string `yaml:"sources"`
	// SRTP is how media toward this upstream is protected, when the
	// gateway anchors it: "auto" (default: as the caller's offer),
	// "none" (plain RTP), "sdes" (SDES-SRTP required), "sdes_optional"
	// (SRTP offered, plain RTP accepted).
	SRTP string `yaml:"srtp"`
	// Builtin names an endpoint built into ucgate instead of an address:
	// "echo" is the demo upstream that answers calls and echoes their RTP.
	Builtin string `yaml:"builtin"`
}

// Route maps requests to upstreams. Exactly one of Domain, Prefix or
// Default is set.
type Route struct {
	// Domain matches the Request-URI host (case-insensitive).
	Domain string `yaml:"domain"`
	// Prefix matches the start of the Request-URI user.
	Prefix string `yaml:"prefix"`
	// Default matches everything.
	Default bool `yaml:"default"`
	// Strip removes this many characters from the user before sending.
	Strip int `yaml:"strip"`
	// Upstreams are tried in order: the next is tried when one does not
	// answer, fails at the transport, or answers 503.
	Upstreams []string `yaml:"upstreams"`
}

// TLS names a certificate and key in PEM files.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Defaults returns the values used where the file says nothing.
func Defaults() Config {
	return Config{
		UserAgent:              "ucgate",
		RingTimeout:            120 * time.Second,
		RegistrationMaxExpires: 3600,
		Bridge:                 Bridge{Expires: 3600, MaxSubscriptions: 10000, MaxSubscriptionsPerUser: 200},
	}
}

var transports = map[string]bool{"udp": true, "tcp": true, "tls": true, "ws": true, "wss": true}

// Validate reports every problem in c.
func (c Config) Validate() error {
	var errs []error
	bad := func(path, f string, a ...any) { errs = append(errs, config.Invalid(path, f, a...)) }
	if len(c.Listeners) == 0 {
		bad("listeners", "at least one listener is needed")
	}
	seenListen := map[string]bool{}
	for i, l := range c.Listeners {
		p := config.Index("listeners", i)
		if l.Zone == "" {
			bad(p+".zone", "must name a zone")
		}
		if !transports[l.Transport] {
			bad(p+".transport", `must be one of udp, tcp, tls, ws, wss; got %q`, l.Transport)
		}
		if _, err := netip.ParseAddrPort(l.Listen); err != nil {
			bad(p+".listen", "must be ip:port (IPv6 in brackets), got %q", l.Listen)
		}
		key := l.Transport + "/" + l.Listen
		if seenListen[key] {
			bad(p+".listen", "%s %s is listed twice", l.Transport, l.Listen)
		}
		seenListen[key] = true
		if l.Advertise != "" {
			if _, _, err := net.SplitHostPort(l.Advertise); err != nil {
				bad(p+".advertise", "must be host:port, got %q", l.Advertise)
			}
		}
		if len(l.Origins) > 0 && l.Transport != "ws" && l.Transport != "wss" {
			bad(p+".origins", "only applies to ws and wss listeners")
		}
		for j, o := range l.Origins {
			if o == AnyOrigin {
				if len(l.Origins) > 1 {
					bad(fmt.Sprintf("%s.origins[%d]", p, j), `"*" (any origin) must be alone`)
				}
				continue
			}
			if !validOrigin(o) {
				bad(fmt.Sprintf("%s.origins[%d]", p, j), "must be scheme://host[:port] such as https://phone.example.com, got %q", o)
			}
		}
	}
	names := map[string]bool{}
	for i, u := range c.Upstreams {
		p := config.Index("upstreams", i)
		if u.Name == "" {
			bad(p+".name", "must be set")
		} else if names[u.Name] {
			bad(p+".name", "%q is defined twice", u.Name)
		}
		names[u.Name] = true
		switch {
		case u.Builtin != "":
			if u.Builtin != "echo" {
				bad(p+".builtin", `must be "echo", got %q`, u.Builtin)
			}
			if u.Address != "" {
				bad(p+".address", "a builtin upstream has no address")
			}
		default:
			if _, port, err := net.SplitHostPort(u.Address); err != nil || port == "" {
				bad(p+".address", "must be host:port, got %q", u.Address)
			}
		}
		for j, src := range u.Sources {
			if _, err := netip.ParsePrefix(src); err != nil {
				bad(fmt.Sprintf("%s.sources[%d]", p, j), "must be a CIDR prefix such as 192.0.2.0/24, got %q", src)
			}
		}
		switch u.SRTP {
		case "", "auto", "none", "sdes", "sdes_optional":
		default:
			bad(p+".srtp", `must be auto, none, sdes or sdes_optional; got %q`, u.SRTP)
		}
		if u.Transport != "" && !transports[u.Transport] {
			bad(p+".transport", `must be one of udp, tcp, tls, ws, wss; got %q`, u.Transport)
		}
	}
	for i, r := range c.Routes {
		p := config.Index("routes", i)
		n := 0
		if r.Domain != "" {
			n++
		}
		if r.Prefix != "" {
			n++
		}
		if r.Default {
			n++
		}
		if n != 1 {
			bad(p, "needs exactly one of domain, prefix or default")
		}
		if r.Strip < 0 {
			bad(p+".strip", "must not be negative, got %d", r.Strip)
		}
		if r.Strip > 0 && r.Prefix == "" {
			bad(p+".strip", "only applies to a prefix route")
		}
		if len(r.Upstreams) == 0 {
			bad(p+".upstreams", "must name at least one upstream")
		}
		for j, u := range r.Upstreams {
			if !names[u] {
				bad(fmt.Sprintf("%s.upstreams[%d]", p, j), "no upstream named %q", u)
			}
		}
	}
	if c.Registrar != "" && !names[c.Registrar] {
		bad("registrar", "no upstream named %q", c.Registrar)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls", "cert and key go together")
	}
	if c.RingTimeout <= 0 {
		bad("ring_timeout", "must be above 0, got %v", c.RingTimeout)
	}
	if c.MaxCallDuration < 0 {
		bad("max_call_duration", "must not be negative, got %v", c.MaxCallDuration)
	}
	if c.RegistrationMaxExpires <= 0 {
		bad("registration_max_expires", "must be above 0, got %d", c.RegistrationMaxExpires)
	}
	if strings.ContainsAny(c.UserAgent, "\r\n") {
		bad("user_agent", "must be one line")
	}
	if d := c.Bridge.Domain; d != "" && !validDomain(d) {
		bad("bridge.domain", "must be a domain name such as sip.example.com, got %q", d)
	}
	if c.Bridge.Expires <= 0 {
		bad("bridge.expires", "must be above 0, got %d", c.Bridge.Expires)
	}
	if c.Bridge.MaxSubscriptions <= 0 {
		bad("bridge.max_subscriptions", "must be above 0, got %d", c.Bridge.MaxSubscriptions)
	}
	if c.Bridge.MaxSubscriptionsPerUser <= 0 {
		bad("bridge.max_subscriptions_per_user", "must be above 0, got %d", c.Bridge.MaxSubscriptionsPerUser)
	}
	return errors.Join(errs...)
}
