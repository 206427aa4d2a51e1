package host

import (
	"errors"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// Bounds on the fields of an event from a plugin, beyond the message size.
const (
	maxUser        = 256
	maxDisplay     = 128
	maxDomain      = 253
	maxMethod      = 32
	maxBody        = 32 << 10
	maxContentType = 128
	maxShort       = 128 // zone, transport, show, status, reason, rule, detail
	maxStreams     = 16
	maxCodecs      = 32
)

// errMalformed is why an event from a plugin was refused: the message
// names the field, never quotes it.
type errMalformed string

func (e errMalformed) Error() string { return "plugin event: bad " + string(e) }

var errKind = errors.New("plugin event: unknown kind")

// printable reports whether s is valid UTF-8 of at most max bytes with no
// control characters.
func printable(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return false
		}
	}
	return true
}

// identityFrom converts a plugin's identity: user without spaces, @ or
// controls; domain a host name.
func identityFrom(id *pb.Identity, field string) (core.Identity, error) {
	if id == nil {
		return core.Identity{}, errMalformed(field)
	}
	u, d := id.GetUser(), strings.ToLower(id.GetDomain())
	if !printable(id.GetDisplay(), maxDisplay) || !printable(u, maxUser) || strings.ContainsAny(u, " @<>\"") {
		return core.Identity{}, errMalformed(field)
	}
	if d == "" || len(d) > maxDomain || !domainRE.MatchString(d) {
		return core.Identity{}, errMalformed(field)
	}
	return core.Identity{Display: id.GetDisplay(), User: u, Domain: d}, nil
}

// sourceFrom converts a plugin's source; an empty address is allowed
// (zero), a malformed one is not.
func sourceFrom(s *pb.Source) (core.Source, error) {
	var out core.Source
	if s == nil {
		return out, nil
	}
	if a := s.GetAddr(); a != "" {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return out, errMalformed("src.addr")
		}
		out.Addr = ap
	}
	if !printable(s.GetTransport(), 16) || !printable(s.GetZone(), maxShort) {
		return out, errMalformed("src")
	}
	out.Transport, out.Encrypted, out.Zone = s.GetTransport(), s.GetEncrypted(), s.GetZone()
	return out, nil
}

var kindOf = map[pb.Kind]core.Kind{
	pb.Kind_SESSION_OFFER:  core.KindSessionOffer,
	pb.Kind_SESSION_ANSWER: core.KindSessionAnswer,
	pb.Kind_SESSION_UPDATE: core.KindSessionUpdate,
	pb.Kind_SESSION_END:    core.KindSessionEnd,
	pb.Kind_MESSAGE:        core.KindMessage,
	pb.Kind_PRESENCE:       core.KindPresence,
	pb.Kind_REGISTER:       core.KindRegister,
}

var presenceOf = map[string]core.PresenceKind{
	"update": core.PresenceUpdate, "subscribe": core.PresenceSubscribe, "subscribed": core.PresenceSubscribed,
	"unsubscribe": core.PresenceUnsubscribe, "unsubscribed": core.PresenceUnsubscribed, "probe": core.PresenceProbe,
}

