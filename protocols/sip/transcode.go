package sip

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/sdp/v3"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/media"
)

// VideoCodec is a video codec of one side of a transcoded stream: its
// payload type on that side, its name (VP8, H264), clock rate and fmtp
// parameters.
type VideoCodec struct {
	PT     uint8
	Name   string
	Rate   uint32
	Params string
}

// Transcoder carries video streams whose two sides share no codec
// through a media plugin (cmd/ucgate gives one on the plugin host when
// webrtc.transcoder names a plugin). Calls with a browser leg use it.
type Transcoder interface {
	// Available reports the plugin running: only then is an offer given
	// the codec the transcoder produces.
	Available() bool
	// Open opens one direction of stream index of session: packets in
	// codec in go in through Send, packets in codec out come back through
	// recv (rtcp: a keyframe request for the sender of the direction).
	// lost is called once when the plugin stops under the stream, with
	// the reason for the CDR ("plugin_crashed", ...).
	Open(session core.SessionID, index int, in, out VideoCodec, recv func(pkt []byte, rtcp bool), lost func(reason string)) (TranscodeStream, error)
}

// TranscodeStream is one direction open through the transcoder.
type TranscodeStream interface {
	// Send queues a copy of one packet for the plugin (rtcp: the
	// receiver's feedback about the output); it never blocks.
	Send(pkt []byte, rtcp bool)
	// Close ends the direction.
	Close()
}

// The codec the transcoder produces for each family, as offered to the
// side that has not offered it: H.264 constrained baseline in
// packetization mode 1 (what SIP video phones and browsers negotiate),
// and VP8.
var (
	offerH264 = VideoCodec{Name: "H264", Rate: 90000, Params: "profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1"}
	offerVP8  = VideoCodec{Name: "VP8", Rate: 90000}
)

// errTranscode reports a stream that needs the transcoder when it cannot
// be had (stopped between offer and answer, or refusing the stream).
var errTranscode = fmt.Errorf("sip: no common video codec (transcoding not available)")

// tcState is the transcoding of one call: what the outstanding offer was
// given, and the directions open.
type tcState struct {
	mu      sync.Mutex
	offerer int
	offered map[int]tcOffered // by m= line
	open    []TranscodeStream
	clear   []func()
}

// tcOffered is what an offer's video stream carried: the offerer's own
// transcodable codec, and the one the gateway added.
type tcOffered struct {
	own, added VideoCodec
}

// tcFamily names a codec the transcoder takes ("vp8", "h264"); "" for
// others, and for H.264 in a packetization mode other than 1.
func tcFamily(c VideoCodec) string {
	switch strings.ToLower(c.Name) {
	case "vp8":
		return "vp8"
	case "h264":
		for _, kv := range strings.Split(c.Params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			if strings.EqualFold(k, "packetization-mode") {
				if strings.TrimSpace(v) == "1" {
					return "h264"
				}
				return ""
			}
		}
		return "" // mode 0 by default (RFC 6184)
	}
	return ""
}

// videoCodecs lists a stream's codecs in format order.
func videoCodecs(m *sdp.MediaDescription) []VideoCodec {
	var out []VideoCodec
	for _, f := range m.MediaName.Formats {
		pt, err := strconv.ParseUint(f, 10, 7)
		if err != nil {
			continue
		}
		c := VideoCodec{PT: uint8(pt)}
		for _, a := range m.Attributes {
			p, rest, ok := strings.Cut(a.Value, " ")
			if !ok || p != f {
				continue
			}
			switch a.Key {
			case "rtpmap":
				name, rate, _ := strings.Cut(rest, "/")
				c.Name = strings.TrimSpace(name)
				if r, err := strconv.ParseUint(strings.TrimSpace(strings.SplitN(rate, "/", 2)[0]), 10, 32); err == nil {
					c.Rate = uint32(r)
				}
			case "fmtp":
				c.Params = strings.TrimSpace(rest)
			}
		}
		if c.Name != "" {
			out = append(out, c)
		}
	}
	return out
}

// firstOf finds the first codec of a family.
func firstOf(cs []VideoCodec, fam string) (VideoCodec, bool) {
	for _, c := range cs {
		if tcFamily(c) == fam {
			return c, true
		}
	}
	return VideoCodec{}, false
}

// freePT picks a dynamic payload type the stream does not use.
func freePT(m *sdp.MediaDescription) (uint8, bool) {
	for pt := 127; pt >= 96; pt-- {
		if !slices.Contains(m.MediaName.Formats, strconv.Itoa(pt)) {
			return uint8(pt), true
		}
	}
	return 0, false
}

