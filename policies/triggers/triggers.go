package triggers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ucgate/ucgate/core"
)

// Name is the component's name and its YAML key under policies.
const Name = "triggers"

// Errors of New and of the actions.
var (
	ErrNoBlocker  = errors.New("triggers: a blacklist action needs the blacklist")
	ErrNoDuration = errors.New("triggers: the blacklist cannot block for a given duration")
	ErrMetrics    = errors.New("triggers: register metrics")
	ErrStatus     = errors.New("triggers: webhook answered with an error status")
	ErrDelivery   = errors.New("triggers: webhook delivery failed")
)

// DurationBlocker is a core.Blocker that can block for a given time. A
// blacklist action with a duration needs one.
type DurationBlocker interface {
	core.Blocker
	BlockFor(src netip.Addr, d time.Duration, rule, reason string)
}

const (
	// flushEvery is how often windows that reopened send their summaries.
	flushEvery = time.Second
	// drainTimeout bounds how long Close waits for queued actions.
	drainTimeout = 10 * time.Second
	// blacklistQueue is the queue of a blacklist action.
	blacklistQueue = 1024
	// maxRecent bounds the sources a blacklist action remembers blocking.
	maxRecent = 4096
	// recentDefault is how long a blacklist action without a duration
	// skips a source it blocked.
	recentDefault = time.Minute
)

// Triggers runs the configured triggers on security events. Build it with
// New and subscribe it to core.Alerts; it is safe for concurrent use.
type Triggers struct {
	log   *slog.Logger
	now   func() time.Time
	list  []*trigger
	drain time.Duration

	mu     sync.RWMutex // guards closed against sends on closing queues
	closed bool
	// retired is set by Close and by a successor's Inherit: Alert then
	// does nothing (core.Alerts cannot unsubscribe a receiver).
	retired atomic.Bool

	ctx      context.Context // cancelled when Close gives up draining
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stop     chan struct{}
	flushed  chan struct{}
	once     sync.Once
	closeIdl func()
}

// trigger is one configured trigger and its state.
type trigger struct {
	name string
	matcher
	limit int
	per   time.Duration
	act   action
	queue chan job
	m     counters
	// blacklist is set for a blacklist action, which needs a source.
	blacklist bool
	recentFor time.Duration

	mu         sync.Mutex
	start      time.Time // the window's start; zero: no window open
	count      int
	suppressed uint64
	recent     map[netip.Addr]time.Time // blacklist: sources blocked, until when they are skipped
}

// job is one event for an action.
type job struct {
	ev      *core.SecurityEvent
	src     netip.Addr
	summary uint64 // >0: ev is the summary of this many suppressed events
}

// action is what a trigger does with a job.
type action interface {
	run(ctx context.Context, j job) error
}

// New builds the triggers of cfg, which must pass Validate, and starts
// their workers; Close stops them. A blacklist action needs deps.Blocker
// (a DurationBlocker when it has a duration).
func New(cfg Config, deps core.Deps) (*Triggers, error) {
	return newTriggers(cfg, deps, time.Now, sleepCtx, true)
}

