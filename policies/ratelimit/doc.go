// Package ratelimit is the per-source rate limit: token buckets on packets
// and on bytes for every source, with a larger budget for trusted sources
// (trunks), flood detection that hands persistent offenders to the
// blacklist, and a global budget that sheds load last.
//
// It decides on every datagram and every new connection (DecidePacket),
// and on every parsed message that arrived on a stream (Decide: TCP, TLS
// and WebSocket reads do not pass through DecidePacket, so their messages
// are charged here; datagrams, already charged as packets, are not charged
// twice). The buckets use the generic cell rate algorithm: one timestamp
// per bucket, integer arithmetic.
//
// The per-source table is bounded (max_sources): it is sharded, each shard
// evicts its least recently seen source when full, and idle sources are
// swept. A known source costs a shard lock and a map lookup and never
// allocates; a flood of spoofed sources recycles evicted buckets.
//
// It runs in the network layer (core.Network) and implements
// core.PacketStage. It imports nothing from the module but core and
// core/config; it never imports protocols/ or another policy.
package ratelimit
