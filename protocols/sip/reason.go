package sip

import "github.com/ucgate/ucgate/core"

// sipStatus maps every core reason to the SIP status and reason phrase the
// gateway answers with. It is the only place where the two meet.
var sipStatus = map[core.Reason]struct {
	code   int
	phrase string
}{
	core.ReasonMalformed:          {400, "Bad Request"},
	core.ReasonForbidden:          {403, "Forbidden"},
	core.ReasonUnauthorized:       {401, "Unauthorized"},
	core.ReasonRateLimited:        {503, "Service Unavailable"},
	core.ReasonNotFound:           {404, "Not Found"},
	core.ReasonNoRoute:            {404, "No Route"},
	core.ReasonNoDialog:           {481, "Call/Transaction Does Not Exist"},
	core.ReasonBusy:               {486, "Busy Here"},
	core.ReasonUnavailable:        {503, "Service Unavailable"},
	core.ReasonTooLarge:           {513, "Message Too Large"},
	core.ReasonLoop:               {483, "Too Many Hops"},
	core.ReasonNotAcceptable:      {488, "Not Acceptable Here"},
	core.ReasonEncryptionRequired: {403, "TLS Required"},
	core.ReasonUnsupported:        {501, "Not Implemented"},
	core.ReasonTimeout:            {408, "Request Timeout"},
	core.ReasonInternal:           {500, "Server Internal Error"},
	core.ReasonVersion:            {505, "Version Not Supported"},
}

// statusFor returns the SIP status for a refusing verdict.
func statusFor(v core.Verdict) (int, string) {
	s, ok := sipStatus[v.Reason]
	if !ok {
		return 500, "Server Internal Error"
	}
	phrase := s.phrase
	if v.Detail != "" && s.code == 400 {
		phrase = v.Detail
	}
	return s.code, phrase
}
