package main

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/state"
	"github.com/ucgate/ucgate/policies/auth"
)

// usersConfig writes a minimal configuration whose data_dir is a fresh
// temporary directory, and returns its path and the data dir.
func usersConfig(t *testing.T) (file, dataDir string) {
	t.Helper()
	dir := t.TempDir()
	dataDir = filepath.Join(dir, "data")
	file = filepath.Join(dir, "ucgate.yaml")
	cfg := "data_dir: " + dataDir + "\nsip:\n  listeners: [{zone: a, transport: udp, listen: 127.0.0.1:5060}]\n"
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, dataDir
}

func storedUsers(t *testing.T, dataDir string) map[string]core.User {
	t.Helper()
	st, err := state.Open("state.db", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	us, err := st.Users(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]core.User{}
	for _, u := range us {
		out[u.Name] = u
	}
	return out
}

func TestUsersAddListRemove(t *testing.T) {
	file, dataDir := usersConfig(t)
	var out strings.Builder
	if err := runUsers([]string{"add", "-c", file, "-realm", "example.com", "alice"}, strings.NewReader("s3cret pass\nignored\n"), &out); err != nil {
		t.Fatal(err)
	}
	if err := runUsers([]string{"add", "-c", file, "-password-stdin", "bob"}, strings.NewReader("hunter2\r\n"), &out); err != nil {
		t.Fatal(err)
	}
	us := storedUsers(t, dataDir)
	alice, bob := us["alice"], us["bob"]
	if alice.Realm != "example.com" || alice.HA1["MD5"] != auth.HA1("MD5", "alice", "example.com", "s3cret pass") ||
		alice.HA1["SHA-256"] != auth.HA1("SHA-256", "alice", "example.com", "s3cret pass") || len(alice.HA1) != 2 {
		t.Fatalf("alice stored as %+v", alice)
	}
	if bob.Realm != auth.DefaultRealm || bob.HA1["SHA-256"] != auth.HA1("SHA-256", "bob", auth.DefaultRealm, "hunter2") {
		t.Fatalf("bob stored as %+v", bob)
	}

	// Replacing a user changes the password.
	if err := runUsers([]string{"add", "-c", file, "-realm", "example.com", "alice"}, strings.NewReader("new one\n"), &out); err != nil {
		t.Fatal(err)
	}
	if got := storedUsers(t, dataDir)["alice"].HA1["MD5"]; got != auth.HA1("MD5", "alice", "example.com", "new one") {
		t.Fatal("password not replaced")
	}

	out.Reset()
	if err := runUsers([]string{"list", "-c", file}, strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") ||
		strings.Join(strings.Fields(lines[1]), " ") != "alice example.com MD5,SHA-256 enabled" ||
		strings.Join(strings.Fields(lines[2]), " ") != "bob ucgate MD5,SHA-256 enabled" {
		t.Fatalf("list:\n%s", out.String())
	}

	out.Reset()
	if err := runUsers([]string{"remove", "-c", file, "alice"}, strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	if _, ok := storedUsers(t, dataDir)["alice"]; ok {
		t.Fatal("alice still stored")
	}
	if err := runUsers([]string{"remove", "-c", file, "alice"}, strings.NewReader(""), &out); err == nil || !strings.Contains(err.Error(), `no user "alice"`) {
		t.Fatalf("second remove: %v", err)
	}
}

// The password appears nowhere in the output, nor in the database.
func TestUsersNeverShowPassword(t *testing.T) {
	file, dataDir := usersConfig(t)
	const pw = "Pa55-word-unique-7f3a"
	var out strings.Builder
	if err := runUsers([]string{"add", "-c", file, "alice"}, strings.NewReader(pw+"\n"), &out); err != nil {
		t.Fatal(err)
	}
	if err := runUsers([]string{"list", "-c", file}, nil, &out); err != nil {
		t.Fatal(err)
	}
	u := storedUsers(t, dataDir)["alice"]
	for _, h := range u.HA1 {
		if strings.Contains(out.String(), h) {
			t.Fatal("a hash was printed")
		}
	}
	if strings.Contains(out.String(), pw) {
		t.Fatal("the password was printed")
	}
	files, _ := filepath.Glob(filepath.Join(dataDir, "state.db*"))
	if len(files) == 0 {
		t.Fatal("no state database")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), pw) {
			t.Fatalf("the password is in %s", f)
		}
	}
	// A bad password from stdin is refused without echoing it back.
	err := runUsers([]string{"add", "-c", file, "-password-stdin", "bob"}, strings.NewReader(pw+"\nsecond line"), &out)
	if err == nil || strings.Contains(err.Error(), pw) {
		t.Fatalf("two-line password: %v", err)
	}
}

func TestUsersErrors(t *testing.T) {
	file, dataDir := usersConfig(t)
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"no command", nil, "", "users needs a command"},
		{"unknown command", []string{"delete", "alice"}, "", `unknown command "delete"`},
		{"add without a name", []string{"add", "-c", file}, "pw\n", "want 1 name argument(s), got 0"},
		{"add two names", []string{"add", "-c", file, "a", "b"}, "pw\n", "want 1 name argument(s), got 2"},
		{"list with a name", []string{"list", "-c", file, "a"}, "", "want 0 name argument(s), got 1"},
		{"name with a colon", []string{"add", "-c", file, "a:b"}, "pw\n", "name must not contain"},
		{"bad realm", []string{"add", "-c", file, "-realm", `a"b`, "alice"}, "pw\n", "-realm must be at most 128 bytes"},
		{"empty password", []string{"add", "-c", file, "alice"}, "\n", "read password: empty"},
		{"no password", []string{"add", "-c", file, "alice"}, "", "read password: empty"},
		{"long password", []string{"add", "-c", file, "alice"}, strings.Repeat("x", 2000), "longer than 1024 bytes"},
		{"missing config", []string{"list", "-c", filepath.Join(dataDir, "nope.yaml")}, "", "read config"},
		{"bad flag", []string{"add", "-password", "x", "alice"}, "", "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runUsers(tt.args, strings.NewReader(tt.stdin), &strings.Builder{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if us := storedUsers(t, dataDir); len(us) != 0 {
		t.Fatalf("a failed command stored %v", us)
	}
	var u usageError
	if err := runUsers([]string{"add", "-bogus", "alice"}, strings.NewReader(""), &strings.Builder{}); !errors.As(err, &u) {
		t.Fatalf("a flag error is not a usage error: %v", err)
	}
}

