// Package validate is the strict message validation stage: it holds every
// message a lenient parser accepted to the gateway's own limits (size,
// header count, header line length, Via count, Content-Length against the
// body, Max-Forwards) and to the protocol rules the adapter found broken.
//
// It runs in the application layer on the facts the adapter measured in
// core.Event.Shape; it never sees the message itself. A request that fails
// is refused (core.ReasonMalformed, or core.ReasonTooLarge for size) with a
// short reason phrase in Verdict.Detail; a response that fails is dropped,
// since responses are never answered.
//
// validate imports core and core/config only; it never imports protocols,
// another policy or plugins.
package validate
