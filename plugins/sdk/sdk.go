package sdk

import (
	"context"
	"errors"
	"slices"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// Handshake is the go-plugin handshake: the magic cookie tells a plugin
// binary that a ucgate host started it (a plugin run by hand says so and
// exits). ProtocolVersion is the oldest contract version; the versions
// actually offered are in Versions.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "UCGATE_PLUGIN",
	MagicCookieValue: "b1e5c0f4-ucgate-plugin-contract",
}

// Contract versions.
const (
	// V1 is the three kinds: Protocol.Connect, Media.Relay, Stage.Decide.
	V1 = 1
	// V2 adds Info.Describe, the plugin's description of itself.
	V2 = 2
)

// Versions are the contract versions this build speaks, oldest first. A
// plugin built for any of them runs; one built only for a newer version is
// refused with a message naming these.
var Versions = []int{V1, V2}

// Latest is the newest contract version.
var Latest = slices.Max(Versions)

// The plugin kinds, as the configuration names them and as the names of
// the go-plugin plugin sets.
const (
	KindProtocol = "protocol"
	KindMedia    = "media"
	KindStage    = "stage"
	// infoName is the name of the version-2 description in the plugin set.
	infoName = "info"
)

// Kinds lists the plugin kinds.
var Kinds = []string{KindProtocol, KindMedia, KindStage}

// ErrKind reports an unknown plugin kind.
var ErrKind = errors.New("sdk: unknown plugin kind")

// Stage is a stage plugin's implementation: it decides on one event. The
// host cancels ctx at its per-call deadline.
type Stage interface {
	Decide(ctx context.Context, ev *pb.Event) (*pb.Verdict, error)
}

// Media is a media plugin's implementation. Open starts one stream
// direction; send returns packets to the host (it may be called from any
// goroutine, one call at a time).
type Media interface {
	Open(ctx context.Context, o *pb.MediaOpen, send func(*pb.Packet) error) (MediaStream, error)
}

// MediaStream receives the packets of one stream direction opened by
// Media.Open. Close is called once when the host ends the stream.
type MediaStream interface {
	Packet(p *pb.Packet) error
	Close() error
}

// Protocol is a protocol plugin's implementation. Serve runs the plugin's
// own protocol until ctx ends, submitting events through h; Deliver hands
// one of the plugin's users a message or presence from the gateway and
// returns ALLOW when delivered (REFUSE with reason "not_found" for a user
// it does not know).
type Protocol interface {
	Serve(ctx context.Context, w *pb.Welcome, h Host) error
	Deliver(ctx context.Context, ev *pb.Event) *pb.Verdict
}

// Host is what a protocol plugin sees of the gateway: Submit sends one
// event and waits for the stages' verdict.
type Host interface {
	Submit(ctx context.Context, ev *pb.Event) (*pb.EventResult, error)
}

// PluginSet returns the go-plugin plugin sets, one per version, serving
// impl (a Stage, Media or Protocol) as kind; desc is offered to version-2
// hosts. The host side uses the same sets with nil implementations.
func PluginSet(kind string, impl any, desc *pb.Description) (map[int]plugin.PluginSet, error) {
	var p plugin.Plugin
	switch kind {
	case KindStage:
		s, _ := impl.(Stage)
		p = &StagePlugin{Impl: s}
	case KindMedia:
		m, _ := impl.(Media)
		p = &MediaPlugin{Impl: m}
	case KindProtocol:
		pr, _ := impl.(Protocol)
		p = &ProtocolPlugin{Impl: pr}
	default:
		return nil, ErrKind
	}
	if desc == nil {
		desc = &pb.Description{}
	}
	desc.Kind = kind
	return map[int]plugin.PluginSet{
		V1: {kind: p},
		V2: {kind: p, infoName: &InfoPlugin{Desc: desc}},
	}, nil
}

// HostPlugins are the plugin sets a host offers for kind: every version in
// Versions.
func HostPlugins(kind string) (map[int]plugin.PluginSet, error) {
	return PluginSet(kind, nil, nil)
}

// Serve runs a Go plugin of kind with impl, offering every contract
// version in Versions. It does not return until the host stops the
// plugin. desc describes the plugin to version-2 hosts.
func Serve(kind string, impl any, desc *pb.Description) {
	ServeVersions(kind, impl, desc, Versions)
}

// ServeVersions is Serve offering only the given versions (a plugin built
// for an older contract; tests use it for versions the host does not
// speak: a set for an unknown version serves version 1's services).
func ServeVersions(kind string, impl any, desc *pb.Description, versions []int) {
	all, err := PluginSet(kind, impl, desc)
	if err != nil {
		panic(err)
	}
	sets := map[int]plugin.PluginSet{}
	for _, v := range versions {
		if s, ok := all[v]; ok {
			sets[v] = s
		} else {
			sets[v] = all[V1]
		}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  plugin.HandshakeConfig{MagicCookieKey: Handshake.MagicCookieKey, MagicCookieValue: Handshake.MagicCookieValue},
		VersionedPlugins: sets,
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}

// Dispense returns the host-side client of kind from a connected
// go-plugin client: a *StageClient, *MediaClient or *ProtocolClient.
func Dispense(c plugin.ClientProtocol, kind string) (any, error) {
	return c.Dispense(kind)
}

// Describe asks a version-2 plugin for its description; it returns nil
// for a version-1 plugin.
func Describe(ctx context.Context, c plugin.ClientProtocol, version int) (*pb.Description, error) {
	if version < V2 {
		return nil, nil
	}
	raw, err := c.Dispense(infoName)
	if err != nil {
		return nil, err
	}
	return raw.(pb.InfoClient).Describe(ctx, &pb.DescribeRequest{})
}

// InfoPlugin serves and dispenses the version-2 description.
type InfoPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Desc *pb.Description
}

type infoServer struct {
	pb.UnimplementedInfoServer
	desc *pb.Description
}

func (s infoServer) Describe(context.Context, *pb.DescribeRequest) (*pb.Description, error) {
	return s.desc, nil
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *InfoPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterInfoServer(s, infoServer{desc: p.Desc})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin: it returns a pb.InfoClient.
func (p *InfoPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pb.NewInfoClient(c), nil
}
