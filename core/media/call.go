package media

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ucgate/ucgate/core"
)

// More errors of the offer/answer API. The adapter refuses the
// description with "not acceptable" (SIP 488) on ErrCrypto, ErrStreams
// and ErrFamily, "unavailable" (503) on ErrNoPorts.
var (
	// ErrCrypto reports SRTP the engine cannot agree on: an RTP/SAVP
	// offer with no usable SDES key, or an answer that refused the SRTP
	// the other leg requires.
	ErrCrypto = errors.New("media: no usable srtp crypto")
	// ErrStreams reports a description whose streams do not match the
	// negotiation (an answer with another number of streams, an offer
	// that removes streams, too many streams).
	ErrStreams = errors.New("media: streams do not match the negotiation")
	// ErrNoOffer reports an answer with no offer from the other leg
	// pending.
	ErrNoOffer = errors.New("media: answer without an offer")
	// ErrRole reports a role other than core.RoleCaller or RoleCallee.
	ErrRole = errors.New("media: unknown role")
)

// maxStreams bounds the streams of one description: each relayed stream
// holds four ports and four goroutines.
const maxStreams = 16

// SRTPMode is how one leg's media is protected.
type SRTPMode uint8

// SRTP modes.
const (
	// SRTPAuto protects the other leg as the offering leg protects its
	// own: SDES when it offered SDES, plain RTP otherwise.
	SRTPAuto SRTPMode = iota
	// SRTPNone: plain RTP (RTP/AVP).
	SRTPNone
	// SRTPWant: SDES-SRTP required (RTP/SAVP with the gateway's keys);
	// an answer without a usable key fails with ErrCrypto.
	SRTPWant
	// SRTPOffer: SDES-SRTP if the leg takes it, plain RTP if not
	// (RTP/AVP with the gateway's keys: best-effort SRTP).
	SRTPOffer
	// SRTPDTLS: DTLS-SRTP keyed outside the engine (the WebRTC adapter):
	// UDP/TLS/RTP/SAVPF, no keys in the description; the leg's packets
	// are dropped until Call.SetKeys gives its keys.
	SRTPDTLS
)

func (m SRTPMode) String() string {
	return [...]string{"auto", "none", "want", "offer", "dtls"}[min(int(m), 4)]
}

// PeerInfo is what the signalling knows about a description that the
// description itself does not say.
type PeerInfo struct {
	// Addr is the signalling source of the leg that sent the description.
	Addr netip.AddrPort
	// BehindNAT says the signalling found that leg behind NAT (its Via
	// or Contact names another address than the packets came from).
	// With latch "nat" the relay then learns the leg's media address
	// from its first valid packets instead of trusting the description,
	// and sends it nothing before.
	BehindNAT bool
	// Zone is that leg's zone, as the content stages see it.
	Zone string
	// Family is the address family of the other leg's relay sockets
	// (Offer and Update, for streams that have no sockets yet; zero: the
	// family of the leg that sent the description).
	Family Family
	// SRTP is how the other leg's media is protected (Offer and Update,
	// for legs that have no protection yet: a leg keeps what it
	// negotiated first).
	SRTP SRTPMode
}

// Keys is SRTP key material negotiated outside the descriptions
// (DTLS-SRTP, RFC 5764): the suite by its SDES name
// ("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM", ...), the master key
// and the master salt.
type Keys struct {
	Suite     string
	Key, Salt []byte
}

// Call is the media of one session: its streams' relay sockets, the
// goroutines that relay them and their figures. Its methods are safe for
// concurrent use.
type Call struct {
	e     *Engine
	id    core.SessionID
	pipe  *core.Pipeline
	onEnd func(string)

	mu       sync.Mutex
	legs     [2]legState
	streams  []*stream
	old      []*stream // streams replaced in their m= slot, kept for Stats
	pend     *pending
	answered bool
	closed   bool
	timer    *time.Timer
	ended    atomic.Bool
	wg       sync.WaitGroup // readers
	cname    string         // the CNAME of the gateway's own reports (SetFeedback)
}

// legState is what the call knows of one leg, whatever the stream.
type legState struct {
	role   string
	zone   string
	nat    bool
	sig    netip.AddrPort // signalling source, as PeerInfo last gave it
	family Family
	mode   SRTPMode // resolved once the leg negotiated a stream; SRTPAuto before
}

