package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/journal"
	"github.com/ucgate/ucgate/core/media"
	"github.com/ucgate/ucgate/core/state"
	"github.com/ucgate/ucgate/plugins/host"
	"github.com/ucgate/ucgate/policies/triggers"
	"github.com/ucgate/ucgate/protocols/sip"
	"github.com/ucgate/ucgate/protocols/sip/echo"
	"github.com/ucgate/ucgate/protocols/webrtc"
)

func cmdRun(args []string, stderr io.Writer) error {
	fs := newFlags("run")
	file := fs.String("c", "", "configuration file (default: the embedded default)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	gw, err := startGateway(ctx, cfg, log)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			return gw.Close()
		case <-hup:
			if err := gw.reload(*file); err != nil {
				log.Error("reload refused", "error", err)
			} else {
				log.Info("reloaded")
			}
		}
	}
}

// gateway is a running ucgate: its adapters, journal, state and servers.
type gateway struct {
	cfg      Config
	log      *slog.Logger
	journal  *journal.Journal
	state    *state.Store
	alerts   *core.Alerts
	triggers *triggers.Triggers
	media    *media.Engine
	rtc      *webrtc.Legs
	sip      *sip.Adapter
	plugins  *host.Host
	xmpp     xmppAdapters
	echo     []*echo.Server
	admin    *http.Server
	reg      *prometheus.Registry
	deps     core.Deps

	mu   sync.Mutex // guards pipe during a reload
	pipe *pipeline

	// realms are the auth stage's digest realms; a reload replaces them.
	realms atomic.Pointer[map[string]bool]
}

// ownRealms collects the digest realms the auth stage challenges with:
// credentials for them are the gateway's to check and never cross to an
// upstream.
func ownRealms(cfg Config) *map[string]bool {
	a := cfg.Policies.Auth
	m := map[string]bool{a.Realm: true}
	for _, z := range a.Zones {
		if z.Realm != "" {
			m[z.Realm] = true
		}
	}
	return &m
}

// ownRealm reports whether realm is one of the auth stage's.
func (gw *gateway) ownRealm(realm string) bool { return (*gw.realms.Load())[realm] }

// pipeline is a built pipeline with what must be undone when it retires.
type pipeline struct {
	*core.Pipeline
	deps        core.Deps // with the Blocker the pipeline's blacklist provides
	unsubscribe []func()
}

func (p *pipeline) close() error {
	if p == nil {
		return nil
	}
	for _, u := range p.unsubscribe {
		u()
	}
	return p.Pipeline.Close()
}

func startGateway(ctx context.Context, cfg Config, log *slog.Logger) (*gateway, error) {
	gw := &gateway{cfg: cfg, log: log}
	if err := gw.start(ctx); err != nil {
		gw.Close()
		return nil, err
	}
	log.Info("ucgate running", "sip", gw.sip.Listeners(), "admin", cfg.Admin.Listen, "data_dir", cfg.DataDir)
	return gw, nil
}

func (gw *gateway) start(ctx context.Context) (err error) {
	cfg, log := gw.cfg, gw.log
	gw.realms.Store(ownRealms(cfg))
	sip.TuneTimers() // before the echo upstream's user agent starts
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if gw.journal, err = journal.Open(cfg.Journal, cfg.DataDir, log.With("component", "journal")); err != nil {
		return err
	}
	gw.reg = prometheus.NewRegistry()
	gw.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if gw.state, err = state.Open(cfg.State.Path, cfg.DataDir); err != nil {
		return err
	}
	gw.alerts = core.NewAlerts(65536)
	gw.alerts.Subscribe(gw.journal)
	deps := core.Deps{Log: log, Journal: gw.journal, Sessions: core.NewSessions(), Metrics: gw.reg,
		DataDir: cfg.DataDir, State: gw.state, Alerts: gw.alerts, Bridge: core.NewBridge()}
	if deps, err = gw.newPlugins(deps); err != nil {
		return err
	}
	gw.deps = deps

	var tlsConf *tls.Config
	if needsTLS(cfg.SIP) {
		if tlsConf, err = serverTLS(cfg.SIP.TLS.Cert, cfg.SIP.TLS.Key, cfg.DataDir); err != nil {
			return err
		}
	}
	builtin := map[string]string{}
	for _, u := range cfg.SIP.Upstreams {
		if u.Builtin == "echo" && builtin["echo"] == "" {
			e, err := echo.Start(ctx, "127.0.0.1:0", log.With("component", "echo"))
			if err != nil {
				return err
			}
			gw.echo = append(gw.echo, e)
			builtin["echo"] = e.Addr()
		}
	}
	if gw.pipe, err = buildPipeline(cfg, deps, nil); err != nil {
		return err
	}
	if gw.triggers, err = newTriggers(cfg, gw.pipe.deps, nil); err != nil {
		return err
	}
	if gw.triggers != nil {
		gw.alerts.Subscribe(gw.triggers)
	}
	if cfg.Media.Enabled {
		if gw.media, err = media.New(cfg.Media, gw.pipe.deps); err != nil {
			return fmt.Errorf("media: %w", err)
		}
	}
	rtc, err := gw.startWebRTC(cfg)
	if err != nil {
		return fmt.Errorf("webrtc: %w", err)
	}
	if gw.sip, err = sip.New(cfg.SIP, deps, sip.Options{TLS: tlsConf, BuiltinAddr: builtin, Media: gw.media, WebRTC: rtc, OwnRealm: gw.ownRealm}); err != nil {
		return err
	}
	gw.sip.SetPipeline(gw.pipe.Pipeline)
	if tc := gw.newTranscoder(); tc != nil {
		gw.sip.SetTranscoder(tc)
	}
	if err := gw.startPlugins(ctx); err != nil {
		return err
	}
	if err := gw.sip.Start(ctx); err != nil {
		return err
	}
	if err := gw.startXMPP(ctx, deps, gw.pipe.Pipeline); err != nil {
		return err
	}
	if cfg.Admin.Listen != "" {
		if err := gw.startAdmin(); err != nil {
			return err
		}
	}
	return nil
}

