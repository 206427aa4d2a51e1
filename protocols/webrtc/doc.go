// Package webrtc owns the WebRTC leg of a call: a browser that speaks SIP
// over a WebSocket (JsSIP, SIP.js) and sends its media with ICE and
// DTLS-SRTP. It translates the browser's session descriptions for the SIP
// side (codecs narrowed to the set both sides carry without transcoding,
// WebRTC-only attributes dropped) and the SIP side's back (ICE-lite
// credentials, the gateway's DTLS fingerprint, one host candidate per
// stream: the relay port core/media gave the leg), and it terminates ICE
// and DTLS on that relay port through core/media's seam (Call.PacketConn):
// it answers the browser's connectivity checks (pion/stun), runs the DTLS
// handshake (pion/dtls, the library pion/webrtc uses), refuses a peer
// whose certificate does not match the fingerprint its description
// announced (fail closed), and gives the exported SRTP keys to the relay
// (Call.SetKeys). RTP and RTCP never pass through this package: the relay
// decrypts, checks and forwards them, RTCP reports and the picture loss
// and full intra requests of video included, to the other leg. Once a
// stream is keyed it starts the relay's own RTCP toward the browser
// (Call.SetFeedback): the NACK responder, when the descriptions agreed on
// generic NACK, and reports while the SIP side sends none.
//
// The SIP adapter reaches this package through an interface of its own;
// cmd/ucgate joins them.
package webrtc