// EventFrom converts an event a plugin sent into a core event, checking
// every field; protocol is the plugin's configured protocol name (a
// plugin cannot claim to be "sip"). It never panics, whatever ev holds.
func EventFrom(ev *pb.Event, protocol string, now time.Time) (*core.Event, error) {
	k, ok := kindOf[ev.GetKind()]
	if !ok {
		return nil, errKind
	}
	out := &core.Event{Kind: k, Protocol: protocol, Time: now, Size: int(min(ev.GetSize(), 1<<24))}
	m := ev.GetMethod()
	if m == "" {
		m = strings.ToUpper(k.String())
	}
	if !printable(m, maxMethod) || strings.ContainsAny(m, " ") {
		return nil, errMalformed("method")
	}
	out.Method = m
	var err error
	if out.Src, err = sourceFrom(ev.GetSrc()); err != nil {
		return nil, err
	}
	if out.From, err = identityFrom(ev.GetFrom(), "from"); err != nil {
		return nil, err
	}
	if k != core.KindRegister || ev.GetTo() != nil {
		if out.To, err = identityFrom(ev.GetTo(), "to"); err != nil {
			return nil, err
		}
		out.Target = out.To.String()
	}
	if !printable(ev.GetSession(), 64) {
		return nil, errMalformed("session")
	}
	out.Session = core.SessionID(ev.GetSession())
	if md := ev.GetMedia(); md != nil {
		if out.Media, err = mediaFrom(md); err != nil {
			return nil, err
		}
	}
	switch k {
	case core.KindMessage:
		if len(ev.GetBody()) > maxBody || !utf8.ValidString(ev.GetBody()) {
			return nil, errMalformed("body")
		}
		if ct := ev.GetContentType(); !printable(ct, maxContentType) || (ct != "" && !strings.Contains(ct, "/")) {
			return nil, errMalformed("content_type")
		}
	case core.KindPresence:
		p := ev.GetPresence()
		if p == nil {
			return nil, errMalformed("presence")
		}
		if _, ok := presenceOf[p.GetKind()]; !ok {
			return nil, errMalformed("presence.kind")
		}
		if !printable(p.GetShow(), 8) || !printable(p.GetStatus(), maxShort) {
			return nil, errMalformed("presence")
		}
	case core.KindSessionEnd:
		if !printable(ev.GetReason(), maxShort) {
			return nil, errMalformed("reason")
		}
	}
	return out, nil
}

func mediaFrom(md *pb.MediaDesc) (*core.MediaDesc, error) {
	if len(md.GetStreams()) > maxStreams {
		return nil, errMalformed("media")
	}
	out := &core.MediaDesc{Streams: make([]core.Stream, 0, len(md.GetStreams()))}
	for _, s := range md.GetStreams() {
		st := core.Stream{Type: s.GetType(), Protocol: s.GetProtocol(), Direction: s.GetDirection(), Disabled: s.GetDisabled()}
		if !printable(st.Type, 16) || !printable(st.Protocol, 32) || !printable(st.Direction, 16) {
			return nil, errMalformed("media")
		}
		if a := s.GetAddr(); a != "" {
			ap, err := netip.ParseAddrPort(a)
			if err != nil {
				return nil, errMalformed("media.addr")
			}
			st.Addr = ap
		}
		if len(s.GetCodecs()) > maxCodecs {
			return nil, errMalformed("media.codecs")
		}
		for _, c := range s.GetCodecs() {
			if c.GetPt() > 127 || c.GetChannels() > 255 || !printable(c.GetName(), 32) || !printable(c.GetParams(), 256) {
				return nil, errMalformed("media.codecs")
			}
			st.Codecs = append(st.Codecs, core.Codec{PT: uint8(c.GetPt()), Name: c.GetName(), Rate: c.GetRate(),
				Channels: uint8(c.GetChannels()), Params: c.GetParams()})
		}
		if s.GetEncrypted() {
			st.Fingerprint = "plugin" // protected by the plugin's own means
		}
		out.Streams = append(out.Streams, st)
	}
	return out, nil
}

// MessageFrom builds the core message of a converted MESSAGE event.
func MessageFrom(ev *pb.Event, ce *core.Event) *core.Message {
	return &core.Message{ID: clip(ev.GetMethod()+"-"+ev.GetSession(), 64), From: ce.From, To: ce.To, Body: ev.GetBody(),
		ContentType: ev.GetContentType(), Src: ce.Src, Time: ce.Time, Session: ce.Session}
}

// PresenceFrom builds the core presence of a converted PRESENCE event.
func PresenceFrom(ev *pb.Event, ce *core.Event) *core.Presence {
	p := ev.GetPresence()
	return &core.Presence{Kind: presenceOf[p.GetKind()], From: ce.From, To: ce.To, Available: p.GetAvailable(),
		Show: p.GetShow(), Status: p.GetStatus(), Src: ce.Src, Time: ce.Time}
}

