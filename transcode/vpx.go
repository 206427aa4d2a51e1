package transcode

/*
#cgo pkg-config: vpx
#include <stdlib.h>
#include <string.h>
#include <vpx/vpx_decoder.h>
#include <vpx/vpx_encoder.h>
#include <vpx/vp8dx.h>
#include <vpx/vp8cx.h>

static vpx_codec_ctx_t *ucg_vp8_dec_new(void) {
	vpx_codec_ctx_t *ctx = calloc(1, sizeof(*ctx));
	if (!ctx) return NULL;
	vpx_codec_dec_cfg_t cfg = {0};
	cfg.threads = 1;
	if (vpx_codec_dec_init(ctx, vpx_codec_vp8_dx(), &cfg, 0) != VPX_CODEC_OK) {
		free(ctx);
		return NULL;
	}
	return ctx;
}

static void ucg_vp8_free(vpx_codec_ctx_t *ctx) {
	if (ctx) {
		vpx_codec_destroy(ctx);
		free(ctx);
	}
}

// ucg_vp8_decode decodes one frame and returns the last picture it produced,
// or NULL with *err set when the frame was refused.
static vpx_image_t *ucg_vp8_decode(vpx_codec_ctx_t *ctx, const uint8_t *data, unsigned int n, int *err) {
	*err = vpx_codec_decode(ctx, data, n, NULL, 0);
	if (*err != VPX_CODEC_OK) return NULL;
	vpx_codec_iter_t it = NULL;
	vpx_image_t *img, *last = NULL;
	while ((img = vpx_codec_get_frame(ctx, &it)) != NULL) last = img;
	return last;
}

typedef struct {
	vpx_codec_ctx_t ctx;
	vpx_codec_enc_cfg_t cfg;
	vpx_image_t img;
} ucg_vp8_enc;

static ucg_vp8_enc *ucg_vp8_enc_new(int w, int h, int kbps, int kf_max, int *err) {
	ucg_vp8_enc *e = calloc(1, sizeof(*e));
	if (!e) { *err = VPX_CODEC_MEM_ERROR; return NULL; }
	vpx_codec_enc_cfg_t *c = &e->cfg;
	*err = vpx_codec_enc_config_default(vpx_codec_vp8_cx(), c, 0);
	if (*err != VPX_CODEC_OK) { free(e); return NULL; }
	// Real-time settings, close to what libwebrtc gives libvpx for calls, at a
	// fixed speed (cpu-used 6) so that a loaded server does not slow down.
	c->g_w = w;
	c->g_h = h;
	c->g_threads = 1;
	c->g_timebase.num = 1;
	c->g_timebase.den = 90000;
	c->g_lag_in_frames = 0;
	c->g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
	c->g_pass = VPX_RC_ONE_PASS;
	c->rc_end_usage = VPX_CBR;
	c->rc_target_bitrate = kbps;
	c->rc_min_quantizer = 2;
	c->rc_max_quantizer = 56;
	c->rc_undershoot_pct = 100;
	c->rc_overshoot_pct = 15;
	c->rc_buf_initial_sz = 500;
	c->rc_buf_optimal_sz = 600;
	c->rc_buf_sz = 1000;
	c->rc_dropframe_thresh = 0;
	c->rc_resize_allowed = 0;
	c->kf_mode = kf_max > 0 ? VPX_KF_AUTO : VPX_KF_DISABLED;
	c->kf_min_dist = 0;
	c->kf_max_dist = kf_max > 0 ? kf_max : 0;
	*err = vpx_codec_enc_init(&e->ctx, vpx_codec_vp8_cx(), c, 0);
	if (*err != VPX_CODEC_OK) { free(e); return NULL; }
	vpx_codec_control(&e->ctx, VP8E_SET_CPUUSED, 6);
	vpx_codec_control(&e->ctx, VP8E_SET_NOISE_SENSITIVITY, 0);
	vpx_codec_control(&e->ctx, VP8E_SET_STATIC_THRESHOLD, 1);
	vpx_codec_control(&e->ctx, VP8E_SET_MAX_INTRA_BITRATE_PCT, 300);
	vpx_codec_control(&e->ctx, VP8E_SET_TOKEN_PARTITIONS, VP8_ONE_TOKENPARTITION);
	return e;
}

static void ucg_vp8_enc_free(ucg_vp8_enc *e) {
	if (e) {
		vpx_codec_destroy(&e->ctx);
		free(e);
	}
}

static int ucg_vp8_enc_bitrate(ucg_vp8_enc *e, int kbps) {
	e->cfg.rc_target_bitrate = kbps;
	return vpx_codec_enc_config_set(&e->ctx, &e->cfg);
}

static int ucg_vp8_encode(ucg_vp8_enc *e, uint8_t *y, int sy, uint8_t *u, int su, uint8_t *v, int sv,
                          int64_t pts, unsigned long dur, int force_key) {
	vpx_image_t *img = &e->img;
	vpx_img_wrap(img, VPX_IMG_FMT_I420, e->cfg.g_w, e->cfg.g_h, 1, y);
	img->planes[VPX_PLANE_Y] = y;
	img->planes[VPX_PLANE_U] = u;
	img->planes[VPX_PLANE_V] = v;
	img->stride[VPX_PLANE_Y] = sy;
	img->stride[VPX_PLANE_U] = su;
	img->stride[VPX_PLANE_V] = sv;
	return vpx_codec_encode(&e->ctx, img, pts, dur, force_key ? VPX_EFLAG_FORCE_KF : 0, VPX_DL_REALTIME);
}

// ucg_vp8_next returns the next compressed frame of the last encode call.
static const vpx_codec_cx_pkt_t *ucg_vp8_next(ucg_vp8_enc *e, vpx_codec_iter_t *it) {
	const vpx_codec_cx_pkt_t *p;
	while ((p = vpx_codec_get_cx_data(&e->ctx, it)) != NULL) {
		if (p->kind == VPX_CODEC_CX_FRAME_PKT) return p;
	}
	return NULL;
}
static void *ucg_pkt_buf(const vpx_codec_cx_pkt_t *p) { return p->data.frame.buf; }
static size_t ucg_pkt_sz(const vpx_codec_cx_pkt_t *p) { return p->data.frame.sz; }
static int ucg_pkt_key(const vpx_codec_cx_pkt_t *p) { return (p->data.frame.flags & VPX_FRAME_IS_KEY) != 0; }
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// vp8Decoder decodes VP8 frames with libvpx.
type vp8Decoder struct {
	ctx       *C.vpx_codec_ctx_t
	maxW      int
	maxH      int
	img       Image
	lastW     int
	lastH     int
	keyWanted bool
}

func newVP8Decoder(maxW, maxH int) (*vp8Decoder, error) {
	ctx := C.ucg_vp8_dec_new()
	if ctx == nil {
		return nil, errors.New("transcode: libvpx: cannot create VP8 decoder")
	}
	return &vp8Decoder{ctx: ctx, maxW: maxW, maxH: maxH}, nil
}

// vp8KeyframeSize reads the size a VP8 keyframe declares (RFC 6386 9.1)
// without decoding it. ok is false for an interframe or a truncated header.
func vp8KeyframeSize(b []byte) (w, h int, key, ok bool) {
	if len(b) < 3 {
		return 0, 0, false, false
	}
	if b[0]&1 != 0 { // interframe
		return 0, 0, false, true
	}
	if len(b) < 10 || b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a {
		return 0, 0, true, false
	}
	w = int(b[6]) | int(b[7]&0x3f)<<8
	h = int(b[8]) | int(b[9]&0x3f)<<8
	return w, h, true, true
}

// Decode decodes one VP8 frame. The picture is valid until the next call. A
// nil picture and nil error mean the decoder produced nothing for this frame.
func (d *vp8Decoder) Decode(frame []byte) (*Image, error) {
	w, h, key, ok := vp8KeyframeSize(frame)
	if !ok {
		return nil, ErrBitstream
	}
	if key && (w <= 0 || h <= 0 || w > d.maxW || h > d.maxH) {
		// Refused before libvpx allocates for it.
		return nil, fmt.Errorf("%w: VP8 keyframe of %dx%d", ErrTooLarge, w, h)
	}
	var cerr C.int
	img := C.ucg_vp8_decode(d.ctx, (*C.uint8_t)(unsafe.Pointer(&frame[0])), C.uint(len(frame)), &cerr)
	if cerr != 0 {
		return nil, fmt.Errorf("%w: libvpx error %d", ErrBitstream, int(cerr))
	}
	if img == nil {
		return nil, nil
	}
	if img.fmt != C.VPX_IMG_FMT_I420 {
		return nil, fmt.Errorf("%w: VP8 picture format %d", ErrBitstream, int(img.fmt))
	}
	pw, ph := int(img.d_w), int(img.d_h)
	if pw <= 0 || ph <= 0 || pw > d.maxW || ph > d.maxH {
		return nil, fmt.Errorf("%w: VP8 picture of %dx%d", ErrTooLarge, pw, ph)
	}
	sy, su, sv := int(img.stride[0]), int(img.stride[1]), int(img.stride[2])
	ch := (ph + 1) / 2
	d.img = Image{
		Y:       unsafe.Slice((*byte)(unsafe.Pointer(img.planes[0])), sy*ph),
		U:       unsafe.Slice((*byte)(unsafe.Pointer(img.planes[1])), su*ch),
		V:       unsafe.Slice((*byte)(unsafe.Pointer(img.planes[2])), sv*ch),
		StrideY: sy, StrideU: su, StrideV: sv,
		Width: pw, Height: ph,
	}
	return &d.img, nil
}

func (d *vp8Decoder) Close() {
	if d.ctx != nil {
		C.ucg_vp8_free(d.ctx)
		d.ctx = nil
	}
}

// vp8Encoder encodes VP8 frames with libvpx in its real-time mode.
type vp8Encoder struct {
	e    *C.ucg_vp8_enc
	w, h int
	out  []byte
}

func newVP8Encoder(w, h, bitrate, kfMax int) (*vp8Encoder, error) {
	var cerr C.int
	e := C.ucg_vp8_enc_new(C.int(w), C.int(h), C.int(kbps(bitrate)), C.int(kfMax), &cerr)
	if e == nil {
		return nil, fmt.Errorf("transcode: libvpx: cannot create VP8 encoder %dx%d: error %d", w, h, int(cerr))
	}
	return &vp8Encoder{e: e, w: w, h: h, out: make([]byte, 0, 64<<10)}, nil
}

func kbps(bps int) int {
	k := bps / 1000
	if k < 1 {
		k = 1
	}
	return k
}

func (e *vp8Encoder) Size() (int, int) { return e.w, e.h }

func (e *vp8Encoder) SetBitrate(bps int) error {
	if r := C.ucg_vp8_enc_bitrate(e.e, C.int(kbps(bps))); r != 0 {
		return fmt.Errorf("transcode: libvpx: set bitrate %d: error %d", bps, int(r))
	}
	return nil
}

// Encode encodes img (which must have the encoder's size) and returns the
// compressed frame, valid until the next call; nil when the encoder dropped it.
func (e *vp8Encoder) Encode(img *Image, pts90k int64, dur90k int, forceKey bool) ([]byte, bool, error) {
	if img.Width != e.w || img.Height != e.h || !img.valid() {
		return nil, false, fmt.Errorf("transcode: VP8 encoder of %dx%d given %dx%d", e.w, e.h, img.Width, img.Height)
	}
	fk := C.int(0)
	if forceKey {
		fk = 1
	}
	r := C.ucg_vp8_encode(e.e,
		(*C.uint8_t)(unsafe.Pointer(&img.Y[0])), C.int(img.StrideY),
		(*C.uint8_t)(unsafe.Pointer(&img.U[0])), C.int(img.StrideU),
		(*C.uint8_t)(unsafe.Pointer(&img.V[0])), C.int(img.StrideV),
		C.int64_t(pts90k), C.ulong(dur90k), fk)
	if r != 0 {
		return nil, false, fmt.Errorf("transcode: libvpx: encode: error %d", int(r))
	}
	e.out = e.out[:0]
	key := false
	var it C.vpx_codec_iter_t
	for p := C.ucg_vp8_next(e.e, &it); p != nil; p = C.ucg_vp8_next(e.e, &it) {
		e.out = append(e.out, unsafe.Slice((*byte)(C.ucg_pkt_buf(p)), int(C.ucg_pkt_sz(p)))...)
		key = key || C.ucg_pkt_key(p) != 0
	}
	if len(e.out) == 0 {
		return nil, false, nil
	}
	return e.out, key, nil
}

func (e *vp8Encoder) Close() {
	if e.e != nil {
		C.ucg_vp8_enc_free(e.e)
		e.e = nil
	}
}
