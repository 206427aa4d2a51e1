package media

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/ucgate/ucgate/core"
)

// Rules the relay writes, as MediaStats.Dropped and security events show
// them. The content stages' guards add their own.
const (
	// RuleSource: a packet from a source the stream does not accept (not
	// the latched or described address): injection. Raises an event.
	RuleSource = "media/source"
	// RuleMalformed: not RTP or RTCP (bad version, truncated header or
	// extension, bad padding, oversized datagram).
	RuleMalformed = "media/malformed"
	// RuleSRTP: SRTP or SRTCP that does not authenticate, a replay, or a
	// packet on a leg whose keys are not known yet. Raises an event.
	RuleSRTP = "media/srtp"
	// RuleRate: over max_packets_per_second or max_bitrate.
	RuleRate = "media/rate"
	// RuleNoDestination: the receiving leg's address is not known yet
	// (behind NAT and silent so far, or on hold with no address).
	RuleNoDestination = "media/no_destination"
	// RuleSend: the socket refused to send.
	RuleSend = "media/send"
)

// alertEvery bounds the security events of one stream direction: one per
// rule per interval.
const alertEvery = 10 * time.Second

// relatchSeqWindow is how far a moved source's sequence number may run
// ahead of the last one relayed.
const relatchSeqWindow = maxDropout

// dir is one direction of one stream: the packets one leg sends. Its
// configuration is swapped whole (copy on write); its figures are
// atomics the readers write and Stats reads.
type dir struct {
	from int
	cfg  atomic.Pointer[dirConfig]

	// Where the leg this direction comes from receives: from its
	// description, or learnt from its packets. The other direction's
	// readers send there.
	rtpDst, rtcpDst       atomic.Pointer[netip.AddrPort]
	learntRTP, learntRTCP atomic.Bool
	ssrc, rate            atomic.Uint32 // last SSRC relayed and its clock rate
	packets, bytes, lost  atomic.Uint64
	jitter                atomic.Uint64 // float64 bits, ms
	repLost, repJitter    atomic.Uint64 // what the receiver reported; repJitter float64 bits, ms
	lastRecv              atomic.Int64
	encrypted             atomic.Bool
	rtcpMu                sync.Mutex // SRTCP contexts are shared by the RTP and RTCP readers
	dropMu                sync.Mutex
	dropped               map[string]uint64
	alerted               map[string]int64
	// foreign, when set, takes the STUN and DTLS packets the leg sends
	// (Call.PacketConn).
	foreign atomic.Pointer[foreignConn]
	// transform, when set, takes the direction's RTP instead of the
	// relay, and the receiving leg's RTCP besides (Call.SetTransform).
	transform atomic.Pointer[Transform]
}

// dirConfig is what a direction's readers need, rebuilt by every
// negotiation.
type dirConfig struct {
	seq              uint64 // grows with every configuration
	learn, hold      bool
	expRTP, expRTCP  netip.AddrPort
	mux, outMux      bool
	epoch            uint64
	relatch          bool
	relatchAfter     int64
	pps, bps         int
	rtpDec, rtcpDec  *srtp.Context
	rtpEnc, rtcpEnc  *srtp.Context
	needKeys         bool
	rates            [128]uint32
	info             core.StreamInfo
	kind, role, zone string
	index            int
	session          core.SessionID
	encIn            bool
}

// start creates a stream's directions and readers.
func (c *Call) start(st *stream) {
	st.running = true
	for l := range 2 {
		st.dirs[l] = &dir{from: l, dropped: map[string]uint64{}, alerted: map[string]int64{}}
	}
	c.configure(st)
	now := c.e.now()
	for l := range 2 {
		d, peer := st.dirs[l], st.dirs[1-l]
		d.lastRecv.Store(now)
		cfg := d.cfg.Load()
		for _, rtcpPort := range []bool{false, true} {
			r := &reader{c: c, st: st, d: d, peer: peer, out: st.sides[1-l], rtcpPort: rtcpPort, buf: make([]byte, bufSize), seq: cfg.seq}
			r.conn = st.sides[l].rtp
			if rtcpPort {
				r.conn = st.sides[l].rtcp
			} else {
				// One set of guards per direction, on the reader of the
				// RTP port: Check is never called from two goroutines.
				info := cfg.info
				info.Codecs = slices.Clone(info.Codecs)
				r.guards = c.pipe.Guards(&info)
			}
			c.wg.Add(1)
			go r.run()
		}
	}
}

