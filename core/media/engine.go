package media

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ucgate/ucgate/core"
)

// Errors of the engine.
var (
	// ErrDisabled reports a configuration with media anchoring off.
	ErrDisabled = errors.New("media: anchoring is disabled")
	// ErrClosed reports a call or engine that was closed.
	ErrClosed = errors.New("media: closed")
	// ErrFamily reports an address family the engine has no relay
	// address for, or a leg that changed family.
	ErrFamily = errors.New("media: address family not available")
)

// Family is the IP address family of a leg's relay sockets.
type Family uint8

// Families. FamilyAuto means "the same as the leg that sent the
// description".
const (
	FamilyAuto Family = iota
	FamilyIPv4
	FamilyIPv6
)

func (f Family) String() string {
	switch f {
	case FamilyIPv4:
		return "ipv4"
	case FamilyIPv6:
		return "ipv6"
	}
	return "auto"
}

func familyOf(a netip.Addr) Family {
	if !a.IsValid() {
		return FamilyAuto
	}
	if a.Unmap().Is4() {
		return FamilyIPv4
	}
	return FamilyIPv6
}

// Engine anchors the media of calls: it owns the relay port pools and
// every Call's sockets and goroutines.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	alerts *core.Alerts
	pools  [3]*pool // by Family; nil when the family is disabled
	base   time.Time
	// clock, when set (tests), replaces the monotonic clock of the relay:
	// nanoseconds since base.
	clock func() int64
	fbm   *feedbackMetrics // counters of the calls' Feedback

	mu     sync.Mutex
	calls  map[*Call]struct{}
	closed bool
}

// New builds an engine from a validated configuration. It binds nothing
// yet besides a probe of each family's address: ports are bound as calls
// take them. An IPv6 address that cannot be bound disables IPv6 with a
// warning; an IPv4 address that cannot be bound is an error.
func New(cfg Config, deps core.Deps) (*Engine, error) {
	if !cfg.Enabled {
		return nil, ErrDisabled
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := &Engine{cfg: cfg, log: log, alerts: deps.Alerts, base: time.Now(), calls: map[*Call]struct{}{}}
	fbm, err := newFeedbackMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	e.fbm = fbm
	for _, f := range []struct {
		fam Family
		fc  FamilyConfig
	}{{FamilyIPv4, cfg.IPv4}, {FamilyIPv6, cfg.IPv6}} {
		if f.fc.Address == "" {
			continue
		}
		p, err := newPool(f.fam, f.fc)
		if err != nil {
			return nil, fmt.Errorf("media %s: %w", f.fam, err)
		}
		if err := probe(p); err != nil {
			if f.fam == FamilyIPv6 {
				log.Warn("media: ipv6 relay address unusable, ipv6 legs disabled", "address", f.fc.Address, "err", err)
				continue
			}
			return nil, fmt.Errorf("media %s: bind %s: %w", f.fam, f.fc.Address, err)
		}
		e.pools[f.fam] = p
	}
	if e.pools[FamilyIPv4] == nil && e.pools[FamilyIPv6] == nil {
		return nil, fmt.Errorf("media: %w: no usable relay address", ErrFamily)
	}
	return e, nil
}

func probe(p *pool) error {
	network := "udp4"
	if p.family == FamilyIPv6 {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.addr, 0)))
	if err != nil {
		return err
	}
	return c.Close()
}

// Families reports which families the engine relays on.
func (e *Engine) Families() (v4, v6 bool) {
	return e.pools[FamilyIPv4] != nil, e.pools[FamilyIPv6] != nil
}

// FreePorts reports how many relay port pairs of family f are free.
func (e *Engine) FreePorts(f Family) int {
	if int(f) >= len(e.pools) || e.pools[f] == nil {
		return 0
	}
	return e.pools[f].Free()
}

// now is the relay's monotonic clock in nanoseconds.
func (e *Engine) now() int64 {
	if e.clock != nil {
		return e.clock()
	}
	return int64(time.Since(e.base))
}

// NewCall starts the media of one session. pipe gives the content
// stages' guards (nil: none). onEnd, if not nil, is called once, on a
// goroutine of its own, when the media timeout ends the call (reason
// "media_timeout"); the adapter then tears the call down and closes it.
func (e *Engine) NewCall(id core.SessionID, pipe *core.Pipeline, onEnd func(reason string)) *Call {
	c := &Call{e: e, id: id, pipe: pipe, onEnd: onEnd}
	c.legs[0].role, c.legs[1].role = core.RoleCaller, core.RoleCallee
	e.mu.Lock()
	if e.closed {
		c.closed = true
	} else {
		e.calls[c] = struct{}{}
	}
	e.mu.Unlock()
	return c
}

func (e *Engine) forget(c *Call) {
	e.mu.Lock()
	delete(e.calls, c)
	e.mu.Unlock()
}

// Close closes every call and refuses new ones.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	calls := make([]*Call, 0, len(e.calls))
	for c := range e.calls {
		calls = append(calls, c)
	}
	e.mu.Unlock()
	for _, c := range calls {
		c.Close()
	}
	return nil
}

// learns says how the relay finds a leg's source: learn from its packets
// (latching), and whether to hold packets for it until it is learnt (its
// description's address is known to be wrong: behind NAT).
func (e *Engine) learns(behindNAT bool) (learn, hold bool) {
	switch e.cfg.Latch {
	case LatchAlways:
		return true, false
	case LatchNAT:
		return behindNAT, behindNAT
	}
	return false, false
}
