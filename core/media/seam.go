package media

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// foreignQueue bounds the STUN and DTLS packets waiting for the seam's
// reader; beyond it they are dropped (both protocols retransmit).
const foreignQueue = 64

// PacketConn returns the seam through which the WebRTC adapter runs ICE
// and DTLS for a leg negotiated as SRTPDTLS: reads return the STUN and
// DTLS packets (RFC 7983: first byte 0-3 or 20-63) the leg sent to the
// stream's relay RTP port, from any source (ICE checks come from every
// candidate; STUN and DTLS authenticate themselves); writes leave
// through that port. The adapter runs its handshake on it, exports the
// SRTP keys and gives them to SetKeys; RTP and RTCP never reach it.
// Closing it stops the delivery, not the relay. The stream must be
// running (after Answer).
func (c *Call) PacketConn(role string, index int) (net.PacketConn, error) {
	l, err := legIndex(role)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.dtlsStreamLocked(role, l, index, true)
	if err != nil {
		return nil, err
	}
	f := &foreignConn{conn: st.sides[l].rtp, ch: make(chan foreignPkt, foreignQueue), done: make(chan struct{}), wake: make(chan struct{})}
	if old := st.dirs[l].foreign.Swap(f); old != nil {
		old.Close()
	}
	return f, nil
}

type foreignPkt struct {
	b   []byte
	src netip.AddrPort
}

// foreignConn is the seam's net.PacketConn.
type foreignConn struct {
	conn *net.UDPConn
	ch   chan foreignPkt
	done chan struct{}
	once sync.Once

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{} // closed and replaced when the deadline changes
}

// deliver queues a copy of b; it never blocks the relay.
func (f *foreignConn) deliver(b []byte, src netip.AddrPort) bool {
	select {
	case <-f.done:
		return false
	default:
	}
	select {
	case f.ch <- foreignPkt{bytes.Clone(b), src}:
		return true
	default:
		return false
	}
}

// ReadFrom implements net.PacketConn.
func (f *foreignConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		select {
		case <-f.done:
			return 0, nil, net.ErrClosed
		default:
		}
		f.mu.Lock()
		dl, wake := f.deadline, f.wake
		f.mu.Unlock()
		var expired <-chan time.Time
		var t *time.Timer
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t = time.NewTimer(d)
			expired = t.C
		}
		select {
		case pk := <-f.ch:
			stopTimer(t)
			return copy(p, pk.b), net.UDPAddrFromAddrPort(pk.src), nil
		case <-f.done:
			stopTimer(t)
			return 0, nil, net.ErrClosed
		case <-wake:
			stopTimer(t)
		case <-expired:
			return 0, nil, os.ErrDeadlineExceeded
		}
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// WriteTo implements net.PacketConn: it sends through the relay port.
func (f *foreignConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-f.done:
		return 0, net.ErrClosed
	default:
	}
	return f.conn.WriteTo(p, addr)
}

// Close implements net.PacketConn; the relay port stays open.
func (f *foreignConn) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}

// LocalAddr implements net.PacketConn.
func (f *foreignConn) LocalAddr() net.Addr { return f.conn.LocalAddr() }

// SetDeadline implements net.PacketConn.
func (f *foreignConn) SetDeadline(t time.Time) error { return f.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (f *foreignConn) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	f.deadline = t
	close(f.wake)
	f.wake = make(chan struct{})
	f.mu.Unlock()
	return nil
}

// SetWriteDeadline implements net.PacketConn; UDP writes do not wait.
func (f *foreignConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.PacketConn = (*foreignConn)(nil)
