package core

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetric registers c on reg and returns it. When a collector of the
// same description is already registered (a configuration reload built a
// new stage on the same registry) and is a C, it returns that one instead,
// so counters go on counting. A nil reg registers nothing and returns c.
// Any other registration error is returned with c.
func RegisterMetric[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(C); ok {
			return old, nil
		}
	}
	return c, err
}
