package validate

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

// newStage builds a stage from a YAML snippet over the defaults.
func newStage(t testing.TB, yaml string, deps core.Deps) *Stage {
	t.Helper()
	cfg := Defaults()
	if _, err := config.Decode([]byte(yaml), "ucgate.yaml", &cfg); err != nil {
		t.Fatalf("decode %q: %v", yaml, err)
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// invite is a well-formed INVITE with an SDP offer, as the SIP adapter
// measures it.
func invite() *core.Event {
	return &core.Event{
		Kind: core.KindSessionOffer, Protocol: "sip", Method: "INVITE",
		Src: core.Source{Zone: "internet", Transport: "udp"},
		Shape: core.Shape{Size: 1001, Headers: 14, LongestHeader: 141, Hops: 3,
			DeclaredLength: 150, BodyLength: 150, MaxForwards: 70},
	}
}

func response() *core.Event {
	return &core.Event{
		Kind: core.KindResponse, Protocol: "sip", Method: "INVITE",
		Src:   core.Source{Zone: "trunk", Transport: "udp"},
		Shape: core.Shape{Size: 526, Headers: 8, LongestHeader: 50, Hops: 1, DeclaredLength: 154, BodyLength: 154, MaxForwards: -1},
	}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name   string
		config string
		ev     func() *core.Event
		action core.Action
		reason core.Reason
		rule   string
		detail string
	}{
		{"well-formed invite", "", invite, core.Allow, 0, "", ""},
		{"nothing measured", "", func() *core.Event { return &core.Event{Kind: core.KindSessionOffer, Protocol: "sip"} }, core.Allow, 0, "", ""},
		{"every limit reached, none exceeded", "", func() *core.Event {
			ev := invite()
			ev.Shape = core.Shape{Size: 16384, Headers: 64, LongestHeader: 2048, Hops: 16, DeclaredLength: 0, BodyLength: 0, MaxForwards: 255}
			return ev
		}, core.Allow, 0, "", ""},
		{"too large", "", func() *core.Event { ev := invite(); ev.Shape.Size = 16385; return ev },
			core.Refuse, core.ReasonTooLarge, RuleSize, "Message Too Large"},
		{"too many headers", "", func() *core.Event { ev := invite(); ev.Shape.Headers = 65; return ev },
			core.Refuse, core.ReasonMalformed, RuleHeaders, "Too Many Headers"},
		{"header too long", "", func() *core.Event { ev := invite(); ev.Shape.LongestHeader = 2049; return ev },
			core.Refuse, core.ReasonMalformed, RuleHeaderLength, "Header Too Long"},
		{"too many via", "", func() *core.Event { ev := invite(); ev.Shape.Hops = 17; return ev },
			core.Refuse, core.ReasonMalformed, RuleHops, "Too Many Via"},
		{"content-length larger than body", "", func() *core.Event { ev := invite(); ev.Shape.DeclaredLength = 9999; return ev },
			core.Refuse, core.ReasonMalformed, RuleContentLength, "Content-Length Mismatch"},
		{"content-length smaller than body", "", func() *core.Event { ev := invite(); ev.Shape.DeclaredLength = 5; return ev },
			core.Refuse, core.ReasonMalformed, RuleContentLength, "Content-Length Mismatch"},
		{"negative content-length", "", func() *core.Event { ev := invite(); ev.Shape.DeclaredLength = -999; return ev },
			core.Refuse, core.ReasonMalformed, RuleContentLength, "Invalid Content-Length"},
		{"no content-length (datagram)", "", func() *core.Event { ev := invite(); ev.Shape.DeclaredLength = -1; return ev },
			core.Allow, 0, "", ""},
		{"adapter's problem, verbatim", "", func() *core.Event {
			ev := invite()
			ev.Shape.Problems = []string{"CSeq Method Mismatch", "Missing Call-ID"}
			return ev
		}, core.Refuse, core.ReasonMalformed, RuleProtocol, "CSeq Method Mismatch"},
		{"problem phrase cleaned", "", func() *core.Event {
			ev := invite()
			ev.Shape.Problems = []string{"Invalid\r\nRequest-URI\x00 " + strings.Repeat("x", 100)}
			return ev
		}, core.Refuse, core.ReasonMalformed, RuleProtocol, "InvalidRequest-URI " + strings.Repeat("x", 45)},
		{"empty problem phrase", "", func() *core.Event { ev := invite(); ev.Shape.Problems = []string{"\x01"}; return ev },
			core.Refuse, core.ReasonMalformed, RuleProtocol, "Bad Request"},
		{"missing max-forwards", "", func() *core.Event { ev := invite(); ev.Shape.MaxForwards = -1; return ev },
			core.Refuse, core.ReasonMalformed, RuleMaxForwards, "Missing Max-Forwards"},
		{"max-forwards over 255", "", func() *core.Event { ev := invite(); ev.Shape.MaxForwards = 300; return ev },
			core.Refuse, core.ReasonMalformed, RuleMaxForwards, "Invalid Max-Forwards"},
		{"max-forwards below -1", "", func() *core.Event { ev := invite(); ev.Shape.MaxForwards = -7; return ev },
			core.Refuse, core.ReasonMalformed, RuleMaxForwards, "Invalid Max-Forwards"},
		{"max-forwards zero is the adapter's 483", "", func() *core.Event { ev := invite(); ev.Shape.MaxForwards = 0; return ev },
			core.Allow, 0, "", ""},
		{"no max-forwards in xmpp", "", func() *core.Event {
			ev := invite()
			ev.Protocol, ev.Shape.MaxForwards = "xmpp", -1
			return ev
		}, core.Allow, 0, "", ""},
		{"max-forwards not required", "require_max_forwards: []", func() *core.Event { ev := invite(); ev.Shape.MaxForwards = -1; return ev },
			core.Allow, 0, "", ""},
		{"max-forwards required in xmpp too", "require_max_forwards: [sip, xmpp]", func() *core.Event {
			ev := invite()
			ev.Protocol, ev.Shape.MaxForwards = "xmpp", -1
			return ev
		}, core.Refuse, core.ReasonMalformed, RuleMaxForwards, "Missing Max-Forwards"},
		{"size checked before the rest", "", func() *core.Event {
			ev := invite()
			ev.Shape = core.Shape{Size: 1 << 20, Headers: 1000, Hops: 100, DeclaredLength: 3, MaxForwards: -1, Problems: []string{"Missing Call-ID"}}
			return ev
		}, core.Refuse, core.ReasonTooLarge, RuleSize, "Message Too Large"},
		{"bounds before the adapter's problems", "", func() *core.Event {
			ev := invite()
			ev.Shape.Hops, ev.Shape.Problems = 40, []string{"Missing Call-ID"}
			return ev
		}, core.Refuse, core.ReasonMalformed, RuleHops, "Too Many Via"},
		{"good response", "", response, core.Allow, 0, "", ""},
		{"response needs no max-forwards", "require_max_forwards: [sip]", response, core.Allow, 0, "", ""},
		{"response with too many headers is dropped", "", func() *core.Event { ev := response(); ev.Shape.Headers = 500; return ev },
			core.Drop, 0, RuleResponse, "Too Many Headers"},
		{"response with a bad status is dropped", "", func() *core.Event {
			ev := response()
			ev.Shape.Problems = []string{"Invalid Status Code"}
			return ev
		}, core.Drop, 0, RuleResponse, "Invalid Status Code"},
		{"response content-length mismatch is dropped", "", func() *core.Event { ev := response(); ev.Shape.BodyLength = 0; return ev },
			core.Drop, 0, RuleResponse, "Content-Length Mismatch"},
		{"zone raises a limit", "zones: {trunk: {max_header_length: 8192}}", func() *core.Event {
			ev := invite()
			ev.Src.Zone, ev.Shape.LongestHeader = "trunk", 5000
			return ev
		}, core.Allow, 0, "", ""},
		{"zone's limit stays in its zone", "zones: {trunk: {max_header_length: 8192}}", func() *core.Event {
			ev := invite()
			ev.Shape.LongestHeader = 5000
			return ev
		}, core.Refuse, core.ReasonMalformed, RuleHeaderLength, "Header Too Long"},
		{"zone keeps what it does not override", "zones: {trunk: {max_header_length: 8192}}", func() *core.Event {
			ev := invite()
			ev.Src.Zone, ev.Shape.Hops = "trunk", 17
			return ev
		}, core.Refuse, core.ReasonMalformed, RuleHops, "Too Many Via"},
		{"zone lowers a limit", "zones: {internet: {max_size: 4096}}", func() *core.Event { ev := invite(); ev.Shape.Size = 5000; return ev },
			core.Refuse, core.ReasonTooLarge, RuleSize, "Message Too Large"},
		{"zone drops the max-forwards requirement", "zones: {lab: {require_max_forwards: []}}", func() *core.Event {
			ev := invite()
			ev.Src.Zone, ev.Shape.MaxForwards = "lab", -1
			return ev
		}, core.Allow, 0, "", ""},
		{"disabled", "enabled: false", func() *core.Event {
			ev := invite()
			ev.Shape = core.Shape{Size: 1 << 20, Headers: 1000, DeclaredLength: -5, MaxForwards: -1}
			return ev
		}, core.Allow, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStage(t, tt.config, core.Deps{})
			v, err := s.Decide(context.Background(), tt.ev())
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if v.Action != tt.action || v.Reason != tt.reason || v.Rule != tt.rule || v.Detail != tt.detail {
				t.Errorf("verdict = %v %v %q %q, want %v %v %q %q",
					v.Action, v.Reason, v.Rule, v.Detail, tt.action, tt.reason, tt.rule, tt.detail)
			}
		})
	}
}

