package host

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ucgate/ucgate/core"
)

// StageName is the name of the plugin stage in core.StageOrder.
const StageName = "plugins"

// Stage runs the stage plugins, in configuration order, as one stage of
// the pipeline. Each call has the plugin's deadline; a plugin that errs,
// misses its deadline or is down gets its failure mode (refuse with
// reason unavailable and rule plugins/<name>/<why>, unless "open").
type Stage struct {
	plugins []*Plugin
}

// Name implements core.Stage.
func (s *Stage) Name() string { return StageName }

// Layer implements core.Stage.
func (s *Stage) Layer() core.Layer { return core.Application }

// Decide implements core.Stage: the first plugin that does not allow
// decides.
func (s *Stage) Decide(ctx context.Context, ev *core.Event) (core.Verdict, error) {
	for _, p := range s.plugins {
		if int(ev.Kind) >= len(p.kinds) || !p.kinds[ev.Kind] {
			continue
		}
		if v := p.decide(ctx, ev); v.Action != core.Allow {
			return v, nil
		}
	}
	return core.Verdict{}, nil
}

func (p *Plugin) decide(ctx context.Context, ev *core.Event) core.Verdict {
	p.calls.Add(1)
	p.mCalls.Inc()
	c := p.stage.Load()
	if c == nil {
		return p.failed("unavailable")
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.Deadline)
	start := time.Now()
	v, err := c.Decide(cctx, EventTo(ev))
	cancel()
	p.mLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		switch code := status.Code(err); {
		case code == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
			if ctx.Err() == nil && int(p.timeouts.Add(1)) >= p.cfg.Limits.HangAfter {
				p.signal(whyHung)
			}
			return p.failed("deadline")
		case code == codes.ResourceExhausted:
			return p.failed("too_large")
		case code == codes.Unavailable:
			p.signal("")
		}
		return p.failed("error")
	}
	p.timeouts.Store(0)
	return VerdictFrom(v, p.cfg.Name)
}

// failed applies the failure mode.
func (p *Plugin) failed(why string) core.Verdict {
	p.errs.Add(1)
	p.mErrs.Inc()
	if p.cfg.FailureMode == FailOpen {
		return core.Verdict{}
	}
	return core.RefuseWith(core.ReasonUnavailable, "plugins/"+p.cfg.Name+"/"+why, "")
}

var _ core.Stage = (*Stage)(nil)
