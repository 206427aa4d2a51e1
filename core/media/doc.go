// Package media is the content layer's media anchoring engine: it relays
// every call's RTP and RTCP through the gateway.
//
// It owns the relay port pools (one per address family), the offer/answer
// rewriting of neutral media descriptions (core.MediaDesc: each stream
// pointed at a relay endpoint in the other leg's family, ICE and DTLS
// details dropped, SDES keys replaced by the gateway's own), latching to
// the real source of each stream (NAT, mobile moves), IPv4 <-> IPv6
// bridging, SDES-SRTP (RFC 4568) termination and origination with replay
// protection, the per-packet checks (source, header sanity, SRTP, rate,
// and the content stages' StreamGuards), the per-stream figures of the
// CDR (core.MediaStats) and the media timeout.
//
// An Engine is built once from Config; the adapter makes one Call per
// session and drives it with Offer, Answer and Update on core.MediaDesc
// plus PeerInfo (what the signalling knows that SDP does not say). SDP
// text never reaches this package.
//
// The relay is one goroutine per socket. A packet is read into the
// reader's own buffer, checked, decrypted and encrypted in place and
// written to the other leg's socket: no allocation and no lock per RTP
// packet. DTLS-SRTP (WebRTC) is keyed outside: for a leg negotiated as
// SRTPDTLS the WebRTC adapter runs ICE and DTLS over Call.PacketConn
// (the STUN and DTLS packets that reach the leg's relay port) and hands
// the exported keys to Call.SetKeys. On such a leg the relay can also
// speak RTCP itself (Call.SetFeedback): it answers the leg's NACKs from a
// cache of what it sent and sends reports while the other leg sends
// none. A direction can be handed to a Transform (Call.SetTransform: the
// video transcoder): it gets that direction's checked RTP in the clear
// and the receiver's RTCP, and sends through a TransformOut, protected
// and rate-bounded like the relay's own output; other directions pay one
// pointer load.
//
// media imports core, core/config and the protocol-neutral media
// libraries pion/rtp, pion/rtcp and pion/srtp; it must not import a
// protocol library (sipgo, mellium, pion/webrtc), an adapter or a policy.
package media
