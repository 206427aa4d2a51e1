package sdk

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// ErrNoWelcome reports a protocol stream the host did not open with
// Welcome.
var ErrNoWelcome = errors.New("sdk: protocol stream must start with welcome")

// ProtocolPlugin serves (plugin side) and dispenses (host side) a protocol
// adapter.
type ProtocolPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Protocol
}

type protocolServer struct {
	pb.UnimplementedProtocolServer
	impl Protocol
}

// hostConn is the plugin's end of Protocol.Connect.
type hostConn struct {
	st      pb.Protocol_ConnectServer
	sendMu  sync.Mutex
	next    atomic.Uint64
	mu      sync.Mutex
	pending map[uint64]chan *pb.EventResult
}

func (h *hostConn) send(m *pb.PluginToHost) error {
	h.sendMu.Lock()
	defer h.sendMu.Unlock()
	return h.st.Send(m)
}

// Submit implements Host.
func (h *hostConn) Submit(ctx context.Context, ev *pb.Event) (*pb.EventResult, error) {
	id := h.next.Add(1)
	ev.Id = id
	ch := make(chan *pb.EventResult, 1)
	h.mu.Lock()
	h.pending[id] = ch
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.pending, id)
		h.mu.Unlock()
	}()
	if err := h.send(&pb.PluginToHost{Msg: &pb.PluginToHost_Event{Event: ev}}); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-h.st.Context().Done():
		return nil, h.st.Context().Err()
	}
}

func (s protocolServer) Connect(st pb.Protocol_ConnectServer) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	w := first.GetWelcome()
	if w == nil {
		return ErrNoWelcome
	}
	ctx, cancel := context.WithCancel(st.Context())
	defer cancel()
	h := &hostConn{st: st, pending: map[uint64]chan *pb.EventResult{}}
	served := make(chan error, 1)
	go func() { served <- s.impl.Serve(ctx, w, h) }()
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			switch x := m.Msg.(type) {
			case *pb.HostToPlugin_Result:
				h.mu.Lock()
				ch := h.pending[x.Result.GetId()]
				h.mu.Unlock()
				if ch != nil {
					select {
					case ch <- x.Result:
					default:
					}
				}
			case *pb.HostToPlugin_Deliver:
				ev := x.Deliver.GetEvent()
				go func() {
					v := s.impl.Deliver(ctx, ev)
					_ = h.send(&pb.PluginToHost{Msg: &pb.PluginToHost_Delivered{
						Delivered: &pb.DeliveryResult{Id: ev.GetId(), Verdict: v}}})
				}()
			}
		}
	}()
	select {
	case err := <-served:
		return err
	case err := <-recvErr:
		cancel()
		<-served
		return err
	}
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *ProtocolPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterProtocolServer(s, protocolServer{impl: p.Impl})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin: it returns a *ProtocolClient.
func (p *ProtocolPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &ProtocolClient{c: pb.NewProtocolClient(c)}, nil
}

// ProtocolClient is the host's handle on a protocol plugin.
type ProtocolClient struct{ c pb.ProtocolClient }

// Connect opens the event stream and sends w as its first message.
func (c *ProtocolClient) Connect(ctx context.Context, w *pb.Welcome) (pb.Protocol_ConnectClient, error) {
	st, err := c.c.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&pb.HostToPlugin{Msg: &pb.HostToPlugin_Welcome{Welcome: w}}); err != nil {
		return nil, err
	}
	return st, nil
}