// pending is an offer waiting for its answer.
type pending struct {
	offerer int
	moved   bool             // the offerer's signalling source changed
	sig     netip.AddrPort   // the offerer's signalling source
	streams []*pendingStream // by m= line; nil: the offer disabled it
}

type pendingStream struct {
	st      *stream  // the stream the answer completes
	fresh   bool     // st is new in this offer
	x       legMedia // the offerer's side, as the answer will make it
	modeY   SRTPMode
	offered []*sdesKey // gateway keys offered to the answerer
	tags    []int      // their tags
}

// stream is one m= line's relay.
type stream struct {
	index   int
	kind    string
	sides   [2]*side
	dirs    [2]*dir
	media   [2]legMedia
	running bool
	closed  bool
	// fb, when set, is the gateway's own RTCP on the stream's DTLS leg
	// (SetFeedback).
	fb atomic.Pointer[feedback]
	// admit, when set for a leg, decides which new sources of that leg
	// the relay may latch (SetSourceCheck).
	admit [2]atomic.Pointer[func(netip.AddrPort) bool]
}

// legMedia is what one leg's latest description says about a stream.
type legMedia struct {
	rtp, rtcp netip.AddrPort // where the leg receives; invalid: unknown
	// from and fromRTCP are where its packets must come from when it is
	// not latched: its description's addresses, or the last ones it gave
	// when this description names none (on hold, still sending music).
	from, fromRTCP netip.AddrPort
	mux            bool
	codecs         []core.Codec
	direction      string
	profile        string // the transport protocol as the leg wrote it
	mode           SRTPMode
	srtp           bool     // SRTP in use: remote and local are set
	remote         *sdesKey // the leg's key: decrypts what it sends
	local          *sdesKey // the gateway's key: encrypts what it is sent
	tag            int      // SDES tag of the pair
	epoch          uint64   // bumped to make the relay learn the leg's source again
}

func legIndex(role string) (int, error) {
	switch role {
	case core.RoleCaller:
		return 0, nil
	case core.RoleCallee:
		return 1, nil
	}
	return 0, fmt.Errorf("%w %q", ErrRole, role)
}

// Offer takes the description leg from (core.RoleCaller or RoleCallee)
// offered and returns the one to send the other leg: each enabled RTP
// stream pointed at a relay endpoint in the other leg's family, ICE and
// DTLS fingerprints dropped, SDES keys replaced by the gateway's own when
// the other leg speaks SDES, the profile (RTP/AVP, RTP/SAVP, ...) the
// other leg needs. Streams that are not RTP, or disabled, are disabled.
// Nothing is relayed before the answer.
func (c *Call) Offer(from string, md *core.MediaDesc, peer PeerInfo) (*core.MediaDesc, error) {
	return c.offer(from, md, peer)
}

// Update is Offer for a renegotiation (re-INVITE, UPDATE) from either
// leg. When its answer completes it, a leg whose description names a new
// address, or whose signalling source moved, is latched anew (with
// latching on: its first valid packets; strict: the new address); a
// leg that did not move keeps its latch, so that a session refresh opens
// no window for injection. A new SSRC is fine either way. The content
// stages' guards hear of the new negotiation (payload formats) through
// Renegotiate before the next packet they check.
func (c *Call) Update(from string, md *core.MediaDesc, peer PeerInfo) (*core.MediaDesc, error) {
	return c.offer(from, md, peer)
}