var reasonByName = func() map[string]core.Reason {
	m := map[string]core.Reason{}
	for _, r := range core.AllReasons() {
		m[r.String()] = r
	}
	return m
}()

// VerdictFrom converts a stage plugin's verdict. The rule is prefixed
// with "plugins/<name>/" so a plugin cannot pose as another stage; an
// action or reason the host does not know refuses (fail closed).
func VerdictFrom(v *pb.Verdict, name string) core.Verdict {
	prefix := "plugins/" + name
	rule := v.GetRule()
	if !printable(rule, 64) || rule == "" {
		rule = "verdict"
	}
	out := core.Verdict{Rule: prefix + "/" + rule}
	if d := v.GetDetail(); printable(d, maxShort) {
		out.Detail = d
	}
	switch v.GetAction() {
	case pb.Action_ALLOW:
		return core.Verdict{}
	case pb.Action_REFUSE:
		out.Action = core.Refuse
	case pb.Action_DROP:
		out.Action = core.Drop
	case pb.Action_TARPIT:
		out.Action = core.Tarpit
	default: // CHALLENGE needs credentials only the gateway's auth issues
		return core.RefuseWith(core.ReasonInternal, prefix+"/bad_verdict", "")
	}
	r, ok := reasonByName[v.GetReason()]
	if !ok {
		r = core.ReasonForbidden
	}
	out.Reason = r
	return out
}

// reasonFrom maps a delivery result's reason; unknown names are
// "unavailable".
func reasonFrom(name string) core.Reason {
	if r, ok := reasonByName[name]; ok {
		return r
	}
	return core.ReasonUnavailable
}

// EventTo converts a core event for a stage plugin.
func EventTo(ev *core.Event) *pb.Event {
	out := &pb.Event{
		Kind: kindTo(ev.Kind), Method: ev.Method, Session: string(ev.Session), Protocol: ev.Protocol,
		Src:  &pb.Source{Transport: ev.Src.Transport, Encrypted: ev.Src.Encrypted, Zone: ev.Src.Zone},
		From: &pb.Identity{Display: ev.From.Display, User: ev.From.User, Domain: ev.From.Domain},
		To:   &pb.Identity{Display: ev.To.Display, User: ev.To.User, Domain: ev.To.Domain},
		Size: uint32(max(ev.Size, 0)),
	}
	if ev.Src.Addr.IsValid() {
		out.Src.Addr = ev.Src.Addr.String()
	}
	return out
}

func kindTo(k core.Kind) pb.Kind {
	for pk, ck := range kindOf {
		if ck == k {
			return pk
		}
	}
	return pb.Kind_KIND_UNSPECIFIED
}

// messageTo converts a core message for delivery by a protocol plugin.
func messageTo(m *core.Message) *pb.Event {
	return &pb.Event{Kind: pb.Kind_MESSAGE, Method: "MESSAGE", Session: string(m.Session),
		From: &pb.Identity{Display: m.From.Display, User: m.From.User, Domain: m.From.Domain},
		To:   &pb.Identity{Display: m.To.Display, User: m.To.User, Domain: m.To.Domain},
		Body: m.Body, ContentType: m.ContentType}
}

// presenceTo converts a core presence for delivery by a protocol plugin.
func presenceTo(p *core.Presence) *pb.Event {
	return &pb.Event{Kind: pb.Kind_PRESENCE, Method: "PRESENCE",
		From:     &pb.Identity{Display: p.From.Display, User: p.From.User, Domain: p.From.Domain},
		To:       &pb.Identity{Display: p.To.Display, User: p.To.User, Domain: p.To.Domain},
		Presence: &pb.Presence{Kind: p.Kind.String(), Available: p.Available, Show: p.Show, Status: p.Status}}
}

// safe makes text a plugin chose (its description, an error quoting its
// output) fit for a terminal and a log line: invalid UTF-8 and control
// characters (escape sequences, line ends) become '?', then it is clipped
// to n bytes. `ucgate plugins` prints it as it is.
func safe(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == utf8.RuneError {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(clip(s, 4*n), "?"))
	return clip(s, n)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
