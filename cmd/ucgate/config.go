package main

import (
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/ucgate/ucgate/core/config"
	"github.com/ucgate/ucgate/core/journal"
	"github.com/ucgate/ucgate/core/media"
	"github.com/ucgate/ucgate/plugins/host"
	"github.com/ucgate/ucgate/protocols/sip"
	"github.com/ucgate/ucgate/protocols/webrtc"
)

//go:embed default.yaml
var defaultYAML []byte

// Config is the whole of ucgate.yaml.
type Config struct {
	// DataDir holds the journal database, generated certificates and
	// embedded state. Relative paths are relative to the working directory.
	DataDir  string         `yaml:"data_dir"`
	Log      LogConfig      `yaml:"log"`
	Admin    AdminConfig    `yaml:"admin"`
	SIP      sip.Config     `yaml:"sip"`
	Journal  journal.Config `yaml:"journal"`
	Policies Policies       `yaml:"policies"`
	State    StateConfig    `yaml:"state"`
	Media    media.Config   `yaml:"media"`
	XMPP     XMPPConfig     `yaml:"xmpp"`
	WebRTC   webrtc.Config  `yaml:"webrtc"`
	// Plugins are the out-of-process plugins (plugins/README.md).
	Plugins []host.Config `yaml:"plugins"`
}

// StateConfig is the state section: where the blacklist and users live.
type StateConfig struct {
	// Path is the embedded state database, relative to data_dir. Default
	// "state.db".
	Path string `yaml:"path"`
}

// LogConfig is the log section.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

// AdminConfig is the admin section: the HTTP server for metrics and the
// admin API.
type AdminConfig struct {
	// Listen is ip:port of the admin HTTP server; empty turns it off.
	// Keep it on loopback or a management network.
	Listen string `yaml:"listen"`
}

func defaults() Config {
	return Config{
		DataDir:  "./data",
		Log:      LogConfig{Level: "info", Format: "text"},
		SIP:      sip.Defaults(),
		Journal:  journal.Defaults(),
		Policies: defaultPolicies(),
		State:    StateConfig{Path: "state.db"},
		Media:    media.Defaults(),
		XMPP:     xmppDefaults(),
		WebRTC:   webrtc.Defaults(),
	}
}

// Validate reports every problem in c.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, config.Invalid("data_dir", "must be set"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, config.Invalid("log.level", `must be debug, info, warn or error; got %q`, c.Log.Level))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, config.Invalid("log.format", `must be text or json; got %q`, c.Log.Format))
	}
	if c.Admin.Listen != "" {
		if _, err := netip.ParseAddrPort(c.Admin.Listen); err != nil {
			errs = append(errs, config.Invalid("admin.listen", "must be ip:port, got %q", c.Admin.Listen))
		}
	}
	if c.State.Path == "" {
		errs = append(errs, config.Invalid("state.path", "must be set"))
	}
	errs = append(errs, config.Nest("sip", c.SIP.Validate()), config.Nest("journal", c.Journal.Validate()),
		config.Nest("policies", c.Policies.Validate()), config.Nest("media", c.Media.Validate()),
		config.Nest("webrtc", c.WebRTC.Validate()))
	errs = append(errs, config.Nest("plugins", host.ValidateAll(c.Plugins)))
	errs = append(errs, validateTranscoder(c))
	errs = append(errs, config.Nest("xmpp", c.XMPP.Validate()), validateXMPPBridge(c))
	return errors.Join(errs...)
}

// loadConfig reads the file at path, or the embedded default when path is
// empty, over the built-in defaults, and validates it. Errors name the
// file, line and field.
func loadConfig(path string) (Config, error) {
	data, name := defaultYAML, "(embedded default)"
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		data, name = b, path
	}
	return parseConfig(data, name)
}

func parseConfig(data []byte, name string) (Config, error) {
	cfg := defaults()
	root, err := config.Decode(data, name, &cfg)
	if err != nil {
		return cfg, err
	}
	return cfg, config.Locate(root, name, cfg.Validate())
}
