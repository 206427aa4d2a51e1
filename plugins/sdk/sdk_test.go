package sdk

import (
	"context"
	"sync"
	"testing"
	"time"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/ucgate/ucgate/plugins/sdk/pb"
)

// The contract tests run plugin and host in one process over a real gRPC
// connection (go-plugin's TestPluginGRPCConn).

type stageImpl struct{}

func (stageImpl) Decide(_ context.Context, ev *pb.Event) (*pb.Verdict, error) {
	if ev.GetFrom().GetUser() == "mallory" {
		return &pb.Verdict{Action: pb.Action_REFUSE, Reason: "forbidden", Rule: "list"}, nil
	}
	return &pb.Verdict{}, nil
}

func grpcPair(t *testing.T, kind string, impl any) *plugin.GRPCClient {
	t.Helper()
	sets, err := PluginSet(kind, impl, &pb.Description{Software: "t", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	client, _ := plugin.TestPluginGRPCConn(t, false, sets[Latest])
	// Close asks the server to stop (go-plugin's controller); stopping it
	// here as well would race with that.
	t.Cleanup(func() { client.Close() })
	return client
}

func TestStageContract(t *testing.T) {
	c := grpcPair(t, KindStage, stageImpl{})
	raw, err := c.Dispense(KindStage)
	if err != nil {
		t.Fatal(err)
	}
	sc := raw.(*StageClient)
	for user, want := range map[string]pb.Action{"alice": pb.Action_ALLOW, "mallory": pb.Action_REFUSE} {
		v, err := sc.Decide(context.Background(), &pb.Event{Kind: pb.Kind_SESSION_OFFER, From: &pb.Identity{User: user}})
		if err != nil || v.GetAction() != want {
			t.Errorf("%s: %v %v, want %v", user, v, err, want)
		}
	}
	d, err := Describe(context.Background(), c, V2)
	if err != nil || d.GetKind() != KindStage || d.GetSoftware() != "t" {
		t.Fatalf("describe: %v %v", d, err)
	}
	if d, err := Describe(context.Background(), c, V1); d != nil || err != nil {
		t.Fatalf("a version-1 plugin is not asked: %v %v", d, err)
	}
}

type echoMedia struct{}
type echoStream struct{ send func(*pb.Packet) error }

func (echoMedia) Open(_ context.Context, o *pb.MediaOpen, send func(*pb.Packet) error) (MediaStream, error) {
	return echoStream{send}, nil
}
func (e echoStream) Packet(p *pb.Packet) error { return e.send(p) }
func (echoStream) Close() error                { return nil }

func TestMediaContract(t *testing.T) {
	c := grpcPair(t, KindMedia, echoMedia{})
	raw, err := c.Dispense(KindMedia)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *pb.Packet, 4)
	mc, err := raw.(*MediaClient).Open(context.Background(), &pb.MediaOpen{Session: "s", In: &pb.Codec{Name: "VP8"}, Out: &pb.Codec{Name: "H264"}},
		func(p *pb.Packet) { got <- p })
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.Send(&pb.Packet{Data: []byte{0x80, 96, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if len(p.GetData()) != 4 || p.GetData()[1] != 96 {
			t.Fatalf("packet %x", p.GetData())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no packet back")
	}
	mc.Close()
}

type chatImpl struct {
	mu        sync.Mutex
	delivered []string
	results   chan *pb.EventResult
}

func (c *chatImpl) Serve(ctx context.Context, w *pb.Welcome, h Host) error {
	r, err := h.Submit(ctx, &pb.Event{Kind: pb.Kind_MESSAGE, From: &pb.Identity{User: "bob", Domain: w.GetDomain()},
		To: &pb.Identity{User: "alice", Domain: "sip.example.com"}, Body: "hello"})
	if err != nil {
		return err
	}
	c.results <- r
	<-ctx.Done()
	return nil
}

func (c *chatImpl) Deliver(_ context.Context, ev *pb.Event) *pb.Verdict {
	c.mu.Lock()
	c.delivered = append(c.delivered, ev.GetBody())
	c.mu.Unlock()
	return &pb.Verdict{}
}

func TestProtocolContract(t *testing.T) {
	impl := &chatImpl{results: make(chan *pb.EventResult, 1)}
	c := grpcPair(t, KindProtocol, impl)
	raw, err := c.Dispense(KindProtocol)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := raw.(*ProtocolClient).Connect(ctx, &pb.Welcome{Domain: "irc.example.com", Name: "irc"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	ev := m.GetEvent()
	if ev.GetFrom().GetDomain() != "irc.example.com" || ev.GetBody() != "hello" || ev.GetId() == 0 {
		t.Fatalf("event %v", ev)
	}
	if err := st.Send(&pb.HostToPlugin{Msg: &pb.HostToPlugin_Result{Result: &pb.EventResult{Id: ev.GetId(), Verdict: &pb.Verdict{Action: pb.Action_REFUSE, Reason: "not_found"}}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-impl.results:
		if r.GetVerdict().GetReason() != "not_found" {
			t.Fatalf("result %v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the plugin got no result")
	}
	if err := st.Send(&pb.HostToPlugin{Msg: &pb.HostToPlugin_Deliver{Deliver: &pb.Deliver{Event: &pb.Event{Id: 7, Kind: pb.Kind_MESSAGE, Body: "back"}}}}); err != nil {
		t.Fatal(err)
	}
	m, err = st.Recv()
	if err != nil || m.GetDelivered().GetId() != 7 || m.GetDelivered().GetVerdict().GetAction() != pb.Action_ALLOW {
		t.Fatalf("delivery result %v %v", m, err)
	}
}

func TestHandshakeAndVersions(t *testing.T) {
	if Handshake.MagicCookieKey == "" || Handshake.MagicCookieValue == "" {
		t.Fatal("handshake has no cookie")
	}
	if Versions[0] != V1 || Latest != V2 {
		t.Fatalf("versions %v latest %d", Versions, Latest)
	}
	sets, err := HostPlugins(KindMedia)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Versions {
		if _, ok := sets[v][KindMedia]; !ok {
			t.Errorf("version %d has no %s plugin", v, KindMedia)
		}
	}
	if _, ok := sets[V1]["info"]; ok {
		t.Error("version 1 has no description service")
	}
	if _, err := PluginSet("video", nil, nil); err != ErrKind {
		t.Errorf("unknown kind: %v", err)
	}
}