// configure publishes a stream's negotiation to its readers.
func (c *Call) configure(st *stream) {
	for l := range 2 {
		o := 1 - l
		m, om := &st.media[l], &st.media[o]
		d := st.dirs[l]
		learn, hold := c.e.learns(c.legs[l].nat)
		if m.mode == SRTPDTLS {
			// ICE decides where a DTLS leg's media comes from and goes
			// to, whatever the latch mode: the relay learns it from
			// authenticated packets (under the leg's source check) and
			// sends nothing to the address its description claims.
			learn, hold = true, true
		}
		if !learn && !m.from.IsValid() && c.e.cfg.Latch == LatchNAT {
			// No usable address ever (a name, not an address): learn it.
			learn = true
		}
		cfg := &dirConfig{
			learn:        learn,
			hold:         hold,
			expRTP:       m.from,
			expRTCP:      m.fromRTCP,
			mux:          m.mux,
			outMux:       om.mux,
			epoch:        m.epoch,
			relatch:      c.e.cfg.Relatch,
			relatchAfter: int64(c.e.cfg.RelatchAfter),
			pps:          c.e.cfg.MaxPacketsPerSecond,
			bps:          c.e.cfg.MaxBitrate,
			kind:         st.kind,
			role:         c.legs[l].role,
			zone:         c.legs[l].zone,
			index:        st.index,
			session:      c.id,
		}
		if m.srtp {
			r, rc, err := m.remote.contexts()
			cfg.rtpDec, cfg.rtcpDec, cfg.needKeys = r, rc, err != nil
		} else if m.mode == SRTPDTLS {
			cfg.needKeys = true
		}
		if om.srtp {
			r, rc, err := om.local.contexts()
			cfg.rtpEnc, cfg.rtcpEnc = r, rc
			cfg.needKeys = cfg.needKeys || err != nil
		} else if om.mode == SRTPDTLS {
			cfg.needKeys = true
		}
		cfg.encIn = m.srtp || m.mode == SRTPDTLS
		cfg.info = core.StreamInfo{
			Session:   c.id,
			Index:     st.index,
			Type:      st.kind,
			From:      c.legs[l].role,
			Zone:      c.legs[l].zone,
			Codecs:    mergeCodecs(om.codecs, m.codecs),
			Encrypted: cfg.encIn,
		}
		for _, k := range cfg.info.Codecs {
			if k.PT < 128 && cfg.rates[k.PT] == 0 {
				cfg.rates[k.PT] = k.Rate
			}
		}
		if prev := d.cfg.Load(); prev != nil {
			cfg.seq = prev.seq + 1
		}
		d.cfg.Store(cfg)
		d.encrypted.Store(cfg.encIn)
		// Where the other direction sends to reach this leg.
		switch {
		case !learn:
			d.learntRTP.Store(false)
			d.learntRTCP.Store(false)
			d.rtpDst.Store(addrPtr(m.rtp))
			d.rtcpDst.Store(addrPtr(m.rtcp))
		case hold:
			if !d.learntRTP.Load() {
				d.rtpDst.Store(nil)
			}
			if !d.learntRTCP.Load() {
				d.rtcpDst.Store(nil)
			}
		default:
			if !d.learntRTP.Load() {
				d.rtpDst.Store(addrPtr(m.rtp))
			}
			if !d.learntRTCP.Load() {
				d.rtcpDst.Store(addrPtr(m.rtcp))
			}
		}
	}
}