func newTriggers(cfg Config, deps core.Deps, now func() time.Time,
	sleep func(context.Context, time.Duration) bool, flusher bool) (*Triggers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("triggers: %w", err)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("stage", Name)
	var list []Trigger
	if cfg.Enabled {
		list = cfg.List
	}
	for _, tc := range list {
		if tc.Blacklist == nil {
			continue
		}
		if deps.Blocker == nil {
			return nil, fmt.Errorf("%w: trigger %s", ErrNoBlocker, tc.Name)
		}
		if _, ok := deps.Blocker.(DurationBlocker); tc.Blacklist.Duration > 0 && !ok {
			return nil, fmt.Errorf("%w: trigger %s", ErrNoDuration, tc.Name)
		}
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Triggers{log: log, now: now, drain: drainTimeout, ctx: ctx, cancel: cancel,
		stop: make(chan struct{}), flushed: make(chan struct{})}
	// Certificates are verified against the system roots: nothing here
	// ever turns that off.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	client := &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.closeIdl = transport.CloseIdleConnections
	for _, tc := range list {
		tr := &trigger{
			name:    tc.Name,
			matcher: matcher{patterns: tc.Match},
			limit:   defaultEvents,
			per:     defaultPer,
			m:       m.of(tc.Name),
		}
		if len(tc.Zones) > 0 {
			tr.zones = make(map[string]bool, len(tc.Zones))
			for _, z := range tc.Zones {
				tr.zones[z] = true
			}
		}
		if tc.Rate != nil {
			tr.limit = tc.Rate.Events
			if tc.Rate.Per > 0 {
				tr.per = tc.Rate.Per
			}
		}
		workers := 1
		if w := tc.Webhook; w != nil {
			wh := newWebhook(tc.Name, w, client, sleep)
			tr.act, tr.queue, workers = wh, make(chan job, orDefault(w.Queue, defaultQueue)), orDefault(w.Workers, defaultWorkers)
		} else {
			tr.blacklist = true
			tr.recent = make(map[netip.Addr]time.Time)
			tr.recentFor = recentDefault
			if d := tc.Blacklist.Duration; d > 0 {
				tr.recentFor = d
			}
			tr.act = &blacklister{blocker: deps.Blocker, d: tc.Blacklist.Duration,
				rule: triggerPrefix + tc.Name, log: log.With("trigger", tc.Name)}
			tr.queue = make(chan job, blacklistQueue)
		}
		t.list = append(t.list, tr)
		for range workers {
			t.wg.Add(1)
			go t.work(tr)
		}
	}
	if flusher {
		go t.flusher()
	} else {
		close(t.flushed)
	}
	return t, nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Name is "triggers".
func (t *Triggers) Name() string { return Name }

// Alert implements core.Alerter: every trigger matching e fires, within
// its rate limit. It never blocks: an action's queue that is full drops
// the event (ucgate_triggers_dropped_total).
func (t *Triggers) Alert(e *core.SecurityEvent) {
	if e == nil || len(t.list) == 0 || t.retired.Load() {
		return
	}
	now := t.now()
	for _, tr := range t.list {
		if tr.match(e.Rule, e.Zone) {
			t.fire(tr, e, now)
		}
	}
}

func (t *Triggers) fire(tr *trigger, e *core.SecurityEvent, now time.Time) {
	var src netip.Addr
	if tr.blacklist {
		var ok bool
		if src, ok = parseSrc(e.Src); !ok {
			return
		}
	}
	tr.mu.Lock()
	if tr.blacklist {
		if until, ok := tr.recent[src]; ok && now.Before(until) {
			tr.mu.Unlock()
			return // blocked a moment ago: this may be that block's own event
		}
	}
	var summary uint64
	if tr.limit > 0 {
		if tr.start.IsZero() || now.Sub(tr.start) >= tr.per {
			summary, tr.suppressed, tr.count, tr.start = tr.suppressed, 0, 0, now
		}
		if tr.count >= tr.limit {
			tr.suppressed++
			tr.mu.Unlock()
			tr.m.suppressed.Inc()
			return
		}
		tr.count++
	}
	if tr.blacklist {
		tr.remember(src, now)
	}
	tr.mu.Unlock()
	if summary > 0 {
		t.send(tr, job{ev: tr.summaryEvent(summary, now), summary: summary})
	}
	if t.send(tr, job{ev: e, src: src}) {
		tr.m.fired.Inc()
	} else if tr.blacklist {
		tr.mu.Lock()
		delete(tr.recent, src) // not blocked: do not skip it next time
		tr.mu.Unlock()
	}
}

// remember records that src is being blocked (tr.mu held), within
// maxRecent entries.
func (tr *trigger) remember(src netip.Addr, now time.Time) {
	if len(tr.recent) >= maxRecent {
		for a, until := range tr.recent {
			if !now.Before(until) {
				delete(tr.recent, a)
			}
		}
		for a := range tr.recent {
			if len(tr.recent) < maxRecent {
				break
			}
			delete(tr.recent, a)
		}
	}
	tr.recent[src] = now.Add(tr.recentFor)
}

func (tr *trigger) summaryEvent(n uint64, now time.Time) *core.SecurityEvent {
	return &core.SecurityEvent{Time: now, Rule: triggerPrefix + tr.name, Action: "suppressed",
		Detail: fmt.Sprintf("%d events suppressed (rate limit %d per %v)", n, tr.limit, tr.per)}
}

// send queues j for tr's action unless the triggers are closed or the
// queue is full (counted as dropped).
func (t *Triggers) send(tr *trigger, j job) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return false
	}
	select {
	case tr.queue <- j:
		return true
	default:
		tr.m.dropped.Inc()
		return false
	}
}

