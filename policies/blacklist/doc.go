// Package blacklist is the gateway's blacklist: sources (addresses or
// prefixes) that are dropped on sight, for a time that grows with each
// repeat offence.
//
// Blocks come from other stages through core.Blocker (the Stage
// implements it: flood detection in ratelimit, scan and brute-force
// detection), and from the operator through List, Add and Remove and the
// HTTP handler the admin server mounts. Every block raises a
// core.SecurityEvent and is persisted through core.State, so a restart or
// a reload keeps it; the packet path reads an immutable snapshot through an
// atomic pointer and never locks or allocates.
//
// It runs in the network layer (core.Network) and implements
// core.PacketStage. It imports nothing from the module but core and
// core/config; it never imports protocols/ or another policy.
package blacklist
