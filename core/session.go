package core

import (
	"crypto/rand"
	"encoding/hex"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// SessionID names a session for its whole life and in its CDR.
type SessionID string

// NewSessionID returns a fresh session id: 6 bytes of the time in
// milliseconds then 6 random bytes, as 24 hex digits. Ids made later sort
// later, which keeps the journal's session index an append.
func NewSessionID() SessionID {
	var b [12]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	rand.Read(b[6:])
	return SessionID(hex.EncodeToString(b[:]))
}

// SessionState is where a session is in its life.
type SessionState uint8

// Session states.
const (
	StateOffered SessionState = iota
	StateEarly                // provisional answer with media
	StateAnswered
	StateEnded
)

var stateNames = [...]string{"offered", "early", "answered", "ended"}

func (s SessionState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state?"
}

// Roles of the two parties and of the gateway when it ends a call.
const (
	RoleCaller  = "caller"
	RoleCallee  = "callee"
	RoleGateway = "gateway"
)

// Leg is one side of a session, owned by one adapter.
type Leg struct {
	Role      string `json:"role"` // RoleCaller or RoleCallee
	Protocol  string `json:"protocol"`
	Transport string `json:"transport"`
	Encrypted bool   `json:"encrypted"` // signalling encrypted (TLS, WSS)
	// MediaEncrypted says the leg's media is protected (SRTP, DTLS-SRTP).
	MediaEncrypted bool           `json:"media_encrypted"`
	Zone           string         `json:"zone,omitempty"`
	Remote         netip.AddrPort `json:"remote"`
	Local          netip.AddrPort `json:"local"`
	CallID         string         `json:"call_id"` // the protocol's own id for this leg (SIP Call-ID)
	Party          Identity       `json:"party"`
	Upstream       string         `json:"upstream,omitempty"` // the configured upstream this leg goes to, if any
	// MediaCrypto names the media protection: "dtls-srtp", "sdes-srtp"
	// or "" (plain RTP).
	MediaCrypto string `json:"media_crypto,omitempty"`
}

// Session is a call or a chat between legs. The session table is the single
// truth about what exists: in-dialog validation, admission control, CDRs
// and capture read it.
type Session struct {
	ID      SessionID
	Kind    string // "call", "chat"
	From    Identity
	To      Identity
	Created time.Time

	mu        sync.Mutex
	state     SessionState
	legs      [2]Leg // caller, callee
	answered  time.Time
	ended     time.Time
	endReason string
	endedBy   string
	status    int // final status of the setup, protocol's own code
}

// NewSession starts a session offered by caller.
func NewSession(kind string, from, to Identity, caller Leg, now time.Time) *Session {
	caller.Role = RoleCaller
	s := &Session{ID: NewSessionID(), Kind: kind, From: from, To: to, Created: now}
	s.legs[0] = caller
	return s
}

// SetCallee records the leg toward the called party.
func (s *Session) SetCallee(l Leg) {
	l.Role = RoleCallee
	s.mu.Lock()
	s.legs[1] = l
	s.mu.Unlock()
}

// UpdateLeg changes a leg under the session's lock.
func (s *Session) UpdateLeg(role string, f func(l *Leg)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if role == RoleCaller {
		f(&s.legs[0])
	} else {
		f(&s.legs[1])
	}
}

// Legs returns a copy of the caller's and callee's legs.
func (s *Session) Legs() (caller, callee Leg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.legs[0], s.legs[1]
}

// State returns the session's state.
func (s *Session) State() SessionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Early marks early media; it does nothing once answered or ended.
func (s *Session) Early() {
	s.mu.Lock()
	if s.state == StateOffered {
		s.state = StateEarly
	}
	s.mu.Unlock()
}

// Answer marks the session answered at t. It reports false if the session
// had already been answered or ended.
func (s *Session) Answer(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state >= StateAnswered {
		return false
	}
	s.state = StateAnswered
	s.answered = t
	return true
}

// End marks the session ended and returns its CDR. Only the first call
// ends the session; later calls return nil, so that exactly one CDR is
// written whatever races (a BYE from both sides, a CANCEL crossing a 200).
func (s *Session) End(t time.Time, status int, reason, by string) *CDR {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == StateEnded {
		return nil
	}
	s.state = StateEnded
	s.ended = t
	s.endReason = reason
	s.endedBy = by
	if s.status == 0 {
		s.status = status
	}
	return s.cdrLocked()
}

// SetStatus records the final status of the session's setup.
func (s *Session) SetStatus(status int) {
	s.mu.Lock()
	if s.status == 0 || status >= 200 {
		s.status = status
	}
	s.mu.Unlock()
}

func (s *Session) cdrLocked() *CDR {
	c := &CDR{
		Session:   s.ID,
		Kind:      s.Kind,
		From:      s.From.String(),
		To:        s.To.String(),
		Start:     s.Created,
		Answer:    s.answered,
		End:       s.ended,
		Status:    s.status,
		EndReason: s.endReason,
		EndedBy:   s.endedBy,
		Legs:      []Leg{s.legs[0], s.legs[1]},
	}
	if !s.answered.IsZero() {
		c.Duration = s.ended.Sub(s.answered)
	}
	return c
}

// Sessions is the session table. It is sharded so that a busy gateway's
// call setups do not queue on one lock.
type Sessions struct {
	seed   maphash.Seed
	shards [64]sessionShard
}

type sessionShard struct {
	mu sync.RWMutex
	m  map[SessionID]*Session
}

// NewSessions returns an empty session table.
func NewSessions() *Sessions {
	t := &Sessions{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[SessionID]*Session)
	}
	return t
}

func (t *Sessions) shard(id SessionID) *sessionShard {
	return &t.shards[maphash.String(t.seed, string(id))&63]
}

// Add puts s in the table.
func (t *Sessions) Add(s *Session) {
	sh := t.shard(s.ID)
	sh.mu.Lock()
	sh.m[s.ID] = s
	sh.mu.Unlock()
}

// Get finds a session by id.
func (t *Sessions) Get(id SessionID) (*Session, bool) {
	sh := t.shard(id)
	sh.mu.RLock()
	s, ok := sh.m[id]
	sh.mu.RUnlock()
	return s, ok
}

// Remove takes a session out of the table.
func (t *Sessions) Remove(id SessionID) {
	sh := t.shard(id)
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
}

// Len counts the sessions in the table.
func (t *Sessions) Len() int {
	n := 0
	for i := range t.shards {
		t.shards[i].mu.RLock()
		n += len(t.shards[i].m)
		t.shards[i].mu.RUnlock()
	}
	return n
}

// Range calls f for every session until f returns false. f must not call
// back into the table.
func (t *Sessions) Range(f func(*Session) bool) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		list := make([]*Session, 0, len(sh.m))
		for _, s := range sh.m {
			list = append(list, s)
		}
		sh.mu.RUnlock()
		for _, s := range list {
			if !f(s) {
				return
			}
		}
	}
}
