// Package host runs ucgate's out-of-process plugins (plugins/sdk) with
// hashicorp/go-plugin over gRPC: it starts each configured binary after
// checking its SHA-256 (go-plugin's SecureConfig), with automatic mutual
// TLS, negotiates the contract version, health-checks it, and restarts it
// with backoff when it crashes or hangs, ending its sessions with CDRs that
// say why. Plugin output goes to slog with plugin=<name>; each plugin has
// its metrics (calls, errors, restarts, round-trip latency).
//
// It joins plugins to the gateway: a protocol plugin serves its domain on
// the core bridge (its messages run the pipeline, are journaled and are
// delivered to the adapter of the addressee's domain, and messages for its
// domain are delivered to it); stage plugins run together as the "plugins"
// stage of core.StageOrder, each under a deadline with its failure mode;
// media plugins open streams for the media engine.
//
// Everything a plugin sends is untrusted: messages are bounded in size,
// converted to core types only after checks (convert.go), rate limited,
// and refused when they name sessions the plugin does not own; refusals
// are journaled with the rule that decided and never stop the host.
//
// It imports core and plugins/sdk, never a protocol adapter.
package host