func TestStageContract(t *testing.T) {
	s := newStage(t, "", core.Deps{})
	if s.Name() != "validate" || s.Layer() != core.Application {
		t.Errorf("Name, Layer = %q, %v", s.Name(), s.Layer())
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := Defaults()
	cfg.MaxHops = 0
	_, err := New(cfg, core.Deps{})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("New: %v, want ErrConfig", err)
	}
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Path != "max_hops" {
		t.Errorf("New: %v, want a FieldError on max_hops", err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newStage(t, "", core.Deps{Metrics: reg})
	// A reload builds a second stage on the same registry: it must share
	// the counters, not fail.
	s2 := newStage(t, "", core.Deps{Metrics: reg})
	big := invite()
	big.Shape.Size = 1 << 20
	bad := response()
	bad.Shape.Hops = 100
	for _, ev := range []*core.Event{big, big, bad, invite()} {
		s.Decide(context.Background(), ev)
	}
	s2.Decide(context.Background(), big)
	if got := counter(t, reg, "ucgate_validate_failures_total", RuleSize); got != 3 {
		t.Errorf("failures{rule=%q} = %v, want 3", RuleSize, got)
	}
	if got := counter(t, reg, "ucgate_validate_failures_total", RuleResponse); got != 1 {
		t.Errorf("failures{rule=%q} = %v, want 1", RuleResponse, got)
	}
	if got := counter(t, reg, "ucgate_validate_failures_total", RuleHops); got != 0 {
		t.Errorf("failures{rule=%q} = %v, want 0", RuleHops, got)
	}
}

// counter reads the counter name{rule=rule} from reg.
func counter(t *testing.T, reg *prometheus.Registry, name, rule string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "rule" && l.GetValue() == rule {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func BenchmarkDecide(b *testing.B) {
	s := newStage(b, "zones: {trunk: {max_header_length: 8192}}", core.Deps{Metrics: prometheus.NewRegistry()})
	good, bad := invite(), invite()
	bad.Shape.Problems = []string{"CSeq Method Mismatch"}
	ctx := context.Background()
	b.Run("allow", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if v, _ := s.Decide(ctx, good); v.Action != core.Allow {
				b.Fatal(v)
			}
		}
	})
	b.Run("refuse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if v, _ := s.Decide(ctx, bad); v.Action != core.Refuse {
				b.Fatal(v)
			}
		}
	})
}
