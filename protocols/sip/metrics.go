package sip

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the adapter's Prometheus collectors. Label values come from
// fixed sets: an attacker cannot invent a method or a rule name.
type metrics struct {
	transactions *prometheus.CounterVec // method, status
	refusals     *prometheus.CounterVec // stage, rule
	calls        *prometheus.CounterVec // result
	active       prometheus.Gauge
	registered   prometheus.Gauge
	malformed    *prometheus.CounterVec // transport
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ucgate_sip_transactions_total",
			Help: "SIP transactions received, by method and the final status the gateway sent (0: dropped).",
		}, []string{"method", "status"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ucgate_sip_refusals_total",
			Help: "SIP requests refused or dropped, by the stage and rule that decided.",
		}, []string{"stage", "rule"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ucgate_calls_total",
			Help: "Calls ended, by how they ended.",
		}, []string{"result"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ucgate_calls_active",
			Help: "Calls in progress (ringing or answered).",
		}),
		registered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ucgate_sip_registrations",
			Help: "Registration bindings held for users behind the gateway.",
		}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ucgate_sip_malformed_total",
			Help: "SIP messages that could not be parsed, by transport.",
		}, []string{"transport"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.transactions, m.refusals, m.calls, m.active, m.registered, m.malformed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

var knownMethods = map[string]bool{"INVITE": true, "ACK": true, "CANCEL": true, "BYE": true,
	"REGISTER": true, "OPTIONS": true, "MESSAGE": true, "INFO": true, "PRACK": true,
	"UPDATE": true, "SUBSCRIBE": true, "NOTIFY": true, "REFER": true, "PUBLISH": true}

// statusLabels avoids formatting a status code per transaction.
var statusLabels = func() [700]string {
	var s [700]string
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func (m *metrics) transaction(method string, status int) {
	if !knownMethods[method] {
		method = "OTHER"
	}
	if status < 0 || status >= len(statusLabels) {
		status = 0
	}
	m.transactions.WithLabelValues(method, statusLabels[status]).Inc()
}

// refusal counts a refusal by its stage and rule.
func (m *metrics) refusal(stage, rule string) {
	m.refusals.WithLabelValues(stage, rule).Inc()
}
