package webrtc

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/media"
)

// Rules under which a failed WebRTC transport is journaled.
const (
	// RuleFingerprint: the browser's DTLS certificate does not match the
	// fingerprint of its description.
	RuleFingerprint = "webrtc/fingerprint"
	// RuleHandshake: no connectivity check or no DTLS handshake in time,
	// or a handshake that failed otherwise.
	RuleHandshake = "webrtc/dtls"
)

// certificate is the gateway's DTLS identity and its fingerprint.
type certificate struct {
	tls         tls.Certificate
	fingerprint string // "sha-256 AB:CD:..."
}

func newCertificate() (*certificate, error) {
	c, err := selfsign.GenerateSelfSigned() // ECDSA P-256
	if err != nil {
		return nil, err
	}
	x, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, err
	}
	fp, err := fingerprint.Fingerprint(x, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &certificate{tls: c, fingerprint: "sha-256 " + fp}, nil
}

// Legs is the WebRTC side of the gateway: its DTLS certificate (made at
// start, never stored) and the settings of every leg.
type Legs struct {
	cfg    Config
	cert   *certificate
	log    *slog.Logger
	alerts *core.Alerts
	ctx    context.Context
	cancel context.CancelFunc

	handshakes *prometheus.CounterVec // by result: ok, or the rule that failed it
	took       prometheus.Histogram   // from Start to the keys, successful ones
}

// New makes the gateway's DTLS identity.
func New(cfg Config, deps core.Deps) (*Legs, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cert, err := newCertificate()
	if err != nil {
		return nil, fmt.Errorf("webrtc: certificate: %w", err)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hs, err := core.RegisterMetric(deps.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ucgate_webrtc_handshakes_total",
		Help: "ICE and DTLS handshakes of browser streams, by result: ok, webrtc/fingerprint, webrtc/dtls.",
	}, []string{"result"}))
	if err != nil {
		return nil, err
	}
	took, err := core.RegisterMetric(deps.Metrics, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ucgate_webrtc_handshake_seconds",
		Help:    "Time from the answer to the SRTP keys of a browser stream (connectivity check and DTLS).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Legs{cfg: cfg, cert: cert, log: log.With("adapter", "webrtc"), alerts: deps.Alerts, ctx: ctx, cancel: cancel,
		handshakes: hs, took: took}, nil
}

// Close stops every handshake in progress.
func (l *Legs) Close() error {
	l.cancel()
	return nil
}

// Fingerprint is the gateway's DTLS certificate fingerprint as
// descriptions carry it.
func (l *Legs) Fingerprint() string { return l.cert.fingerprint }

// Narrow filters a SIP leg's offer for a browser (see the package
// function Narrow).
func (l *Legs) Narrow(body []byte) ([]byte, error) { return Narrow(body) }

// Leg is the WebRTC side of one call leg: the browser's transport
// parameters, the gateway's credentials, and a transport per stream once
// the relay runs.
type Leg struct {
	legs    *Legs
	call    *media.Call
	role    string
	session core.SessionID
	src     netip.AddrPort
	zone    string
	onFail  func(rule, detail string)
	loc     local

	mu         sync.Mutex
	remote     *remoteDesc
	transports map[int]*transport
	closed     bool
	failed     bool
}

// NewLeg starts the WebRTC side of the leg that plays role in a call
// whose media call relays; src is the browser's signalling source (its
// address family chooses the relay family), onFail is called once when a
// transport fails, with the rule and a detail for the journal.
func (l *Legs) NewLeg(session core.SessionID, role string, call *media.Call, src netip.AddrPort, zone string, onFail func(rule, detail string)) *Leg {
	return &Leg{legs: l, call: call, role: role, session: session, src: src, zone: zone, onFail: onFail,
		loc:        local{ufrag: randomICE(8), pwd: randomICE(24), fingerprint: l.cert.fingerprint, nack: l.cfg.NACKBuffer > 0},
		transports: map[int]*transport{}}
}

// Remote reads a description from the browser (offer or answer) and
// returns it translated for the SIP side.
func (g *Leg) Remote(body []byte) ([]byte, error) {
	out, rd, err := fromBrowser(body, g.src.Addr())
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// New ICE credentials on a stream that runs: an ICE restart (the
	// browser changed networks). The gateway takes new credentials too;
	// DTLS and its keys stay.
	restart := false
	for i, p := range rd.streams {
		if t := g.transports[i]; t != nil && p.ufrag != "" && p.ufrag != t.remoteUfrag() {
			restart = true
		}
	}
	if restart {
		g.loc.ufrag, g.loc.pwd = randomICE(8), randomICE(24)
		for i, t := range g.transports {
			if i < len(rd.streams) && rd.streams[i].ufrag != "" {
				t.restart(g.loc, rd.streams[i])
			}
		}
		g.legs.log.Debug("ice restart", "session", g.session)
	}
	g.remote = rd
	return out, nil
}