// setFormats makes c the only format of m, dropping the rtpmap, fmtp and
// rtcp-fb lines of the others.
func setFormats(m *sdp.MediaDescription, keep []string, add *VideoCodec) {
	attrs := m.Attributes[:0:0]
	for _, a := range m.Attributes {
		switch a.Key {
		case "rtpmap", "fmtp", "rtcp-fb":
			pt, _, _ := strings.Cut(a.Value, " ")
			if !slices.Contains(keep, pt) {
				continue
			}
		}
		attrs = append(attrs, a)
	}
	m.MediaName.Formats = slices.Clone(keep)
	if add != nil {
		pt := strconv.Itoa(int(add.PT))
		m.MediaName.Formats = append(m.MediaName.Formats, pt)
		attrs = append(attrs, sdp.NewAttribute("rtpmap", fmt.Sprintf("%s %s/%d", pt, add.Name, add.Rate)))
		if add.Params != "" {
			attrs = append(attrs, sdp.NewAttribute("fmtp", pt+" "+add.Params))
		}
	}
	m.Attributes = attrs
}

// tcOffer gives each video stream of an offer that carries one of VP8
// and H.264 (mode 1) the other, which the transcoder produces; it
// returns the offer and what was added, by m= line.
func tcOffer(body []byte) ([]byte, map[int]tcOffered, error) {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(string(body)); err != nil {
		return nil, nil, err
	}
	added := map[int]tcOffered{}
	for i, m := range s.MediaDescriptions {
		if m.MediaName.Media != "video" || m.MediaName.Port.Value == 0 {
			continue
		}
		cs := videoCodecs(m)
		vp8, hasVP8 := firstOf(cs, "vp8")
		h264, hasH264 := firstOf(cs, "h264")
		var own, add VideoCodec
		switch {
		case hasVP8 && !hasH264:
			own, add = vp8, offerH264
		case hasH264 && !hasVP8:
			own, add = h264, offerVP8
		default:
			continue
		}
		pt, ok := freePT(m)
		if !ok {
			continue
		}
		add.PT = pt
		setFormats(m, m.MediaName.Formats, &add)
		added[i] = tcOffered{own: own, added: add}
	}
	if len(added) == 0 {
		return body, nil, nil
	}
	out, err := s.Marshal()
	return out, added, err
}

// tcPlan is one stream to transcode: its m= line, the offerer's codec
// and the answerer's.
type tcPlan struct {
	index             int
	offerer, answerer VideoCodec
}

// tcAnswer reads an answer to an offer tcOffer changed: a video stream
// answered with a codec of the offerer's is relayed as it is (the added
// codec, if answered too, is taken out: the offerer never offered it); a
// stream answered with the added codec only is transcoded, and the
// offerer is told its own codec. It returns the answer for the offerer
// and the streams to transcode.
func tcAnswer(body []byte, offered map[int]tcOffered) ([]byte, []tcPlan, error) {
	var s sdp.SessionDescription
	if err := s.UnmarshalString(string(body)); err != nil {
		return nil, nil, err
	}
	var plans []tcPlan
	changed := false
	for i, m := range s.MediaDescriptions {
		o, ok := offered[i]
		if !ok || m.MediaName.Media != "video" || m.MediaName.Port.Value == 0 {
			continue
		}
		cs := videoCodecs(m)
		var common, addedPTs []string
		var answered VideoCodec
		found := false
		for _, c := range cs {
			switch tcFamily(c) {
			case tcFamily(o.own):
				common = append(common, strconv.Itoa(int(c.PT)))
			case tcFamily(o.added):
				addedPTs = append(addedPTs, strconv.Itoa(int(c.PT)))
				if !found {
					answered, found = c, true
				}
			}
		}
		switch {
		case len(addedPTs) == 0:
		case len(common) > 0:
			keep := slices.DeleteFunc(slices.Clone(m.MediaName.Formats), func(f string) bool { return slices.Contains(addedPTs, f) })
			setFormats(m, keep, nil)
			changed = true
		default:
			own := o.own
			setFormats(m, nil, &own)
			changed = true
			plans = append(plans, tcPlan{index: i, offerer: o.own, answerer: answered})
		}
	}
	if !changed {
		return body, nil, nil
	}
	out, err := s.Marshal()
	return out, plans, err
}

