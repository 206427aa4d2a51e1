package core

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// State is what gateway nodes share: blocks (the blacklist), user
// credentials and small records. The embedded implementation keeps it in
// memory and a SQLite file in the data directory; a cluster uses Redis.
// Every method may be called concurrently.
type State interface {
	// PutBlock blocks b.Key until b.Until (replacing an existing block).
	PutBlock(ctx context.Context, b Block) error
	// DeleteBlock lifts a block; deleting a key that is not blocked is not
	// an error.
	DeleteBlock(ctx context.Context, key string) error
	// Blocks lists the blocks that have not expired.
	Blocks(ctx context.Context) ([]Block, error)

	// PutUser stores or replaces a user's credentials.
	PutUser(ctx context.Context, u User) error
	// GetUser finds a user; ErrNotFound if there is none.
	GetUser(ctx context.Context, name string) (User, error)
	// DeleteUser removes a user; ErrNotFound if there is none.
	DeleteUser(ctx context.Context, name string) error
	// Users lists every user.
	Users(ctx context.Context) ([]User, error)

	Close() error
}

// ErrNotFound reports a key that State does not hold.
var ErrNotFound = errors.New("state: not found")

// Block is one entry of the blacklist.
type Block struct {
	// Key is what is blocked: a source address ("192.0.2.7", "2001:db8::7")
	// or a prefix ("192.0.2.0/24").
	Key     string    `json:"key"`
	Until   time.Time `json:"until"`
	Created time.Time `json:"created"`
	// Rule is the rule that blocked it ("ratelimit/flood", "scan/agent",
	// "admin" for an operator's block); Reason says more.
	Rule   string `json:"rule"`
	Reason string `json:"reason,omitempty"`
	// Offences counts how often the key was blocked; block times grow with it.
	Offences int `json:"offences"`
}

// User is one user's credentials. Passwords are never stored: HA1 values
// are the digest hashes H(user:realm:password) for each algorithm (RFC
// 7616), which is all digest authentication needs.
type User struct {
	Name  string            `json:"name"`
	Realm string            `json:"realm"`
	HA1   map[string]string `json:"ha1"` // algorithm ("MD5", "SHA-256") -> hex digest
	// Disabled users fail authentication as if unknown.
	Disabled bool `json:"disabled,omitempty"`
}

// SecurityEvent is something an operator must know: a block, a lockout,
// an injection attempt, a scan. Stages raise them through Alerts; the
// journal stores them and triggers act on them.
type SecurityEvent struct {
	Time     time.Time `json:"time"`
	Rule     string    `json:"rule"` // the rule that raised it, "stage/rule"
	Action   string    `json:"action"`
	Src      string    `json:"src,omitempty"`
	Zone     string    `json:"zone,omitempty"`
	User     string    `json:"user,omitempty"`
	Session  SessionID `json:"session,omitempty"`
	Protocol string    `json:"protocol,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}

// Blocker puts a source on the blacklist. The blacklist stage implements
// it; other stages (flood, scan and brute-force detection) block through
// it. The block time grows with the source's repeat offences.
type Blocker interface {
	Block(src netip.Addr, rule, reason string)
}

// Alerter receives security events. Alert must not block.
type Alerter interface {
	Alert(e *SecurityEvent)
}

// AlertFunc adapts a function to Alerter.
type AlertFunc func(e *SecurityEvent)

// Alert implements Alerter.
func (f AlertFunc) Alert(e *SecurityEvent) { f(e) }
