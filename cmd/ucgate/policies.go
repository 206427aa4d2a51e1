package main

import (
	"errors"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
	"github.com/ucgate/ucgate/policies/acl"
	"github.com/ucgate/ucgate/policies/admission"
	"github.com/ucgate/ucgate/policies/auth"
	"github.com/ucgate/ucgate/policies/blacklist"
	"github.com/ucgate/ucgate/policies/bruteforce"
	"github.com/ucgate/ucgate/policies/conncap"
	"github.com/ucgate/ucgate/policies/dialog"
	"github.com/ucgate/ucgate/policies/ratelimit"
	"github.com/ucgate/ucgate/policies/rtpguard"
	"github.com/ucgate/ucgate/policies/scan"
	"github.com/ucgate/ucgate/policies/srtp"
	"github.com/ucgate/ucgate/policies/tlsrequired"
	"github.com/ucgate/ucgate/policies/triggers"
	"github.com/ucgate/ucgate/policies/validate"
)

// Policies is the policies section of ucgate.yaml: one key per control,
// named as its package and stage. Each control's README documents it.
type Policies struct {
	ACL         acl.Config         `yaml:"acl"`
	Blacklist   blacklist.Config   `yaml:"blacklist"`
	RateLimit   ratelimit.Config   `yaml:"ratelimit"`
	ConnCap     conncap.Config     `yaml:"conncap"`
	Scan        scan.Config        `yaml:"scan"`
	TLSRequired tlsrequired.Config `yaml:"tlsrequired"`
	Validation  validate.Config    `yaml:"validate"`
	Dialog      dialog.Config      `yaml:"dialog"`
	Bruteforce  bruteforce.Config  `yaml:"bruteforce"`
	Auth        auth.Config        `yaml:"auth"`
	SRTP        srtp.Config        `yaml:"srtp"`
	Admission   admission.Config   `yaml:"admission"`
	RTPGuard    rtpguard.Config    `yaml:"rtpguard"`
	Triggers    triggers.Config    `yaml:"triggers"`
}

func defaultPolicies() Policies {
	return Policies{
		ACL: acl.Defaults(), Blacklist: blacklist.Defaults(), RateLimit: ratelimit.Defaults(),
		ConnCap: conncap.Defaults(), Scan: scan.Defaults(), TLSRequired: tlsrequired.Defaults(),
		Validation: validate.Defaults(), Dialog: dialog.Defaults(), Bruteforce: bruteforce.Defaults(),
		Auth: auth.Defaults(), SRTP: srtp.Defaults(), Admission: admission.Defaults(),
		RTPGuard: rtpguard.Defaults(), Triggers: triggers.Defaults(),
	}
}

// Validate reports every problem of every control.
func (p Policies) Validate() error {
	return errors.Join(
		config.Nest("acl", p.ACL.Validate()),
		config.Nest("blacklist", p.Blacklist.Validate()),
		config.Nest("ratelimit", p.RateLimit.Validate()),
		config.Nest("conncap", p.ConnCap.Validate()),
		config.Nest("scan", p.Scan.Validate()),
		config.Nest("tlsrequired", p.TLSRequired.Validate()),
		config.Nest("validate", p.Validation.Validate()),
		config.Nest("dialog", p.Dialog.Validate()),
		config.Nest("bruteforce", p.Bruteforce.Validate()),
		config.Nest("auth", p.Auth.Validate()),
		config.Nest("srtp", p.SRTP.Validate()),
		config.Nest("admission", p.Admission.Validate()),
		config.Nest("rtpguard", p.RTPGuard.Validate()),
		config.Nest("triggers", p.Triggers.Validate()),
	)
}

