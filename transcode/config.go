package transcode

import (
	"errors"
	"time"

	"github.com/ucgate/ucgate/core/config"
)

// Config is the operator's configuration of the transcoder: what it sends
// and what it accepts. It is the same for every stream; Stream says what one
// stream is.
type Config struct {
	// Width and Height are the output picture size in pixels (even). 0 keeps
	// the size of the incoming picture (rounded down to even). Default 0.
	Width  int `yaml:"width"`
	Height int `yaml:"height"`
	// FrameRate is the most frames per second sent; incoming frames above it
	// are decoded but not encoded. Default 30, at most 60.
	FrameRate float64 `yaml:"frame_rate"`
	// Bitrate is the output bitrate in bits per second at the start, until
	// the receiver's feedback (REMB; a TWCC estimate through SetBitrate, which
	// no host computes yet) moves it; from then on the output's size and
	// frame rate follow the bitrate too (see Stats.Adaptation). Default
	// 1000000.
	Bitrate int `yaml:"bitrate"`
	// MinBitrate and MaxBitrate bound what feedback may set, in bits per
	// second. Defaults 100000 and 4000000.
	MinBitrate int `yaml:"min_bitrate"`
	MaxBitrate int `yaml:"max_bitrate"`
	// KeyframeInterval sends a keyframe at least this often, for receivers
	// that never ask for one (many SIP phones send no PLI). 0 sends keyframes
	// only at the start and on request. Default 10s.
	KeyframeInterval time.Duration `yaml:"keyframe_interval"`
	// KeyframeRequestInterval is the shortest gap between two keyframe
	// requests sent upstream. Default 500ms.
	KeyframeRequestInterval time.Duration `yaml:"keyframe_request_interval"`
	// MaxInputWidth and MaxInputHeight refuse incoming pictures beyond them
	// (a VP8 keyframe before it is decoded). Defaults 1920 and 1088.
	MaxInputWidth  int `yaml:"max_input_width"`
	MaxInputHeight int `yaml:"max_input_height"`
	// MTU is the largest RTP packet sent, in bytes. Default 1200.
	MTU int `yaml:"mtu"`
	// Jitter is how long the assembler waits for a missing packet before it
	// declares it lost and asks for a keyframe. Default 100ms.
	Jitter time.Duration `yaml:"jitter"`
	// JitterPackets declares a missing packet lost once this many later
	// packets arrived, whatever Jitter says. Default 64.
	JitterPackets int `yaml:"jitter_packets"`
	// MaxFramePackets is the most RTP packets one incoming frame may span.
	// Default 512.
	MaxFramePackets int `yaml:"max_frame_packets"`
}

// Defaults returns the configuration with every zero field at its default.
func (c Config) Defaults() Config {
	if c.FrameRate == 0 {
		c.FrameRate = 30
	}
	if c.Bitrate == 0 {
		c.Bitrate = 1_000_000
	}
	if c.MinBitrate == 0 {
		c.MinBitrate = 100_000
	}
	if c.MaxBitrate == 0 {
		c.MaxBitrate = 4_000_000
	}
	if c.KeyframeInterval == 0 {
		c.KeyframeInterval = 10 * time.Second
	}
	if c.KeyframeRequestInterval == 0 {
		c.KeyframeRequestInterval = 500 * time.Millisecond
	}
	if c.MaxInputWidth == 0 {
		c.MaxInputWidth = 1920
	}
	if c.MaxInputHeight == 0 {
		c.MaxInputHeight = 1088
	}
	if c.MTU == 0 {
		c.MTU = 1200
	}
	if c.Jitter == 0 {
		c.Jitter = 100 * time.Millisecond
	}
	if c.JitterPackets == 0 {
		c.JitterPackets = 64
	}
	if c.MaxFramePackets == 0 {
		c.MaxFramePackets = 512
	}
	return c
}

