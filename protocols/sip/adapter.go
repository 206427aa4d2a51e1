package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/media"
)

// Adapter is the SIP back-to-back user agent.
type Adapter struct {
	cfg      Config
	log      *slog.Logger
	journal  core.Journal
	sessions *core.Sessions
	pipeline atomic.Pointer[core.Pipeline]
	metrics  *metrics
	tlsConf  *tls.Config

	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	cli    *sipgo.Client
	parser *sip.Parser

	listeners []*listener
	byLocal   map[string]*listener // transport + "/" + local addr
	upstreams map[string]*upstream
	upList    []*upstream // the same, in config order, for the packet path
	routes    []route
	registrar *upstream

	streams sync.Map      // "TCP/ip:port" -> *sip.ParserStream of an accepted connection
	media   *media.Engine // nil: media passes end to end
	rtc     WebRTC        // nil: no browser media
	// ownRealm says which digest realms are the gateway's (Options.OwnRealm).
	ownRealm func(realm string) bool
	drops    *dropLog
	dialogs  *dialogTable
	bindings *bindingTable
	tc       Transcoder // nil: no video transcoding (SetTranscoder)

	// bridge carries messages and presence to the other adapters;
	// bridgeDomain is the domain SIP users have there ("": none); subs
	// are the presence subscriptions across it.
	bridge       *core.Bridge
	bridgeDomain string
	subs         *subTable

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	calls  sync.WaitGroup
}

// upstream is a configured upstream with its resolved address.
type upstream struct {
	cfg       Upstream
	name      string
	transport string // upper case, as sipgo wants it
	addr      string // host:port to send to
	ip        netip.Addr
	port      uint16
	sources   []netip.Prefix
	domain    string
	zone      string
}

// Options are what the gateway hands the adapter besides its Config.
type Options struct {
	// TLS is the server certificate configuration for TLS and WSS listeners
	// and for TLS towards upstreams. Required if any listener is tls or wss.
	TLS *tls.Config
	// BuiltinAddr resolves a builtin upstream ("echo") to the loopback
	// address where the gateway started it.
	BuiltinAddr map[string]string
	// Media anchors calls' media in the gateway; nil leaves it end to end.
	Media *media.Engine
	// WebRTC terminates browsers' ICE and DTLS-SRTP (with Media); nil
	// refuses offers keyed by DTLS.
	WebRTC WebRTC
	// OwnRealm reports whether a digest realm is one of the gateway's
	// (the auth stage's). Credentials for such a realm never cross to
	// another leg; nil treats every realm as the gateway's, so no
	// credentials cross.
	OwnRealm func(realm string) bool
}

// ErrNoListener reports that an upstream cannot be reached from any listener.
var ErrNoListener = errors.New("sip: no listener for upstream")

