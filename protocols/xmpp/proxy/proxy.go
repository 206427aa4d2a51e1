package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/protocols/xmpp/wire"
)

// Proxy is the running client-to-server proxy.
type Proxy struct {
	cfg      Config
	deps     core.Deps
	log      *slog.Logger
	serverTL *tls.Config // shown to clients
	upTLS    *tls.Config // for the server; nil when upstream.tls is none
	lim      wire.Limits
	block    map[string]bool

	pipeline atomic.Pointer[core.Pipeline]
	blocker  atomic.Pointer[blockerBox]

	mu        sync.Mutex
	listeners []*listener
	conns     map[*conn]struct{}
	wg        sync.WaitGroup
	closed    bool
	nconns    atomic.Int64
}

type blockerBox struct{ core.Blocker }

// listener is one bound socket.
type listener struct {
	cfg  Listener
	ln   net.Listener
	addr netip.AddrPort
}

// Options are what the gateway hands the proxy besides its section.
type Options struct {
	// TLS is the server certificate configuration for clients (required).
	TLS *tls.Config
}

// ErrNoTLS reports a proxy built without a certificate.
var ErrNoTLS = errors.New("xmpp proxy: no TLS configuration")

// New validates cfg and prepares the proxy; Start opens its sockets.
func New(cfg Config, deps core.Deps, opts Options) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.TLS == nil {
		return nil, ErrNoTLS
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if deps.Journal == nil {
		deps.Journal = core.DiscardJournal{}
	}
	p := &Proxy{cfg: cfg, deps: deps, log: log.With("component", "xmpp-proxy"), serverTL: opts.TLS.Clone(),
		lim:   wire.Limits{MaxSize: cfg.Limits.MaxStanza, MaxDepth: cfg.Limits.MaxDepth, MaxAttrs: cfg.Limits.MaxAttrs},
		block: map[string]bool{}, conns: map[*conn]struct{}{}}
	if p.serverTL.MinVersion < tls.VersionTLS12 {
		p.serverTL.MinVersion = tls.VersionTLS12
	}
	for _, r := range cfg.Block {
		p.block[r] = true
	}
	if cfg.Upstream.TLS != "none" {
		up := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.Upstream.ServerName,
			InsecureSkipVerify: cfg.Upstream.InsecureSkipVerify} // #nosec G402 -- operator's explicit choice, documented as test-only
		if cfg.Upstream.CA != "" {
			pem, err := os.ReadFile(cfg.Upstream.CA)
			if err != nil {
				return nil, fmt.Errorf("xmpp proxy: read upstream ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("xmpp proxy: upstream ca %s: no certificate", cfg.Upstream.CA)
			}
			up.RootCAs = pool
		}
		p.upTLS = up
	}
	if deps.Blocker != nil {
		p.blocker.Store(&blockerBox{deps.Blocker})
	}
	return p, nil
}

// SetPipeline makes p the pipeline of new events (a reload swaps it). The
// blacklist among its stages becomes the proxy's Blocker.
func (p *Proxy) SetPipeline(pl *core.Pipeline) {
	p.pipeline.Store(pl)
	if pl == nil {
		return
	}
	for _, s := range pl.Stages() {
		if b, ok := s.(core.Blocker); ok {
			p.blocker.Store(&blockerBox{b})
			return
		}
	}
}

// Start binds every listener and serves them until Close.
func (p *Proxy) Start(ctx context.Context) error {
	var lc net.ListenConfig
	for _, lcfg := range p.cfg.Listeners {
		ln, err := lc.Listen(ctx, "tcp", lcfg.Listen)
		if err != nil {
			p.Close()
			return fmt.Errorf("xmpp proxy: listen %s: %w", lcfg.Listen, err)
		}
		a := ln.Addr().(*net.TCPAddr).AddrPort()
		l := &listener{cfg: lcfg, ln: ln, addr: netip.AddrPortFrom(a.Addr().Unmap(), a.Port())}
		p.mu.Lock()
		p.listeners = append(p.listeners, l)
		p.mu.Unlock()
		p.wg.Add(1)
		go p.accept(l)
	}
	return nil
}

// Addrs returns the bound listener addresses, in configuration order.
func (p *Proxy) Addrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.listeners))
	for _, l := range p.listeners {
		out = append(out, l.addr.String())
	}
	return out
}

// Conns returns the number of client connections open now.
func (p *Proxy) Conns() int { return int(p.nconns.Load()) }

// Close stops the listeners and ends every stream with
// <system-shutdown/>.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var errs []error
	for _, l := range p.listeners {
		if err := l.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	p.wg.Wait()
	return errors.Join(errs...)
}

func (p *Proxy) accept(l *listener) {
	defer p.wg.Done()
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			p.log.Warn("accept failed", "error", err)
			time.Sleep(50 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		ta, _ := nc.RemoteAddr().(*net.TCPAddr)
		var src netip.AddrPort
		if ta != nil {
			src = netip.AddrPortFrom(ta.AddrPort().Addr().Unmap(), ta.AddrPort().Port())
		}
		transport := "tcp"
		if l.cfg.Mode == "direct_tls" {
			transport = "tls"
		}
		pl := p.pipeline.Load()
		meta := core.PacketMeta{Src: src, Local: l.addr, Transport: transport, Zone: l.cfg.Zone, Conn: true}
		if d := pl.RunPacket(&meta); d.Action != core.Allow {
			// Refused before a byte is read: nothing is sent back.
			p.journalConn(&meta, d.Verdict, d.Stage)
			nc.Close()
			continue
		}
		if n := p.nconns.Add(1); n > int64(p.cfg.Limits.MaxConnections) {
			p.nconns.Add(-1)
			pl.ConnClosed(&meta)
			p.journalConn(&meta, core.Verdict{Action: core.Drop, Reason: core.ReasonUnavailable, Rule: RuleConnections,
				Detail: "too many connections"}, "")
			nc.Close()
			continue
		}
		c := newConn(p, l, nc, src, pl, meta)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			p.nconns.Add(-1)
			pl.ConnClosed(&meta)
			nc.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go func() {
			defer p.wg.Done()
			c.serve()
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
			p.nconns.Add(-1)
			pl.ConnClosed(&meta)
		}()
	}
}

// journalConn records a connection refused at accept.
func (p *Proxy) journalConn(m *core.PacketMeta, v core.Verdict, stage string) {
	rule := v.Rule
	if rule == "" {
		rule = stage
	}
	p.deps.Journal.Transaction(&core.Transaction{Time: time.Now(), Protocol: "xmpp", Zone: m.Zone, Src: m.Src.String(),
		Dst: m.Local.String(), Transport: m.Transport, Encrypted: m.Transport == "tls", Method: "connect",
		Action: v.Action.String(), Rule: rule, Reason: v.Reason.String(), Detail: v.Detail})
}
