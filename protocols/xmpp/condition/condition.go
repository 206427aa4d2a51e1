// Package condition owns the mapping of the core's neutral refusal reasons
// to XMPP's error conditions: the stanza errors (type and condition) and
// the stream errors that the XMPP proxy and the component answer with.
package condition

import "github.com/ucgate/ucgate/core"

// stanzaConditions maps a neutral reason to the stanza error a refused
// stanza is answered with (RFC 6120 section 8.3.3): its type and
// condition.
var stanzaConditions = map[core.Reason][2]string{
	core.ReasonMalformed:          {"modify", "bad-request"},
	core.ReasonForbidden:          {"auth", "forbidden"},
	core.ReasonUnauthorized:       {"auth", "not-authorized"},
	core.ReasonRateLimited:        {"wait", "policy-violation"},
	core.ReasonNotFound:           {"cancel", "item-not-found"},
	core.ReasonNoRoute:            {"cancel", "remote-server-not-found"},
	core.ReasonNoDialog:           {"cancel", "item-not-found"},
	core.ReasonBusy:               {"wait", "resource-constraint"},
	core.ReasonUnavailable:        {"cancel", "service-unavailable"},
	core.ReasonTooLarge:           {"modify", "policy-violation"},
	core.ReasonLoop:               {"cancel", "undefined-condition"},
	core.ReasonNotAcceptable:      {"modify", "not-acceptable"},
	core.ReasonEncryptionRequired: {"cancel", "policy-violation"},
	core.ReasonUnsupported:        {"cancel", "feature-not-implemented"},
	core.ReasonTimeout:            {"wait", "remote-server-timeout"},
	core.ReasonInternal:           {"wait", "internal-server-error"},
	core.ReasonVersion:            {"cancel", "feature-not-implemented"},
}

// streamConditions maps a neutral reason to the stream error a refused
// stream ends with (RFC 6120 section 4.9.3).
var streamConditions = map[core.Reason]string{
	core.ReasonMalformed:          "bad-format",
	core.ReasonForbidden:          "policy-violation",
	core.ReasonUnauthorized:       "not-authorized",
	core.ReasonRateLimited:        "policy-violation",
	core.ReasonNotFound:           "host-unknown",
	core.ReasonNoRoute:            "host-unknown",
	core.ReasonNoDialog:           "policy-violation",
	core.ReasonBusy:               "resource-constraint",
	core.ReasonUnavailable:        "resource-constraint",
	core.ReasonTooLarge:           "policy-violation",
	core.ReasonLoop:               "policy-violation",
	core.ReasonNotAcceptable:      "policy-violation",
	core.ReasonEncryptionRequired: "policy-violation",
	core.ReasonUnsupported:        "unsupported-feature",
	core.ReasonTimeout:            "connection-timeout",
	core.ReasonInternal:           "internal-server-error",
	core.ReasonVersion:            "unsupported-version",
}

// Stanza returns the stanza error, type and condition, a stanza refused
// for reason r is answered with (RFC 6120 section 8.3.3; for the reasons a
// SIP status maps to, RFC 7247 section 7).
func Stanza(r core.Reason) (typ, cond string) {
	if c, ok := stanzaConditions[r]; ok {
		return c[0], c[1]
	}
	return "cancel", "undefined-condition"
}

// Stream returns the stream error a stream refused for reason r ends with
// (RFC 6120 section 4.9.3).
func Stream(r core.Reason) string {
	if c, ok := streamConditions[r]; ok {
		return c
	}
	return "undefined-condition"
}
