package core

import (
	"context"
	"errors"
	"testing"
)

type recordingDeliverer struct{ msgs []*Message }

func (r *recordingDeliverer) DeliverMessage(_ context.Context, m *Message) error {
	r.msgs = append(r.msgs, m)
	if m.To.User == "nobody" {
		return &DeliveryError{Reason: ReasonNotFound, Detail: "no such user"}
	}
	return nil
}

func (r *recordingDeliverer) DeliverPresence(context.Context, *Presence) error { return nil }

func TestBridgeRoutesByDomain(t *testing.T) {
	b := NewBridge()
	sip := &recordingDeliverer{}
	b.Serve("SIP.example.com", sip)
	d, ok := b.For("sip.EXAMPLE.com")
	if !ok || d != sip {
		t.Fatal("domain not found case-insensitively")
	}
	if _, ok := b.For("example.org"); ok {
		t.Fatal("unserved domain found")
	}
	err := d.DeliverMessage(context.Background(), &Message{To: Identity{User: "nobody", Domain: "sip.example.com"}})
	var de *DeliveryError
	if !errors.As(err, &de) || de.Reason != ReasonNotFound {
		t.Fatalf("refusal = %v", err)
	}
	var nilBridge *Bridge
	if _, ok := nilBridge.For("x"); ok {
		t.Fatal("nil bridge served a domain")
	}
}
