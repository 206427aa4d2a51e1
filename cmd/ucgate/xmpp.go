package main

import (
	"context"
	"errors"
	"strings"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
	"github.com/ucgate/ucgate/protocols/xmpp/component"
	"github.com/ucgate/ucgate/protocols/xmpp/proxy"
)

// XMPPConfig is the xmpp section of ucgate.yaml: the client-to-server
// proxy and the external component that interworks with SIP. Both are off
// by default. See protocols/xmpp/README.md.
type XMPPConfig struct {
	Proxy     proxy.Config     `yaml:"proxy"`
	Component component.Config `yaml:"component"`
}

func xmppDefaults() XMPPConfig {
	return XMPPConfig{Proxy: proxy.Defaults(), Component: component.Defaults()}
}

// Validate reports every problem of the section.
func (c XMPPConfig) Validate() error {
	errs := []error{config.Nest("proxy", c.Proxy.Validate()), config.Nest("component", c.Component.Validate())}
	return errors.Join(errs...)
}

// validateXMPPBridge checks what the xmpp section must agree on with the
// sip section: the component's domain is the SIP side's bridge domain.
func validateXMPPBridge(c Config) error {
	cc := c.XMPP.Component
	if !cc.Enabled || c.SIP.Bridge.Domain == "" || strings.EqualFold(cc.Domain, c.SIP.Bridge.Domain) {
		return nil
	}
	return config.Invalid("xmpp.component.domain", "must be sip.bridge.domain (%q), got %q", c.SIP.Bridge.Domain, cc.Domain)
}

// xmppAdapters are the running XMPP roles.
type xmppAdapters struct {
	proxy     *proxy.Proxy
	component *component.Component
}

// startXMPP starts the roles the configuration turns on.
func (gw *gateway) startXMPP(ctx context.Context, deps core.Deps, pl *core.Pipeline) error {
	cfg := gw.cfg.XMPP
	deps.Log = gw.log
	if cfg.Proxy.Enabled {
		tlsConf, err := serverTLS(cfg.Proxy.TLS.Cert, cfg.Proxy.TLS.Key, gw.cfg.DataDir)
		if err != nil {
			return err
		}
		p, err := proxy.New(cfg.Proxy, deps, proxy.Options{TLS: tlsConf})
		if err != nil {
			return err
		}
		p.SetPipeline(pl)
		gw.xmpp.proxy = p
		if err := p.Start(ctx); err != nil {
			return err
		}
	}
	if cfg.Component.Enabled {
		c, err := component.New(cfg.Component, deps)
		if err != nil {
			return err
		}
		c.SetPipeline(pl)
		gw.xmpp.component = c
		if err := c.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// setXMPPPipeline swaps the pipeline of the XMPP roles (a reload).
func (gw *gateway) setXMPPPipeline(pl *core.Pipeline) {
	if gw.xmpp.proxy != nil {
		gw.xmpp.proxy.SetPipeline(pl)
	}
	if gw.xmpp.component != nil {
		gw.xmpp.component.SetPipeline(pl)
	}
}

// closeXMPP stops the XMPP roles.
func (gw *gateway) closeXMPP() error {
	var errs []error
	if gw.xmpp.proxy != nil {
		errs = append(errs, gw.xmpp.proxy.Close())
	}
	if gw.xmpp.component != nil {
		errs = append(errs, gw.xmpp.component.Close())
	}
	return errors.Join(errs...)
}