func (c *Call) offer(from string, md *core.MediaDesc, peer PeerInfo) (*core.MediaDesc, error) {
	x, err := legIndex(from)
	if err != nil {
		return nil, err
	}
	y := 1 - x
	if md == nil || len(md.Streams) > maxStreams {
		return nil, fmt.Errorf("%w: at most %d streams", ErrStreams, maxStreams)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if len(md.Streams) < len(c.streams) {
		return nil, fmt.Errorf("%w: %d streams offered, %d negotiated", ErrStreams, len(md.Streams), len(c.streams))
	}
	p := &pending{offerer: x, sig: peer.Addr, moved: movedFrom(c.legs[x].sig, peer.Addr),
		streams: make([]*pendingStream, len(md.Streams))}
	out := &core.MediaDesc{Streams: make([]core.Stream, len(md.Streams))}
	var fresh []*side
	fail := func(err error) (*core.MediaDesc, error) {
		for _, s := range fresh {
			s.close()
			s.release()
		}
		return nil, err
	}
	for i := range md.Streams {
		in := &md.Streams[i]
		var cur *stream
		if i < len(c.streams) && !c.streams[i].closed {
			cur = c.streams[i]
		}
		if in.Disabled || !isRTPProfile(in.Protocol) {
			out.Streams[i] = disabledStream(in)
			continue
		}
		ps := &pendingStream{st: cur}
		// The offerer's side.
		xm, err := c.offeredMedia(x, i, in, cur)
		if err != nil {
			return fail(err)
		}
		ps.x = xm
		// The answerer's protection.
		ps.modeY = c.legs[y].mode
		if cur != nil {
			ps.modeY = cur.media[y].mode
		}
		if ps.modeY == SRTPAuto {
			ps.modeY = resolveMode(peer.SRTP, xm.mode)
		}
		// Sockets.
		if cur == nil {
			fx := familyOf(in.Addr.Addr())
			if fx == FamilyAuto || in.Addr.Addr().IsUnspecified() {
				fx = familyOf(peer.Addr.Addr())
			}
			if fx == FamilyAuto {
				fx = c.legs[x].family
			}
			if fx == FamilyAuto {
				fx = c.e.defaultFamily()
			}
			fy := peer.Family
			if fy == FamilyAuto {
				fy = c.legs[y].family
			}
			if fy == FamilyAuto {
				fy = fx
			}
			if !c.e.hasFamily(fx) || !c.e.hasFamily(fy) {
				return fail(fmt.Errorf("%w: stream %d wants %s to %s", ErrFamily, i, fx, fy))
			}
			sx, err := c.e.pools[fx].get()
			if err != nil {
				return fail(err)
			}
			fresh = append(fresh, sx)
			sy, err := c.e.pools[fy].get()
			if err != nil {
				return fail(err)
			}
			fresh = append(fresh, sy)
			cur = &stream{index: i, kind: in.Type}
			cur.sides[x], cur.sides[y] = sx, sy
			ps.st, ps.fresh = cur, true
		}
		if a := xm.rtp.Addr(); a.IsValid() && familyOf(a) != cur.sides[x].pool.family {
			return fail(fmt.Errorf("%w: stream %d moved from %s to %s", ErrFamily, i, cur.sides[x].pool.family, familyOf(a)))
		}
		// What the answerer is offered.
		o := core.Stream{
			Type:      in.Type,
			Addr:      cur.sides[y].endpoint(),
			RTCP:      netip.AddrPortFrom(cur.sides[y].pool.advertise, cur.sides[y].port+1),
			Direction: in.Direction,
			Codecs:    slices.Clone(in.Codecs),
			RTCPMux:   in.RTCPMux || ps.modeY == SRTPDTLS,
		}
		feedback := strings.HasSuffix(in.Protocol, "F") && xm.mode != SRTPDTLS
		o.Protocol = profileFor(ps.modeY, feedback)
		if ps.modeY == SRTPWant || ps.modeY == SRTPOffer {
			if err := c.offerKeys(ps, cur, y, xm); err != nil {
				return fail(err)
			}
			for j, k := range ps.offered {
				o.Crypto = append(o.Crypto, core.Crypto{Tag: ps.tags[j], Suite: k.suite.name, Key: string(k.inline)})
			}
		}
		out.Streams[i] = o
		p.streams[i] = ps
		if out.Origin == "" {
			out.Origin = cur.sides[y].pool.advertise.String()
		}
	}
	c.dropPending()
	c.pend = p
	c.legs[x].zone, c.legs[x].nat = peer.Zone, peer.BehindNAT
	return out, nil
}

// offeredMedia reads the offerer's stream: its addresses and its
// protection, with the key it will decrypt and the gateway's key for it.
func (c *Call) offeredMedia(x, i int, in *core.Stream, cur *stream) (legMedia, error) {
	m := legMedia{
		rtp:       usable(in.Addr),
		mux:       in.RTCPMux,
		codecs:    slices.Clone(in.Codecs),
		direction: in.Direction,
		profile:   in.Protocol,
		mode:      modeOf(in),
	}
	m.rtcp = rtcpAddr(in, m.rtp)
	var prev *legMedia
	if cur != nil {
		prev = &cur.media[x]
		m.epoch = prev.epoch
	}
	m.keepSource(prev)
	switch m.mode {
	case SRTPWant, SRTPOffer:
		k, tag := firstUsable(in.Crypto)
		if k == nil {
			if m.mode == SRTPWant {
				return m, fmt.Errorf("%w: stream %d offers no usable key", ErrCrypto, i)
			}
			m.mode = SRTPNone
			break
		}
		m.srtp, m.tag = true, tag
		m.remote = k
		if prev != nil && prev.remote.same(k) {
			m.remote = prev.remote // keep its replay window
		}
		if prev != nil && prev.local != nil && prev.local.suite == k.suite {
			m.local = prev.local // never two contexts from one key
		} else {
			lk, err := newLocalKey(k.suite)
			if err != nil {
				return m, err
			}
			m.local = lk
		}
	case SRTPDTLS:
		if prev != nil && prev.mode == SRTPDTLS {
			m.remote, m.local, m.srtp = prev.remote, prev.local, prev.srtp
		}
	}
	return m, nil
}

// offerKeys picks the gateway keys offered to leg y: the key already in
// use when there is one, else a fresh key per suite (the offerer's suites
// when it spoke SDES, in its order; the default ones otherwise).
func (c *Call) offerKeys(ps *pendingStream, cur *stream, y int, xm legMedia) error {
	if !ps.fresh {
		if ym := &cur.media[y]; ym.srtp && ym.local != nil {
			ps.offered, ps.tags = []*sdesKey{ym.local}, []int{ym.tag}
			return nil
		}
	}
	var want []*suite
	if xm.srtp && xm.remote != nil {
		want = append(want, xm.remote.suite)
	}
	if len(want) == 0 {
		for i := range suites[:offeredSuites] {
			want = append(want, &suites[i])
		}
	}
	for i, s := range want {
		k, err := newLocalKey(s)
		if err != nil {
			return err
		}
		ps.offered = append(ps.offered, k)
		ps.tags = append(ps.tags, i+1)
	}
	return nil
}

// Answer takes the answer that leg from gave to the other leg's pending
// offer and returns the answer to send the offerer: its streams pointed at
// the offerer's relay endpoints, with the gateway's key when the offerer
// speaks SDES. The relay starts (or takes the new negotiation) at once.
// Answer may be called again for the same offer (a provisional answer,
// then the final one); the last one counts. peer.Family and peer.SRTP are
// not used.
func (c *Call) Answer(from string, md *core.MediaDesc, peer PeerInfo) (*core.MediaDesc, error) {
	y, err := legIndex(from)
	if err != nil {
		return nil, err
	}
	x := 1 - y
	if md == nil {
		return nil, fmt.Errorf("%w: no description", ErrStreams)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	p := c.pend
	if p == nil || p.offerer != x {
		return nil, ErrNoOffer
	}
	if len(md.Streams) != len(p.streams) {
		return nil, fmt.Errorf("%w: %d streams offered, %d answered", ErrStreams, len(p.streams), len(md.Streams))
	}
	out := &core.MediaDesc{Streams: make([]core.Stream, len(md.Streams))}
	ys := make([]legMedia, len(md.Streams))
	for i := range md.Streams {
		in, ps := &md.Streams[i], p.streams[i]
		if ps == nil || in.Disabled {
			out.Streams[i] = disabledStream(in)
			continue
		}
		st := ps.st
		ym := legMedia{
			rtp:       usable(in.Addr),
			mux:       in.RTCPMux && (ps.x.mux || ps.modeY == SRTPDTLS),
			codecs:    slices.Clone(in.Codecs),
			direction: in.Direction,
			profile:   in.Protocol,
			mode:      ps.modeY,
			epoch:     st.media[y].epoch,
		}
		ym.rtcp = rtcpAddr(in, ym.rtp)
		ym.keepSource(&st.media[y])
		if a := ym.rtp.Addr(); a.IsValid() && familyOf(a) != st.sides[y].pool.family {
			return nil, fmt.Errorf("%w: stream %d answered in %s, offered in %s", ErrFamily, i, familyOf(a), st.sides[y].pool.family)
		}
		switch ps.modeY {
		case SRTPWant, SRTPOffer:
			k, j := matchAnswer(in.Crypto, ps)
			switch {
			case k != nil:
				ym.srtp, ym.tag, ym.remote, ym.local = true, ps.tags[j], k, ps.offered[j]
				if prev := st.media[y].remote; prev.same(k) {
					ym.remote = prev
				}
			case ps.modeY == SRTPWant:
				return nil, fmt.Errorf("%w: stream %d answered without a usable key", ErrCrypto, i)
			default:
				ym.mode = SRTPNone // best effort refused: plain RTP
			}
		case SRTPDTLS:
			if prev := st.media[y]; prev.mode == SRTPDTLS {
				ym.remote, ym.local, ym.srtp = prev.remote, prev.local, prev.srtp
			}
		}
		ys[i] = ym
		o := core.Stream{
			Type:      st.kind,
			Addr:      st.sides[x].endpoint(),
			RTCP:      netip.AddrPortFrom(st.sides[x].pool.advertise, st.sides[x].port+1),
			Protocol:  ps.x.profile,
			Direction: in.Direction,
			Codecs:    slices.Clone(in.Codecs),
			RTCPMux:   ps.x.mux,
		}
		if ps.x.srtp && ps.x.mode != SRTPDTLS {
			o.Crypto = []core.Crypto{{Tag: ps.x.tag, Suite: ps.x.local.suite.name, Key: string(ps.x.local.inline)}}
		}
		out.Streams[i] = o
		if out.Origin == "" {
			out.Origin = st.sides[x].pool.advertise.String()
		}
	}
	// Commit.
	movedY := movedFrom(c.legs[y].sig, peer.Addr)
	c.legs[y].zone, c.legs[y].nat = peer.Zone, peer.BehindNAT
	if peer.Addr.IsValid() {
		c.legs[y].sig = peer.Addr
	}
	if p.sig.IsValid() {
		c.legs[x].sig = p.sig
	}
	for i, ps := range p.streams {
		var cur *stream
		if i < len(c.streams) {
			cur = c.streams[i]
		}
		if ps == nil || md.Streams[i].Disabled {
			if cur != nil && !cur.closed {
				c.closeStream(cur)
			}
			if ps != nil && ps.fresh && ps.st != cur {
				c.closeStream(ps.st)
			}
			if ps != nil {
				p.streams[i] = nil // a later answer to this offer finds it disabled
			}
			continue
		}
		st := ps.st
		if cur != st {
			if cur != nil {
				if !cur.closed {
					c.closeStream(cur)
				}
				c.old = append(c.old, cur)
			}
			for len(c.streams) <= i {
				c.streams = append(c.streams, nil)
			}
			c.streams[i] = st
		}
		ps.fresh = false
		xm, ym := ps.x, ys[i]
		// A leg that moved (its description's address, or its signalling
		// source behind NAT) is learnt again; one that did not keeps its
		// latch, against injection at every session refresh.
		if xm.rtp != st.media[x].rtp || p.moved {
			xm.epoch++
		}
		if ym.rtp != st.media[y].rtp || movedY {
			ym.epoch++
		}
		st.media[x], st.media[y] = xm, ym
		// Keep the offerer's side as committed for a repeated answer.
		ps.x = xm
		for l := range 2 {
			if c.legs[l].mode == SRTPAuto {
				c.legs[l].mode = st.media[l].mode
			}
			if c.legs[l].family == FamilyAuto {
				c.legs[l].family = st.sides[l].pool.family
			}
		}
		if st.running {
			c.configure(st)
		} else {
			c.start(st)
		}
	}
	p.moved = false
	return out, nil
}

// keepSource sets where the leg's packets come from, keeping the
// previous description's addresses when this one names none.
func (m *legMedia) keepSource(prev *legMedia) {
	m.from, m.fromRTCP = m.rtp, m.rtcp
	if !m.from.IsValid() && prev != nil {
		m.from, m.fromRTCP = prev.from, prev.fromRTCP
	}
}

// movedFrom reports a signalling source that changed.
func movedFrom(old, now netip.AddrPort) bool {
	return old.IsValid() && now.IsValid() && old != now
}

// Answered tells the call that the session was answered: from now on the
// media timeout runs.
func (c *Call) Answered() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.answered {
		return
	}
	c.answered = true
	now := c.e.now()
	for _, st := range c.streams {
		if st != nil && st.running {
			for _, d := range st.dirs {
				d.lastRecv.Store(now)
			}
		}
	}
	c.armTimer(now)
}

// streamLocked finds stream index for one of the call's setters (c.mu
// held): ErrClosed when the call is closed, ErrStreams when there is no
// such stream, or, with running, none running yet (before Answer).
func (c *Call) streamLocked(index int, running bool) (*stream, error) {
	if c.closed {
		return nil, ErrClosed
	}
	if index < 0 || index >= len(c.streams) || c.streams[index] == nil || c.streams[index].closed || running && !c.streams[index].running {
		if running {
			return nil, fmt.Errorf("%w: no running stream %d", ErrStreams, index)
		}
		return nil, fmt.Errorf("%w: no stream %d", ErrStreams, index)
	}
	return c.streams[index], nil
}

// dtlsStreamLocked is streamLocked for a stream whose leg l (role) is
// keyed by DTLS; ErrCrypto otherwise.
func (c *Call) dtlsStreamLocked(role string, l, index int, running bool) (*stream, error) {
	st, err := c.streamLocked(index, running)
	if err != nil {
		return nil, err
	}
	if st.media[l].mode != SRTPDTLS {
		return nil, fmt.Errorf("%w: stream %d of the %s is not keyed by DTLS", ErrCrypto, index, role)
	}
	return st, nil
}

// SetKeys gives the SRTP keys of a leg whose keys travel outside the
// descriptions (SRTPDTLS): recv decrypts what the leg sends, send
// encrypts what the gateway sends it. The stream index is the m= line.
func (c *Call) SetKeys(role string, index int, recv, send Keys) error {
	l, err := legIndex(role)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.dtlsStreamLocked(role, l, index, false)
	if err != nil {
		return err
	}
	m := &st.media[l]
	r, err := newKeys(recv, false)
	if err != nil {
		return err
	}
	s, err := newKeys(send, true)
	if err != nil {
		return err
	}
	if m.remote == nil || string(m.remote.master) != string(r.master) {
		m.remote = r
	}
	if m.local == nil || string(m.local.master) != string(s.master) {
		m.local = s
	}
	m.srtp = true
	if st.running {
		c.configure(st)
	}
	return nil
}

// SetSourceCheck restricts the sources a DTLS-SRTP leg's stream may send
// from to those ok accepts: the WebRTC adapter gives the addresses that
// passed its ICE connectivity checks (RFC 8445, consent: RFC 7675). The
// relay latches a source, or moves its latch to a new one, only when ok
// says yes; other packets are dropped under RuleSource. SRTP already
// keeps strangers out; this keeps the leg itself from pointing the
// relay's media at an address that never answered ICE (a spoofed
// source). ok is called only for a source the relay has not latched,
// never on the path of latched packets.
func (c *Call) SetSourceCheck(role string, index int, ok func(netip.AddrPort) bool) error {
	l, err := legIndex(role)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.dtlsStreamLocked(role, l, index, false)
	if err != nil {
		return err
	}
	st.admit[l].Store(&ok)
	return nil
}

// Stats returns the figures of every stream direction relayed so far.
func (c *Call) Stats() []core.MediaStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []core.MediaStats
	for _, list := range [][]*stream{c.old, c.streams} {
		for _, st := range list {
			if st == nil || st.dirs[0] == nil {
				continue
			}
			for l, d := range st.dirs {
				out = append(out, d.stats(st, c.legs[l].role))
			}
		}
	}
	slices.SortStableFunc(out, func(a, b core.MediaStats) int { return a.Index - b.Index })
	return out
}

