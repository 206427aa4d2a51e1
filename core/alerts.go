package core

import (
	"sync"
	"sync/atomic"
)

// Alerts fans security events out to its subscribers (the journal, the
// triggers, metrics) on a goroutine of its own, so that a stage raising an
// event never waits for them. The queue is bounded; when a flood of events
// outruns the subscribers the excess is counted in Dropped, never blocks
// the stage.
type Alerts struct {
	ch      chan *SecurityEvent
	mu      sync.RWMutex
	subs    []subscriber
	nextID  uint64
	dropped atomic.Uint64
	done    chan struct{}
	once    sync.Once
}

// NewAlerts starts a dispatcher with a queue of size events.
func NewAlerts(size int) *Alerts {
	if size <= 0 {
		size = 4096
	}
	a := &Alerts{ch: make(chan *SecurityEvent, size), done: make(chan struct{})}
	go a.loop()
	return a
}

type subscriber struct {
	id uint64
	Alerter
}

// Subscribe adds a receiver of every later event and returns the function
// that removes it again (events already queued may still reach it).
func (a *Alerts) Subscribe(s Alerter) (unsubscribe func()) {
	a.mu.Lock()
	a.nextID++
	id := a.nextID
	a.subs = append(a.subs, subscriber{id, s})
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		subs := make([]subscriber, 0, len(a.subs))
		for _, x := range a.subs {
			if x.id != id {
				subs = append(subs, x)
			}
		}
		a.subs = subs
	}
}

// Alert queues e for the subscribers. It never blocks. A nil *Alerts
// discards the event.
func (a *Alerts) Alert(e *SecurityEvent) {
	if a == nil {
		return
	}
	select {
	case a.ch <- e:
	default:
		a.dropped.Add(1)
	}
}

// Dropped counts events lost to a full queue.
func (a *Alerts) Dropped() uint64 { return a.dropped.Load() }

func (a *Alerts) loop() {
	defer close(a.done)
	for e := range a.ch {
		a.mu.RLock()
		subs := a.subs
		a.mu.RUnlock()
		for _, s := range subs {
			s.Alert(e)
		}
	}
}

// Close delivers what is queued and stops the dispatcher.
func (a *Alerts) Close() error {
	if a == nil {
		return nil
	}
	a.once.Do(func() { close(a.ch) })
	<-a.done
	return nil
}
