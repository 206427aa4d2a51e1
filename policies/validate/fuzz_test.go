package validate

import (
	"context"
	"slices"
	"testing"

	"github.com/ucgate/ucgate/core"
)

// FuzzDecide checks that the verdict is total over Shape values: Decide
// never panics or errs, a request is only allowed or refused and a
// response only allowed or dropped, the verdict allows exactly when a
// plain restatement of the limits does, and a refusal's phrase is short,
// printable and never empty.
func FuzzDecide(f *testing.F) {
	// Seeds: a good INVITE, RFC 4475's longreq, clerr, ncl and scalar02, a
	// bad response, and the boundaries.
	f.Add(1001, 14, 141, 3, 150, 150, 68, "", false, "sip")
	f.Add(3515, 43, 593, 34, 150, 150, 70, "", false, "sip")
	f.Add(498, 9, 61, 1, 9999, 154, 80, "", false, "sip")
	f.Add(486, 9, 47, 1, -999, 152, 254, "", false, "sip")
	f.Add(476, 9, 110, 1, 0, 0, 300, "", false, "sip")
	f.Add(332, 7, 57, 1, 0, 0, -1, "Invalid Status Code", true, "sip")
	f.Add(16384, 64, 2048, 16, -1, 0, -1, "", false, "xmpp")
	f.Add(0, 0, 0, 0, 0, 0, 0, "\x00\xff ", false, "")
	f.Add(-1, -1, -1, -1, -2, -1, -2, "CSeq Method Mismatch", false, "sip")
	s := newStage(f, "", core.Deps{})
	f.Fuzz(func(t *testing.T, size, headers, longest, hops, declared, body, maxFwd int, problem string, isResponse bool, protocol string) {
		ev := &core.Event{Kind: core.KindSessionOffer, Protocol: protocol, Shape: core.Shape{
			Size: size, Headers: headers, LongestHeader: longest, Hops: hops,
			DeclaredLength: declared, BodyLength: body, MaxForwards: maxFwd,
		}}
		if problem != "" {
			ev.Shape.Problems = []string{problem}
		}
		if isResponse {
			ev.Kind = core.KindResponse
		}
		v, err := s.Decide(context.Background(), ev)
		if err != nil {
			t.Fatalf("Decide erred: %v", err)
		}
		valid := size <= 16384 && headers <= 64 && longest <= 2048 && hops <= 16 &&
			declared >= -1 && (declared == -1 || declared == body) && problem == "" &&
			(isResponse || maxFwd >= 0 && maxFwd <= 255 || maxFwd == -1 && protocol != "sip")
		switch {
		case valid != (v.Action == core.Allow):
			t.Fatalf("shape %+v response=%v: verdict %v %q, want allowed=%v", ev.Shape, isResponse, v.Action, v.Rule, valid)
		case valid:
			return
		case isResponse && (v.Action != core.Drop || v.Rule != RuleResponse):
			t.Fatalf("bad response: verdict %v %q, want drop %q", v.Action, v.Rule, RuleResponse)
		case !isResponse && (v.Action != core.Refuse || !slices.Contains(rules[:], v.Rule) || v.Rule == RuleResponse):
			t.Fatalf("bad request: verdict %v %q, want a refusal by a validate rule", v.Action, v.Rule)
		case !isResponse && v.Reason != core.ReasonMalformed && v.Reason != core.ReasonTooLarge:
			t.Fatalf("bad request: reason %v", v.Reason)
		}
		if v.Detail == "" || len(v.Detail) > maxDetail {
			t.Fatalf("detail %q: empty or longer than %d", v.Detail, maxDetail)
		}
		for i := 0; i < len(v.Detail); i++ {
			if c := v.Detail[i]; c < 0x20 || c >= 0x7f {
				t.Fatalf("detail %q: byte %#x is not printable", v.Detail, c)
			}
		}
	})
}
