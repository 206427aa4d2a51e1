// Package component is the XMPP side of interworking: ucgate joins the
// XMPP server as an external component (XEP-0114, mellium.im/xmpp's
// component negotiation) for a domain such as sip.example.com, the
// domain the SIP adapter serves on the core bridge (sip.bridge.domain).
//
// Stanzas the server routes to that domain (<message/> to
// alice@sip.example.com, presence subscriptions, probes and updates)
// become core.Message and core.Presence, pass the gateway's pipeline as a
// core.Event, and are handed to the adapter the bridge names for the
// domain; refusals come back as XMPP stanza errors (RFC 7247 section 7).
// The other way, Component is the core.Deliverer of the XMPP domains it
// reaches (xmpp.component.peer_domains): messages and presence from the
// bridge become stanzas sent from <user>@<component domain> through the
// component connection (RFC 7572 messages, RFC 7248 presence). Each
// interworked stanza is journaled with both sides' identities.
//
// It must not import another adapter or a policy package.
package component
