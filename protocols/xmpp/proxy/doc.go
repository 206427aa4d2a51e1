// Package proxy is the XMPP client-to-server security proxy: it accepts
// XMPP clients (RFC 6120) on STARTTLS and direct TLS (XEP-0368) listeners,
// terminates their TLS, and relays each client stream to the protected
// XMPP server (Prosody, ejabberd) over a stream of its own, element by
// element, after checking each one.
//
// It owns the client side of the stream: stream headers and features
// (STARTTLS is offered and done here; the server's own STARTTLS offer is
// hidden), the XML restrictions and limits (through protocols/xmpp/wire:
// no DTD, entity or processing instruction, bounded size, depth and
// attributes), JID validation (RFC 7622, mellium.im/xmpp/jid), stanzas
// before authentication, the per-connection stanza rate, and the
// observation of the server's SASL answers (failures are security events
// the bruteforce stage counts). Each stanza becomes a core.Event through
// the gateway's pipeline (network stages per source, tlsrequired,
// validate, bruteforce, ...); refusals are answered as XMPP stream or
// stanza errors and journaled with the rule that decided.
//
// It must not import another adapter, nor a policy package: stages are
// reached through core.Pipeline.
package proxy
