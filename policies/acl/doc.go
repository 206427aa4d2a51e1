// Package acl is the network-layer access list: CIDR allow and deny lists,
// IPv4 and IPv6, per zone. It decides on a packet or a new connection from
// its source address alone, before anything is parsed, and drops what the
// lists refuse.
//
// The lists are compiled at New into sorted, disjoint address ranges per
// address family; a packet costs one or two binary searches and never
// allocates. IPv4-mapped IPv6 sources (::ffff:192.0.2.7, as dual-stack
// sockets report them) are matched as the IPv4 address they carry.
//
// It runs in the network layer (core.Network) and implements
// core.PacketStage. It imports nothing from the module but core and
// core/config; it never imports protocols/ or another policy.
package acl
