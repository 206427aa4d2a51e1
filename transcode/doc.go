// Package transcode is the engine of the video transcoding plugin
// (cmd/ucgate-transcode): it turns one RTP video stream from VP8 into H.264
// (constrained baseline, packetization-mode 1, as SIP video phones and
// browsers negotiate it) or from H.264 into VP8, for calls whose offer and
// answer share no video codec. Audio is not its business.
//
// It owns, per stream: the frame assembler (RTP packets to complete frames,
// reordering within a jitter window, loss declared beyond it, malformed
// packetization refused, nothing handed to the decoder after a loss until a
// keyframe), decoding, scaling, encoding, packetization, and the feedback
// loop: a loss or a decoder error asks upstream for a keyframe through a
// callback the host turns into a PLI or FIR; a PLI or FIR from the receiver
// forces an output keyframe; REMB (or an estimate from TWCC given to
// SetBitrate; no host computes one yet) sets the output bitrate, and from
// then on the output steps down to half the size, half the frame rate, a
// quarter of the size when the bitrate leaves too few bits per pixel, and
// back up when it allows (one step per 2 s at most); size and frame rate can
// also be set at run time.
//
// Codec libraries, all Debian packages used through cgo:
//
//   - libvpx (libvpx-dev) decodes and encodes VP8. It is the reference VP8
//     implementation and what Chromium and Firefox send and receive VP8 with;
//     its real-time mode (CBR, no lag, error resilient) is the one WebRTC uses.
//   - openh264 (libopenh264-dev) decodes and encodes H.264. Its encoder
//     produces exactly constrained baseline (CAVLC, one reference frame, no B
//     frames), it was written for real-time communication, it is BSD-licensed
//     (x264 is GPL, which would bind the plugin's licence), and it is what
//     Firefox and libwebrtc use for H.264.
//   - libyuv (libyuv-dev) scales I420 pictures; it is libwebrtc's scaler.
//
// libavcodec was the alternative: one API for both codecs, but its H.264
// encoder is x264 (GPL) and its native decoders are what the tests use as the
// independent decoder (the ffmpeg command), so using them here would make the
// tests check the transcoder against itself.
//
// Depacketization and packetization use pion/rtp's codecs (VP8Packet,
// H264Packet, VP8Payloader, H264Payloader); the assembler around them checks
// what pion does not (an FU-A without its start, a second frame start inside
// a frame, packetization-mode 2 units) and fails closed.
//
// Everything that arrives is hostile: packets are bounded (1500 bytes, a
// configured number per frame), a VP8 keyframe declaring a picture beyond
// max_input_width x max_input_height is refused before libvpx sees it (an
// H.264 picture once decoded, before it is scaled or encoded), and
// bad input is counted and dropped, never an error or a panic.
//
// It imports neither protocols nor core beyond core/config (configuration
// errors); the plugin binary wires it to the plugin contract.
package transcode