// stageConstructors maps every stage name in core.StageOrder to the code
// that builds it from the configuration; a nil stage means "turned off".
// prev is the pipeline being replaced on a reload (nil at start): stages
// that keep counts (rates, lockouts, scanners, calls) inherit them from
// their predecessor so a reload gives no attacker a fresh start.
var stageConstructors = map[string]func(c Config, d core.Deps, prev *core.Pipeline) (core.Stage, error){
	"plugins": pluginStage, // the plugin host's stage plugins (cmd/ucgate/plugins.go)
	"acl": func(c Config, d core.Deps, _ *core.Pipeline) (core.Stage, error) {
		return build(c.Policies.ACL.Enabled, func() (*acl.Stage, error) { return acl.New(c.Policies.ACL, d) })
	},
	"blacklist": func(c Config, d core.Deps, prev *core.Pipeline) (core.Stage, error) {
		return inherit(c.Policies.Blacklist.Enabled, prev, func() (*blacklist.Stage, error) { return blacklist.New(c.Policies.Blacklist, d) })
	},
	"ratelimit": func(c Config, d core.Deps, prev *core.Pipeline) (core.Stage, error) {
		return inherit(c.Policies.RateLimit.Enabled, prev, func() (*ratelimit.Stage, error) { return ratelimit.New(c.Policies.RateLimit, d) })
	},
	"conncap": func(c Config, d core.Deps, prev *core.Pipeline) (core.Stage, error) {
		return inherit(c.Policies.ConnCap.Enabled, prev, func() (*conncap.Stage, error) { return conncap.New(c.Policies.ConnCap, d) })
	},
	"scan": func(c Config, d core.Deps, prev *core.Pipeline) (core.Stage, error) {
		return inherit(c.Policies.Scan.Enabled, prev, func() (*scan.Stage, error) { return scan.New(c.Policies.Scan, d) })
	},
	"tlsrequired": func(c Config, d core.Deps, _ *core.Pipeline) (core.Stage, error) {
		return build(c.Policies.TLSRequired.Enabled, func() (*tlsrequired.Stage, error) { return tlsrequired.New(c.Policies.TLSRequired, d) })
	},
	"validate": func(c Config, d core.Deps, _ *core.Pipeline) (core.Stage, error) {
		return build(c.Policies.Validation.Enabled, func() (*validate.Stage, error) { return validate.New(c.Policies.Validation, d) })
	},
	"dialog": func(c Config, d core.Deps, _ *core.Pipeline) (core.Stage, error) {
		return build(c.Policies.Dialog.Enabled, func() (*dialog.Stage, error) { return dialog.New(c.Policies.Dialog, d) })
	},
	"bruteforce": func(c Config, d core.Deps, prev *core.Pipeline) (core.Stage, error) {
		return inherit(c.Policies.Bruteforce.Enabled, prev, func() (*bruteforce.Stage, error) { return bruteforce.New(c.Policies.Bruteforce, d) })
	},
	"auth": func(c Config, d core.Deps, _ *core.Pipeline) (core.Stage, error) {
		return build(c.Policies.Auth.Enabled, func() (*auth.Stage, error) { return auth.New(c.Policies.Auth, d) })
	},
	"srtp": func(c Config, d core.Deps, _ *core.Pipeline) (core.Stage, error) {
		return build(c.Policies.SRTP.Enabled, func() (*srtp.Stage, error) { return srtp.New(c.Policies.SRTP, d) })
	},
	"rtpguard": func(c Config, d core.Deps, _ *core.Pipeline) (core.Stage, error) {
		return build(c.Policies.RTPGuard.Enabled, func() (*rtpguard.Stage, error) { return rtpguard.New(c.Policies.RTPGuard, d) })
	},
	"admission": func(c Config, d core.Deps, prev *core.Pipeline) (core.Stage, error) {
		return inherit(c.Policies.Admission.Enabled, prev, func() (*admission.Stage, error) { return admission.New(c.Policies.Admission, d) })
	},
}

// build runs a constructor when the control is enabled.
func build[S core.Stage](enabled bool, newStage func() (S, error)) (core.Stage, error) {
	if !enabled {
		return nil, nil
	}
	return newStage()
}

// inherit builds a stage and hands it its predecessor of the same type.
func inherit[S interface {
	core.Stage
	Inherit(S)
}](enabled bool, prev *core.Pipeline, newStage func() (S, error)) (core.Stage, error) {
	if !enabled {
		return nil, nil
	}
	s, err := newStage()
	if err != nil {
		return nil, err
	}
	if prev != nil {
		for _, o := range prev.Stages() {
			if p, ok := o.(S); ok {
				s.Inherit(p)
			}
		}
	}
	return s, nil
}
