// Package conncap caps stream connections (TCP, TLS, WebSocket): how many
// one source may hold and how many the gateway holds in total, and the
// timeouts the adapter applies to them (slow-loris defence).
//
// It counts a connection when DecidePacket sees a new one
// (core.PacketMeta.Conn) and allows it, and uncounts it when the adapter
// reports it closed (core.ConnTracker). Datagrams pass untouched. It
// publishes its timeouts through core.ConnTimeouts; the adapter sets the
// deadlines.
//
// It runs in the network layer (core.Network) and implements
// core.PacketStage. It imports nothing from the module but core and
// core/config; it never imports protocols/ or another policy.
package conncap
