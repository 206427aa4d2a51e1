package transcode

/*
#cgo LDFLAGS: -lyuv
#include <stdint.h>
#include <libyuv/scale.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// scaler resizes I420 pictures with libyuv into a buffer it owns.
type scaler struct {
	buf []byte
	img Image
}

// Scale returns src resized to w x h (both even), valid until the next call.
func (s *scaler) Scale(src *Image, w, h int) (*Image, error) {
	if !src.valid() {
		return nil, fmt.Errorf("transcode: scale: bad source picture %dx%d", src.Width, src.Height)
	}
	cw, ch := w/2, h/2
	need := w*h + 2*cw*ch
	if cap(s.buf) < need {
		s.buf = make([]byte, need)
	}
	b := s.buf[:need]
	s.img = Image{
		Y: b[:w*h], U: b[w*h : w*h+cw*ch], V: b[w*h+cw*ch:],
		StrideY: w, StrideU: cw, StrideV: cw, Width: w, Height: h,
	}
	r := C.I420Scale(
		(*C.uint8_t)(unsafe.Pointer(&src.Y[0])), C.int(src.StrideY),
		(*C.uint8_t)(unsafe.Pointer(&src.U[0])), C.int(src.StrideU),
		(*C.uint8_t)(unsafe.Pointer(&src.V[0])), C.int(src.StrideV),
		C.int(src.Width), C.int(src.Height),
		(*C.uint8_t)(unsafe.Pointer(&s.img.Y[0])), C.int(w),
		(*C.uint8_t)(unsafe.Pointer(&s.img.U[0])), C.int(cw),
		(*C.uint8_t)(unsafe.Pointer(&s.img.V[0])), C.int(cw),
		C.int(w), C.int(h), C.kFilterBilinear)
	if r != 0 {
		return nil, fmt.Errorf("transcode: libyuv: scale %dx%d to %dx%d: error %d", src.Width, src.Height, w, h, int(r))
	}
	return &s.img, nil
}