// Close ends the call's media: every socket is closed, every goroutine
// has ended and every port is back in its pool when Close returns.
func (c *Call) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	for _, st := range c.streams {
		if st != nil && !st.closed {
			c.closeStream(st)
		}
	}
	c.dropPending()
	c.mu.Unlock()
	c.wg.Wait()
	c.e.forget(c)
}

// dropPending forgets the pending offer, releasing the sockets it took
// for streams no answer committed.
func (c *Call) dropPending() {
	p := c.pend
	if p == nil {
		return
	}
	for _, ps := range p.streams {
		if ps != nil && ps.fresh && !ps.st.closed {
			c.closeStream(ps.st)
		}
	}
	c.pend = nil
}

// closeStream closes a stream's sockets; its readers end on their own.
func (c *Call) closeStream(st *stream) {
	st.closed = true
	if fb := st.fb.Load(); fb != nil {
		fb.stop()
	}
	for _, d := range st.dirs {
		if d != nil {
			if f := d.foreign.Load(); f != nil {
				f.Close()
			}
		}
	}
	for _, s := range st.sides {
		s.close()
		s.release()
	}
}

// armTimer schedules the next media timeout check.
func (c *Call) armTimer(now int64) {
	t := c.e.cfg.Timeout
	if t <= 0 {
		return
	}
	period := min(max(t/4, 10*time.Millisecond), 5*time.Second)
	if c.timer == nil {
		c.timer = time.AfterFunc(period, c.checkTimeout)
		return
	}
	c.timer.Reset(period)
}