// transcodeSDP adapts a description on its way to the other side of a
// call with a browser leg: an offer is given the codec the transcoder
// produces (when it runs), and the answer to such an offer is given back
// the offerer's codec while the streams answered with the added codec
// only go through the transcoder. rtc says a browser is on one side.
func (c *call) transcodeSDP(from int, offer, rtc bool, text []byte) ([]byte, error) {
	tc := c.a.tc
	if tc == nil || !rtc {
		return text, nil
	}
	c.mu.Lock()
	st := c.tc
	if st == nil {
		st = &tcState{}
		c.tc = st
	}
	c.mu.Unlock()
	if offer {
		st.mu.Lock()
		st.offered = nil
		st.mu.Unlock()
		if !tc.Available() {
			// The offer goes on unchanged and the answerer refuses what it
			// cannot decode, as without a transcoder; the log says why.
			if _, added, err := tcOffer(text); err == nil && len(added) > 0 {
				c.a.log.Warn("video offered without transcoding: the transcoder plugin is not running", "session", c.sess.ID)
			}
			return text, nil
		}
		out, added, err := tcOffer(text)
		if err != nil || len(added) == 0 {
			return text, nil
		}
		st.mu.Lock()
		st.offerer, st.offered = from, added
		st.mu.Unlock()
		return out, nil
	}
	st.mu.Lock()
	offered, offerer := st.offered, st.offerer
	st.offered = nil
	st.mu.Unlock()
	if offered == nil || offerer != 1-from {
		return text, nil
	}
	out, plans, err := tcAnswer(text, offered)
	if err != nil {
		return nil, &errMedia{488, "Not Acceptable Here", err}
	}
	c.stopTranscode()
	for _, p := range plans {
		if err := c.startTranscode(st, offerer, p); err != nil {
			c.stopTranscode()
			c.a.log.Warn("transcoding refused", "session", c.sess.ID, "stream", p.index, "error", err)
			return nil, rtcError(fmt.Errorf("%w: %w", errTranscode, err))
		}
		c.a.log.Info("video transcoded", "session", c.sess.ID, "stream", p.index,
			"offerer", p.offerer.Name, "answerer", p.answerer.Name)
	}
	return out, nil
}

// startTranscode opens both directions of one stream through the
// transcoder and puts them on the relay.
func (c *call) startTranscode(st *tcState, offerer int, p tcPlan) error {
	dirs := []struct {
		from    int
		in, out VideoCodec
	}{
		{offerer, p.offerer, p.answerer},
		{1 - offerer, p.answerer, p.offerer},
	}
	for _, d := range dirs {
		tr := &tcTransform{pt: d.out.PT}
		lost := func(reason string) {
			c.a.log.Warn("transcoder lost", "session", c.sess.ID, "reason", reason)
			go c.terminate(core.RoleGateway, reason)
		}
		s, err := c.a.tc.Open(c.sess.ID, p.index, d.in, d.out, tr.recv, lost)
		if err != nil {
			return err
		}
		tr.s = s
		role, index := roleOf(d.from), p.index
		st.mu.Lock()
		st.open = append(st.open, s)
		st.clear = append(st.clear, func() { c.media.ClearTransform(role, index) })
		st.mu.Unlock()
		if err := c.media.SetTransform(role, index, func(o *media.TransformOut) media.Transform {
			tr.out.Store(o)
			return tr
		}); err != nil {
			return err
		}
	}
	return nil
}

// stopTranscode closes the call's transcoded directions, if any.
func (c *call) stopTranscode() {
	c.mu.Lock()
	st := c.tc
	c.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	open, clear := st.open, st.clear
	st.open, st.clear = nil, nil
	st.mu.Unlock()
	for _, f := range clear {
		f()
	}
	for _, s := range open {
		s.Close()
	}
}

// tcTransform puts one direction's RTP through the transcoder: the relay
// hands it the sender's RTP and the receiver's RTCP; what the plugin
// returns is checked (it is input too) and sent on.
type tcTransform struct {
	s   TranscodeStream
	pt  uint8 // the payload type the plugin must send
	out atomic.Pointer[media.TransformOut]
}

// RTP implements media.Transform. A packet already in the codec the
// receiver takes goes to it as it is (a sender may use any codec of the
// offer whatever its answer said: Chromium sends the offer's first).
func (t *tcTransform) RTP(pkt []byte) {
	if pkt[1]&0x7f == t.pt {
		if o := t.out.Load(); o != nil {
			o.RTP(pkt)
		}
		return
	}
	t.s.Send(pkt, false)
}

// Feedback implements media.Transform.
func (t *tcTransform) Feedback(pkt []byte) { t.s.Send(pkt, true) }

// recv takes one packet from the plugin: RTP of the output, in the
// payload type negotiated with the receiver, or RTCP for the sender
// (the relay checks that it is RTCP). The rest is dropped.
func (t *tcTransform) recv(pkt []byte, rtcp bool) {
	o := t.out.Load()
	if o == nil {
		return
	}
	if rtcp {
		o.Upstream(pkt)
		return
	}
	if len(pkt) < 12 || pkt[0]>>6 != 2 || pkt[1]&0x7f != t.pt {
		return
	}
	o.RTP(pkt)
}

// SetTranscoder gives the adapter the transcoder of video streams whose
// browser and SIP sides share no codec; call it before Start. Without
// one, such streams are not offered the other codec.
func (a *Adapter) SetTranscoder(t Transcoder) { a.tc = t }
