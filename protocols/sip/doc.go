// Package sip is ucgate's SIP adapter: a back-to-back user agent built on
// github.com/emiago/sipgo.
//
// It owns the SIP listeners (UDP, TCP, TLS, WS, WSS on IPv4 and IPv6), the
// routing of requests to upstreams, the two dialogs of every call and the
// mapping between them, the registration binding table, and topology hiding:
// nothing a peer sends crosses to the other leg unless it is on a short list
// of safe headers, and every leg gets the gateway's own Call-ID, tags, Via
// and Contact.
//
// It also owns the SIP side of interworking on the core bridge (bridge.go,
// presence.go, pidf.go): SIP users' addresses in the bridged domain, SIP
// MESSAGE to and from core.Message, and presence subscriptions both ways as
// SUBSCRIBE/NOTIFY dialogs with PIDF bodies (RFC 7247, 7248, 7572).
//
// On calls with a browser leg it negotiates video transcoding
// (transcode.go): an offer with only one of VP8 and H.264 is given the
// other while the Transcoder runs, and a stream answered with that codec
// only is carried through the transcoder by core/media transforms.
//
// It translates SIP into core events, runs the core pipeline on them and
// maps verdicts back into SIP (sipStatus is the only place where SIP codes
// meet core reasons). It decides nothing itself beyond what SIP requires
// (a message it cannot process gets 400). It must not import another adapter
// or a policy.
package sip
