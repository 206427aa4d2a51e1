package state

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

func TestStoreSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open("state.db", dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	must(t, s.PutBlock(ctx, core.Block{Key: "192.0.2.7", Until: now.Add(time.Hour), Rule: "ratelimit/flood", Offences: 2}))
	must(t, s.PutBlock(ctx, core.Block{Key: "2001:db8::/32", Until: now.Add(time.Minute), Rule: "admin"}))
	must(t, s.PutBlock(ctx, core.Block{Key: "198.51.100.1", Until: now.Add(-time.Second), Rule: "scan/agent"}))
	must(t, s.PutUser(ctx, core.User{Name: "alice", Realm: "example.com", HA1: map[string]string{"MD5": "abc", "SHA-256": "def"}}))
	must(t, s.PutUser(ctx, core.User{Name: "bob", Realm: "example.com", HA1: map[string]string{"MD5": "123"}}))
	must(t, s.DeleteUser(ctx, "bob"))
	if err := s.DeleteUser(ctx, "bob"); !errors.Is(err, core.ErrNotFound) {
		t.Fatalf("deleting a missing user: %v", err)
	}
	must(t, s.Close())

	s, err = Open(filepath.Join(dir, "state.db"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.now = func() time.Time { return now }
	blocks, _ := s.Blocks(ctx)
	if len(blocks) != 2 || blocks[0].Key != "192.0.2.7" || blocks[0].Offences != 2 || !blocks[0].Until.Equal(now.Add(time.Hour)) || blocks[1].Key != "2001:db8::/32" {
		t.Fatalf("blocks after reopen: %+v", blocks)
	}
	u, err := s.GetUser(ctx, "alice")
	if err != nil || u.HA1["SHA-256"] != "def" || u.Realm != "example.com" {
		t.Fatalf("alice after reopen: %+v %v", u, err)
	}
	if _, err := s.GetUser(ctx, "bob"); !errors.Is(err, core.ErrNotFound) {
		t.Fatalf("bob after reopen: %v", err)
	}
	must(t, s.DeleteBlock(ctx, "192.0.2.7"))
	must(t, s.DeleteBlock(ctx, "192.0.2.7"))
	blocks, _ = s.Blocks(ctx)
	if len(blocks) != 1 {
		t.Fatalf("after delete: %+v", blocks)
	}
}

func TestMemoryOnly(t *testing.T) {
	s, err := Open("", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	must(t, s.PutBlock(ctx, core.Block{Key: "192.0.2.1", Until: time.Now().Add(time.Hour)}))
	if b, _ := s.Blocks(ctx); len(b) != 1 {
		t.Fatal("block lost")
	}
	must(t, s.Close())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSeesAnotherProcessesUsers(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	gw, err := Open("state.db", dir) // the running gateway
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	cli, err := Open("state.db", dir) // `ucgate users add` in another process
	if err != nil {
		t.Fatal(err)
	}
	must(t, cli.PutUser(ctx, core.User{Name: "carol", Realm: "r", HA1: map[string]string{"MD5": "x"}}))
	must(t, cli.Close())
	if _, err := gw.GetUser(ctx, "carol"); !errors.Is(err, core.ErrNotFound) {
		t.Fatalf("seen before a refresh: %v", err)
	}
	must(t, gw.Refresh())
	if u, err := gw.GetUser(ctx, "carol"); err != nil || u.Realm != "r" {
		t.Fatalf("after refresh: %+v %v", u, err)
	}
	must(t, gw.Refresh()) // nothing changed: no reload needed, still there
	if _, err := gw.GetUser(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
}
