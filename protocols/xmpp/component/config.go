package component

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the xmpp.component section of ucgate.yaml.
type Config struct {
	// Enabled turns the component on. Default false.
	Enabled bool `yaml:"enabled"`
	// Server is ip:port of the XMPP server's component port (Prosody's
	// component_ports, 5347 by convention).
	Server string `yaml:"server"`
	// Domain is the component's domain, as the server's configuration
	// names it (Component "sip.example.com"); it must be the SIP
	// adapter's sip.bridge.domain.
	Domain string `yaml:"domain"`
	// Secret is the shared secret of the XEP-0114 handshake (Prosody's
	// component_secret). Prefer SecretFile.
	Secret string `yaml:"secret"`
	// SecretFile is a file holding the secret (one line).
	SecretFile string `yaml:"secret_file"`
	// PeerDomains are the XMPP domains reached through the server: a
	// message or presence from the bridge to user@<peer domain> is sent
	// through the component. At least one.
	PeerDomains []string `yaml:"peer_domains"`
	// Zone is the zone of the traffic the server routes to the component.
	// Default "xmpp". Its sources are the server: give the zone a trusted
	// rate limit budget (policies.ratelimit.zones).
	Zone string `yaml:"zone"`
	// Reconnect is the first wait before connecting again after the
	// connection failed; it doubles up to a minute. Default 1s.
	Reconnect time.Duration `yaml:"reconnect"`
	// MaxBody is the most bytes of a message body carried either way;
	// longer messages are refused (<policy-violation/>, SIP 413 on the
	// other side). Default 65536.
	MaxBody int `yaml:"max_body"`
	// MaxInFlight bounds the stanzas being delivered at once; beyond it the
	// component stops reading from the server. Default 256.
	MaxInFlight int `yaml:"max_in_flight"`
	// DeliveryTimeout bounds one delivery to the other adapter. Default 32s
	// (SIP's transaction timeout).
	DeliveryTimeout time.Duration `yaml:"delivery_timeout"`
	// Capture is the compliance capture of interworked messages, both
	// ways, in the journal's messages table.
	Capture Capture `yaml:"capture"`
}

// Capture is the compliance capture of the messages the component carries
// across: each one delivered (XMPP to the other side, or the other side to
// XMPP) is written to the journal's messages table with both protocols'
// identities (from xmpp:juliet@example.com/phone to
// sip:alice@sip.example.com, and back).
type Capture struct {
	// Enabled turns capture on. Default false.
	Enabled bool `yaml:"enabled"`
	// Body keeps the message text; false keeps sender, recipient, time and
	// size only. Default false.
	Body bool `yaml:"body"`
}

// Defaults returns the section's defaults.
func Defaults() Config {
	return Config{Zone: "xmpp", Reconnect: time.Second, MaxBody: 65536, MaxInFlight: 256, DeliveryTimeout: 32 * time.Second}
}

func domainOK(d string) bool {
	j, err := jid.Parse(d)
	return err == nil && j.Localpart() == "" && j.Resourcepart() == "" && d != "" && strings.EqualFold(j.Domainpart(), d)
}

// Validate reports every problem; it does no I/O.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	bad := func(path, f string, a ...any) { errs = append(errs, config.Invalid(path, f, a...)) }
	if _, err := netip.ParseAddrPort(c.Server); err != nil {
		bad("server", "must be ip:port, got %q", c.Server)
	}
	if !domainOK(c.Domain) {
		bad("domain", "must be a domain name, got %q", c.Domain)
	}
	if (c.Secret == "") == (c.SecretFile == "") {
		bad("secret", "exactly one of secret and secret_file must be set")
	}
	if len(c.PeerDomains) == 0 {
		bad("peer_domains", "must name at least one domain")
	}
	for i, d := range c.PeerDomains {
		if !domainOK(d) {
			bad(fmt.Sprintf("peer_domains[%d]", i), "must be a domain name, got %q", d)
		}
		if strings.EqualFold(d, c.Domain) {
			bad(fmt.Sprintf("peer_domains[%d]", i), "must not be the component's own domain")
		}
	}
	if c.Zone == "" {
		bad("zone", "must name a zone")
	}
	if c.Reconnect <= 0 {
		bad("reconnect", "must be above 0")
	}
	if c.MaxBody < 1 || c.MaxBody > 1<<20 {
		bad("max_body", "must be 1 to 1048576, got %d", c.MaxBody)
	}
	if c.MaxInFlight < 1 {
		bad("max_in_flight", "must be at least 1, got %d", c.MaxInFlight)
	}
	if c.DeliveryTimeout <= 0 {
		bad("delivery_timeout", "must be above 0")
	}
	return errors.Join(errs...)
}

// secret returns the configured secret.
func (c Config) secret() ([]byte, error) {
	if c.SecretFile == "" {
		return []byte(c.Secret), nil
	}
	b, err := os.ReadFile(c.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("xmpp component: read secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("xmpp component: secret file %s is empty", c.SecretFile)
	}
	return []byte(s), nil
}
