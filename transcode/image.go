package transcode

// Image is one decoded picture in I420 (YUV 4:2:0, three planes). Its planes
// usually point into a decoder's own memory and are valid only until the next
// call on that decoder.
type Image struct {
	Y, U, V                   []byte
	StrideY, StrideU, StrideV int
	Width, Height             int
}

// valid reports whether the planes are large enough for the declared size, so
// that no C function is handed a plane shorter than it will read.
func (m *Image) valid() bool {
	if m.Width <= 0 || m.Height <= 0 {
		return false
	}
	cw, ch := (m.Width+1)/2, (m.Height+1)/2
	return m.StrideY >= m.Width && m.StrideU >= cw && m.StrideV >= cw &&
		len(m.Y) >= m.StrideY*(m.Height-1)+m.Width &&
		len(m.U) >= m.StrideU*(ch-1)+cw &&
		len(m.V) >= m.StrideV*(ch-1)+cw
}
