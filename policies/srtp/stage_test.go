package srtp

import (
	"context"
	"errors"
	"strings"
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

// key is an SDES inline key as a phone would offer it; it must never
// appear in a verdict.
const key = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4"

// Streams as the SIP adapter would put them on an event.
func plain() core.Stream {
	return core.Stream{Type: "audio", Protocol: "RTP/AVP", Codecs: []core.Codec{{PT: 0, Name: "PCMU", Rate: 8000}}}
}

func sdes(suites ...string) core.Stream {
	s := plain()
	s.Protocol = "RTP/SAVP"
	for i, su := range suites {
		s.Crypto = append(s.Crypto, core.Crypto{Tag: i + 1, Suite: su, Key: key})
	}
	return s
}

func dtls() core.Stream {
	s := plain()
	s.Protocol = "UDP/TLS/RTP/SAVPF"
	s.Fingerprint = "sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
	return s
}

func disabled(s core.Stream) core.Stream { s.Disabled = true; return s }

func video(s core.Stream) core.Stream {
	s.Type = "video"
	s.Codecs = []core.Codec{{PT: 96, Name: "H264", Rate: 90000}}
	return s
}

// offer is an event of kind from zone carrying streams (nil streams: no
// media at all).
func offer(kind core.Kind, zone string, streams ...core.Stream) *core.Event {
	ev := &core.Event{Kind: kind, Protocol: "sip", Method: "INVITE",
		Src: core.Source{Zone: zone, Transport: "tls", Encrypted: true}}
	if streams != nil {
		ev.Media = &core.MediaDesc{Origin: "192.0.2.10", Streams: streams}
	}
	return ev
}

func TestDecide(t *testing.T) {
	const internet = "zones: {internet: {required: true}}"
	const (
		aes80  = "AES_CM_128_HMAC_SHA1_80"
		aes32  = "AES_CM_128_HMAC_SHA1_32"
		gcm128 = "AEAD_AES_128_GCM"
		gcm256 = "AEAD_AES_256_GCM"
		aes256 = "AES_256_CM_HMAC_SHA1_80"
		f8     = "F8_128_HMAC_SHA1_80"
	)
	offerIn := func(streams ...core.Stream) *core.Event { return offer(core.KindSessionOffer, "internet", streams...) }
	tests := []struct {
		name   string
		config string
		ev     *core.Event
		action core.Action
		rule   string
	}{
		{"default: plain offer allowed", "", offerIn(plain()), core.Allow, ""},
		{"required zone: plain offer", internet, offerIn(plain()), core.Refuse, RuleRequired},
		{"required zone: plain update", internet, offer(core.KindSessionUpdate, "internet", plain()), core.Refuse, RuleRequired},
		{"required zone: SDES offer", internet, offerIn(sdes(aes80)), core.Allow, ""},
		{"required zone: DTLS offer", internet, offerIn(dtls()), core.Allow, ""},
		{"required zone: SDES audio, plain video", internet, offerIn(sdes(aes80), video(plain())), core.Refuse, RuleRequired},
		{"required zone: SDES audio, DTLS video", internet, offerIn(sdes(aes32), video(dtls())), core.Allow, ""},
		{"required zone: plain video disabled", internet, offerIn(sdes(aes80), disabled(video(plain()))), core.Allow, ""},
		{"required zone: no stream at all", internet, offerIn([]core.Stream{}...), core.Refuse, RuleRequired},
		{"required zone: crypto on RTP/AVP counts as SDES", internet, offerIn(func() core.Stream { s := sdes(aes80); s.Protocol = "RTP/AVP"; return s }()), core.Allow, ""},
		{"required zone: offer without media (late offer)", internet, offer(core.KindSessionOffer, "internet"), core.Allow, ""},
		{"required zone: answer not judged", internet, offer(core.KindSessionAnswer, "internet", plain()), core.Allow, ""},
		{"required zone: message not judged", internet, offer(core.KindMessage, "internet", plain()), core.Allow, ""},
		{"required zone: in-dialog INFO not judged", internet, offer(core.KindInDialog, "internet", plain()), core.Allow, ""},
		{"other zone: plain offer", internet, offer(core.KindSessionOffer, "trunk", plain()), core.Allow, ""},
		{"zoneless event follows required", "required: true", offer(core.KindSessionOffer, "", plain()), core.Refuse, RuleRequired},
		{"required everywhere but lan", "required: true\nzones: {lan: {required: false}}", offer(core.KindSessionOffer, "lan", plain()), core.Allow, ""},
		{"listed zone without a value follows required", "required: true\nzones: {lan: {}}", offer(core.KindSessionOffer, "lan", plain()), core.Refuse, RuleRequired},
		{"disabled", "enabled: false\nrequired: true", offerIn(plain()), core.Allow, ""},

		{"suite: AES-GCM 128 allowed by default", internet, offerIn(sdes(gcm128)), core.Allow, ""},
		{"suite: only AES-256 offered", internet, offerIn(sdes(aes256)), core.Refuse, RuleSuite},
		{"suite: only F8 and GCM-256 offered", internet, offerIn(sdes(f8, gcm256)), core.Refuse, RuleSuite},
		{"suite: one acceptable line among others", internet, offerIn(sdes(aes256, f8, aes32)), core.Allow, ""},
		{"suite: case does not matter", internet, offerIn(sdes("aes_cm_128_hmac_sha1_80")), core.Allow, ""},
		{"suite: made-up name", internet, offerIn(sdes("NULL_HMAC_SHA1_80")), core.Refuse, RuleSuite},
		{"suite: empty name", internet, offerIn(sdes("")), core.Refuse, RuleSuite},
		{"suite: audio fine, video bad", internet, offerIn(sdes(aes80), video(sdes(aes256))), core.Refuse, RuleSuite},
		{"suite: bad SDES beside a DTLS fingerprint", internet, offerIn(func() core.Stream { s := dtls(); s.Crypto = sdes(f8).Crypto; return s }()), core.Allow, ""},
		{"suite: bad suite on a disabled stream", internet, offerIn(sdes(aes80), disabled(video(sdes(f8)))), core.Allow, ""},
		{"suite: not judged where SRTP is not required", "", offerIn(sdes(f8)), core.Allow, ""},
		{"suite: configured list", internet + "\nsuites: [AES_256_CM_HMAC_SHA1_80, AEAD_AES_256_GCM]", offerIn(sdes(aes256)), core.Allow, ""},
		{"suite: configured list excludes the default", internet + "\nsuites: [AEAD_AES_256_GCM]", offerIn(sdes(aes80)), core.Refuse, RuleSuite},
		{"suite: update judged too", internet, offer(core.KindSessionUpdate, "internet", sdes(f8)), core.Refuse, RuleSuite},
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
			if v.Action == core.Refuse && (v.Reason != core.ReasonNotAcceptable || v.Detail != "SRTP Required") {
				t.Errorf("refusal = %v %q, want %v %q", v.Reason, v.Detail, core.ReasonNotAcceptable, "SRTP Required")
			}
			if strings.Contains(v.Detail, "inline:") || strings.Contains(v.Rule, "inline:") {
				t.Errorf("key material in the verdict: %+v", v)
			}
		})
	}
}

