package sdk

import (
	"context"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// StagePlugin serves (plugin side) and dispenses (host side) a stage.
type StagePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Stage
}

type stageServer struct {
	pb.UnimplementedStageServer
	impl Stage
}

func (s stageServer) Decide(ctx context.Context, ev *pb.Event) (*pb.Verdict, error) {
	return s.impl.Decide(ctx, ev)
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *StagePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterStageServer(s, stageServer{impl: p.Impl})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin: it returns a *StageClient.
func (p *StagePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &StageClient{c: pb.NewStageClient(c)}, nil
}

// StageClient is the host's handle on a stage plugin.
type StageClient struct{ c pb.StageClient }

// Decide asks the plugin for its verdict on ev; ctx carries the deadline.
func (c *StageClient) Decide(ctx context.Context, ev *pb.Event) (*pb.Verdict, error) {
	return c.c.Decide(ctx, ev)
}
