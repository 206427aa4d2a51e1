package media

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
)

// ErrNoPorts reports that a family's port range is spent: the adapter
// refuses the offer as temporarily unavailable (SIP 503).
var ErrNoPorts = errors.New("media: no relay ports left")

// bindTries bounds how many free pairs one allocation tries to bind when
// other programs hold ports of the range.
const bindTries = 16

// pool hands out pairs of relay sockets (an even RTP port and the next
// for RTCP) from one family's range. Taking and returning a pair is O(1):
// the free pairs sit in a slice, one is picked at random (so that ports
// cannot be predicted) and swapped with the last.
type pool struct {
	family    Family
	addr      netip.Addr // bind address
	advertise netip.Addr // address written into descriptions
	size      int

	mu   sync.Mutex
	free []uint16 // even RTP ports
	rnd  *rand.Rand
}

func newPool(f Family, fc FamilyConfig) (*pool, error) {
	addr, err := netip.ParseAddr(fc.Address)
	if err != nil {
		return nil, err
	}
	adv := addr
	if fc.Advertise != "" {
		if adv, err = netip.ParseAddr(fc.Advertise); err != nil {
			return nil, err
		}
	}
	lo, hi, err := parsePorts(fc.Ports)
	if err != nil {
		return nil, err
	}
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	p := &pool{family: f, addr: addr, advertise: adv, rnd: rand.New(rand.NewChaCha8(seed))}
	for port := uint32(lo); port+1 <= uint32(hi); port += 2 {
		p.free = append(p.free, uint16(port))
	}
	p.size = len(p.free)
	return p, nil
}

// side is the pair of relay sockets facing one leg of one stream.
type side struct {
	pool      *pool
	port      uint16 // even: RTP; port+1: RTCP
	rtp, rtcp *net.UDPConn
}

// endpoint is where the leg sends RTP to reach the gateway.
func (s *side) endpoint() netip.AddrPort { return netip.AddrPortFrom(s.pool.advertise, s.port) }

// get takes a free pair and binds it.
func (p *pool) get() (*side, error) {
	network := "udp4"
	if p.family == FamilyIPv6 {
		network = "udp6"
	}
	var lastErr error
	for range bindTries {
		port, ok := p.take()
		if !ok {
			break
		}
		rtp, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.addr, port)))
		if err != nil {
			p.put(port)
			lastErr = err
			continue
		}
		rtcp, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.addr, port+1)))
		if err != nil {
			rtp.Close()
			p.put(port)
			lastErr = err
			continue
		}
		return &side{pool: p, port: port, rtp: rtp, rtcp: rtcp}, nil
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoPorts, p.family, lastErr)
	}
	return nil, fmt.Errorf("%w: %s", ErrNoPorts, p.family)
}

func (p *pool) take() (uint16, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.free)
	if n == 0 {
		return 0, false
	}
	i := p.rnd.IntN(n)
	port := p.free[i]
	p.free[i] = p.free[n-1]
	p.free = p.free[:n-1]
	return port, true
}

func (p *pool) put(port uint16) {
	p.mu.Lock()
	p.free = append(p.free, port)
	p.mu.Unlock()
}

// Free reports how many pairs are free.
func (p *pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// close closes the side's sockets; release returns its ports. The two are
// apart so that a call can close every socket, wait for its readers and
// only then let the ports go to another call.
func (s *side) close() {
	s.rtp.Close()
	s.rtcp.Close()
}

func (s *side) release() { s.pool.put(s.port) }
