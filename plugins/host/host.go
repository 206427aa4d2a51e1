package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/plugins/sdk"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// Errors that stop a plugin for good: restarting would not help.
var (
	ErrChecksum = errors.New("host: plugin binary does not match its sha256")
	ErrVersion  = errors.New("host: plugin speaks no contract version this gateway speaks")
	ErrBinary   = errors.New("host: plugin binary not usable")
)

// Plugin states, as `ucgate plugins` shows them.
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateRestarting = "restarting"
	StateFailed     = "failed"
	StateStopped    = "stopped"
)

// Why a running plugin stopped, as CDRs of its sessions say it
// ("plugin_crashed", ...).
const (
	whyCrashed   = "crashed"
	whyHung      = "hung"
	whyMalformed = "malformed"
	whyStopped   = "stopped"
)

// Host runs the configured plugins.
type Host struct {
	deps    core.Deps
	log     *slog.Logger
	m       *metrics
	plugins []*Plugin
	pipe    atomic.Pointer[core.Pipeline]
	stage   *Stage
	lostMu  sync.Mutex
	lost    []func(core.SessionID, string)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Plugin is one configured plugin and its process, restarted as needed.
type Plugin struct {
	cfg     Config
	h       *Host
	log     *slog.Logger
	limiter *rate.Limiter
	kinds   [16]bool // stage plugins: the core kinds judged
	// mediaNets are where the plugin's declared RTP addresses may be
	// (Limits.MediaNetworks).
	mediaNets []netip.Prefix

	mu       sync.Mutex
	state    string
	lastErr  string
	version  int
	desc     *pb.Description
	restarts int
	since    time.Time
	client   *plugin.Client
	cmd      *exec.Cmd
	conn     *grpc.ClientConn

	stage    atomic.Pointer[sdk.StageClient]
	media    atomic.Pointer[sdk.MediaClient]
	proto    atomic.Pointer[protoConn]
	streams  mediaStreams
	drops    refusals
	trouble  chan string
	timeouts atomic.Int32
	calls    atomic.Uint64
	errs     atomic.Uint64

	// The plugin's metric children, looked up once.
	mCalls, mErrs prometheus.Counter
	mLatency      prometheus.Observer
}

// New validates the plugins section and prepares the host; Start runs the
// plugins.
func New(cfgs []Config, deps core.Deps) (*Host, error) {
	if err := ValidateAll(cfgs); err != nil {
		return nil, err
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	h := &Host{deps: deps, log: log.With("component", "plugins"), m: m}
	var stages []*Plugin
	for _, c := range cfgs {
		c = c.WithDefaults()
		p := &Plugin{cfg: c, h: h, log: log.With("plugin", c.Name), state: StateStopped,
			limiter: rate.NewLimiter(rate.Limit(c.Limits.EventsPerSecond), c.Limits.Burst),
			trouble: make(chan string, 1), drops: refusals{interval: refusalInterval}}
		p.mCalls, p.mErrs = m.calls.WithLabelValues(c.Name), m.errors.WithLabelValues(c.Name)
		p.mLatency = m.latency.WithLabelValues(c.Name)
		for _, k := range c.Kinds {
			if ck, ok := coreKind(k); ok && int(ck) < len(p.kinds) {
				p.kinds[ck] = true
			}
		}
		for _, n := range c.Limits.MediaNetworks {
			if pf, err := netip.ParsePrefix(n); err == nil {
				p.mediaNets = append(p.mediaNets, pf.Masked())
			}
		}
		h.plugins = append(h.plugins, p)
		if c.Kind == sdk.KindStage {
			stages = append(stages, p)
		}
	}
	if len(stages) > 0 {
		h.stage = &Stage{plugins: stages}
	}
	return h, nil
}

// SetPipeline sets the pipeline protocol plugins' events run through; a
// reload calls it again.
func (h *Host) SetPipeline(p *core.Pipeline) { h.pipe.Store(p) }

// Stage is the "plugins" stage that runs the stage plugins, or nil when
// none is configured.
func (h *Host) Stage() core.Stage {
	if h == nil || h.stage == nil {
		return nil
	}
	return h.stage
}

// OnMediaLost adds f to what is called when a media plugin carrying a
// session's streams stops (the media engine ends the call, with the
// reason for its CDR: "plugin_crashed", "plugin_hung"). Every function
// added is called, once per session, for the streams of every user of
// media plugins: each ignores the sessions it does not know.
func (h *Host) OnMediaLost(f func(session core.SessionID, reason string)) {
	h.lostMu.Lock()
	h.lost = append(h.lost, f)
	h.lostMu.Unlock()
}

func (h *Host) lostFuncs() []func(core.SessionID, string) {
	h.lostMu.Lock()
	defer h.lostMu.Unlock()
	return h.lost[:len(h.lost):len(h.lost)]
}

// Start starts every plugin and waits for each to complete its handshake.
// A plugin that is refused (checksum, contract version, missing binary) or
// does not start fails Start; later crashes are restarted.
func (h *Host) Start(ctx context.Context) error {
	h.ctx, h.cancel = context.WithCancel(ctx)
	for _, p := range h.plugins {
		if p.cfg.Kind == sdk.KindProtocol && h.deps.Bridge != nil {
			h.deps.Bridge.Serve(p.cfg.Domain, p)
		}
		if err := p.launch(); err != nil {
			p.setState(StateFailed, err)
			h.Close()
			return fmt.Errorf("plugin %s: %w", p.cfg.Name, err)
		}
	}
	for _, p := range h.plugins {
		h.wg.Add(1)
		go p.supervise(h.ctx)
	}
	return nil
}

// Close stops every plugin, ending its sessions.
func (h *Host) Close() error {
	if h == nil || h.cancel == nil {
		return nil
	}
	h.cancel()
	h.wg.Wait()
	for _, p := range h.plugins {
		p.flushRefusals(time.Now(), true)
		p.mu.Lock()
		running := p.client != nil
		p.mu.Unlock()
		if running {
			p.teardown(whyStopped)
		}
	}
	return nil
}

// Status is what `ucgate plugins` shows of one plugin.
type Status struct {
	Name     string    `json:"name"`
	Kind     string    `json:"kind"`
	Binary   string    `json:"binary"`
	Domain   string    `json:"domain,omitempty"`
	State    string    `json:"state"`
	Contract int       `json:"contract_version,omitempty"`
	Software string    `json:"software,omitempty"`
	Version  string    `json:"version,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Restarts int       `json:"restarts"`
	Calls    uint64    `json:"calls"`
	Errors   uint64    `json:"errors"`
	Sessions int       `json:"sessions"` // a protocol plugin's sessions; a media plugin's open streams
	LastErr  string    `json:"last_error,omitempty"`
}

// Status lists the plugins in configuration order.
func (h *Host) Status() []Status {
	out := make([]Status, 0, len(h.plugins))
	for _, p := range h.plugins {
		p.mu.Lock()
		s := Status{Name: p.cfg.Name, Kind: p.cfg.Kind, Binary: p.cfg.Binary, Domain: p.cfg.Domain, State: p.state,
			Contract: p.version, Since: p.since, Restarts: p.restarts, LastErr: p.lastErr,
			Calls: p.calls.Load(), Errors: p.errs.Load()}
		if p.desc != nil {
			s.Software, s.Version = safe(p.desc.GetSoftware(), 64), safe(p.desc.GetVersion(), 32)
		}
		p.mu.Unlock()
		if pc := p.proto.Load(); pc != nil {
			s.Sessions = pc.sessionCount()
		}
		if p.cfg.Kind == sdk.KindMedia {
			s.Sessions = p.streams.count()
		}
		out = append(out, s)
	}
	return out
}

// Plugin finds a plugin by name.
func (h *Host) Plugin(name string) (*Plugin, bool) {
	for _, p := range h.plugins {
		if p.cfg.Name == name {
			return p, true
		}
	}
	return nil, false
}

func (p *Plugin) setState(s string, err error) {
	p.mu.Lock()
	p.state = s
	if err != nil {
		p.lastErr = safe(err.Error(), 512)
	}
	if s == StateRunning {
		p.since = time.Now()
	}
	p.mu.Unlock()
	up := 0.0
	if s == StateRunning {
		up = 1
	}
	p.h.m.up.WithLabelValues(p.cfg.Name).Set(up)
}

// permanent reports errors a restart would not cure.
func permanent(err error) bool {
	return errors.Is(err, ErrChecksum) || errors.Is(err, ErrVersion) || errors.Is(err, ErrBinary)
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hsh := sha256.New()
	if _, err := io.Copy(hsh, f); err != nil {
		return nil, err
	}
	return hsh.Sum(nil), nil
}

// launch starts the process, checks it and connects to it.
func (p *Plugin) launch() error {
	c := p.cfg
	p.setState(StateStarting, nil)
	want, _ := hex.DecodeString(c.SHA256)
	got, err := fileSHA256(c.Binary)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBinary, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w: %s has sha256 %x, the configuration says %s; not started", ErrChecksum, c.Binary, got, c.SHA256)
	}
	sets, err := sdk.HostPlugins(c.Kind)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.Binary, c.Args...)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sets,
		Cmd:              cmd,
		SecureConfig:     &plugin.SecureConfig{Checksum: want, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     c.Limits.StartTimeout,
		Logger:           newHCLogger(p.log, c.Binary),
		Stderr:           newLineWriter(p.log, "stderr"),
		SyncStdout:       newLineWriter(p.log, "stdout"),
		SyncStderr:       newLineWriter(p.log, "stderr"),
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(c.Limits.MaxMessage), grpc.MaxCallSendMsgSize(4<<20))},
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		switch {
		case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
			return fmt.Errorf("%w: %s changed while starting; not started", ErrChecksum, c.Binary)
		case strings.Contains(err.Error(), "incompatible API version"):
			return fmt.Errorf("%w: %v; this gateway speaks contract versions %s", ErrVersion, err, versionList())
		}
		return fmt.Errorf("start: %w", err)
	}
	gc, ok := rpc.(*plugin.GRPCClient)
	if !ok {
		client.Kill()
		return fmt.Errorf("%w: not a gRPC plugin", ErrBinary)
	}
	raw, err := rpc.Dispense(c.Kind)
	if err != nil {
		client.Kill()
		return fmt.Errorf("dispense %s: %w", c.Kind, err)
	}
	version := client.NegotiatedVersion()
	ctx, cancel := context.WithTimeout(context.Background(), c.Limits.StartTimeout)
	desc, err := sdk.Describe(ctx, rpc, version)
	cancel()
	if err != nil {
		p.log.Warn("plugin gave no description", "error", err)
		desc = nil
	}
	p.mu.Lock()
	p.client, p.cmd, p.conn, p.version, p.desc = client, cmd, gc.Conn, version, desc
	p.mu.Unlock()
	p.timeouts.Store(0)
	select { // a trouble signal from the last run is stale
	case <-p.trouble:
	default:
	}
	switch x := raw.(type) {
	case *sdk.StageClient:
		p.stage.Store(x)
	case *sdk.MediaClient:
		p.media.Store(x)
	case *sdk.ProtocolClient:
		pc, err := p.connect(x)
		if err != nil {
			p.kill(whyCrashed)
			return fmt.Errorf("connect: %w", err)
		}
		p.proto.Store(pc)
	}
	p.setState(StateRunning, nil)
	sw, swv := "", ""
	if desc != nil {
		sw, swv = safe(desc.GetSoftware(), 64), safe(desc.GetVersion(), 32)
	}
	p.log.Info("plugin running", "kind", c.Kind, "contract_version", version, "software", sw, "version", swv)
	return nil
}

func versionList() string {
	s := make([]string, len(sdk.Versions))
	for i, v := range sdk.Versions {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ", ")
}

// signal asks the supervisor to look at the plugin now ("" : check
// health; a reason: restart for that reason).
func (p *Plugin) signal(why string) {
	select {
	case p.trouble <- why:
	default:
	}
}

// watch returns when the plugin must be restarted, and why.
func (p *Plugin) watch(ctx context.Context) string {
	iv := p.cfg.Limits.HealthInterval
	tick := time.NewTicker(iv)
	defer tick.Stop()
	p.mu.Lock()
	client, conn := p.client, p.conn
	p.mu.Unlock()
	health := grpc_health_v1.NewHealthClient(conn)
	misses := 0
	check := func() string {
		if client.Exited() {
			return whyCrashed
		}
		cctx, cancel := context.WithTimeout(ctx, iv)
		_, err := health.Check(cctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
		cancel()
		if ctx.Err() != nil {
			return whyStopped
		}
		if err == nil {
			misses = 0
			return ""
		}
		if client.Exited() {
			return whyCrashed
		}
		if misses++; misses >= 3 {
			return whyHung
		}
		return ""
	}
	for {
		select {
		case <-ctx.Done():
			return whyStopped
		case why := <-p.trouble:
			if why != "" {
				return why
			}
			if w := check(); w != "" {
				return w
			}
		case now := <-tick.C:
			p.flushRefusals(now, false)
			if w := check(); w != "" {
				return w
			}
		}
	}
}

// supervise restarts the plugin whenever it stops, with backoff.
func (p *Plugin) supervise(ctx context.Context) {
	defer p.h.wg.Done()
	delay := p.cfg.Limits.BackoffMin
	for {
		started := time.Now()
		why := p.watch(ctx)
		if why == whyStopped || ctx.Err() != nil {
			return
		}
		p.log.Warn("plugin stopped, restarting", "why", why)
		p.teardown(why)
		if time.Since(started) > 30*time.Second {
			delay = p.cfg.Limits.BackoffMin
		}
		for {
			p.setState(StateRestarting, errors.New("plugin "+why))
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, p.cfg.Limits.BackoffMax)
			p.mu.Lock()
			p.restarts++
			p.mu.Unlock()
			p.h.m.restarts.WithLabelValues(p.cfg.Name).Inc()
			err := p.launch()
			if err == nil {
				break
			}
			p.log.Error("plugin restart failed", "error", err)
			if permanent(err) {
				p.setState(StateFailed, err)
				return
			}
			p.setState(StateRestarting, err)
		}
	}
}

// teardown stops the process and ends what depended on it.
func (p *Plugin) teardown(why string) {
	p.stage.Store(nil)
	p.media.Store(nil)
	pc := p.proto.Swap(nil)
	if why == whyStopped {
		p.setState(StateStopped, nil)
	} else {
		p.setState(StateRestarting, errors.New("plugin "+why))
	}
	if pc != nil {
		pc.close("plugin_" + why)
	}
	p.streams.closeAll(p.h, "plugin_"+why)
	p.kill(why)
}

// kill ends the process: at once for a plugin that crashed or hangs, after
// go-plugin's graceful shutdown otherwise.
func (p *Plugin) kill(why string) {
	p.mu.Lock()
	client, cmd := p.client, p.cmd
	p.client, p.cmd, p.conn = nil, nil, nil
	p.mu.Unlock()
	if client == nil {
		return
	}
	if why != whyStopped && cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
	done := make(chan struct{})
	go func() { client.Kill(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		<-done
	}
}

// refuse journals input from the plugin that the host refused and raises
// a security event; it returns the verdict for the plugin. Beyond the
// first refusal of a source by a rule in an interval, refusals are
// counted and journaled as one summary (refusals.go).
func (p *Plugin) refuse(ev *pb.Event, r core.Reason, rule string) *pb.Verdict {
	p.h.m.refused.WithLabelValues(p.cfg.Name, rule).Inc()
	verdict := &pb.Verdict{Action: pb.Action_REFUSE, Reason: r.String(), Rule: rule}
	t := &core.Transaction{Time: time.Now(), Protocol: p.cfg.Protocol, Src: "plugin:" + p.cfg.Name, Transport: "plugin",
		Method: "EVENT", Action: core.Refuse.String(), Rule: rule, Reason: r.String(), Detail: "plugin " + p.cfg.Name}
	if ev != nil {
		if m := ev.GetMethod(); printable(m, maxMethod) && m != "" {
			t.Method = m
		}
		if s := ev.GetSrc().GetAddr(); printable(s, 64) && s != "" {
			t.Src = s
		}
	}
	first, due := p.drops.first(refusalKey{rule: rule, src: t.Src}, r, t.Method, t.Time)
	p.journalSummaries(due)
	if !first {
		return verdict
	}
	if p.h.deps.Journal != nil {
		p.h.deps.Journal.Transaction(t)
	}
	p.h.deps.Alerts.Alert(&core.SecurityEvent{Time: t.Time, Rule: rule, Action: t.Action, Src: t.Src,
		Protocol: p.cfg.Protocol, Detail: "plugin " + p.cfg.Name})
	return verdict
}
