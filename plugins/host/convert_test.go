package host

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

func TestEventFrom(t *testing.T) {
	ok := &pb.Event{Kind: pb.Kind_MESSAGE, Method: "PRIVMSG", Src: &pb.Source{Addr: "127.0.0.1:6667", Transport: "tcp"},
		From: &pb.Identity{User: "bob", Domain: "IRC.example.com"}, To: &pb.Identity{User: "alice", Domain: "example.com"}, Body: "hi"}
	ev, err := EventFrom(ok, "irc", time.Now())
	if err != nil || ev.Kind != core.KindMessage || ev.From.Domain != "irc.example.com" || ev.Protocol != "irc" {
		t.Fatalf("%+v %v", ev, err)
	}
	for name, bad := range map[string]func(e *pb.Event){
		"kind":       func(e *pb.Event) { e.Kind = 99 },
		"user space": func(e *pb.Event) { e.From.User = "a b" },
		"user ctl":   func(e *pb.Event) { e.To.User = "a\r\nb" },
		"domain":     func(e *pb.Event) { e.To.Domain = "exa mple" },
		"no to":      func(e *pb.Event) { e.To = nil },
		"addr":       func(e *pb.Event) { e.Src.Addr = "nowhere" },
		"body utf8":  func(e *pb.Event) { e.Body = "\xff" },
		"body size":  func(e *pb.Event) { e.Body = strings.Repeat("x", maxBody+1) },
		"ctype":      func(e *pb.Event) { e.ContentType = "text" },
		"method":     func(e *pb.Event) { e.Method = "A B" },
	} {
		e := proto.Clone(ok).(*pb.Event)
		bad(e)
		if _, err := EventFrom(e, "irc", time.Now()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestVerdictFrom(t *testing.T) {
	for _, tc := range []struct {
		in     *pb.Verdict
		action core.Action
		reason core.Reason
		rule   string
	}{
		{&pb.Verdict{}, core.Allow, core.ReasonNone, ""},
		{&pb.Verdict{Action: pb.Action_REFUSE, Reason: "rate_limited", Rule: "score"}, core.Refuse, core.ReasonRateLimited, "plugins/x/score"},
		{&pb.Verdict{Action: pb.Action_REFUSE, Reason: "bogus", Rule: "a\nb"}, core.Refuse, core.ReasonForbidden, "plugins/x/verdict"},
		{&pb.Verdict{Action: pb.Action_CHALLENGE}, core.Refuse, core.ReasonInternal, "plugins/x/bad_verdict"},
		{&pb.Verdict{Action: 42}, core.Refuse, core.ReasonInternal, "plugins/x/bad_verdict"},
	} {
		v := VerdictFrom(tc.in, "x")
		if v.Action != tc.action || v.Reason != tc.reason || v.Rule != tc.rule {
			t.Errorf("%v -> %+v", tc.in, v)
		}
	}
}

// FuzzEventFrom decodes arbitrary bytes as a plugin's event and converts
// it: no panic, and what is accepted is bounded and printable.
func FuzzEventFrom(f *testing.F) {
	seed := &pb.Event{Kind: pb.Kind_MESSAGE, Method: "PRIVMSG", Src: &pb.Source{Addr: "127.0.0.1:6667"},
		From: &pb.Identity{User: "bob", Domain: "irc.example.com"}, To: &pb.Identity{User: "alice", Domain: "example.com"}, Body: "hi",
		Media: &pb.MediaDesc{Streams: []*pb.Stream{{Type: "audio", Addr: "[::1]:4000", Codecs: []*pb.Codec{{Pt: 0, Name: "PCMU", Rate: 8000}}}}}}
	b, _ := proto.Marshal(seed)
	f.Add(b)
	b, _ = proto.Marshal(&pb.Event{Kind: pb.Kind_PRESENCE, From: seed.From, To: seed.To, Presence: &pb.Presence{Kind: "update", Available: true}})
	f.Add(b)
	b, _ = proto.Marshal(&pb.Verdict{Action: pb.Action_REFUSE, Reason: "forbidden", Rule: "r"})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev pb.Event
		if proto.Unmarshal(data, &ev) == nil {
			if ce, err := EventFrom(&ev, "irc", time.Now()); err == nil {
				if len(ce.From.User) > maxUser || len(ce.To.Domain) > maxDomain || !utf8.ValidString(ce.Method) {
					t.Fatalf("unbounded: %+v", ce)
				}
				if ce.Media != nil && len(ce.Media.Streams) > maxStreams {
					t.Fatal("too many streams")
				}
				if ce.Kind == core.KindMessage {
					_ = MessageFrom(&ev, ce)
				}
				if ce.Kind == core.KindPresence {
					_ = PresenceFrom(&ev, ce)
				}
			}
		}
		var v pb.Verdict
		if proto.Unmarshal(data, &v) == nil {
			cv := VerdictFrom(&v, "x")
			if cv.Action != core.Allow && !strings.HasPrefix(cv.Rule, "plugins/x/") {
				t.Fatalf("rule %q escapes the plugin's prefix", cv.Rule)
			}
			if len(cv.Rule) > 80 || len(cv.Detail) > maxShort {
				t.Fatalf("unbounded verdict %+v", cv)
			}
		}
	})
}

// TestSafe: what a plugin says of itself reaches `ucgate plugins` and the
// log without control characters (a terminal escape sequence, a line end
// forging a row) or invalid UTF-8, and bounded.
func TestSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ucgate-irc", "ucgate-irc"},
		{"evil\x1b[2J\x1b]0;owned\x07", "evil?[2J?]0;owned?"},
		{"a\r\nfraud  stage  v1", "a??fraud  stage  v1"},
		{"caf\xc3\xa9 \xff\xfe", "café ?"}, // a run of invalid bytes is one ?
		{"x\u0085y", "x?y"},
		{strings.Repeat("é", 40), strings.Repeat("é", 32)},
	} {
		if got := safe(tc.in, 64); got != tc.want {
			t.Errorf("safe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
