package triggers

import (
	"testing"

	"github.com/ucgate/ucgate/core"
)

// BenchmarkAlertNoMatch is an event no trigger wants: the common case.
func BenchmarkAlertNoMatch(b *testing.B) {
	f := newFixture(b, "list:\n  - name: notify\n    match: [\"scan/*\", \"auth/failure\"]\n    webhook: {url: \"http://192.0.2.1/\"}\n"+
		"  - name: ban\n    match: [\"ratelimit/flood\"]\n    blacklist: {}\n", core.Deps{Blocker: newBlocker()})
	ev := event("dialog/unknown", "192.0.2.7")
	b.ReportAllocs()
	for b.Loop() {
		f.tr.Alert(ev)
	}
}

// BenchmarkAlertSuppressed is a flood of matching events over the
// trigger's rate: matched, counted, nothing queued.
func BenchmarkAlertSuppressed(b *testing.B) {
	f := newFixture(b, "list:\n  - name: notify\n    match: [\"scan/*\"]\n    webhook: {url: \"http://192.0.2.1/\"}\n    rate: {events: 1, per: 1h}\n", core.Deps{})
	ev := event("scan/agent", "192.0.2.7")
	b.ReportAllocs()
	for b.Loop() {
		f.tr.Alert(ev)
	}
}

// BenchmarkAlertQueueFull is a flood while the webhook is stuck: Alert
// still returns at once.
func BenchmarkAlertQueueFull(b *testing.B) {
	h := newHook(b)
	h.hold = make(chan struct{})
	b.Cleanup(func() { close(h.hold) })
	f := newFixture(b, webhookConf(h.URL, "      queue: 1\n      workers: 1\n    rate: {events: 0}\n"), core.Deps{})
	ev := event("scan/agent", "192.0.2.7")
	f.tr.Alert(ev)
	h.receive(b)
	b.ReportAllocs()
	for b.Loop() {
		f.tr.Alert(ev)
	}
}

// BenchmarkAlertBlacklistDeduplicated is a flood of events for a source
// just blocked.
func BenchmarkAlertBlacklistDeduplicated(b *testing.B) {
	bl := newBlocker()
	f := newFixture(b, "list:\n  - name: ban\n    match: [\"*\"]\n    blacklist: {}\n", core.Deps{Blocker: bl})
	ev := event("scan/agent", "192.0.2.7:5060")
	f.tr.Alert(ev)
	bl.receive(b)
	b.ReportAllocs()
	for b.Loop() {
		f.tr.Alert(ev)
	}
}
