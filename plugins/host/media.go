package host

import (
	"context"
	"errors"
	"sync"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/plugins/sdk"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// ErrUnavailable reports a plugin that is not running (starting,
// restarting, failed) or not of the kind asked for.
var ErrUnavailable = errors.New("host: plugin not available")

// mediaStreams are the streams open through a media plugin, by session.
type mediaStreams struct {
	mu sync.Mutex
	m  map[*sdk.MediaConn]core.SessionID
}

func (s *mediaStreams) add(c *sdk.MediaConn, id core.SessionID) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*sdk.MediaConn]core.SessionID{}
	}
	s.m[c] = id
	s.mu.Unlock()
}

func (s *mediaStreams) remove(c *sdk.MediaConn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *mediaStreams) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// closeAll closes every stream and tells the media engine which sessions
// lost their plugin.
func (s *mediaStreams) closeAll(h *Host, reason string) {
	s.mu.Lock()
	m := s.m
	s.m = nil
	s.mu.Unlock()
	seen := map[core.SessionID]bool{}
	fs := h.lostFuncs()
	for c, id := range m {
		c.Close()
		if !seen[id] {
			seen[id] = true
			for _, f := range fs {
				f(id, reason)
			}
		}
	}
}

// OpenMedia opens one stream direction of session through the media
// plugin name; recv gets the packets it returns. Close the stream with
// CloseMedia.
func (h *Host) OpenMedia(ctx context.Context, name string, session core.SessionID, o *pb.MediaOpen, recv func(*pb.Packet)) (*sdk.MediaConn, error) {
	p, ok := h.Plugin(name)
	if !ok {
		return nil, ErrUnavailable
	}
	mc := p.media.Load()
	if mc == nil {
		return nil, ErrUnavailable
	}
	p.calls.Add(1)
	p.mCalls.Inc()
	c, err := mc.Open(ctx, o, recv)
	if err != nil {
		p.errs.Add(1)
		p.mErrs.Inc()
		p.signal("")
		return nil, err
	}
	p.streams.add(c, session)
	return c, nil
}

// CloseMedia closes a stream opened with OpenMedia. Call it for every
// stream, also one the plugin ended (Done): the host holds each stream
// until then, to report it lost if the plugin stops.
func (h *Host) CloseMedia(name string, c *sdk.MediaConn) error {
	if p, ok := h.Plugin(name); ok {
		p.streams.remove(c)
	}
	return c.Close()
}
