package tlsrequired

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

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

// request is a REGISTER arriving in zone over transport.
func request(zone, transport string) *core.Event {
	enc := transport == "tls" || transport == "wss"
	return &core.Event{Kind: core.KindRegister, Protocol: "sip", Method: "REGISTER",
		Src: core.Source{Zone: zone, Transport: transport, Encrypted: enc}}
}

func TestDecide(t *testing.T) {
	const internetTLS = "zones: {internet: {required: true}}"
	tests := []struct {
		name   string
		config string
		ev     *core.Event
		action core.Action
		rule   string
	}{
		{"default: udp allowed", "", request("internet", "udp"), core.Allow, ""},
		{"default: nothing required anywhere", "", request("", "tcp"), core.Allow, ""},
		{"required zone, udp", internetTLS, request("internet", "udp"), core.Refuse, RulePlain},
		{"required zone, tcp", internetTLS, request("internet", "tcp"), core.Refuse, RulePlain},
		{"required zone, ws", internetTLS, request("internet", "ws"), core.Refuse, RulePlain},
		{"required zone, tls", internetTLS, request("internet", "tls"), core.Allow, ""},
		{"required zone, wss", internetTLS, request("internet", "wss"), core.Allow, ""},
		{"other zone, udp", internetTLS, request("trunk", "udp"), core.Allow, ""},
		{"in-dialog request refused too", internetTLS, &core.Event{Kind: core.KindSessionEnd, Method: "BYE", InDialog: true,
			Src: core.Source{Zone: "internet", Transport: "udp"}}, core.Refuse, RulePlain},
		{"response passes", internetTLS, &core.Event{Kind: core.KindResponse, Method: "200",
			Src: core.Source{Zone: "internet", Transport: "udp"}}, core.Allow, ""},
		{"required everywhere", "required: true", request("trunk", "udp"), core.Refuse, RulePlain},
		{"required everywhere, zoneless event", "required: true", request("", "udp"), core.Refuse, RulePlain},
		{"required everywhere but a zone", "required: true\nzones: {lan: {required: false}}", request("lan", "udp"), core.Allow, ""},
		{"a zone listed without a value follows required", "required: true\nzones: {lan: {}}", request("lan", "udp"), core.Refuse, RulePlain},
		{"disabled", "enabled: false\nrequired: true", request("internet", "udp"), core.Allow, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStage(t, tt.config, core.Deps{})
			v, err := s.Decide(context.Background(), tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != tt.action || v.Rule != tt.rule {
				t.Fatalf("verdict = %v %q, want %v %q", v.Action, v.Rule, tt.action, tt.rule)
			}
			if v.Action == core.Refuse && (v.Reason != core.ReasonEncryptionRequired || v.Detail != "TLS Required") {
				t.Errorf("refusal = %v %q, want %v %q", v.Reason, v.Detail, core.ReasonEncryptionRequired, "TLS Required")
			}
		})
	}
}

func TestStageContract(t *testing.T) {
	s := newStage(t, "", core.Deps{})
	if s.Name() != "tlsrequired" || s.Layer() != core.Application || s.Close() != nil {
		t.Errorf("Name, Layer = %q, %v", s.Name(), s.Layer())
	}
	cfg := Defaults()
	cfg.Zones = map[string]Zone{"": {}}
	if _, err := New(cfg, core.Deps{}); !errors.Is(err, ErrConfig) {
		t.Errorf("New with a bad config: %v, want ErrConfig", err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	const cfg = "required: true\nzones: {internet: {required: true}, lan: {required: false}}"
	s := newStage(t, cfg, core.Deps{Metrics: reg})
	s2 := newStage(t, cfg, core.Deps{Metrics: reg}) // a reload shares the counters
	for _, ev := range []*core.Event{request("internet", "udp"), request("internet", "tls"), request("lan", "udp"),
		request("made-up", "udp"), request("", "tcp")} {
		s.Decide(context.Background(), ev)
	}
	s2.Decide(context.Background(), request("internet", "ws"))
	want := map[string]float64{"internet": 2, "lan": 0, "other": 2}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "ucgate_tlsrequired_refused_total" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	for z, n := range want {
		if got[z] != n {
			t.Errorf("refused{zone=%q} = %v, want %v (all: %v)", z, got[z], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("zones counted: %v, want only %v", got, want)
	}
}

func BenchmarkDecide(b *testing.B) {
	s := newStage(b, "zones: {internet: {required: true}, trunk: {required: false}}", core.Deps{Metrics: prometheus.NewRegistry()})
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		ev   *core.Event
	}{{"encrypted", request("internet", "tls")}, {"plain allowed", request("trunk", "udp")}, {"plain refused", request("internet", "udp")}} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Decide(ctx, tt.ev)
			}
		})
	}
}
