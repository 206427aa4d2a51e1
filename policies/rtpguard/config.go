package rtpguard

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the rtpguard section of ucgate.yaml (policies.rtpguard). Its
// limits apply to every stream whose sending leg's zone Zones does not
// name.
type Config struct {
	// Enabled turns the stage on. Default true.
	Enabled bool `yaml:"enabled"`
	// Limits are the checks' windows and limits (the keys sit directly
	// under policies.rtpguard).
	Limits `yaml:",inline"`
	// Zones overrides the limits by zone (the zone of the leg the packets
	// come from): keys left out take the section's values, and
	// enabled: false leaves the zone's streams unguarded. Default none.
	Zones map[string]Zone `yaml:"zones"`
}

// Zone is one zone's overrides.
type Zone struct {
	// Enabled: false leaves the streams from this zone unguarded. Left
	// out, they are guarded.
	Enabled *bool `yaml:"enabled"`
	// Limits override the section's; keys left out (or 0) keep them.
	Limits `yaml:",inline"`
}

// Limits are the windows and limits of the checks.
type Limits struct {
	// PayloadTypes is "strict" (the default): an RTP packet whose payload
	// type was not negotiated for the stream is dropped (rule
	// rtpguard/payload_type); or "lenient": the dynamic range 96-127 is
	// accepted as well even when not negotiated, for peers that send
	// what they never offered.
	PayloadTypes string `yaml:"payload_types"`
	// SequenceBehind is how far behind the highest sequence number seen
	// a packet may be and still pass (late and duplicate packets, as a
	// network reorders them). Default 100 packets (2 s of 20 ms audio);
	// 1 to 32767. Beyond it the packet is dropped (rule
	// rtpguard/sequence).
	SequenceBehind int `yaml:"sequence_behind"`
	// SequenceAhead is how far ahead of the highest sequence number seen
	// a packet may jump (packets lost in between). Default 3000 packets
	// (a minute of 20 ms audio, 1 to 3 s of video); 1 to 32767. Beyond it
	// the packet is dropped (rule rtpguard/sequence).
	SequenceAhead int `yaml:"sequence_ahead"`
	// MaxTimestampJump bounds a packet's RTP timestamp: it passes when it
	// is within this much media time, at the codec's clock rate, of the
	// last packet's timestamp or of that timestamp advanced by the time
	// elapsed since (so that a sender pausing its clock during silence and
	// one keeping it running both pass). Default 10s; 100ms to 10m. Beyond
	// it the packet is dropped (rule rtpguard/timestamp).
	MaxTimestampJump time.Duration `yaml:"max_timestamp_jump"`
	// RestartPackets and RestartAfter validate a restart without
	// renegotiation: packets of a new SSRC (or of the locked SSRC with a
	// new sequence or timestamp base) are dropped until they have kept a
	// consistent progression for RestartPackets packets while the locked
	// source has sent nothing for RestartAfter; then the lock moves to the
	// new source and a security event (rule rtpguard/restart) says so. A
	// forged source can therefore never take over a stream that is still
	// flowing. RestartPackets default 50 (1 s of 20 ms audio), 1 to
	// 100000.
	RestartPackets int `yaml:"restart_packets"`
	// RestartAfter: see RestartPackets. Default 2s; 100ms to 1h.
	RestartAfter time.Duration `yaml:"restart_after"`
	// AudioRate limits each direction of an audio stream. Default 500
	// packets/s (burst 500) and 512 KiB/s (burst 512 KiB): ten times
	// what a 2.5 ms Opus stream or 48 kHz stereo L16 sends. Beyond it
	// packets are dropped (rule rtpguard/rate).
	AudioRate Rate `yaml:"audio_rate"`
	// VideoRate limits each direction of every other stream (video, text,
	// application). Default 5000 packets/s (burst 5000) and 8 MiB/s
	// (burst 8 MiB): a 4K stream with its key frames fits. Beyond it
	// packets are dropped (rule rtpguard/rate).
	VideoRate Rate `yaml:"video_rate"`
}

// Rate is a pair of token buckets over the packets of one stream
// direction, RTP and RTCP alike.
type Rate struct {
	// Packets is the sustained packets per second; 0.1 to 1e7.
	Packets float64 `yaml:"packets"`
	// PacketBurst is how many packets may come at once after a quiet
	// time; 1 to 1e7.
	PacketBurst int `yaml:"packet_burst"`
	// Bytes is the sustained bytes per second (whole packets, headers
	// included); 100 to 1e11.
	Bytes float64 `yaml:"bytes"`
	// ByteBurst is how many bytes may come at once; 65535 (the largest
	// datagram) to 1e12.
	ByteBurst int `yaml:"byte_burst"`
}

// The payload_types values.
const (
	PayloadStrict  = "strict"
	PayloadLenient = "lenient"
)

// Bounds of the configuration.
const (
	maxSeqWindow   = 32767
	minJump        = 100 * time.Millisecond
	maxJump        = 10 * time.Minute
	maxRestartPkts = 100000
	minRestart     = 100 * time.Millisecond
	maxRestart     = time.Hour
	minPackets     = 0.1
	maxPackets     = 1e7
	maxPacketBurst = 10_000_000
	minBytes       = 100
	maxBytes       = 1e11
	minByteBurst   = 65535
	maxByteBurst   = 1_000_000_000_000
)

