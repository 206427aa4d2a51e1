package core

import (
	"context"
	"net/netip"
	"time"
)

// Stage is one security control. Decide is called concurrently and must
// return promptly: it may consult State, never wait on a peer.
type Stage interface {
	Name() string
	Layer() Layer // Network, Application or Content
	// Decide returns the verdict for ev. A non-nil error means the stage
	// could not decide; the pipeline applies the stage's failure mode (fail
	// closed unless configured otherwise) and journals the error.
	Decide(ctx context.Context, ev *Event) (Verdict, error)
}

// PacketMeta is what a network stage sees of a datagram or a new
// connection, before anything is parsed. Data must not be retained.
type PacketMeta struct {
	Src       netip.AddrPort
	Local     netip.AddrPort
	Transport string
	Zone      string
	// Conn is true when the meta describes a new stream connection rather
	// than a datagram or a read.
	Conn bool
	Data []byte
}

// PacketStage is the optional ability of a network stage to decide on raw
// packets and connections. DecidePacket must not allocate and must not
// block: it runs for every datagram, including a flood's.
type PacketStage interface {
	DecidePacket(p *PacketMeta) Verdict
}

// FailOpener is the optional ability of a stage to be configured to fail
// open: when Decide errs, FailOpen reports true and the event is allowed.
type FailOpener interface {
	FailOpen() bool
}

// ConnTracker is the optional ability of a network stage that counted a
// connection in DecidePacket (PacketMeta.Conn) to learn that it closed.
type ConnTracker interface {
	ConnClosed(p *PacketMeta)
}

// ConnTimeouts is the optional ability of a network stage to bound
// connections: how long a new connection may take to send its first
// bytes (its TLS handshake included), and how long an idle one is kept.
// The adapter applies the first stage's values.
type ConnTimeouts interface {
	Timeouts() (handshake, idle time.Duration)
}

// SessionBinder is the optional ability of a stage to keep per-session state:
// Bind is called when a session starts, Unbind when it ends.
type SessionBinder interface {
	Bind(s *Session)
	Unbind(s *Session)
}
