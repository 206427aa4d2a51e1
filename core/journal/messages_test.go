package journal

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

// TestMessages: captured messages land in the messages table, after the
// journal closes at the latest; after Close they are dropped, not kept.
func TestMessages(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(Defaults(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	j.Message(&core.CapturedMessage{Time: at, Protocol: "xmpp", Src: "192.0.2.7:5222", Encrypted: true,
		From: "alice@example.com", To: "bob@example.com", ID: "m1", Type: "chat", Size: 5, Body: "hello"})
	j.Message(&core.CapturedMessage{Protocol: "xmpp", From: "alice@example.com", To: "carol@example.com", Size: 3})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j.Message(&core.CapturedMessage{Protocol: "xmpp", From: "late@example.com"})
	db, err := sql.Open("sqlite", filepath.Join(dir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(context.Background(), "SELECT time, protocol, src, encrypted, from_party, to_party, message_id, type, size, body FROM messages ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []core.CapturedMessage
	for rows.Next() {
		var m core.CapturedMessage
		var ts string
		if err := rows.Scan(&ts, &m.Protocol, &m.Src, &m.Encrypted, &m.From, &m.To, &m.ID, &m.Type, &m.Size, &m.Body); err != nil {
			t.Fatal(err)
		}
		if m.Time, err = parseTime(ts); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	if len(got) != 2 {
		t.Fatalf("%d messages, want 2: %+v", len(got), got)
	}
	if m := got[0]; !m.Time.Equal(at) || m.Body != "hello" || m.From != "alice@example.com" || m.To != "bob@example.com" ||
		!m.Encrypted || m.ID != "m1" || m.Type != "chat" || m.Size != 5 || m.Src != "192.0.2.7:5222" {
		t.Errorf("first = %+v", m)
	}
	if m := got[1]; m.Time.IsZero() || m.Body != "" || m.To != "carol@example.com" {
		t.Errorf("second = %+v", m)
	}
}

// TestMessagesJSONL: captured messages are lines of type message in the
// JSONL file too, with every field (the message's own type as
// message_type).
func TestMessagesJSONL(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.JSONL.Path = "journal.jsonl"
	j := open(t, cfg, dir)
	want := core.CapturedMessage{Time: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Protocol: "xmpp", Src: "192.0.2.7:5347",
		From: "xmpp:juliet@example.com/phone", To: "sip:alice@sip.example.com", ID: "m1", Type: "chat", Size: 5, Body: "hello"}
	j.Message(&want)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var got []core.CapturedMessage
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var head struct{ Type string }
		if err := json.Unmarshal([]byte(line), &head); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if head.Type != TypeMessage {
			continue
		}
		var m struct {
			core.CapturedMessage
			MessageType string `json:"message_type"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		m.CapturedMessage.Type = m.MessageType
		got = append(got, m.CapturedMessage)
	}
	if len(got) != 1 || !got[0].Time.Equal(want.Time) {
		t.Fatalf("message lines %+v", got)
	}
	got[0].Time = want.Time
	if got[0] != want {
		t.Errorf("message line\n got %+v\nwant %+v", got[0], want)
	}
}
