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

func TestUnsubscribe(t *testing.T) {
	a := NewAlerts(16)
	got := make(chan string, 16)
	stop := a.Subscribe(AlertFunc(func(e *SecurityEvent) { got <- "first:" + e.Rule }))
	a.Subscribe(AlertFunc(func(e *SecurityEvent) { got <- "second:" + e.Rule }))
	a.Alert(&SecurityEvent{Rule: "a"})
	<-got
	<-got
	stop()
	a.Alert(&SecurityEvent{Rule: "b"})
	a.Close()
	close(got)
	for s := range got {
		if s != "second:b" {
			t.Fatalf("after unsubscribe: %s", s)
		}
	}
}
