// Package rtpguard is the content stage that defends relayed media
// against injection: for every direction of every stream the media relay
// anchors, it checks each RTP packet's header (version 2, CSRC count,
// extension and padding consistent with the length), its payload type
// (one of those negotiated), its SSRC (locked on the first valid packet),
// its sequence number and timestamp (within a window of the stream's
// progression and of the codec's clock) and the stream's packet and byte
// rates, and tells the relay to drop what fails. RTCP packets are only
// checked to be plausibly RTCP, and counted against the rates.
//
// The stage itself decides nothing on events (Decide allows); it
// implements core.MediaStage: the relay calls Guard once per stream
// direction, then the guard's Check for every packet from that
// direction's reader goroutine (allocation-free, lock-free),
// Renegotiate from the signalling goroutine after a re-INVITE, and Close
// when the stream ends.
//
// rtpguard imports core and core/config only; it never imports protocols,
// another policy or plugins.
package rtpguard