// Validate checks a configuration after Defaults; it reports every problem.
func (c Config) Validate() error {
	var errs []error
	if c.Width < 0 || c.Width%2 != 0 || c.Width > 4096 {
		errs = append(errs, config.Invalid("width", "must be 0 or an even number up to 4096, got %d", c.Width))
	}
	if c.Height < 0 || c.Height%2 != 0 || c.Height > 2304 {
		errs = append(errs, config.Invalid("height", "must be 0 or an even number up to 2304, got %d", c.Height))
	}
	if (c.Width == 0) != (c.Height == 0) {
		errs = append(errs, config.Invalid("width", "width and height are set together or not at all"))
	}
	if c.FrameRate < 1 || c.FrameRate > 60 {
		errs = append(errs, config.Invalid("frame_rate", "must be between 1 and 60, got %v", c.FrameRate))
	}
	if c.MinBitrate < 10_000 {
		errs = append(errs, config.Invalid("min_bitrate", "must be at least 10000, got %d", c.MinBitrate))
	}
	if c.MaxBitrate < c.MinBitrate || c.MaxBitrate > 50_000_000 {
		errs = append(errs, config.Invalid("max_bitrate", "must be between min_bitrate (%d) and 50000000, got %d", c.MinBitrate, c.MaxBitrate))
	}
	if c.Bitrate < c.MinBitrate || c.Bitrate > c.MaxBitrate {
		errs = append(errs, config.Invalid("bitrate", "must be between min_bitrate and max_bitrate, got %d", c.Bitrate))
	}
	if c.KeyframeInterval < 0 {
		errs = append(errs, config.Invalid("keyframe_interval", "must not be negative, got %v", c.KeyframeInterval))
	}
	if c.KeyframeRequestInterval < 0 {
		errs = append(errs, config.Invalid("keyframe_request_interval", "must not be negative, got %v", c.KeyframeRequestInterval))
	}
	if c.MaxInputWidth < 16 || c.MaxInputWidth > 4096 {
		errs = append(errs, config.Invalid("max_input_width", "must be between 16 and 4096, got %d", c.MaxInputWidth))
	}
	if c.MaxInputHeight < 16 || c.MaxInputHeight > 2304 {
		errs = append(errs, config.Invalid("max_input_height", "must be between 16 and 2304, got %d", c.MaxInputHeight))
	}
	if c.MTU < 200 || c.MTU > 1500 {
		errs = append(errs, config.Invalid("mtu", "must be between 200 and 1500, got %d", c.MTU))
	}
	if c.Jitter <= 0 || c.Jitter > 2*time.Second {
		errs = append(errs, config.Invalid("jitter", "must be above 0 and at most 2s, got %v", c.Jitter))
	}
	if c.JitterPackets < 1 || c.JitterPackets > 4096 {
		errs = append(errs, config.Invalid("jitter_packets", "must be between 1 and 4096, got %d", c.JitterPackets))
	}
	if c.MaxFramePackets < 1 || c.MaxFramePackets > 4096 {
		errs = append(errs, config.Invalid("max_frame_packets", "must be between 1 and 4096, got %d", c.MaxFramePackets))
	}
	return errors.Join(errs...)
}

// Stream is what the signalling negotiated for one transcoded stream.
type Stream struct {
	// From and To are the incoming and outgoing codecs; they differ.
	From, To Codec
	// InPayloadType and OutPayloadType are the negotiated RTP payload types.
	InPayloadType, OutPayloadType uint8
	// OutSSRC is the SSRC of the outgoing stream.
	OutSSRC uint32
}

func (s Stream) validate() error {
	var errs []error
	if s.From != VP8 && s.From != H264 || s.To != VP8 && s.To != H264 {
		errs = append(errs, errors.New("transcode: stream codecs must be VP8 or H264"))
	}
	if s.From == s.To {
		errs = append(errs, errors.New("transcode: stream from and to codecs are the same"))
	}
	if s.InPayloadType > 127 || s.OutPayloadType > 127 {
		errs = append(errs, errors.New("transcode: payload types must be 0..127"))
	}
	return errors.Join(errs...)
}
