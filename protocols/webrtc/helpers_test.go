package webrtc

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	cmedia "github.com/ucgate/ucgate/core/media"
)

type mediaKeys = cmedia.Keys

var netipLoopback = netip.MustParseAddr("127.0.0.1")

// tee splits what a UDP socket receives as the relay does (RFC 7983):
// STUN and DTLS to foreign, everything else to rest.
type tee struct {
	foreign, rest *chanConn
}

func newTee(pc net.PacketConn) *tee {
	t := &tee{foreign: newChanConn(pc), rest: newChanConn(pc)}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				t.foreign.Close()
				t.rest.Close()
				return
			}
			to := t.rest
			if n > 0 && (buf[0] < 4 || buf[0] >= 20 && buf[0] <= 63) {
				to = t.foreign
			}
			select {
			case to.ch <- pkt{append([]byte(nil), buf[:n]...), addr}:
			default:
			}
		}
	}()
	return t
}

type pkt struct {
	b    []byte
	addr net.Addr
}

// chanConn is a net.PacketConn reading from a channel and writing to a
// socket.
type chanConn struct {
	pc   net.PacketConn
	ch   chan pkt
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	dl   time.Time
}

func newChanConn(pc net.PacketConn) *chanConn {
	return &chanConn{pc: pc, ch: make(chan pkt, 256), done: make(chan struct{})}
}

func (c *chanConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.mu.Lock()
	dl := c.dl
	c.mu.Unlock()
	var to <-chan time.Time
	if !dl.IsZero() {
		tm := time.NewTimer(time.Until(dl))
		defer tm.Stop()
		to = tm.C
	}
	select {
	case k := <-c.ch:
		return copy(p, k.b), k.addr, nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	case <-to:
		return 0, nil, os.ErrDeadlineExceeded
	}
}

func (c *chanConn) WriteTo(p []byte, a net.Addr) (int, error) { return c.pc.WriteTo(p, a) }
func (c *chanConn) Close() error                              { c.once.Do(func() { close(c.done) }); return nil }
func (c *chanConn) LocalAddr() net.Addr                       { return c.pc.LocalAddr() }
func (c *chanConn) SetDeadline(t time.Time) error             { return c.SetReadDeadline(t) }
func (c *chanConn) SetWriteDeadline(time.Time) error          { return nil }
func (c *chanConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.dl = t
	c.mu.Unlock()
	return nil
}
