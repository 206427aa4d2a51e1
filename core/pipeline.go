package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Decision is a pipeline's answer: the verdict and the stage that gave it.
// Stage is empty when every stage allowed.
type Decision struct {
	Verdict
	Stage string
	// Err is the error a stage returned, when the verdict came from its
	// failure mode rather than from a decision.
	Err error
}

// Pipeline runs stages in StageOrder. It is immutable once built; a
// configuration reload builds a new one and swaps it in.
type Pipeline struct {
	network     []Stage
	packet      []packetStage
	application []Stage
	content     []Stage
	all         []Stage
	binders     []SessionBinder
	conns       []ConnTracker
}

type packetStage struct {
	name string
	PacketStage
}

// ErrStageOrder reports a stage that StageOrder does not list, or lists twice.
var ErrStageOrder = errors.New("core: stage not in StageOrder")

// NewPipeline sorts stages by the order given (normally StageOrder) and
// groups them by layer. A stage whose name is not in order is an error: the
// order is declared in one place.
func NewPipeline(order []string, stages ...Stage) (*Pipeline, error) {
	pos := make(map[string]int, len(order))
	for i, n := range order {
		if _, dup := pos[n]; dup {
			return nil, fmt.Errorf("%w: %q listed twice", ErrStageOrder, n)
		}
		pos[n] = i
	}
	seen := map[string]bool{}
	for _, s := range stages {
		if _, ok := pos[s.Name()]; !ok {
			return nil, fmt.Errorf("%w: %q", ErrStageOrder, s.Name())
		}
		if seen[s.Name()] {
			return nil, fmt.Errorf("core: stage %q configured twice", s.Name())
		}
		seen[s.Name()] = true
	}
	sorted := slices.Clone(stages)
	slices.SortStableFunc(sorted, func(a, b Stage) int { return pos[a.Name()] - pos[b.Name()] })
	p := &Pipeline{all: sorted}
	for _, s := range sorted {
		if b, ok := s.(SessionBinder); ok {
			p.binders = append(p.binders, b)
		}
		if c, ok := s.(ConnTracker); ok {
			p.conns = append(p.conns, c)
		}
		switch s.Layer() {
		case Network:
			p.network = append(p.network, s)
			if ps, ok := s.(PacketStage); ok {
				p.packet = append(p.packet, packetStage{s.Name(), ps})
			}
		case Application:
			p.application = append(p.application, s)
		case Content:
			p.content = append(p.content, s)
		default:
			return nil, fmt.Errorf("core: stage %q has no layer", s.Name())
		}
	}
	return p, nil
}

// Stages returns the stages in the order they run.
func (p *Pipeline) Stages() []Stage { return p.all }

// Run runs the network and application stages on ev and returns the first
// verdict that does not allow, with the stage that gave it.
func (p *Pipeline) Run(ctx context.Context, ev *Event) Decision {
	if p == nil {
		return Decision{}
	}
	if d, stop := runStages(ctx, p.network, ev); stop {
		return d
	}
	d, _ := runStages(ctx, p.application, ev)
	return d
}

// RunContent runs the content stages on ev (a media event).
func (p *Pipeline) RunContent(ctx context.Context, ev *Event) Decision {
	if p == nil {
		return Decision{}
	}
	d, _ := runStages(ctx, p.content, ev)
	return d
}

// RunPacket runs the network stages that can decide on raw packets. It
// does not allocate; Stage is the deciding stage's name.
func (p *Pipeline) RunPacket(m *PacketMeta) Decision {
	if p == nil {
		return Decision{}
	}
	for i := range p.packet {
		if v := p.packet[i].DecidePacket(m); v.Action != Allow {
			return Decision{Verdict: v, Stage: p.packet[i].name}
		}
	}
	return Decision{}
}

// Bind tells every SessionBinder stage that s started; Unbind that it
// ended. The adapter calls them once per session.
func (p *Pipeline) Bind(s *Session) {
	if p == nil {
		return
	}
	for _, b := range p.binders {
		b.Bind(s)
	}
}

// Unbind: see Bind.
func (p *Pipeline) Unbind(s *Session) {
	if p == nil {
		return
	}
	for _, b := range p.binders {
		b.Unbind(s)
	}
}

// ConnClosed tells every ConnTracker stage that a connection closed.
func (p *Pipeline) ConnClosed(m *PacketMeta) {
	if p == nil {
		return
	}
	for _, c := range p.conns {
		c.ConnClosed(m)
	}
}

// Timeouts returns the connection timeouts of the first ConnTimeouts
// stage; zero values mean none.
func (p *Pipeline) Timeouts() (handshake, idle time.Duration) {
	if p == nil {
		return 0, 0
	}
	for _, s := range p.all {
		if t, ok := s.(ConnTimeouts); ok {
			return t.Timeouts()
		}
	}
	return 0, 0
}

// HasPacketStages reports whether RunPacket can refuse anything.
func (p *Pipeline) HasPacketStages() bool { return p != nil && len(p.packet) > 0 }

func runStages(ctx context.Context, stages []Stage, ev *Event) (Decision, bool) {
	for _, s := range stages {
		v, err := s.Decide(ctx, ev)
		if err != nil {
			if fo, ok := s.(FailOpener); ok && fo.FailOpen() {
				continue
			}
			return Decision{
				Verdict: Verdict{Action: Refuse, Reason: ReasonInternal, Rule: s.Name() + "/error"},
				Stage:   s.Name(),
				Err:     err,
			}, true
		}
		if v.Action != Allow {
			if v.Rule == "" {
				v.Rule = s.Name()
			}
			return Decision{Verdict: v, Stage: s.Name()}, true
		}
	}
	return Decision{}, false
}

// Close closes every stage that holds resources. It is safe to call after
// a partial build.
func (p *Pipeline) Close() error {
	if p == nil {
		return nil
	}
	var errs []error
	for _, s := range p.all {
		if c, ok := s.(interface{ Close() error }); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
