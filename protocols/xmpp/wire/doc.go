// Package wire reads XMPP streams (RFC 6120) at the token level, with
// limits, for the XMPP adapter's proxy.
//
// A Reader hands out a stream one top-level item at a time: the stream
// header, each stanza or negotiation element as a small tree together with
// the exact bytes it arrived as (so the proxy relays what it checked,
// byte for byte), whitespace keepalives, and the stream's close. It
// refuses, with an error naming what was wrong, the XML that RFC 6120
// section 11.1 restricts (a document type declaration, and with it every
// entity declaration: billion laughs and external entities; entity
// references other than the five predefined ones; comments; processing
// instructions other than the XML declaration), XML that is not
// well-formed or not namespace-well-formed (duplicate attributes, undeclared
// prefixes, mismatched tags, invalid UTF-8), and input beyond its limits:
// bytes per top-level element, element depth, attributes per element,
// elements per top-level element. No input makes it hold more than
// Limits.MaxSize bytes of one element, nor a tree of more than
// Limits.MaxElements elements.
//
// It knows XML and the stream framing, nothing of stanza semantics: the
// adapter decides what an element means. It must not import core or an
// adapter.
package wire