// New builds the adapter. It binds nothing until Start.
func New(cfg Config, deps core.Deps, opts Options) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	j := deps.Journal
	if j == nil {
		j = core.DiscardJournal{}
	}
	sessions := deps.Sessions
	if sessions == nil {
		sessions = core.NewSessions()
	}
	a := &Adapter{
		cfg:       cfg,
		log:       log.With("adapter", "sip"),
		journal:   j,
		sessions:  sessions,
		tlsConf:   opts.TLS,
		media:     opts.Media,
		rtc:       opts.WebRTC,
		ownRealm:  opts.OwnRealm,
		byLocal:   map[string]*listener{},
		upstreams: map[string]*upstream{},
		dialogs:   newDialogTable(),
		bindings:  newBindingTable(),
		parser:    sip.NewParser(),

		bridge:       deps.Bridge,
		bridgeDomain: strings.ToLower(cfg.Bridge.Domain),
		subs:         newSubTable(cfg.Bridge.MaxSubscriptions, cfg.Bridge.MaxSubscriptionsPerUser),
	}
	a.subs.log = a.log
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	a.metrics = m
	a.drops = newDropLog(a)
	for _, u := range cfg.Upstreams {
		up := &upstream{cfg: u, name: u.Name, zone: u.Zone, domain: u.Domain}
		up.transport = strings.ToUpper(u.Transport)
		if up.transport == "" {
			up.transport = "UDP"
		}
		addr := u.Address
		if u.Builtin != "" {
			addr = opts.BuiltinAddr[u.Builtin]
			if addr == "" {
				return nil, fmt.Errorf("sip: builtin upstream %q was not started", u.Builtin)
			}
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("sip: upstream %s: %w", u.Name, err)
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			up.ip = ip.Unmap()
		} else {
			ips, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
			if err != nil || len(ips) == 0 {
				return nil, fmt.Errorf("sip: upstream %s: resolve %s: %v", u.Name, host, err)
			}
			up.ip = ips[0].Unmap()
			addr = net.JoinHostPort(up.ip.String(), addr[len(host)+1:])
		}
		up.addr = addr
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			up.port = ap.Port()
		}
		for _, s := range u.Sources {
			p, _ := netip.ParsePrefix(s)
			up.sources = append(up.sources, p.Masked())
		}
		if up.domain == "" {
			up.domain = host
		}
		a.upstreams[u.Name] = up
		a.upList = append(a.upList, up)
	}
	for _, r := range cfg.Routes {
		rt := route{domain: strings.ToLower(r.Domain), prefix: r.Prefix, def: r.Default, strip: r.Strip}
		for _, n := range r.Upstreams {
			rt.upstreams = append(rt.upstreams, a.upstreams[n])
		}
		a.routes = append(a.routes, rt)
	}
	if cfg.Registrar != "" {
		a.registrar = a.upstreams[cfg.Registrar]
	}

	TuneTimers()
	sipLog := slog.New(newQuietHandler(a.log.Handler(), 10*time.Second)).With("component", "sipgo")
	a.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent(cfg.UserAgent),
		sipgo.WithUserAgenTLSConfig(opts.TLS),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(sipLog),
			sip.WithTransportLayerReadFilter(a.readFilter),
		),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerUnhandledResponseHandler(a.onStrayResponse),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("sip: user agent: %w", err)
	}
	a.srv, err = sipgo.NewServer(a.ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		return nil, fmt.Errorf("sip: server: %w", err)
	}
	a.cli, err = sipgo.NewClient(a.ua, sipgo.WithClientLogger(sipLog))
	if err != nil {
		return nil, fmt.Errorf("sip: client: %w", err)
	}
	a.srv.OnInvite(a.safe(a.onInvite))
	a.srv.OnAck(a.safe(a.onAck))
	a.srv.OnCancel(a.safe(a.onCancel))
	a.srv.OnRegister(a.safe(a.onRegister))
	a.srv.OnOptions(a.safe(a.onOutOfDialog))
	a.srv.OnMessage(a.safe(a.onOutOfDialog))
	a.srv.OnNoRoute(a.safe(a.onOther))
	for _, m := range []sip.RequestMethod{sip.BYE, sip.UPDATE, sip.INFO, sip.PRACK, sip.NOTIFY, sip.REFER, sip.SUBSCRIBE, sip.PUBLISH} {
		a.srv.OnRequest(m, a.safe(a.onOther))
	}
	return a, nil
}

// safe runs a request handler so that a bug it hits on hostile input
// costs that request (answered 500, journaled, logged with its stack),
// never the gateway: sipgo runs handlers on goroutines of their own, where
// a panic would end the process.
func (a *Adapter) safe(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			a.metrics.refusal("sip", "sip/internal")
			a.log.Error("request handler panicked", "method", string(req.Method), "src", req.Source(),
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			rec := core.Transaction{Time: time.Now(), Protocol: "sip", Src: req.Source(), Method: string(req.Method),
				Transport: strings.ToLower(req.Transport()), Action: core.Refuse.String(), Rule: "sip/internal",
				Reason: core.ReasonInternal.String(), Status: 500}
			if h := req.CallID(); h != nil {
				rec.CallID = h.Value()
			}
			a.journal.Transaction(&rec)
			if !req.IsAck() {
				_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "Server Internal Error", nil))
			}
		}()
		h(req, tx)
	}
}

var tuneOnce sync.Once

// TuneTimers sets sipgo's transaction timers for a B2BUA; call it before
// any sipgo user agent runs in the process (sipgo keeps them in package
// variables). New calls it too.
//
// sipgo keeps an INVITE transaction in its Accepted state for Timer L
// (server) or Timer M (client), 64*T1 = 32 s, and does not stop those
// timers when the transaction is terminated, so each one holds its
// messages for 32 s. The adapter ends its INVITE transactions itself once
// the 2xx is out (retransmitting the 2xx and catching the ACK in the call,
// acknowledging stray 2xx from the dialog), so the two timers only hold
// memory: 5 s, like Kamailio's wait timer, is enough for the rare
// transaction the adapter leaves to sipgo (a re-INVITE).
func TuneTimers() {
	tuneOnce.Do(func() {
		sip.Timer_L = 5 * time.Second
		sip.Timer_M = 5 * time.Second
	})
}

// SetPipeline swaps the pipeline every new request runs through. Requests
// already in flight finish on the pipeline they started with.
func (a *Adapter) SetPipeline(p *core.Pipeline) { a.pipeline.Store(p) }

