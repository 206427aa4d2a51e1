package component

import "github.com/ucgate/ucgate/core"

// stanzaConditions maps a neutral reason to the stanza error an
// interworked stanza is refused with (RFC 7247 section 7 for the reasons a
// SIP status maps to; RFC 6120 section 8.3.3 for the others): its type
// and condition.
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

func stanzaCondition(r core.Reason) (typ, cond string) {
	if c, ok := stanzaConditions[r]; ok {
		return c[0], c[1]
	}
	return "cancel", "undefined-condition"
}