// Local completes a description for the browser: an offer (offer true)
// or the answer to the browser's last description.
func (g *Leg) Local(body []byte, offer bool) ([]byte, error) {
	g.mu.Lock()
	rd, loc := g.remote, g.loc
	g.mu.Unlock()
	if !offer && rd == nil {
		return nil, fmt.Errorf("%w: answer without the browser's offer", ErrSDP)
	}
	return toBrowser(body, loc, rd, offer)
}

// Start runs a transport on every stream that has the browser's
// parameters and no transport yet. Call it once the relay runs (after
// the answer); the handshakes go on in the background.
func (g *Leg) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.remote == nil {
		return nil
	}
	for i, p := range g.remote.streams {
		if g.transports[i] != nil || p.ufrag == "" || len(p.fingerprints) == 0 {
			continue
		}
		pc, err := g.call.PacketConn(g.role, i)
		if err != nil {
			if errors.Is(err, media.ErrStreams) {
				continue // a stream the answer disabled
			}
			return err
		}
		t := newTransport(pc, g.loc, p, g.legs.cert, g.legs.cfg.HandshakeTimeout)
		// The relay takes media only from addresses that passed a
		// connectivity check (ICE consent).
		if err := g.call.SetSourceCheck(g.role, i, func(src netip.AddrPort) bool {
			return t.checked(netip.AddrPortFrom(src.Addr().Unmap(), src.Port()))
		}); err != nil {
			pc.Close()
			return err
		}
		g.transports[i] = t
		go t.readLoop()
		go g.handshake(i, t)
	}
	return nil
}

func (g *Leg) handshake(i int, t *transport) {
	start := time.Now()
	recv, send, err := t.handshake(g.legs.ctx)
	if err == nil {
		err = g.call.SetKeys(g.role, i, recv, send)
		if err == nil {
			g.feedback(i)
			g.legs.handshakes.WithLabelValues("ok").Inc()
			g.legs.took.Observe(time.Since(start).Seconds())
			g.legs.log.Debug("dtls-srtp keyed", "session", g.session, "stream", i, "suite", recv.Suite, "took", time.Since(start))
			return
		}
	}
	g.mu.Lock()
	closed := g.closed || errors.Is(err, media.ErrClosed) || errors.Is(err, net.ErrClosed)
	first := !g.failed && !closed
	g.failed = true
	g.mu.Unlock()
	if !first {
		return
	}
	rule := RuleHandshake
	if errors.Is(err, ErrFingerprint) {
		rule = RuleFingerprint
	}
	g.legs.handshakes.WithLabelValues(rule).Inc()
	peer := t.peer()
	if !peer.IsValid() {
		peer = g.src
	}
	g.legs.log.Info("webrtc transport refused", "session", g.session, "stream", i, "rule", rule, "peer", peer, "error", err)
	if g.legs.alerts != nil {
		g.legs.alerts.Alert(&core.SecurityEvent{Time: time.Now(), Rule: rule, Action: "refuse", Src: peer.String(),
			Zone: g.zone, Session: g.session, Protocol: "webrtc", Detail: err.Error()})
	}
	if g.onFail != nil {
		g.onFail(rule, err.Error())
	}
}

// feedback starts the gateway's own RTCP on stream i: the NACK
// responder when both sides agreed on generic NACK (the gateway offers
// it only with a cache), the reports when configured.
func (g *Leg) feedback(i int) {
	g.mu.Lock()
	nack := g.loc.nack && g.remote != nil && i < len(g.remote.streams) && g.remote.streams[i].nacks()
	g.mu.Unlock()
	fb := media.Feedback{Reports: g.legs.cfg.RTCPInterval}
	if nack {
		fb.NACK = g.legs.cfg.NACKBuffer
	}
	if fb.NACK == 0 && fb.Reports == 0 {
		return
	}
	if err := g.call.SetFeedback(g.role, i, fb); err != nil {
		g.legs.log.Debug("no rtcp feedback", "session", g.session, "stream", i, "error", err)
	}
}

// Close stops the leg's transports.
func (g *Leg) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for _, t := range g.transports {
		t.close()
	}
}

// randomICE returns n characters of the ice-char set (RFC 8839).
func randomICE(n int) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}
