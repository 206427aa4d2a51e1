package rtpguard

import (
	"encoding/binary"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/config"
)

// wallClock is the fixed wall clock of the stages under test.
var wallClock = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func testStage(t testing.TB, yaml string, deps core.Deps) *Stage {
	t.Helper()
	cfg := Defaults()
	if _, err := config.Decode([]byte(yaml), "ucgate.yaml", &cfg); err != nil {
		t.Fatalf("decode %q: %v", yaml, err)
	}
	s, err := newStage(cfg, deps, func() time.Time { return wallClock })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// Stream descriptions as the relay would hand them over.
var (
	pcmu = core.Codec{PT: 0, Name: "PCMU", Rate: 8000}
	pcma = core.Codec{PT: 8, Name: "PCMA", Rate: 8000}
	dtmf = core.Codec{PT: 101, Name: "telephone-event", Rate: 8000, Params: "0-16"}
	vp8  = core.Codec{PT: 96, Name: "VP8", Rate: 90000}
	rtx  = core.Codec{PT: 97, Name: "rtx", Rate: 90000, Params: "apt=96"}
)

func audioInfo(zone string, codecs ...core.Codec) *core.StreamInfo {
	return &core.StreamInfo{Session: "0123456789abcdef01234567", Index: 0, Type: "audio",
		From: core.RoleCaller, Zone: zone, Codecs: codecs}
}

func videoInfo(zone string, codecs ...core.Codec) *core.StreamInfo {
	return &core.StreamInfo{Session: "0123456789abcdef01234567", Index: 1, Type: "video",
		From: core.RoleCallee, Zone: zone, Codecs: codecs}
}

var peer = netip.MustParseAddrPort("192.0.2.10:40000")

// pkt describes one RTP packet: at is the arrival time in ms of the
// relay's clock, size the payload length (160, 20 ms of G.711, if 0).
type pkt struct {
	pt   uint8
	seq  uint16
	ts   uint32
	ssrc uint32
	at   int64
	size int
}

// build writes the packet into buf (which must be large enough) and
// fills m as the relay would.
func (k pkt) build(buf []byte, m *core.MediaPacket) {
	size := k.size
	if size == 0 {
		size = 160
	}
	d := buf[:12+size]
	d[0] = 0x80
	d[1] = k.pt & 0x7f
	binary.BigEndian.PutUint16(d[2:], k.seq)
	binary.BigEndian.PutUint32(d[4:], k.ts)
	binary.BigEndian.PutUint32(d[8:], k.ssrc)
	for i := 12; i < len(d); i++ {
		d[i] = 0xff // PCMU silence
	}
	*m = core.MediaPacket{Data: d, Src: peer, Now: k.at * int64(time.Millisecond), Parsed: true, Version: 2,
		PT: k.pt, Seq: k.seq, Timestamp: k.ts, SSRC: k.ssrc, HeaderLen: 12}
}

// packet returns a fresh MediaPacket for k.
func (k pkt) packet() *core.MediaPacket {
	size := k.size
	if size == 0 {
		size = 160
	}
	m := new(core.MediaPacket)
	k.build(make([]byte, 12+size), m)
	return m
}

// reparse refreshes m's parsed fields from its Data, as the relay would
// after a test edited the bytes.
func reparse(m *core.MediaPacket) {
	d := m.Data
	if len(d) < 12 {
		return
	}
	m.Version = d[0] >> 6
	m.Marker = d[1]&0x80 != 0
	m.PT = d[1] & 0x7f
	m.Seq = binary.BigEndian.Uint16(d[2:])
	m.Timestamp = binary.BigEndian.Uint32(d[4:])
	m.SSRC = binary.BigEndian.Uint32(d[8:])
}

// events collects security events.
type events struct {
	mu  sync.Mutex
	all []core.SecurityEvent
}

func (e *events) Alert(ev *core.SecurityEvent) {
	e.mu.Lock()
	e.all = append(e.all, *ev)
	e.mu.Unlock()
}

// alerts returns a dispatcher feeding a collector; closing the
// dispatcher delivers everything queued.
func alerts() (*core.Alerts, *events) {
	a := core.NewAlerts(1024)
	e := &events{}
	a.Subscribe(e)
	return a, e
}

func verdictString(v core.Verdict) string {
	if v.Rule == "" {
		return v.Action.String()
	}
	return v.Action.String() + " " + v.Rule
}

// gather returns every sample of reg as name{label="value",...} -> value.
func gather(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			sort.Strings(labels)
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
