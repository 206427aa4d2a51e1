// Package srtp is the stage that keeps media encrypted where the operator
// says it must be: a session offer or update (SIP INVITE, re-INVITE,
// UPDATE) arriving from a zone that requires SRTP is refused with
// core.ReasonNotAcceptable (the SIP adapter answers 488 "SRTP Required")
// when its media is not protected (core.MediaDesc.Encrypted: an SDES
// crypto attribute or a DTLS fingerprint on every enabled stream), or when
// a stream protected by SDES alone offers only crypto suites outside the
// configured list.
//
// It runs in the application layer on the parsed event and reads only
// core.Event.Kind, Src.Zone and Media (the streams' suites and
// fingerprints, never the key material). No zone requires SRTP by default.
//
// srtp imports core and core/config only; it never imports protocols,
// another policy or plugins.
package srtp
