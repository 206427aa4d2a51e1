package host

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// metrics are the host's per-plugin collectors.
type metrics struct {
	calls    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	restarts *prometheus.CounterVec
	refused  *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	up       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ucgate_plugin_calls_total",
			Help: "Calls to a plugin (stage decisions, deliveries) and events from it."}, []string{"plugin"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ucgate_plugin_errors_total",
			Help: "Calls to a plugin that failed (error, deadline, plugin down)."}, []string{"plugin"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ucgate_plugin_restarts_total",
			Help: "Plugin restarts after a crash or a hang."}, []string{"plugin"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ucgate_plugin_refused_total",
			Help: "Input from a plugin refused, by rule."}, []string{"plugin", "rule"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ucgate_plugin_latency_seconds",
			Help:    "Round trip of one call to a plugin.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}, []string{"plugin"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ucgate_plugin_up",
			Help: "1 while a plugin is running, 0 otherwise."}, []string{"plugin"}),
	}
	var err error
	if m.calls, err = core.RegisterMetric(reg, m.calls); err != nil {
		return nil, err
	}
	if m.errors, err = core.RegisterMetric(reg, m.errors); err != nil {
		return nil, err
	}
	if m.restarts, err = core.RegisterMetric(reg, m.restarts); err != nil {
		return nil, err
	}
	if m.refused, err = core.RegisterMetric(reg, m.refused); err != nil {
		return nil, err
	}
	if m.latency, err = core.RegisterMetric(reg, m.latency); err != nil {
		return nil, err
	}
	if m.up, err = core.RegisterMetric(reg, m.up); err != nil {
		return nil, err
	}
	return m, nil
}
