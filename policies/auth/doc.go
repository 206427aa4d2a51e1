// Package auth is the "auth" stage: SIP digest authentication enforcement
// (RFC 3261 section 22, RFC 7616, RFC 8760) in the application layer.
//
// It owns the challenge (realm, nonce, opaque, the algorithms offered, qop
// "auth"), the verification of the credentials a request carries
// (core.Event.Credentials, parsed by the adapter), the nonces (stateless:
// an HMAC-SHA256 over the issue time, a random salt, the source address and
// the realm, under a key kept in the data directory) and the nonce-count
// replay table. Users come from the configuration (HA1 hashes only) and
// from core.State (core.User, written by `ucgate users add`).
//
// Which requests it challenges is configured per zone (register, invite,
// message, subscribe, ...); in-dialog requests of a known dialog, ACK and
// CANCEL are never challenged, nor are trusted zones and sources.
//
// A failure never tells an unknown user from a wrong password: both get
// the same refusal after the same delay, cost the same CPU (a digest over
// a dummy HA1 for unknown users) and raise the same security event
// ("auth/failure") except for the username, which the bruteforce stage
// counts.
//
// The package also exports HA1 and Response, the digest computations, for
// the `ucgate users` command and for test clients.
//
// auth imports core and the standard library only: never protocols/ nor
// another policy.
package auth