func (c *Call) checkTimeout() {
	c.mu.Lock()
	if c.closed || c.ended.Load() {
		c.mu.Unlock()
		return
	}
	now := c.e.now()
	var last int64
	flowing := false
	for _, st := range c.streams {
		if st == nil || st.closed || !st.running {
			continue
		}
		if st.media[0].direction != "inactive" && st.media[1].direction != "inactive" {
			flowing = true
		}
		for _, d := range st.dirs {
			last = max(last, d.lastRecv.Load())
		}
	}
	if !flowing {
		// On hold, or nothing relayed: the clock starts again when media
		// is expected.
		for _, st := range c.streams {
			if st != nil && st.running {
				for _, d := range st.dirs {
					d.lastRecv.Store(now)
				}
			}
		}
	}
	if flowing && time.Duration(now-last) >= c.e.cfg.Timeout {
		c.ended.Store(true)
		c.mu.Unlock()
		if c.onEnd != nil {
			c.onEnd("media_timeout")
		}
		return
	}
	c.armTimer(now)
	c.mu.Unlock()
}

// Helpers on descriptions.

func disabledStream(in *core.Stream) core.Stream {
	return core.Stream{Type: in.Type, Protocol: in.Protocol, Direction: in.Direction, Disabled: true, Codecs: slices.Clone(in.Codecs)}
}

