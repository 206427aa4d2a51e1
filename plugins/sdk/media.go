package sdk

import (
	"context"
	"errors"
	"io"
	"sync"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// ErrNoOpen reports a media stream whose first message is not MediaOpen.
var ErrNoOpen = errors.New("sdk: media stream must start with open")

// MediaPlugin serves (plugin side) and dispenses (host side) a media
// function.
type MediaPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Media
}

type mediaServer struct {
	pb.UnimplementedMediaServer
	impl Media
}

func (s mediaServer) Relay(st pb.Media_RelayServer) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return ErrNoOpen
	}
	var mu sync.Mutex
	send := func(p *pb.Packet) error {
		mu.Lock()
		defer mu.Unlock()
		return st.Send(p)
	}
	ms, err := s.impl.Open(st.Context(), open, send)
	if err != nil {
		return err
	}
	defer ms.Close()
	for {
		in, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if p := in.GetPacket(); p != nil {
			if err := ms.Packet(p); err != nil {
				return err
			}
		}
	}
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *MediaPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterMediaServer(s, mediaServer{impl: p.Impl})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin: it returns a *MediaClient.
func (p *MediaPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &MediaClient{c: pb.NewMediaClient(c)}, nil
}

// MediaClient is the host's handle on a media plugin.
type MediaClient struct{ c pb.MediaClient }

// MediaConn is one stream direction open through a media plugin.
type MediaConn struct {
	st     pb.Media_RelayClient
	cancel context.CancelFunc
	mu     sync.Mutex
	done   chan struct{}
	err    error
}

// Open starts a stream direction; recv is called, on one goroutine, for
// every packet the plugin returns. The stream lives until Close or until
// ctx ends.
func (c *MediaClient) Open(ctx context.Context, o *pb.MediaOpen, recv func(*pb.Packet)) (*MediaConn, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.c.Relay(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := st.Send(&pb.MediaIn{Msg: &pb.MediaIn_Open{Open: o}}); err != nil {
		cancel()
		return nil, err
	}
	mc := &MediaConn{st: st, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(mc.done)
		for {
			p, err := st.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					mc.err = err
				}
				return
			}
			recv(p)
		}
	}()
	return mc, nil
}

// Send sends one packet to the plugin.
func (m *MediaConn) Send(p *pb.Packet) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Send(&pb.MediaIn{Msg: &pb.MediaIn_Packet{Packet: p}})
}

// Done is closed when the plugin ends the stream (or the connection to it
// breaks); Err then says why (nil for a clean end).
func (m *MediaConn) Done() <-chan struct{} { return m.done }

// Err is the error that ended the stream, once Done is closed.
func (m *MediaConn) Err() error {
	<-m.done
	return m.err
}

// Close ends the stream.
func (m *MediaConn) Close() error {
	m.mu.Lock()
	err := m.st.CloseSend()
	m.mu.Unlock()
	m.cancel()
	return err
}