func needsTLS(c sip.Config) bool {
	for _, l := range c.Listeners {
		if l.Transport == "tls" || l.Transport == "wss" {
			return true
		}
	}
	for _, u := range c.Upstreams {
		if u.Transport == "tls" || u.Transport == "wss" {
			return true
		}
	}
	return false
}

// buildPipeline builds the stages the configuration turns on, in
// core.StageOrder. The blacklist, once built, is the Blocker of the stages
// after it; stages that learn from security events (brute-force counting)
// are subscribed to them. prev is the pipeline a reload replaces.
func buildPipeline(cfg Config, deps core.Deps, prev *pipeline) (*pipeline, error) {
	p := &pipeline{}
	var stages []core.Stage
	fail := func(err error) (*pipeline, error) {
		for _, u := range p.unsubscribe {
			u()
		}
		for _, b := range stages {
			if c, ok := b.(io.Closer); ok {
				c.Close()
			}
		}
		return nil, err
	}
	var prevCore *core.Pipeline
	if prev != nil {
		prevCore = prev.Pipeline
	}
	for _, name := range core.StageOrder {
		construct, ok := stageConstructors[name]
		if !ok {
			return fail(fmt.Errorf("stage %q has no constructor", name))
		}
		s, err := construct(cfg, deps, prevCore)
		if err != nil {
			return fail(fmt.Errorf("stage %s: %w", name, err))
		}
		if s == nil {
			continue
		}
		stages = append(stages, s)
		if b, ok := s.(core.Blocker); ok {
			deps.Blocker = b
		}
		if a, ok := s.(core.Alerter); ok && deps.Alerts != nil {
			p.unsubscribe = append(p.unsubscribe, deps.Alerts.Subscribe(a))
		}
	}
	cp, err := core.NewPipeline(core.StageOrder, stages...)
	if err != nil {
		return fail(err)
	}
	p.Pipeline = cp
	p.deps = deps
	return p, nil
}

// newTriggers builds the triggers, if any are configured, taking over the
// windows of the ones they replace.
func newTriggers(cfg Config, deps core.Deps, prev *triggers.Triggers) (*triggers.Triggers, error) {
	if !cfg.Policies.Triggers.Enabled {
		return nil, nil
	}
	t, err := triggers.New(cfg.Policies.Triggers, deps)
	if err != nil {
		return nil, fmt.Errorf("triggers: %w", err)
	}
	if prev != nil {
		t.Inherit(prev)
	}
	return t, nil
}

// reload validates the file again and swaps in a new pipeline and new
// triggers; calls in progress keep running.
func (gw *gateway) reload(file string) error {
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	gw.mu.Lock()
	defer gw.mu.Unlock()
	deps := gw.deps
	p, err := buildPipeline(cfg, deps, gw.pipe)
	if err != nil {
		return err
	}
	t, err := newTriggers(cfg, p.deps, gw.triggers)
	if err != nil {
		p.close()
		return err
	}
	old, oldT := gw.pipe, gw.triggers
	gw.sip.SetPipeline(p.Pipeline)
	gw.setPluginPipeline(p.Pipeline)
	gw.warnPluginChanges(cfg)
	gw.setXMPPPipeline(p.Pipeline)
	gw.pipe, gw.triggers = p, t
	gw.realms.Store(ownRealms(cfg))
	if t != nil {
		gw.alerts.Subscribe(t)
	}
	go func() {
		time.Sleep(5 * time.Second) // let in-flight events finish on the old stages
		old.close()
		if oldT != nil {
			oldT.Close()
		}
	}()
	return nil
}

func (gw *gateway) startAdmin() error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gw.reg, promhttp.HandlerOpts{}))
	gw.adminRoutes(mux)
	gw.pluginRoutes(mux)
	gw.phoneRoutes(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"status": "ok", "sip": gw.sip.Listeners()})
	})
	// Profiles, for whoever can reach the admin listener (keep it on
	// loopback or a management network).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", gw.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin listen: %w", err)
	}
	gw.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := gw.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			gw.log.Error("admin server stopped", "error", err)
		}
	}()
	return nil
}

// Close stops everything in reverse order; every call in progress gets its
// CDR before the journal closes.
func (gw *gateway) Close() error {
	var errs []error
	if gw.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		errs = append(errs, gw.admin.Shutdown(ctx))
		cancel()
	}
	if gw.sip != nil {
		errs = append(errs, gw.sip.Close())
	}
	errs = append(errs, gw.closeXMPP())
	errs = append(errs, gw.closePlugins())
	if gw.media != nil {
		errs = append(errs, gw.media.Close())
	}
	if gw.rtc != nil {
		errs = append(errs, gw.rtc.Close())
	}
	for _, e := range gw.echo {
		errs = append(errs, e.Close())
	}
	errs = append(errs, gw.pipe.close())
	if gw.triggers != nil {
		errs = append(errs, gw.triggers.Close())
	}
	errs = append(errs, gw.alerts.Close())
	if gw.state != nil {
		errs = append(errs, gw.state.Close())
	}
	if gw.journal != nil {
		errs = append(errs, gw.journal.Close())
	}
	return errors.Join(errs...)
}

func writeJSONLines(w io.Writer, v []core.CDR) error {
	enc := json.NewEncoder(w)
	for i := range v {
		if err := enc.Encode(&v[i]); err != nil {
			return err
		}
	}
	return nil
}