func TestStageContract(t *testing.T) {
	s := newStage(t, "", core.Deps{})
	if s.Name() != "srtp" || s.Layer() != core.Application || s.Close() != nil {
		t.Errorf("Name, Layer = %q, %v", s.Name(), s.Layer())
	}
	cfg := Defaults()
	cfg.Suites = []string{"ROT13"}
	if _, err := New(cfg, core.Deps{}); !errors.Is(err, ErrConfig) {
		t.Errorf("New with a bad config: %v, want ErrConfig", err)
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	s := newStage(t, "zones: {internet: {required: true}}", core.Deps{Metrics: prometheus.NewRegistry()})
	for _, ev := range []*core.Event{
		offer(core.KindSessionOffer, "internet", sdes("AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"), video(dtls())),
		offer(core.KindSessionOffer, "internet", plain()),
		offer(core.KindSessionOffer, "internet", sdes("F8_128_HMAC_SHA1_80")),
	} {
		if n := testing.AllocsPerRun(100, func() { s.Decide(context.Background(), ev) }); n != 0 {
			t.Errorf("Decide allocates %v times per call", n)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	const cfg = "zones: {internet: {required: true}, lan: {required: false}}\nrequired: true"
	s := newStage(t, cfg, core.Deps{Metrics: reg})
	s2 := newStage(t, cfg, core.Deps{Metrics: reg}) // a reload shares the counters
	for _, ev := range []*core.Event{
		offer(core.KindSessionOffer, "internet", plain()),
		offer(core.KindSessionOffer, "internet", sdes("F8_128_HMAC_SHA1_80")),
		offer(core.KindSessionOffer, "internet", sdes("AES_CM_128_HMAC_SHA1_80")),
		offer(core.KindSessionOffer, "lan", plain()),
		offer(core.KindSessionUpdate, "made-up", plain()),
	} {
		s.Decide(context.Background(), ev)
	}
	s2.Decide(context.Background(), offer(core.KindSessionOffer, "internet", plain()))
	want := map[string]float64{
		"internet " + RuleRequired: 2, "internet " + RuleSuite: 1,
		"lan " + RuleRequired: 0, "lan " + RuleSuite: 0,
		"other " + RuleRequired: 1, "other " + RuleSuite: 0,
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "ucgate_srtp_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var zone, rule string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "zone":
					zone = l.GetValue()
				case "rule":
					rule = l.GetValue()
				}
			}
			got[zone+" "+rule] = m.GetCounter().GetValue()
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("refused{%s} = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("series = %v, want %v", got, want)
	}
}

func BenchmarkDecide(b *testing.B) {
	s := newStage(b, "zones: {internet: {required: true}}", core.Deps{Metrics: prometheus.NewRegistry()})
	for _, bc := range []struct {
		name string
		ev   *core.Event
	}{
		{"allowed_sdes", offer(core.KindSessionOffer, "internet", sdes("AES_CM_128_HMAC_SHA1_80"), video(dtls()))},
		{"refused_plain", offer(core.KindSessionOffer, "internet", plain())},
		{"refused_suite", offer(core.KindSessionOffer, "internet", sdes("AES_256_CM_HMAC_SHA1_80", "F8_128_HMAC_SHA1_80"))},
		{"not_required", offer(core.KindSessionOffer, "trunk", plain())},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				s.Decide(ctx, bc.ev)
			}
		})
	}
}
