package core

import (
	"sync"
	"testing"
	"time"
)

func TestSessionEndsOnceWithDuration(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := NewSession("call", Identity{User: "alice", Domain: "example.com"}, Identity{User: "bob", Domain: "example.com"},
		Leg{Transport: "udp", CallID: "a"}, t0)
	s.SetCallee(Leg{Transport: "tls", Encrypted: true, CallID: "b"})
	if !s.Answer(t0.Add(2 * time.Second)) {
		t.Fatal("first answer refused")
	}
	if s.Answer(t0.Add(3 * time.Second)) {
		t.Fatal("second answer accepted")
	}
	var wg sync.WaitGroup
	cdrs := make(chan *CDR, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c := s.End(t0.Add(12*time.Second), 200, "normal", RoleCaller); c != nil {
				cdrs <- c
			}
		}()
	}
	wg.Wait()
	close(cdrs)
	var got []*CDR
	for c := range cdrs {
		got = append(got, c)
	}
	if len(got) != 1 {
		t.Fatalf("got %d CDRs from concurrent ends, want 1", len(got))
	}
	c := got[0]
	if c.Duration != 10*time.Second || c.EndReason != "normal" || c.EndedBy != RoleCaller || c.From != "alice@example.com" {
		t.Fatalf("cdr = %+v", c)
	}
	if len(c.Legs) != 2 || c.Legs[0].Role != RoleCaller || c.Legs[1].Role != RoleCallee || !c.Legs[1].Encrypted {
		t.Fatalf("legs = %+v", c.Legs)
	}
}

func TestUnansweredSessionHasNoDuration(t *testing.T) {
	s := NewSession("call", Identity{}, Identity{}, Leg{}, time.Now())
	c := s.End(time.Now().Add(time.Second), 486, "rejected", RoleCallee)
	if c.Duration != 0 || c.Status != 486 || !c.Answer.IsZero() {
		t.Fatalf("cdr = %+v", c)
	}
}

func TestSessionTable(t *testing.T) {
	tab := NewSessions()
	var ids []SessionID
	for i := 0; i < 1000; i++ {
		s := NewSession("call", Identity{}, Identity{}, Leg{}, time.Now())
		tab.Add(s)
		ids = append(ids, s.ID)
	}
	if tab.Len() != 1000 {
		t.Fatalf("len = %d", tab.Len())
	}
	for _, id := range ids[:500] {
		if _, ok := tab.Get(id); !ok {
			t.Fatalf("%s missing", id)
		}
		tab.Remove(id)
	}
	n := 0
	tab.Range(func(*Session) bool { n++; return true })
	if n != 500 || tab.Len() != 500 {
		t.Fatalf("after removal: range %d len %d", n, tab.Len())
	}
	if _, ok := tab.Get(ids[0]); ok {
		t.Fatal("removed session still found")
	}
}

func TestReasonsHaveNames(t *testing.T) {
	for _, r := range AllReasons() {
		if r.String() == "" || r.String()[0] == 'r' && r.String()[:7] == "reason(" {
			t.Fatalf("reason %d has no name", r)
		}
	}
}