// flush sends the summaries of the windows over by now (all of them,
// when force).
func (t *Triggers) flush(now time.Time, force bool, send func(*trigger, job) bool) {
	for _, tr := range t.list {
		tr.mu.Lock()
		n := tr.suppressed
		if n == 0 || !force && now.Sub(tr.start) < tr.per {
			tr.mu.Unlock()
			continue
		}
		tr.suppressed, tr.count, tr.start = 0, 0, time.Time{}
		tr.mu.Unlock()
		send(tr, job{ev: tr.summaryEvent(n, now), summary: n})
	}
}

func (t *Triggers) flusher() {
	defer close(t.flushed)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.flush(t.now(), false, t.send)
		}
	}
}

func (t *Triggers) work(tr *trigger) {
	defer t.wg.Done()
	for j := range tr.queue {
		if err := tr.act.run(t.ctx, j); err != nil {
			tr.m.failed.Inc()
			t.log.Warn("trigger action failed", "trigger", tr.name, "rule", j.ev.Rule, "error", err)
		}
	}
}

// Inherit is for a configuration reload: each trigger takes over the
// rate window, the pending summary and the recently blocked sources of
// prev's trigger of the same name and action, and prev is retired: it acts
// on no further event (it stays subscribed to core.Alerts, which cannot
// unsubscribe), and its queued actions finish when it is closed. Call it
// before subscribing the new triggers.
func (t *Triggers) Inherit(prev *Triggers) {
	if prev == nil || prev == t {
		return
	}
	prev.retired.Store(true)
	byName := make(map[string]*trigger, len(prev.list))
	for _, tr := range prev.list {
		byName[tr.name] = tr
	}
	for _, tr := range t.list {
		p := byName[tr.name]
		if p == nil || p.blacklist != tr.blacklist {
			continue
		}
		p.mu.Lock()
		start, count, suppressed := p.start, p.count, p.suppressed
		p.suppressed = 0 // the summary is the new trigger's to send
		recent := maps.Clone(p.recent)
		p.mu.Unlock()
		tr.mu.Lock()
		tr.start, tr.count, tr.suppressed = start, count, suppressed
		if tr.blacklist {
			for a, until := range recent {
				if len(tr.recent) < maxRecent {
					tr.recent[a] = until
				}
			}
		}
		tr.mu.Unlock()
	}
}

// Close stops taking events, sends the summaries still pending, and waits
// for the queued actions to finish (at most drainTimeout, then in-flight
// deliveries are cancelled).
func (t *Triggers) Close() error {
	t.once.Do(func() {
		t.retired.Store(true)
		close(t.stop)
		<-t.flushed
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		// Nothing else sends now: queue the last summaries directly.
		t.flush(t.now(), true, func(tr *trigger, j job) bool {
			select {
			case tr.queue <- j:
				return true
			default:
				tr.m.dropped.Inc()
				return false
			}
		})
		for _, tr := range t.list {
			close(tr.queue)
		}
		done := make(chan struct{})
		go func() { t.wg.Wait(); close(done) }()
		timer := time.NewTimer(t.drain)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			t.log.Warn("trigger actions still running at close: cancelled")
			t.cancel()
			<-done
		}
		t.cancel()
		t.closeIdl()
	})
	return nil
}

// blacklister blocks the source of each event.
type blacklister struct {
	blocker core.Blocker
	d       time.Duration
	rule    string
	log     *slog.Logger
}

func (b *blacklister) run(_ context.Context, j job) error {
	if j.summary > 0 {
		// There is no source to block: the operator learns it here.
		b.log.Warn("trigger suppressed events", "count", j.summary, "detail", j.ev.Detail)
		return nil
	}
	reason := "security event " + j.ev.Rule
	if db, ok := b.blocker.(DurationBlocker); ok && b.d > 0 {
		db.BlockFor(j.src, b.d, b.rule, reason)
		return nil
	}
	b.blocker.Block(j.src, b.rule, reason)
	return nil
}

// sleepCtx waits d, or until ctx is done; it reports whether it waited.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

var (
	_ core.Alerter = (*Triggers)(nil)
	_ io.Closer    = (*Triggers)(nil)
)