// Defaults returns the configuration used when ucgate.yaml says nothing.
func Defaults() Config {
	return Config{
		Enabled: true,
		Limits: Limits{
			PayloadTypes:     PayloadStrict,
			SequenceBehind:   100,
			SequenceAhead:    3000,
			MaxTimestampJump: 10 * time.Second,
			RestartPackets:   50,
			RestartAfter:     2 * time.Second,
			AudioRate:        Rate{Packets: 500, PacketBurst: 500, Bytes: 512 << 10, ByteBurst: 512 << 10},
			VideoRate:        Rate{Packets: 5000, PacketBurst: 5000, Bytes: 8 << 20, ByteBurst: 8 << 20},
		},
	}
}

// Validate reports every problem with the configuration. It does no I/O.
func (c Config) Validate() error {
	errs := []error{c.Limits.validate(false)}
	names := make([]string, 0, len(c.Zones))
	for n := range c.Zones {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if strings.TrimSpace(n) == "" {
			errs = append(errs, config.Invalid("zones", "a zone name must not be empty"))
			continue
		}
		errs = append(errs, config.Nest("zones."+n, c.Zones[n].Limits.validate(true)))
	}
	return errors.Join(errs...)
}

// validate reports the problems of l; partial (a zone's overrides) skips
// the keys left out.
func (l Limits) validate(partial bool) error {
	var errs []error
	set := func(zero bool) bool { return !partial || !zero }
	if set(l.PayloadTypes == "") && l.PayloadTypes != PayloadStrict && l.PayloadTypes != PayloadLenient {
		errs = append(errs, config.Invalid("payload_types", `must be "strict" or "lenient", got %q`, l.PayloadTypes))
	}
	if set(l.SequenceBehind == 0) && (l.SequenceBehind < 1 || l.SequenceBehind > maxSeqWindow) {
		errs = append(errs, config.Invalid("sequence_behind", "must be between 1 and %d packets, got %d", maxSeqWindow, l.SequenceBehind))
	}
	if set(l.SequenceAhead == 0) && (l.SequenceAhead < 1 || l.SequenceAhead > maxSeqWindow) {
		errs = append(errs, config.Invalid("sequence_ahead", "must be between 1 and %d packets, got %d", maxSeqWindow, l.SequenceAhead))
	}
	if set(l.MaxTimestampJump == 0) && (l.MaxTimestampJump < minJump || l.MaxTimestampJump > maxJump) {
		errs = append(errs, config.Invalid("max_timestamp_jump", "must be between %v and %v, got %v", minJump, maxJump, l.MaxTimestampJump))
	}
	if set(l.RestartPackets == 0) && (l.RestartPackets < 1 || l.RestartPackets > maxRestartPkts) {
		errs = append(errs, config.Invalid("restart_packets", "must be between 1 and %d, got %d", maxRestartPkts, l.RestartPackets))
	}
	if set(l.RestartAfter == 0) && (l.RestartAfter < minRestart || l.RestartAfter > maxRestart) {
		errs = append(errs, config.Invalid("restart_after", "must be between %v and %v, got %v", minRestart, maxRestart, l.RestartAfter))
	}
	errs = append(errs, config.Nest("audio_rate", l.AudioRate.validate(partial)), config.Nest("video_rate", l.VideoRate.validate(partial)))
	return errors.Join(errs...)
}

func (r Rate) validate(partial bool) error {
	var errs []error
	set := func(zero bool) bool { return !partial || !zero }
	if set(r.Packets == 0) && !(r.Packets >= minPackets && r.Packets <= maxPackets) {
		errs = append(errs, config.Invalid("packets", "must be between %g and %g per second, got %v", minPackets, maxPackets, r.Packets))
	}
	if set(r.PacketBurst == 0) && (r.PacketBurst < 1 || r.PacketBurst > maxPacketBurst) {
		errs = append(errs, config.Invalid("packet_burst", "must be between 1 and %d, got %d", maxPacketBurst, r.PacketBurst))
	}
	if set(r.Bytes == 0) && !(r.Bytes >= minBytes && r.Bytes <= maxBytes) {
		errs = append(errs, config.Invalid("bytes", "must be between %d and %g per second, got %v", minBytes, maxBytes, r.Bytes))
	}
	if set(r.ByteBurst == 0) && (r.ByteBurst < minByteBurst || r.ByteBurst > maxByteBurst) {
		errs = append(errs, config.Invalid("byte_burst", "must be between %d (the largest datagram) and %d, got %d", minByteBurst, maxByteBurst, r.ByteBurst))
	}
	return errors.Join(errs...)
}

// merge returns l with the keys left out taken from def.
func (l Limits) merge(def Limits) Limits {
	if l.PayloadTypes == "" {
		l.PayloadTypes = def.PayloadTypes
	}
	l.SequenceBehind = or(l.SequenceBehind, def.SequenceBehind)
	l.SequenceAhead = or(l.SequenceAhead, def.SequenceAhead)
	l.MaxTimestampJump = or(l.MaxTimestampJump, def.MaxTimestampJump)
	l.RestartPackets = or(l.RestartPackets, def.RestartPackets)
	l.RestartAfter = or(l.RestartAfter, def.RestartAfter)
	l.AudioRate = l.AudioRate.merge(def.AudioRate)
	l.VideoRate = l.VideoRate.merge(def.VideoRate)
	return l
}

func (r Rate) merge(def Rate) Rate {
	return Rate{Packets: or(r.Packets, def.Packets), PacketBurst: or(r.PacketBurst, def.PacketBurst),
		Bytes: or(r.Bytes, def.Bytes), ByteBurst: or(r.ByteBurst, def.ByteBurst)}
}

// or is v, or def when v is zero.
func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