// Start binds every listener and serves until Close.
func (a *Adapter) Start(ctx context.Context) error {
	a.ctx, a.cancel = context.WithCancel(ctx)
	for _, lc := range a.cfg.Listeners {
		if (lc.Transport == "tls" || lc.Transport == "wss") && a.tlsConf == nil {
			a.closeListeners()
			return fmt.Errorf("sip: %s listener %s needs a TLS certificate", lc.Transport, lc.Listen)
		}
		l, err := a.open(a.ctx, lc)
		if err != nil {
			a.closeListeners()
			return err
		}
		a.listeners = append(a.listeners, l)
		a.byLocal[l.transport+"/"+l.addr.String()] = l
	}
	for _, l := range a.listeners {
		a.wg.Add(1)
		go func(l *listener) {
			defer a.wg.Done()
			if err := a.serve(l); err != nil && a.ctx.Err() == nil {
				a.log.Error("listener stopped", "transport", l.transport, "listen", l.addr.String(), "error", err)
			}
		}(l)
	}
	for _, up := range a.upstreams {
		if a.listenerFor(up) == nil && up.transport == "UDP" {
			a.closeListeners()
			return fmt.Errorf("%w %s: no udp listener in the %s family", ErrNoListener, up.name, family(up.ip))
		}
	}
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.bindings.expireLoop(a.ctx) }()
	go func() { defer a.wg.Done(); a.drops.loop(a.ctx) }()
	if a.bridgeDomain != "" && a.bridge != nil {
		a.waitServing()
		a.bridge.Serve(a.bridgeDomain, a)
	}
	return nil
}

// waitServing waits, at most a second, until sipgo serves every UDP
// listener: what the bridge hands over at once is sent from one of them,
// and sipgo cannot send from a listener it does not serve yet.
func (a *Adapter) waitServing() {
	n := 0
	for _, l := range a.listeners {
		if l.transport == "udp" {
			n++
		}
	}
	pool := a.ua.TransportLayer().Pool("udp")
	deadline := time.Now().Add(time.Second)
	for pool != nil && pool.Size() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

func family(ip netip.Addr) string {
	if ip.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// Listeners returns the bound addresses, "transport/ip:port", in config order.
func (a *Adapter) Listeners() []string {
	out := make([]string, 0, len(a.listeners))
	for _, l := range a.listeners {
		out = append(out, l.transport+"/"+l.addr.String())
	}
	return out
}

func (a *Adapter) closeListeners() {
	for _, l := range a.listeners {
		l.close()
	}
}

// Close ends every call (with CDRs), stops the listeners and waits for
// the adapter's goroutines.
func (a *Adapter) Close() error {
	if a.cancel == nil {
		return nil
	}
	a.dialogs.each(func(c *call) { c.terminate(core.RoleGateway, "shutdown") })
	a.dialogs.eachBridged(func(c *bridgeCall) { c.terminate(core.RoleGateway, "shutdown") })
	a.endSubscriptions()
	done := make(chan struct{})
	go func() { a.calls.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		a.log.Warn("calls still ending at shutdown")
	}
	a.cancel()
	a.subs.wg.Wait() // presence work under way ends with a.ctx
	a.closeListeners()
	err := a.ua.Close()
	a.wg.Wait()
	return err
}

// listenerFor picks the listener to send to an upstream from: same
// transport and address family, in the upstream's zone if there is one
// (so that the upstream's answers arrive where its zone's policies
// apply), else the first that fits.
func (a *Adapter) listenerFor(up *upstream) *listener {
	t := strings.ToLower(up.transport)
	var found *listener
	for _, l := range a.listeners {
		if l.transport != t || l.addr.Addr().Is4() != up.ip.Is4() {
			continue
		}
		if l.zone == up.zone {
			return l
		}
		if found == nil {
			found = l
		}
	}
	return found
}

// listenerOf finds the listener a request arrived on.
func (a *Adapter) listenerOf(req *sip.Request, tx sip.ServerTransaction) *listener {
	if stx, ok := tx.(*sip.ServerTx); ok {
		if c := stx.Connection(); c != nil {
			if la := c.LocalAddr(); la != nil {
				ap, err := netip.ParseAddrPort(la.String())
				if err == nil {
					ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
					if l := a.byLocal[strings.ToLower(req.Transport())+"/"+ap.String()]; l != nil {
						return l
					}
				}
			}
		}
	}
	// Fall back on the first listener of the transport.
	t := strings.ToLower(req.Transport())
	for _, l := range a.listeners {
		if l.transport == t {
			return l
		}
	}
	return nil
}