// cmdUsers reads the real standard input: a pipe gives its first line.
func TestCmdUsersReadsStdin(t *testing.T) {
	file, dataDir := usersConfig(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("from a pipe\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	var out strings.Builder
	if err := cmdUsers([]string{"add", "-c", file, "carol"}, &out); err != nil {
		t.Fatal(err)
	}
	if got := storedUsers(t, dataDir)["carol"].HA1["SHA-256"]; got != auth.HA1("SHA-256", "carol", auth.DefaultRealm, "from a pipe") {
		t.Fatal("carol's hash is not of the piped password")
	}
	if !strings.Contains(out.String(), "user carol added (realm ucgate, MD5 and SHA-256)") {
		t.Fatalf("output %q", out.String())
	}
}

// A user added by the command authenticates at the auth stage.
func TestUsersAddedAuthenticate(t *testing.T) {
	file, dataDir := usersConfig(t)
	if err := runUsers([]string{"add", "-c", file, "alice"}, strings.NewReader("secret\n"), &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
	st, err := state.Open("state.db", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := auth.New(auth.Defaults(), core.Deps{State: st})
	if err != nil {
		t.Fatal(err)
	}
	ev := &core.Event{Kind: core.KindRegister, Protocol: "sip", Method: "REGISTER", Target: "sip:example.com",
		Src:  core.Source{Addr: netip.MustParseAddrPort("192.0.2.7:5060"), Zone: "internet"},
		From: core.Identity{User: "alice"}, To: core.Identity{User: "alice"}}
	v, err := s.Decide(context.Background(), ev)
	if err != nil || v.Challenge == nil {
		t.Fatalf("challenge: %+v %v", v, err)
	}
	ch := v.Challenge
	ha1 := auth.HA1("SHA-256", "alice", ch.Realm, "secret")
	ev.Credentials = &core.Credentials{Scheme: "Digest", Username: "alice", Realm: ch.Realm, Nonce: ch.Nonce, URI: ev.Target,
		Algorithm: "SHA-256", QOP: "auth", NC: "00000001", CNonce: "c", Opaque: ch.Opaque, Method: "REGISTER",
		Response: auth.Response("SHA-256", ha1, ch.Nonce, "00000001", "c", "auth", "REGISTER", ev.Target)}
	if v, err := s.Decide(context.Background(), ev); err != nil || v.Action != core.Allow {
		t.Fatalf("authentication with the added user: %+v %v", v, err)
	}
}

func TestUsersHelp(t *testing.T) {
	var out strings.Builder
	if err := runUsers([]string{"help"}, nil, &out); err != nil || !strings.Contains(out.String(), "ucgate users add [-c FILE] [-realm REALM] [-password-stdin] NAME") {
		t.Fatalf("help: %v %q", err, out.String())
	}
}
