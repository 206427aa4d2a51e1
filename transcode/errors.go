package transcode

import "errors"

var (
	// ErrBitstream means a frame could not be decoded: the sender's bitstream
	// is broken or hostile, or a reference was lost.
	ErrBitstream = errors.New("transcode: undecodable frame")
	// ErrTooLarge means a frame declared a picture beyond the configured
	// maximum size; it is refused before it is decoded where the codec allows.
	ErrTooLarge = errors.New("transcode: picture beyond the configured maximum")
)
