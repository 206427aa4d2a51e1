package host

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/plugins/sdk"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// mallory is the check the test plugin runs with -mode refuse-mallory,
// for the in-process side of the comparison.
type mallory struct{}

func (mallory) Decide(_ context.Context, ev *pb.Event) (*pb.Verdict, error) {
	if ev.GetFrom().GetUser() == "mallory" {
		return &pb.Verdict{Action: pb.Action_REFUSE, Reason: "forbidden", Rule: "reputation"}, nil
	}
	return &pb.Verdict{}, nil
}

// inProcess runs an sdk.Stage in the gateway's process with the same
// conversions as the plugin stage: only the process boundary differs.
type inProcess struct{ impl sdk.Stage }

func (s inProcess) Decide(ctx context.Context, ev *core.Event) (core.Verdict, error) {
	v, err := s.impl.Decide(ctx, EventTo(ev))
	if err != nil {
		return core.Verdict{}, err
	}
	return VerdictFrom(v, "inproc"), nil
}

func benchStage(b *testing.B, decide func(context.Context, *core.Event) (core.Verdict, error)) {
	ev := &core.Event{Kind: core.KindSessionOffer, Protocol: "sip", Method: "INVITE",
		From: core.Identity{User: "alice", Domain: "example.com"}, To: core.Identity{User: "bob", Domain: "example.com"}}
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		v, err := decide(ctx, ev)
		lat = append(lat, time.Since(t0))
		if err != nil || v.Action != core.Allow {
			b.Fatalf("verdict %+v err %v", v, err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkStageRoundTrip is one event through a stage plugin (a real
// process, gRPC over loopback with mutual TLS) against the same check in
// process.
func BenchmarkStageRoundTrip(b *testing.B) {
	b.Run("plugin", func(b *testing.B) {
		c := Config{Name: "rep", Kind: sdk.KindStage, Binary: testBinary, SHA256: sum(b, testBinary),
			Args: []string{"-kind", "stage", "-mode", "refuse-mallory"}, Deadline: 5 * time.Second}
		h, err := New([]Config{c}, core.Deps{})
		if err != nil {
			b.Fatal(err)
		}
		if err := h.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		benchStage(b, h.Stage().Decide)
	})
	b.Run("in-process", func(b *testing.B) {
		benchStage(b, inProcess{impl: mallory{}}.Decide)
	})
}