func addrPtr(a netip.AddrPort) *netip.AddrPort {
	if !a.IsValid() {
		return nil
	}
	return &a
}

// mergeCodecs lists the payload formats of one direction: those the
// receiving leg declared (RFC 3264: the numbers it expects), then those
// only the sending leg declared under other numbers (peers that send
// with their own numbering).
func mergeCodecs(recv, send []core.Codec) []core.Codec {
	out := slices.Clone(recv)
	for _, s := range send {
		if !slices.ContainsFunc(out, func(r core.Codec) bool { return r.PT == s.PT }) {
			out = append(out, s)
		}
	}
	return out
}

// reader relays what one socket receives: the RTP socket facing a leg
// (RTP, and RTCP when multiplexed) or its RTCP socket. It owns its
// buffer, its parse state, its latch and, on the RTP port, the
// direction's guards: nothing it does per RTP packet allocates or takes
// a lock (SRTCP, drops and latching do). RTCP on its own port is checked
// by the relay (source, sanity, SRTCP, rate) but not by the guards, whose
// Check must not run on two goroutines.
type reader struct {
	c        *Call
	st       *stream
	d, peer  *dir // the direction read here; the other one (where the receiver is)
	conn     *net.UDPConn
	out      *side // the sockets facing the receiving leg
	rtcpPort bool
	buf      []byte
	pkt      core.MediaPacket
	hdr      rtp.Header
	rhdr     rtcp.Header
	guards   []core.StreamGuard
	cfg      *dirConfig
	seq      uint64
	epoch    uint64
	latched  bool
	src      netip.AddrPort
	lastSeen int64
	rx       rxStats
	pps, bps bucket
	ppsRate  int
	bpsRate  int
}

