// Package e2e holds ucgate's end-to-end tests: the real gateway binary
// against real peers that we did not write (sipp, baresip, socat, ...), on
// loopback and free ports, every process stopped by its PID. The peers'
// recipes are in ../shared/PEERS.md; the harness is in e2e/harness.
package e2e
