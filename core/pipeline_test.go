package core

import (
	"context"
	"errors"
	"testing"
)

type fakeStage struct {
	name    string
	layer   Layer
	verdict Verdict
	err     error
	open    bool
	calls   int
}

func (s *fakeStage) Name() string   { return s.name }
func (s *fakeStage) Layer() Layer   { return s.layer }
func (s *fakeStage) FailOpen() bool { return s.open }
func (s *fakeStage) Decide(context.Context, *Event) (Verdict, error) {
	s.calls++
	return s.verdict, s.err
}

type packetStage1 struct{ fakeStage }

func (s *packetStage1) DecidePacket(p *PacketMeta) Verdict {
	if p.Src.Port() == 666 {
		return Verdict{Action: Drop, Rule: "net/port"}
	}
	return Verdict{}
}

func TestPipelineOrderAndDecision(t *testing.T) {
	order := []string{"a", "b", "c"}
	tests := []struct {
		name      string
		stages    []*fakeStage
		wantStage string
		wantRule  string
		wantAct   Action
	}{
		{"all allow", []*fakeStage{{name: "b", layer: Application}, {name: "a", layer: Network}}, "", "", Allow},
		{"first refusal in order wins", []*fakeStage{
			{name: "c", layer: Application, verdict: RefuseWith(ReasonForbidden, "c/x", "")},
			{name: "b", layer: Application, verdict: RefuseWith(ReasonBusy, "b/y", "")},
		}, "b", "b/y", Refuse},
		{"network before application", []*fakeStage{
			{name: "a", layer: Application, verdict: RefuseWith(ReasonForbidden, "a/app", "")},
			{name: "c", layer: Network, verdict: Verdict{Action: Drop, Rule: "c/net"}},
		}, "c", "c/net", Drop},
		{"error fails closed", []*fakeStage{{name: "a", layer: Application, err: errors.New("backend down")}}, "a", "a/error", Refuse},
		{"error fails open when configured", []*fakeStage{{name: "a", layer: Application, err: errors.New("x"), open: true}}, "", "", Allow},
		{"rule defaults to stage name", []*fakeStage{{name: "a", layer: Application, verdict: Verdict{Action: Drop}}}, "a", "a", Drop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ss []Stage
			for _, s := range tt.stages {
				ss = append(ss, s)
			}
			p, err := NewPipeline(order, ss...)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Run(context.Background(), &Event{})
			if d.Action != tt.wantAct || d.Stage != tt.wantStage || d.Rule != tt.wantRule {
				t.Fatalf("got %v stage=%q rule=%q, want %v stage=%q rule=%q", d.Action, d.Stage, d.Rule, tt.wantAct, tt.wantStage, tt.wantRule)
			}
		})
	}
}

func TestPipelineRefusesUnorderedAndDuplicateStages(t *testing.T) {
	if _, err := NewPipeline([]string{"a"}, &fakeStage{name: "zzz", layer: Network}); !errors.Is(err, ErrStageOrder) {
		t.Fatalf("stage outside the order: got %v", err)
	}
	if _, err := NewPipeline([]string{"a", "a"}); !errors.Is(err, ErrStageOrder) {
		t.Fatalf("order listing a name twice: got %v", err)
	}
	if _, err := NewPipeline([]string{"a"}, &fakeStage{name: "a", layer: Network}, &fakeStage{name: "a", layer: Network}); err == nil {
		t.Fatal("a stage configured twice was accepted")
	}
}

func TestPipelinePacketStages(t *testing.T) {
	ps := &packetStage1{fakeStage{name: "a", layer: Network}}
	p, err := NewPipeline([]string{"a"}, ps)
	if err != nil {
		t.Fatal(err)
	}
	if !p.HasPacketStages() {
		t.Fatal("packet stage not registered")
	}
	m := &PacketMeta{}
	if d := p.RunPacket(m); d.Action != Allow {
		t.Fatalf("allowed packet: %+v", d)
	}
	var nilp *Pipeline
	if d := nilp.RunPacket(m); d.Action != Allow {
		t.Fatal("nil pipeline must allow")
	}
}

func TestStageOrderHasNoDuplicates(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range StageOrder {
		if seen[n] {
			t.Fatalf("%q listed twice in StageOrder", n)
		}
		seen[n] = true
	}
}

func BenchmarkRunPacketAllowed(b *testing.B) {
	ps := &packetStage1{fakeStage{name: "a", layer: Network}}
	p, _ := NewPipeline([]string{"a"}, ps)
	m := &PacketMeta{Transport: "udp"}
	b.ReportAllocs()
	for b.Loop() {
		p.RunPacket(m)
	}
}
