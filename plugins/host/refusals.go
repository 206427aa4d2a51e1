package host

import (
	"strconv"
	"sync"
	"time"

	"github.com/ucgate/ucgate/core"
)

// refusalInterval is how long the refusals of one plugin's input are
// counted before their summary is journaled.
const refusalInterval = 10 * time.Second

// maxRefusalKeys bounds the sources and rules counted in one interval;
// past it, refusals are only counted in the metrics.
const maxRefusalKeys = 1024

// refusals journals what the host refuses of a plugin's input without
// letting a flooding plugin flood the journal, as the SIP adapter's drop
// log does for the network stages: the first refusal of a source by a
// rule in an interval is journaled (and raises a security event) at once,
// the rest are counted and journaled as one record per source and rule
// when the interval ends.
type refusals struct {
	interval time.Duration
	mu       sync.Mutex
	start    time.Time
	m        map[refusalKey]*refusalCount
}

type refusalKey struct{ rule, src string }

type refusalCount struct {
	n      int
	reason core.Reason
	method string
}

// first records one refusal at now and reports whether it is the first
// of its source and rule in the interval (journal it); due are the
// summaries of the interval that ended, to be journaled.
func (r *refusals) first(k refusalKey, reason core.Reason, method string, now time.Time) (bool, []refusalSummary) {
	r.mu.Lock()
	defer r.mu.Unlock()
	due := r.rotate(now)
	if c, ok := r.m[k]; ok {
		c.n++
		return false, due
	}
	if len(r.m) >= maxRefusalKeys {
		return false, due
	}
	if r.m == nil {
		r.m = map[refusalKey]*refusalCount{}
	}
	r.m[k] = &refusalCount{reason: reason, method: method}
	return true, due
}

// refusalSummary is the record of refusals counted after the first.
type refusalSummary struct {
	refusalKey
	refusalCount
}

// rotate starts a new interval when the last one is over and returns the
// summaries of the one that ended. r.mu is held.
func (r *refusals) rotate(now time.Time) []refusalSummary {
	if r.start.IsZero() {
		r.start = now
	}
	if now.Sub(r.start) < r.interval {
		return nil
	}
	var due []refusalSummary
	for k, c := range r.m {
		if c.n > 0 {
			due = append(due, refusalSummary{k, *c})
		}
	}
	r.m, r.start = nil, now
	return due
}

// flushRefusals journals the summaries of an interval that is over (the
// health check's ticker calls it; Close, with force, ends the interval).
func (p *Plugin) flushRefusals(now time.Time, force bool) {
	p.drops.mu.Lock()
	if force {
		p.drops.start = now.Add(-p.drops.interval)
	}
	due := p.drops.rotate(now)
	p.drops.mu.Unlock()
	p.journalSummaries(due)
}

func (p *Plugin) journalSummaries(due []refusalSummary) {
	if p.h.deps.Journal == nil {
		return
	}
	for _, s := range due {
		p.h.deps.Journal.Transaction(&core.Transaction{Time: time.Now(), Protocol: p.cfg.Protocol, Src: s.src,
			Transport: "plugin", Method: s.method, Action: core.Refuse.String(), Rule: s.rule, Reason: s.reason.String(),
			Detail: "plugin " + p.cfg.Name + ": " + strconv.Itoa(s.n) + " more in " + p.drops.interval.String()})
	}
}
