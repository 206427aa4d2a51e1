package transcode

/*
#cgo pkg-config: openh264
#include <stdlib.h>
#include <string.h>
#include <wels/codec_api.h>

static ISVCDecoder *ucg_h264_dec_new(void) {
	ISVCDecoder *d = NULL;
	if (WelsCreateDecoder(&d) != 0 || d == NULL) return NULL;
	int quiet = WELS_LOG_QUIET;
	(*d)->SetOption(d, DECODER_OPTION_TRACE_LEVEL, &quiet);
	SDecodingParam p;
	memset(&p, 0, sizeof(p));
	p.eEcActiveIdc = ERROR_CON_DISABLE; // a broken picture is an error, not a guess
	p.sVideoProperty.size = sizeof(p.sVideoProperty);
	p.sVideoProperty.eVideoBsType = VIDEO_BITSTREAM_AVC;
	if ((*d)->Initialize(d, &p) != 0) {
		WelsDestroyDecoder(d);
		return NULL;
	}
	return d;
}

static void ucg_h264_dec_free(ISVCDecoder *d) {
	if (d) {
		(*d)->Uninitialize(d);
		WelsDestroyDecoder(d);
	}
}

static int ucg_h264_decode(ISVCDecoder *d, const unsigned char *data, int n, SBufferInfo *info, unsigned char **dst) {
	memset(info, 0, sizeof(*info));
	dst[0] = dst[1] = dst[2] = NULL;
	return (int)(*d)->DecodeFrameNoDelay(d, data, n, dst, info);
}

static ISVCEncoder *ucg_h264_enc_new(int w, int h, int bps, float fps, int idr, int *err) {
	ISVCEncoder *e = NULL;
	*err = WelsCreateSVCEncoder(&e);
	if (*err != 0 || e == NULL) return NULL;
	int quiet = WELS_LOG_QUIET;
	(*e)->SetOption(e, ENCODER_OPTION_TRACE_LEVEL, &quiet);
	SEncParamExt p;
	(*e)->GetDefaultParams(e, &p);
	p.iUsageType = CAMERA_VIDEO_REAL_TIME;
	p.iPicWidth = w;
	p.iPicHeight = h;
	p.iTargetBitrate = bps;
	p.iMaxBitrate = UNSPECIFIED_BIT_RATE;
	p.iRCMode = RC_BITRATE_MODE;
	p.fMaxFrameRate = fps;
	p.bEnableFrameSkip = true;
	p.uiIntraPeriod = idr;
	p.eSpsPpsIdStrategy = CONSTANT_ID;
	p.bPrefixNalAddingCtrl = false;
	p.iEntropyCodingModeFlag = 0; // CAVLC: constrained baseline
	p.iMultipleThreadIdc = 1;
	p.iTemporalLayerNum = 1;
	p.iSpatialLayerNum = 1;
	p.iNumRefFrame = 1;
	p.sSpatialLayers[0].iVideoWidth = w;
	p.sSpatialLayers[0].iVideoHeight = h;
	p.sSpatialLayers[0].fFrameRate = fps;
	p.sSpatialLayers[0].iSpatialBitrate = bps;
	p.sSpatialLayers[0].iMaxSpatialBitrate = UNSPECIFIED_BIT_RATE;
	p.sSpatialLayers[0].uiProfileIdc = PRO_BASELINE;
	p.sSpatialLayers[0].sSliceArgument.uiSliceMode = SM_SINGLE_SLICE;
	*err = (*e)->InitializeExt(e, &p);
	if (*err != 0) {
		WelsDestroySVCEncoder(e);
		return NULL;
	}
	int vf = videoFormatI420;
	(*e)->SetOption(e, ENCODER_OPTION_DATAFORMAT, &vf);
	return e;
}

static void ucg_h264_enc_free(ISVCEncoder *e) {
	if (e) {
		(*e)->Uninitialize(e);
		WelsDestroySVCEncoder(e);
	}
}

static int ucg_h264_enc_bitrate(ISVCEncoder *e, int bps) {
	SBitrateInfo b;
	memset(&b, 0, sizeof(b));
	b.iLayer = SPATIAL_LAYER_ALL;
	b.iBitrate = bps;
	return (*e)->SetOption(e, ENCODER_OPTION_BITRATE, &b);
}

static int ucg_h264_encode(ISVCEncoder *e, SFrameBSInfo *info, int w, int h,
                           unsigned char *y, int sy, unsigned char *u, int su, unsigned char *v, int sv,
                           long long ms, int force_key) {
	if (force_key) (*e)->ForceIntraFrame(e, true);
	SSourcePicture pic;
	memset(&pic, 0, sizeof(pic));
	pic.iColorFormat = videoFormatI420;
	pic.iPicWidth = w;
	pic.iPicHeight = h;
	pic.iStride[0] = sy;
	pic.iStride[1] = su;
	pic.iStride[2] = sv;
	pic.pData[0] = y;
	pic.pData[1] = u;
	pic.pData[2] = v;
	pic.uiTimeStamp = ms;
	memset(info, 0, sizeof(*info));
	return (*e)->EncodeFrame(e, &pic, info);
}

static int ucg_layer_num(SFrameBSInfo *i) { return i->iLayerNum; }
static int ucg_frame_type(SFrameBSInfo *i) { return i->eFrameType; }
static unsigned char *ucg_layer_buf(SFrameBSInfo *i, int l) { return i->sLayerInfo[l].pBsBuf; }
static int ucg_layer_len(SFrameBSInfo *i, int l) {
	int n = 0;
	for (int k = 0; k < i->sLayerInfo[l].iNalCount; k++) n += i->sLayerInfo[l].pNalLengthInByte[k];
	return n;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// h264Decoder decodes H.264 access units (Annex B) with openh264.
type h264Decoder struct {
	d    *C.ISVCDecoder
	maxW int
	maxH int
	info *C.SBufferInfo
	dst  *[3]*C.uchar
	img  Image
}

func newH264Decoder(maxW, maxH int) (*h264Decoder, error) {
	d := C.ucg_h264_dec_new()
	if d == nil {
		return nil, errors.New("transcode: openh264: cannot create decoder")
	}
	// C memory: openh264 writes into both during the call.
	info := (*C.SBufferInfo)(C.calloc(1, C.size_t(unsafe.Sizeof(C.SBufferInfo{}))))
	dst := (*[3]*C.uchar)(C.calloc(3, C.size_t(unsafe.Sizeof(uintptr(0)))))
	return &h264Decoder{d: d, maxW: maxW, maxH: maxH, info: info, dst: dst}, nil
}

// Decode decodes one access unit. The picture is valid until the next call; a
// nil picture and nil error mean no picture is ready yet.
func (d *h264Decoder) Decode(au []byte) (*Image, error) {
	if len(au) == 0 {
		return nil, ErrBitstream
	}
	st := C.ucg_h264_decode(d.d, (*C.uchar)(unsafe.Pointer(&au[0])), C.int(len(au)), d.info, &d.dst[0])
	if st != 0 {
		return nil, fmt.Errorf("%w: openh264 state 0x%x", ErrBitstream, int(st))
	}
	if d.info.iBufferStatus != 1 {
		return nil, nil
	}
	sb := (*C.SSysMEMBuffer)(unsafe.Pointer(&d.info.UsrData))
	w, h := int(sb.iWidth), int(sb.iHeight)
	if w <= 0 || h <= 0 || w > d.maxW || h > d.maxH {
		return nil, fmt.Errorf("%w: H.264 picture of %dx%d", ErrTooLarge, w, h)
	}
	sy, sc := int(sb.iStride[0]), int(sb.iStride[1])
	if d.dst[0] == nil || d.dst[1] == nil || d.dst[2] == nil || sy < w || sc < (w+1)/2 {
		return nil, fmt.Errorf("%w: openh264 returned no planes", ErrBitstream)
	}
	ch := (h + 1) / 2
	d.img = Image{
		Y:       unsafe.Slice((*byte)(unsafe.Pointer(d.dst[0])), sy*h),
		U:       unsafe.Slice((*byte)(unsafe.Pointer(d.dst[1])), sc*ch),
		V:       unsafe.Slice((*byte)(unsafe.Pointer(d.dst[2])), sc*ch),
		StrideY: sy, StrideU: sc, StrideV: sc,
		Width: w, Height: h,
	}
	return &d.img, nil
}

func (d *h264Decoder) Close() {
	if d.d != nil {
		C.ucg_h264_dec_free(d.d)
		C.free(unsafe.Pointer(d.info))
		C.free(unsafe.Pointer(d.dst))
		d.d = nil
	}
}

// h264Encoder encodes H.264 constrained baseline (CAVLC, one reference
// frame, no B frames) with openh264.
type h264Encoder struct {
	e    *C.ISVCEncoder
	info *C.SFrameBSInfo
	w, h int
	out  []byte
}

func newH264Encoder(w, h, bitrate int, fps float64, idr int) (*h264Encoder, error) {
	var cerr C.int
	e := C.ucg_h264_enc_new(C.int(w), C.int(h), C.int(bitrate), C.float(fps), C.int(idr), &cerr)
	if e == nil {
		return nil, fmt.Errorf("transcode: openh264: cannot create encoder %dx%d: error %d", w, h, int(cerr))
	}
	info := (*C.SFrameBSInfo)(C.calloc(1, C.size_t(unsafe.Sizeof(C.SFrameBSInfo{}))))
	return &h264Encoder{e: e, info: info, w: w, h: h, out: make([]byte, 0, 64<<10)}, nil
}

func (e *h264Encoder) Size() (int, int) { return e.w, e.h }

func (e *h264Encoder) SetBitrate(bps int) error {
	if r := C.ucg_h264_enc_bitrate(e.e, C.int(bps)); r != 0 {
		return fmt.Errorf("transcode: openh264: set bitrate %d: error %d", bps, int(r))
	}
	return nil
}

// Encode encodes img and returns the access unit in Annex B, valid until the
// next call; nil when the encoder skipped the frame to hold its bitrate.
func (e *h264Encoder) Encode(img *Image, pts90k int64, _ int, forceKey bool) ([]byte, bool, error) {
	if img.Width != e.w || img.Height != e.h || !img.valid() {
		return nil, false, fmt.Errorf("transcode: H.264 encoder of %dx%d given %dx%d", e.w, e.h, img.Width, img.Height)
	}
	fk := C.int(0)
	if forceKey {
		fk = 1
	}
	r := C.ucg_h264_encode(e.e, e.info, C.int(e.w), C.int(e.h),
		(*C.uchar)(unsafe.Pointer(&img.Y[0])), C.int(img.StrideY),
		(*C.uchar)(unsafe.Pointer(&img.U[0])), C.int(img.StrideU),
		(*C.uchar)(unsafe.Pointer(&img.V[0])), C.int(img.StrideV),
		C.longlong(pts90k/90), fk)
	if r != 0 {
		return nil, false, fmt.Errorf("transcode: openh264: encode: error %d", int(r))
	}
	ft := int(C.ucg_frame_type(e.info))
	if ft == C.videoFrameTypeSkip || ft == C.videoFrameTypeInvalid {
		return nil, false, nil
	}
	e.out = e.out[:0]
	for l := 0; l < int(C.ucg_layer_num(e.info)); l++ {
		n := int(C.ucg_layer_len(e.info, C.int(l)))
		if n > 0 {
			e.out = append(e.out, unsafe.Slice((*byte)(unsafe.Pointer(C.ucg_layer_buf(e.info, C.int(l)))), n)...)
		}
	}
	if len(e.out) == 0 {
		return nil, false, nil
	}
	return e.out, ft == C.videoFrameTypeIDR, nil
}

func (e *h264Encoder) Close() {
	if e.e != nil {
		C.ucg_h264_enc_free(e.e)
		C.free(unsafe.Pointer(e.info))
		e.e = nil
	}
}