// isRTPProfile reports a transport protocol the relay carries.
func isRTPProfile(p string) bool {
	switch p {
	case "RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF":
		return true
	}
	return false
}

// modeOf reads how a leg protects a stream from its own description.
func modeOf(s *core.Stream) SRTPMode {
	switch {
	case strings.HasPrefix(s.Protocol, "UDP/TLS/"):
		return SRTPDTLS
	case strings.HasPrefix(s.Protocol, "RTP/SAVP"):
		return SRTPWant
	case len(s.Crypto) > 0:
		return SRTPOffer
	}
	return SRTPNone
}

func resolveMode(want, offerer SRTPMode) SRTPMode {
	if want != SRTPAuto {
		return want
	}
	switch offerer {
	case SRTPWant, SRTPOffer:
		return offerer
	}
	return SRTPNone
}

func profileFor(m SRTPMode, feedback bool) string {
	f := ""
	if feedback {
		f = "F"
	}
	switch m {
	case SRTPWant:
		return "RTP/SAVP" + f
	case SRTPDTLS:
		return "UDP/TLS/RTP/SAVPF"
	}
	return "RTP/AVP" + f
}

// usable returns a description's address, unmapped, or the zero value
// when it names no one (unspecified: on hold).
func usable(a netip.AddrPort) netip.AddrPort {
	if !a.IsValid() || a.Addr().IsUnspecified() || a.Port() == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func rtcpAddr(in *core.Stream, rtp netip.AddrPort) netip.AddrPort {
	if in.RTCPMux {
		return rtp
	}
	if r := usable(in.RTCP); r.IsValid() {
		return r
	}
	if rtp.IsValid() && rtp.Port() < 65535 {
		return netip.AddrPortFrom(rtp.Addr(), rtp.Port()+1)
	}
	return netip.AddrPort{}
}

// firstUsable returns the first crypto attribute the engine can use, with
// its tag.
func firstUsable(cs []core.Crypto) (*sdesKey, int) {
	for _, cr := range cs {
		if k, err := parseInline(cr.Suite, cr.Key); err == nil {
			return k, cr.Tag
		}
	}
	return nil, 0
}

// matchAnswer finds the answer's crypto attribute that takes one of the
// offered keys (same tag, same suite): the answerer's key and the index of
// the offered one.
func matchAnswer(cs []core.Crypto, ps *pendingStream) (*sdesKey, int) {
	for _, cr := range cs {
		for j, tag := range ps.tags {
			if cr.Tag != tag || !strings.EqualFold(cr.Suite, ps.offered[j].suite.name) {
				continue
			}
			if k, err := parseInline(cr.Suite, cr.Key); err == nil {
				return k, j
			}
		}
	}
	return nil, 0
}

func (e *Engine) hasFamily(f Family) bool {
	return int(f) < len(e.pools) && e.pools[f] != nil
}

func (e *Engine) defaultFamily() Family {
	if e.pools[FamilyIPv4] != nil {
		return FamilyIPv4
	}
	return FamilyIPv6
}
