package admission

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
)

type metrics struct {
	refused    [2 * nKinds]prometheus.Counter
	unreserved prometheus.Counter
	expired    prometheus.Counter
	gauges     *gauges
}

// newMetrics registers the stage's collectors on r (nil: none). A
// collector already registered by the stage a reload replaces is reused:
// counters go on counting, and the gauges read the new stage.
func newMetrics(r prometheus.Registerer, s *Stage) (*metrics, error) {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_admission_refused_total",
		Help: "Session offers refused by admission control, by rule.",
	}, []string{"rule"})
	unreserved := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_admission_unreserved_binds_total",
		Help: "Sessions bound without a reservation from Decide (counted above the limits).",
	})
	expired := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ucgate_admission_expired_reservations_total",
		Help: "Reservations released because no session claimed them within reserve_timeout.",
	})
	g := newGauges()
	refused, err1 := core.RegisterMetric(r, refused)
	unreserved, err2 := core.RegisterMetric(r, unreserved)
	expired, err3 := core.RegisterMetric(r, expired)
	g, err4 := core.RegisterMetric(r, g)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMetrics, err)
	}
	m := &metrics{unreserved: unreserved, expired: expired, gauges: g}
	for i, rule := range ruleNames {
		m.refused[i] = refused.WithLabelValues(rule)
	}
	g.cur.Store(s)
	return m, nil
}

// detach stops the gauges reading s, unless a newer stage took them over.
func (m *metrics) detach(s *Stage) { m.gauges.cur.CompareAndSwap(s, nil) }

// gauges reports the current stage's counts when scraped, so that the
// hot path only updates the atomics it keeps anyway.
type gauges struct {
	cur      atomic.Pointer[Stage]
	calls    *prometheus.Desc
	reserved *prometheus.Desc
	keys     *prometheus.Desc
}

func newGauges() *gauges {
	return &gauges{
		calls: prometheus.NewDesc("ucgate_admission_calls",
			"Calls counted against the admission limits of each kind (reservations included).", []string{"kind"}, nil),
		reserved: prometheus.NewDesc("ucgate_admission_reserved_calls",
			"Admitted offers whose sessions have not started yet.", nil, nil),
		keys: prometheus.NewDesc("ucgate_admission_keys",
			"Sources, users and trunks admission control keeps a count for.", []string{"kind"}, nil),
	}
}

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.calls
	ch <- g.reserved
	ch <- g.keys
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	s := g.cur.Load()
	if s == nil {
		return
	}
	st := s.st.Load()
	var trunkCalls, trunkKeys int
	for _, c := range *st.trunks.Load() {
		trunkCalls += int(c.active.Load())
		trunkKeys++
	}
	calls := [nKinds]int64{st.sources.calls.Load(), st.users.calls.Load(), int64(trunkCalls), int64(st.global.active.Load())}
	for k, n := range calls {
		ch <- prometheus.MustNewConstMetric(g.calls, prometheus.GaugeValue, float64(n), kindNames[k])
	}
	ch <- prometheus.MustNewConstMetric(g.reserved, prometheus.GaugeValue, float64(st.global.reserved.Load()))
	keys := [3]int64{st.sources.keys.Load(), st.users.keys.Load(), int64(trunkKeys)}
	for k, n := range keys {
		ch <- prometheus.MustNewConstMetric(g.keys, prometheus.GaugeValue, float64(n), kindNames[k])
	}
}
