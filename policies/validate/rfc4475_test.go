package validate

import (
	"context"
	"testing"

	"github.com/ucgate/ucgate/core"
)

// TestTorture runs RFC 4475's torture messages, named by their file in the
// RFC, as the facts a lenient SIP parser measures of them: sizes, counts
// and lengths were measured on the messages themselves (sipgo's copy of
// the corpus); Problems are what the adapter reports of rules a limit
// cannot see. A row where the stage is stricter than the RFC says why.
func TestTorture(t *testing.T) {
	req := func(kind core.Kind, sh core.Shape) core.Event {
		return core.Event{Kind: kind, Protocol: "sip", Src: core.Source{Zone: "internet"}, Shape: sh}
	}
	res := func(sh core.Shape) core.Event {
		return core.Event{Kind: core.KindResponse, Protocol: "sip", Src: core.Source{Zone: "trunk"}, Shape: sh}
	}
	tests := []struct {
		name   string
		note   string
		config string
		ev     core.Event
		action core.Action
		rule   string
		detail string
	}{
		// Valid messages (RFC 4475 section 3.1.1).
		{"wsinv", "short tortuous INVITE", "",
			req(core.KindSessionOffer, core.Shape{Size: 1001, Headers: 14, LongestHeader: 141, Hops: 3, DeclaredLength: 150, BodyLength: 150, MaxForwards: 68}),
			core.Allow, "", ""},
		{"intmeth", "wide range of valid characters; Max-Forwards 255 is the top of the range", "",
			req(core.KindOther, core.Shape{Size: 641, Headers: 8, LongestHeader: 126, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: 255}),
			core.Allow, "", ""},
		{"esc01", "valid use of the % escaping mechanism", "",
			req(core.KindSessionOffer, core.Shape{Size: 543, Headers: 9, LongestHeader: 72, Hops: 1, DeclaredLength: 150, BodyLength: 150, MaxForwards: 87}),
			core.Allow, "", ""},
		{"escnull", "escaped nulls in URIs", "",
			req(core.KindRegister, core.Shape{Size: 359, Headers: 9, LongestHeader: 54, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: 70}),
			core.Allow, "", ""},
		{"esc02", "use of % when it is not an escape", "",
			req(core.KindOther, core.Shape{Size: 439, Headers: 10, LongestHeader: 61, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: 70}),
			core.Allow, "", ""},
		{"lwsdisp", "message with no LWS between display name and <", "",
			req(core.KindProbe, core.Shape{Size: 255, Headers: 7, LongestHeader: 54, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: 70}),
			core.Allow, "", ""},
		{"longreq", "long values in header fields: 34 Via values; the RFC says process it, the edge refuses more than max_hops", "",
			req(core.KindSessionOffer, core.Shape{Size: 3515, Headers: 43, LongestHeader: 593, Hops: 34, DeclaredLength: 150, BodyLength: 150, MaxForwards: 70}),
			core.Refuse, RuleHops, "Too Many Via"},
		{"longreq, max_hops raised", "the same message where the operator allows long Via chains", "max_hops: 64",
			req(core.KindSessionOffer, core.Shape{Size: 3515, Headers: 43, LongestHeader: 593, Hops: 34, DeclaredLength: 150, BodyLength: 150, MaxForwards: 70}),
			core.Allow, "", ""},
		{"dblreq over a stream", "extra trailing octets: framing by Content-Length makes the second request a message of its own", "",
			req(core.KindRegister, core.Shape{Size: 300, Headers: 8, LongestHeader: 53, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: 8}),
			core.Allow, "", ""},
		{"dblreq in one datagram", "RFC 3261 18.3 discards the extra octets; this stage holds Content-Length to the datagram's body", "",
			req(core.KindRegister, core.Shape{Size: 750, Headers: 8, LongestHeader: 53, Hops: 1, DeclaredLength: 0, BodyLength: 450, MaxForwards: 8}),
			core.Refuse, RuleContentLength, "Content-Length Mismatch"},
		{"semiuri", "semicolon-separated parameters in URI user part", "",
			req(core.KindProbe, core.Shape{Size: 380, Headers: 8, LongestHeader: 112, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: 3}),
			core.Allow, "", ""},
		{"transports", "varied and unknown transport types: 5 Via values", "",
			req(core.KindProbe, core.Shape{Size: 503, Headers: 12, LongestHeader: 58, Hops: 5, DeclaredLength: 0, BodyLength: 0, MaxForwards: 70}),
			core.Allow, "", ""},
		{"mpart01", "multipart MIME message", "",
			req(core.KindMessage, core.Shape{Size: 1293, Headers: 14, LongestHeader: 182, Hops: 1, DeclaredLength: 553, BodyLength: 553, MaxForwards: 70}),
			core.Allow, "", ""},
		{"unreason", "unusual reason phrase", "",
			res(core.Shape{Size: 526, Headers: 8, LongestHeader: 50, Hops: 1, DeclaredLength: 154, BodyLength: 154, MaxForwards: -1}),
			core.Allow, "", ""},
		{"noreason", "empty reason phrase", "",
			res(core.Shape{Size: 274, Headers: 7, LongestHeader: 52, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: -1}),
			core.Allow, "", ""},

		// Invalid messages (RFC 4475 section 3.1.2) and the application
		// layer and backward compatibility cases (sections 3.3 and 3.4).
		{"clerr", "Content-Length larger than the message", "",
			req(core.KindSessionOffer, core.Shape{Size: 498, Headers: 9, LongestHeader: 61, Hops: 1, DeclaredLength: 9999, BodyLength: 154, MaxForwards: 80}),
			core.Refuse, RuleContentLength, "Content-Length Mismatch"},
		{"ncl", "negative Content-Length", "",
			req(core.KindSessionOffer, core.Shape{Size: 486, Headers: 9, LongestHeader: 47, Hops: 1, DeclaredLength: -999, BodyLength: 152, MaxForwards: 254}),
			core.Refuse, RuleContentLength, "Invalid Content-Length"},
		{"mcl01", "multiple Content-Length values; the first (5) is not the body's length", "",
			req(core.KindProbe, core.Shape{Size: 382, Headers: 9, LongestHeader: 55, Hops: 1, DeclaredLength: 5, BodyLength: 67, MaxForwards: 60}),
			core.Refuse, RuleContentLength, "Content-Length Mismatch"},
		{"scalar02", "Max-Forwards 300 is out of range", "",
			req(core.KindRegister, core.Shape{Size: 476, Headers: 9, LongestHeader: 110, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: 300}),
			core.Refuse, RuleMaxForwards, "Invalid Max-Forwards"},
		{"insuf", "missing required header fields: the adapter's finding comes first", "",
			req(core.KindSessionOffer, core.Shape{Size: 304, Headers: 4, LongestHeader: 51, Hops: 1, DeclaredLength: 152, BodyLength: 152, MaxForwards: -1,
				Problems: []string{"Missing Call-ID", "Missing From"}}),
			core.Refuse, RuleProtocol, "Missing Call-ID"},
		{"insuf, adapter silent", "without the adapter's findings the missing Max-Forwards still refuses it", "",
			req(core.KindSessionOffer, core.Shape{Size: 304, Headers: 4, LongestHeader: 51, Hops: 1, DeclaredLength: 152, BodyLength: 152, MaxForwards: -1}),
			core.Refuse, RuleMaxForwards, "Missing Max-Forwards"},
		{"mismatch01", "method mismatch in start line and CSeq", "",
			req(core.KindProbe, core.Shape{Size: 236, Headers: 7, LongestHeader: 53, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: 6,
				Problems: []string{"CSeq Method Mismatch"}}),
			core.Refuse, RuleProtocol, "CSeq Method Mismatch"},
		{"ltgtruri", "<> enclosing the Request-URI", "",
			req(core.KindSessionOffer, core.Shape{Size: 452, Headers: 9, LongestHeader: 39, Hops: 1, DeclaredLength: 159, BodyLength: 159, MaxForwards: 23,
				Problems: []string{"Invalid Request-URI"}}),
			core.Refuse, RuleProtocol, "Invalid Request-URI"},
		{"quotbal", "unterminated quoted string in display name", "",
			req(core.KindSessionOffer, core.Shape{Size: 485, Headers: 9, LongestHeader: 57, Hops: 1, DeclaredLength: 152, BodyLength: 152, MaxForwards: 10,
				Problems: []string{"Invalid From"}}),
			core.Refuse, RuleProtocol, "Invalid From"},
		{"inv2543", "RFC 2543 INVITE without Max-Forwards or Content-Length: refused by require_max_forwards", "",
			req(core.KindSessionOffer, core.Shape{Size: 445, Headers: 7, LongestHeader: 59, Hops: 1, DeclaredLength: -1, BodyLength: 105, MaxForwards: -1}),
			core.Refuse, RuleMaxForwards, "Missing Max-Forwards"},
		{"inv2543, compatibility zone", "a zone of old equipment may waive Max-Forwards", "zones: {internet: {require_max_forwards: []}}",
			req(core.KindSessionOffer, core.Shape{Size: 445, Headers: 7, LongestHeader: 59, Hops: 1, DeclaredLength: -1, BodyLength: 105, MaxForwards: -1}),
			core.Allow, "", ""},
		{"zeromf", "Max-Forwards 0 is well formed; the adapter answers 483 where it would forward", "",
			req(core.KindProbe, core.Shape{Size: 272, Headers: 7, LongestHeader: 59, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: 0}),
			core.Allow, "", ""},
		{"bigcode", "response with an overlarge status code: dropped, never answered", "",
			res(core.Shape{Size: 332, Headers: 7, LongestHeader: 57, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: -1,
				Problems: []string{"Invalid Status Code"}}),
			core.Drop, RuleResponse, "Invalid Status Code"},
		{"scalarlg", "response with overlarge scalar field values", "",
			res(core.Shape{Size: 385, Headers: 8, LongestHeader: 83, Hops: 1, DeclaredLength: 0, BodyLength: 0, MaxForwards: -1,
				Problems: []string{"Invalid CSeq"}}),
			core.Drop, RuleResponse, "Invalid CSeq"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStage(t, tt.config, core.Deps{})
			ev := tt.ev
			v, err := s.Decide(context.Background(), &ev)
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != tt.action || v.Rule != tt.rule || v.Detail != tt.detail {
				t.Errorf("%s: verdict = %v %q %q, want %v %q %q", tt.note, v.Action, v.Rule, v.Detail, tt.action, tt.rule, tt.detail)
			}
		})
	}
}
