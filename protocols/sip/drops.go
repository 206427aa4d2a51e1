package sip

import (
	"context"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/ucgate/ucgate/core"
)

// dropLog journals what the network stages refuse without letting a flood
// flood the journal: the first refusal of a source by a rule is journaled
// at once, the rest are counted and journaled as one summary record per
// source and rule every interval. The table is bounded; past its size,
// refusals are only counted in the metrics.
type dropLog struct {
	a        *Adapter
	interval time.Duration
	max      int

	mu sync.Mutex
	m  map[dropKey]*dropCount
}

type dropKey struct {
	stage, rule string
	src         netip.Addr
	transport   string
}

type dropCount struct {
	n     int
	local netip.AddrPort
	zone  string
	seen  time.Time
}

func newDropLog(a *Adapter) *dropLog {
	return &dropLog{a: a, interval: 10 * time.Second, max: 10000, m: map[dropKey]*dropCount{}}
}

// add records one refusal. It allocates only for a source and rule it has
// not seen this interval.
func (d *dropLog) add(m *core.PacketMeta, dec core.Decision) {
	k := dropKey{stage: dec.Stage, rule: dec.Rule, src: m.Src.Addr(), transport: m.Transport}
	d.mu.Lock()
	c, ok := d.m[k]
	if ok {
		c.n++
		d.mu.Unlock()
		return
	}
	if len(d.m) >= d.max {
		d.mu.Unlock()
		return
	}
	d.m[k] = &dropCount{local: m.Local, zone: m.Zone, seen: time.Now()}
	d.mu.Unlock()
	d.a.journalDrop(k, m.Src.String(), m.Local, m.Zone, 1, m.Conn, dec)
}

// loop writes the summaries until ctx ends.
func (d *dropLog) loop(ctx context.Context) {
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			d.flush()
			return
		case <-t.C:
			d.flush()
		}
	}
}

func (d *dropLog) flush() {
	d.mu.Lock()
	type row struct {
		k dropKey
		c dropCount
	}
	var rows []row
	for k, c := range d.m {
		if c.n > 0 {
			rows = append(rows, row{k, *c})
		}
		delete(d.m, k)
	}
	d.mu.Unlock()
	for _, r := range rows {
		d.a.journalDrop(r.k, r.k.src.String(), r.c.local, r.c.zone, r.c.n, false,
			core.Decision{Stage: r.k.stage, Verdict: core.Verdict{Action: core.Drop, Rule: r.k.rule}})
	}
}

// journalDrop writes the record of n refused packets or connections.
func (a *Adapter) journalDrop(k dropKey, src string, local netip.AddrPort, zone string, n int, conn bool, d core.Decision) {
	detail := "packet"
	if conn {
		detail = "connection"
	}
	if n > 1 {
		detail = strconv.Itoa(n) + " more packets in " + a.drops.interval.String()
	}
	rec := core.Transaction{Time: time.Now(), Protocol: "sip", Zone: zone, Src: src, Dst: local.String(),
		Transport: k.transport, Encrypted: k.transport == "tls" || k.transport == "wss",
		Action: d.Action.String(), Rule: d.Rule, Reason: d.Reason.String(), Detail: detail}
	a.journal.Transaction(&rec)
}
