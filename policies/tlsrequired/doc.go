// Package tlsrequired is the stage that keeps signalling encrypted where
// the operator says it must be: a request arriving in a zone that requires
// encryption over a plain transport (UDP, TCP, WS) is refused with
// core.ReasonEncryptionRequired, which the SIP adapter answers with 403.
//
// It runs in the application layer and reads only core.Event.Src (zone and
// Encrypted). No zone requires encryption by default: the embedded demo
// configuration listens on loopback over plain UDP and TCP as well as TLS
// and WSS, all in one zone.
//
// tlsrequired imports core and core/config only; it never imports
// protocols, another policy or plugins.
package tlsrequired
