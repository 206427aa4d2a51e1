package core

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func testCounter(help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "ucgate_test_total", Help: help})
}

func TestRegisterMetricReusesTheRegisteredCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := RegisterMetric(reg, testCounter("Test."))
	if err != nil {
		t.Fatal(err)
	}
	second, err := RegisterMetric(reg, testCounter("Test."))
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Fatal("second registration returned a new collector, want the first")
	}
}

func TestRegisterMetricConflicts(t *testing.T) {
	for _, tc := range []struct {
		name string
		// register registers the second collector on a registry that holds
		// testCounter("Test.").
		register func(prometheus.Registerer) (prometheus.Collector, error)
		already  bool // the error is an AlreadyRegisteredError
	}{
		{"other help", func(r prometheus.Registerer) (prometheus.Collector, error) {
			return RegisterMetric(r, testCounter("Other."))
		}, false},
		{"other type", func(r prometheus.Registerer) (prometheus.Collector, error) {
			return RegisterMetric(r, prometheus.NewGauge(prometheus.GaugeOpts{Name: "ucgate_test_total", Help: "Test."}))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			first := testCounter("Test.")
			reg.MustRegister(first)
			got, err := tc.register(reg)
			if err == nil {
				t.Fatal("no error for a conflicting descriptor")
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) != tc.already {
				t.Errorf("error %v: AlreadyRegisteredError %v, want %v", err, !tc.already, tc.already)
			}
			if got == first {
				t.Error("returned the registered collector, want the one passed in")
			}
		})
	}
}

func TestRegisterMetricNilRegisterer(t *testing.T) {
	c := testCounter("Test.")
	got, err := RegisterMetric(nil, c)
	if err != nil || got != c {
		t.Fatalf("RegisterMetric(nil, c) = %v, %v; want c, nil", got, err)
	}
}
