package transcode

import (
	"fmt"
	"strings"
)

// Codec is a video codec the transcoder speaks.
type Codec uint8

// The codecs, as SDP names them (RFC 7741, RFC 6184).
const (
	VP8 Codec = iota + 1
	H264
)

// String returns the codec's SDP encoding name.
func (c Codec) String() string {
	switch c {
	case VP8:
		return "VP8"
	case H264:
		return "H264"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ParseCodec reads a codec name as SDP or YAML spells it ("vp8", "H264").
func ParseCodec(s string) (Codec, error) {
	switch strings.ToLower(s) {
	case "vp8":
		return VP8, nil
	case "h264":
		return H264, nil
	}
	return 0, fmt.Errorf("transcode: unknown video codec %q (known: vp8, h264)", s)
}
