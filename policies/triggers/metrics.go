package triggers

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

// metrics are the counters of every trigger, by trigger name (names come
// from the configuration, so the label set is bounded).
type metrics struct {
	fired, suppressed, failed, dropped *prometheus.CounterVec
}

// counters are one trigger's.
type counters struct {
	fired, suppressed, failed, dropped prometheus.Counter
}

// newMetrics registers the counters on r (nil: none). Counters already
// registered by the triggers a reload replaces are reused.
func newMetrics(r prometheus.Registerer) (*metrics, error) {
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"trigger"})
	}
	m := &metrics{
		fired:      vec("ucgate_triggers_fired_total", "Security events a trigger acted on."),
		suppressed: vec("ucgate_triggers_suppressed_total", "Security events a trigger's rate limit suppressed."),
		failed:     vec("ucgate_triggers_failed_total", "Trigger actions that failed (webhook deliveries given up)."),
		dropped:    vec("ucgate_triggers_dropped_total", "Security events a trigger dropped because its queue was full."),
	}
	var errs []error
	for _, c := range []**prometheus.CounterVec{&m.fired, &m.suppressed, &m.failed, &m.dropped} {
		var err error
		if *c, err = core.RegisterMetric(r, *c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMetrics, err)
	}
	return m, nil
}

func (m *metrics) of(name string) counters {
	return counters{
		fired:      m.fired.WithLabelValues(name),
		suppressed: m.suppressed.WithLabelValues(name),
		failed:     m.failed.WithLabelValues(name),
		dropped:    m.dropped.WithLabelValues(name),
	}
}