func (r *reader) run() {
	defer r.c.wg.Done()
	defer func() {
		for _, g := range r.guards {
			g.Close()
		}
	}()
	for {
		n, src, err := r.conn.ReadFromUDPAddrPort(r.buf[:maxPacket+1])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := r.c.e.now()
		if cfg := r.d.cfg.Load(); cfg != r.cfg {
			r.reload(cfg)
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		b := r.buf[:n]
		if n > maxPacket {
			r.drop(RuleMalformed, src, now, false, "oversized datagram", nil)
			continue
		}
		if r.rtcpPort {
			r.relayRTCP(b, src, now, false)
			continue
		}
		r.relayRTP(b, src, now)
	}
}

// reload takes a new configuration between two packets.
func (r *reader) reload(cfg *dirConfig) {
	if r.cfg != nil && cfg.seq != r.seq {
		info := cfg.info
		info.Codecs = slices.Clone(info.Codecs)
		for _, g := range r.guards {
			g.Renegotiate(&info)
		}
	}
	r.seq = cfg.seq
	if r.cfg == nil || cfg.epoch != r.epoch || cfg.learn != r.cfg.learn {
		r.epoch = cfg.epoch
		r.latched, r.src = false, netip.AddrPort{}
	}
	if !cfg.learn {
		r.src = cfg.expRTP
		if r.rtcpPort && !cfg.mux {
			r.src = cfg.expRTCP
		}
		r.latched = r.src.IsValid()
	}
	if cfg.pps != r.ppsRate || r.cfg == nil {
		r.pps, r.ppsRate = newBucket(cfg.pps, 1), cfg.pps
	}
	if cfg.bps != r.bpsRate || r.cfg == nil {
		r.bps, r.bpsRate = newBucket(cfg.bps, maxPacket), cfg.bps
	}
	r.cfg = cfg
}

// accepts decides on a packet's source: ok when it is the stream's
// source, candidate when it may become it once the packet proves valid.
func (r *reader) accepts(src netip.AddrPort, now int64, rtcpOnRTP bool) (ok, candidate bool) {
	cfg := r.cfg
	if r.latched && src == r.src {
		return true, false
	}
	if !cfg.learn {
		return false, false
	}
	if !r.latched {
		return r.admits(src), true
	}
	if rtcpOnRTP {
		return false, false // a move is proven by RTP
	}
	if cfg.relatch && now-r.lastSeen >= cfg.relatchAfter {
		if !r.rtcpPort {
			return r.admits(src), true
		}
		// RTCP follows where RTP went.
		if dst := r.d.rtpDst.Load(); dst != nil && dst.Addr() == src.Addr() {
			return r.admits(src), true
		}
	}
	return false, false
}

// admits asks the leg's source check (SetSourceCheck), if any, about a
// source the reader may latch.
func (r *reader) admits(src netip.AddrPort) bool {
	ok := r.st.admit[r.d.from].Load()
	return ok == nil || (*ok)(src)
}

func (r *reader) relayRTP(b []byte, src netip.AddrPort, now int64) {
	cfg := r.cfg
	if b[0]>>6 != 2 {
		why := "not rtp"
		if isForeign(b) {
			if f := r.d.foreign.Load(); f != nil && f.deliver(b, src) {
				return
			}
			why = "stun or dtls on an rtp port"
		}
		r.drop(RuleMalformed, src, now, false, why, nil)
		return
	}
	if isRTCP(b) {
		r.relayRTCP(b, src, now, true)
		return
	}
	ok, cand := r.accepts(src, now, false)
	if !ok {
		r.drop(RuleSource, src, now, true, "rtp from an unexpected source", nil)
		return
	}
	if !parseRTP(b, &r.pkt, cfg.rtpDec == nil) {
		r.drop(RuleMalformed, src, now, false, "bad rtp header", nil)
		return
	}
	if !r.pps.allow(now, 1) || !r.bps.allow(now, len(b)) {
		r.drop(RuleRate, src, now, false, "over the stream's rate", nil)
		return
	}
	wire := len(b)
	if cfg.needKeys {
		r.drop(RuleSRTP, src, now, false, "srtp keys not known yet", nil)
		return
	}
	if cfg.rtpDec != nil {
		plain, err := cfg.rtpDec.DecryptRTP(b, b, &r.hdr)
		if err != nil {
			r.drop(RuleSRTP, src, now, true, "", err)
			return
		}
		b = plain
		if !parseRTP(b, &r.pkt, true) {
			r.drop(RuleMalformed, src, now, false, "bad rtp padding", nil)
			return
		}
	}
	if cand && r.latched {
		// A move: only the stream's own SSRC, continuing its sequence.
		if !r.rx.init || r.pkt.SSRC != r.rx.ssrc || r.pkt.Seq-r.rx.max-1 >= relatchSeqWindow {
			r.drop(RuleSource, src, now, true, "rtp from a new source that does not continue the stream", nil)
			return
		}
	}
	p := &r.pkt
	p.Data, p.Src, p.RTCP, p.Now = b, src, false, now
	for _, g := range r.guards {
		if v := g.Check(p); v.Action != core.Allow {
			r.drop(v.Rule, src, now, false, v.Detail, nil)
			return
		}
	}
	if cand {
		r.latch(src)
	}
	r.lastSeen = now
	d := r.d
	d.lastRecv.Store(now)
	rate := cfg.rates[p.PT]
	r.rx.update(p.SSRC, p.Seq, p.Timestamp, rate, now)
	d.ssrc.Store(p.SSRC)
	d.rate.Store(rate)
	d.lost.Store(r.rx.lost())
	d.jitter.Store(math.Float64bits(r.rx.jitterMs()))
	fb := r.st.fb.Load()
	if fb != nil && fb.leg == d.from {
		fb.received(&r.rx)
	}
	if t := d.transform.Load(); t != nil {
		(*t).RTP(b)
		d.packets.Add(1)
		d.bytes.Add(uint64(wire))
		return
	}
	octets := len(b) - p.HeaderLen
	if cfg.rtpEnc != nil {
		sealed, err := cfg.rtpEnc.EncryptRTP(b, b, &r.hdr)
		if err != nil {
			r.drop(RuleSRTP, src, now, false, "srtp protect failed", nil)
			return
		}
		b = sealed
	}
	dst := r.peer.rtpDst.Load()
	if dst == nil {
		r.drop(RuleNoDestination, src, now, false, "", nil)
		return
	}
	if _, err := r.out.rtp.WriteToUDPAddrPort(b, *dst); err != nil {
		r.drop(RuleSend, src, now, false, "", nil)
		return
	}
	if fb != nil && fb.leg != d.from {
		// Sent to the DTLS leg: kept for its NACKs and sender reports.
		fb.sentPacket(b, p.SSRC, p.Seq, p.Timestamp, octets, now)
	}
	d.packets.Add(1)
	d.bytes.Add(uint64(wire))
}

// relayRTCP relays one (S)RTCP packet; onRTP says it came multiplexed on
// the RTP port.
func (r *reader) relayRTCP(b []byte, src netip.AddrPort, now int64, onRTP bool) {
	cfg := r.cfg
	ok, cand := r.accepts(src, now, onRTP)
	if !ok {
		r.drop(RuleSource, src, now, true, "rtcp from an unexpected source", nil)
		return
	}
	if !checkRTCP(b, cfg.rtcpDec != nil) {
		r.drop(RuleMalformed, src, now, false, "bad rtcp", nil)
		return
	}
	if !r.pps.allow(now, 1) || !r.bps.allow(now, len(b)) {
		r.drop(RuleRate, src, now, false, "over the stream's rate", nil)
		return
	}
	if cfg.needKeys {
		r.drop(RuleSRTP, src, now, false, "srtp keys not known yet", nil)
		return
	}
	wire := len(b)
	d := r.d
	d.rtcpMu.Lock()
	if cfg.rtcpDec != nil {
		plain, err := cfg.rtcpDec.DecryptRTCP(b, b, &r.rhdr)
		if err != nil {
			d.rtcpMu.Unlock()
			r.drop(RuleSRTP, src, now, true, "", err)
			return
		}
		b = plain
		if !checkRTCP(b, false) {
			d.rtcpMu.Unlock()
			r.drop(RuleMalformed, src, now, false, "bad rtcp", nil)
			return
		}
	}
	p := &r.pkt
	*p = core.MediaPacket{Data: b, Src: src, RTCP: true, Now: now}
	for _, g := range r.guards {
		if v := g.Check(p); v.Action != core.Allow {
			d.rtcpMu.Unlock()
			r.drop(v.Rule, src, now, false, v.Detail, nil)
			return
		}
	}
	if fb := r.st.fb.Load(); fb != nil && fb.leg == d.from {
		// The DTLS leg's NACKs are answered here and go no further.
		if b = fb.fromLeg(b, now); len(b) == 0 {
			d.rtcpMu.Unlock()
			if cand {
				r.latch(src)
			}
			r.lastSeen = now
			d.lastRecv.Store(now)
			return
		}
	} else if fb != nil {
		fb.otherAt.Store(now) // the other leg reports itself
	}
	// What this leg says it received is about the other direction, and
	// so is its feedback: a transform there gets it.
	if t := r.peer.transform.Load(); t != nil {
		(*t).Feedback(b)
	}
	if rep, ok := findReport(b, r.peer.ssrc.Load()); ok {
		r.peer.repLost.Store(uint64(max(rep.lost, 0)))
		if rate := r.peer.rate.Load(); rate != 0 {
			r.peer.repJitter.Store(math.Float64bits(float64(rep.jitter) * 1000 / float64(rate)))
		}
	}
	if cfg.rtcpEnc != nil {
		sealed, err := cfg.rtcpEnc.EncryptRTCP(b, b, &r.rhdr)
		if err != nil {
			d.rtcpMu.Unlock()
			r.drop(RuleSRTP, src, now, false, "srtcp protect failed", nil)
			return
		}
		b = sealed
	}
	d.rtcpMu.Unlock()
	if cand {
		r.latch(src)
	}
	r.lastSeen = now
	d.lastRecv.Store(now)
	conn, dst := r.out.rtcp, r.peer.rtcpDst.Load()
	if cfg.outMux {
		conn, dst = r.out.rtp, r.peer.rtpDst.Load()
	}
	if dst == nil {
		r.drop(RuleNoDestination, src, now, false, "", nil)
		return
	}
	if _, err := conn.WriteToUDPAddrPort(b, *dst); err != nil {
		r.drop(RuleSend, src, now, false, "", nil)
		return
	}
	d.packets.Add(1)
	d.bytes.Add(uint64(wire))
}

// latch makes src the source of what this reader receives, and the
// address the other direction sends to.
func (r *reader) latch(src netip.AddrPort) {
	r.src, r.latched = src, true
	p := src
	if r.rtcpPort {
		r.d.rtcpDst.Store(&p)
		r.d.learntRTCP.Store(true)
		return
	}
	r.d.rtpDst.Store(&p)
	r.d.learntRTP.Store(true)
}

// drop counts a refused packet under rule and, for injection (alert),
// raises a security event at most once per alertEvery per rule. Guards'
// refusals are counted, not raised: a guard raises its own events
// (rtpguard: the first drop of each rule in a stream direction).
func (r *reader) drop(rule string, src netip.AddrPort, now int64, alert bool, why string, err error) {
	if rule == "" {
		rule = "media/guard"
	}
	d := r.d
	d.dropMu.Lock()
	d.dropped[rule]++
	raise := false
	if alert && r.c.e.alerts != nil {
		last, seen := d.alerted[rule]
		if !seen || now-last >= int64(alertEvery) {
			d.alerted[rule] = now
			raise = true
		}
	}
	d.dropMu.Unlock()
	if !raise {
		return
	}
	if err != nil {
		why = srtpWhy(err)
	}
	cfg := r.cfg
	proto := "rtp"
	if cfg.encIn {
		proto = "srtp"
	}
	r.c.e.alerts.Alert(&core.SecurityEvent{
		Time:     time.Now(),
		Rule:     rule,
		Action:   "drop",
		Src:      src.String(),
		Zone:     cfg.zone,
		Session:  cfg.session,
		Protocol: proto,
		Detail:   fmt.Sprintf("%s stream %d from the %s: %s", cfg.kind, cfg.index, cfg.role, why),
	})
}

// srtpWhy names an unprotect failure without quoting anything secret.
func srtpWhy(err error) string {
	switch {
	case errors.Is(err, srtp.ErrFailedToVerifyAuthTag):
		return "srtp authentication failed"
	case strings.Contains(err.Error(), "duplicated"):
		return "srtp replay"
	}
	return "srtp undecryptable"
}

// stats returns the direction's figures.
func (d *dir) stats(st *stream, role string) core.MediaStats {
	ms := core.MediaStats{
		Index:            st.index,
		Type:             st.kind,
		From:             role,
		Packets:          d.packets.Load(),
		Bytes:            d.bytes.Load(),
		Lost:             d.lost.Load(),
		JitterMs:         math.Float64frombits(d.jitter.Load()),
		ReportedLost:     d.repLost.Load(),
		ReportedJitterMs: math.Float64frombits(d.repJitter.Load()),
		Encrypted:        d.encrypted.Load(),
	}
	d.dropMu.Lock()
	if len(d.dropped) > 0 {
		ms.Dropped = make(map[string]uint64, len(d.dropped))
		for k, v := range d.dropped {
			ms.Dropped[k] = v
		}
	}
	d.dropMu.Unlock()
	return ms
}
