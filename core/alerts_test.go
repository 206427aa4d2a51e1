package core

import (
	"sync"
	"testing"
)

func TestAlertsDeliverAndNeverBlock(t *testing.T) {
	a := NewAlerts(2)
	var mu sync.Mutex
	var got []string
	block := make(chan struct{})
	a.Subscribe(AlertFunc(func(e *SecurityEvent) {
		<-block
		mu.Lock()
		got = append(got, e.Rule)
		mu.Unlock()
	}))
	for i := 0; i < 10; i++ {
		a.Alert(&SecurityEvent{Rule: "r"}) // must return although the subscriber is stuck
	}
	close(block)
	a.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 || len(got) > 3 || a.Dropped() < 7 {
		t.Fatalf("delivered %d, dropped %d", len(got), a.Dropped())
	}
	var nilA *Alerts
	nilA.Alert(&SecurityEvent{}) // a nil dispatcher discards
}
