// Package triggers acts on security events: each configured trigger
// matches events by rule (glob patterns such as "scan/*") and zone, and
// then calls a webhook (an HTTP POST of the event as JSON) or puts the
// event's source on the blacklist. Each trigger has its own rate limit;
// the events it suppresses are summed up in one "N suppressed" event sent
// through the same action when its window reopens.
//
// Triggers is not a pipeline stage: it is a core.Alerter that cmd/ucgate
// subscribes to core.Alerts. Alert never blocks: actions run on bounded
// queues with workers of their own, and Close drains them. On a
// configuration reload the new Triggers inherit the old ones' windows
// (Inherit), which retires the old ones.
//
// Loop safety: a block made by a trigger raises a security event with the
// rule "triggers/<name>". Events whose rule starts with "triggers/" only
// match patterns that name that prefix literally, a blacklist action may
// not match them at all, and a blacklist action skips a source it blocked
// recently, whatever rule the blacklist gives the event it raises.
//
// The package imports core and core/config only.
package triggers
