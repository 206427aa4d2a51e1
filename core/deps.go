package core

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Deps are what the gateway hands every component it builds.
type Deps struct {
	Log      *slog.Logger
	Journal  Journal
	Sessions *Sessions
	// Metrics is where components register their Prometheus collectors.
	Metrics prometheus.Registerer
	// DataDir is the directory for embedded state, certificates and the
	// journal.
	DataDir string
	// State is what the gateway's nodes share (blacklist, users).
	State State
	// Alerts carries security events to the journal and the triggers.
	Alerts *Alerts
	// Blocker is the blacklist, for stages that block sources.
	Blocker Blocker
	// Bridge carries messages and presence between adapters.
	Bridge *Bridge
	// Extern are stages built outside the gateway's stage constructors, by
	// their name in StageOrder (the plugin host's "plugins" stage).
	Extern map[string]Stage
}
