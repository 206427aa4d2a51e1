package blacklist

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ucgate/ucgate/core"
)

func do(t testing.TB, h http.Handler, method, target, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, r))
	return rec.Code, rec.Body.String()
}

func TestHandler(t *testing.T) {
	c := newClock()
	s := fixture(t, "", core.Deps{}, c)
	h := s.Handler()
	steps := []struct {
		method, target, body string
		code                 int
		contains             string
	}{
		{"GET", "/blacklist", "", 200, "[]"},
		{"POST", "/blacklist", `{"key": "192.0.2.0/24", "duration": "1h", "reason": "abuse report"}`, 201,
			`"key":"192.0.2.0/24","until":"` + c.now().Add(time.Hour).Format(time.RFC3339Nano) + `"`},
		{"POST", "/blacklist", `{"key": "2001:DB8::7"}`, 201, `"key":"2001:db8::7"`},
		{"POST", "/blacklist", `{"key": "192.0.2.7/24"}`, 400, `has host bits set, did you mean 192.0.2.0/24?`},
		{"POST", "/blacklist", `{"key": "example.com"}`, 400, `bad key`},
		{"POST", "/blacklist", `{"key": "192.0.2.9", "duration": "forever"}`, 400, `bad duration`},
		{"POST", "/blacklist", `{"key": "192.0.2.9", "duration": "-1h"}`, 400, `bad duration`},
		{"POST", "/blacklist", `{"key": "192.0.2.9", "ttl": "1h"}`, 400, `unknown field`},
		{"POST", "/blacklist", `{"key": "192.0.2.9"} {"key": "192.0.2.10"}`, 400, `one JSON object`},
		{"POST", "/blacklist", `[`, 400, `JSON object`},
		{"POST", "/blacklist", `{"key": "192.0.2.9", "reason": "` + strings.Repeat("x", 5000) + `"}`, 400, `too large`},
		{"POST", "/blacklist", `{"key": "192.0.2.9", "reason": "` + strings.Repeat("x", 300) + `"}`, 400, `reason too long`},
		{"GET", "/blacklist", "", 200, `"key":"192.0.2.0/24"`},
		{"DELETE", "/blacklist/192.0.2.0/24", "", 204, ""},
		{"DELETE", "/blacklist/192.0.2.0/24", "", 404, "not blocked"},
		{"POST", "/blacklist", `{"key": "198.51.100.0/24"}`, 201, `"rule":"admin"`},
		{"DELETE", "/blacklist/198.51.100.0%2F24", "", 204, ""},
		{"DELETE", "/blacklist/2001:db8::7", "", 204, ""},
		{"DELETE", "/blacklist/nonsense", "", 400, "bad key"},
		{"PUT", "/blacklist", "", 405, ""},
		{"GET", "/blacklist", "", 200, "[]"},
	}
	for i, st := range steps {
		code, body := do(t, h, st.method, st.target, st.body)
		if code != st.code || !strings.Contains(body, st.contains) {
			t.Errorf("step %d: %s %s = %d %s, want %d containing %q", i, st.method, st.target, code, body, st.code, st.contains)
		}
	}
}

func TestHandlerListIsJSON(t *testing.T) {
	s := fixture(t, "", core.Deps{}, newClock())
	_ = s.Add("192.0.2.7", time.Hour, "one")
	_ = s.Add("2001:db8::/48", time.Hour, "two")
	code, body := do(t, s.Handler(), "GET", "/blacklist", "")
	var got []core.Block
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
		t.Fatalf("%d %s: %v", code, body, err)
	}
	if len(got) != 2 || got[0].Key != "192.0.2.7" || got[1].Key != "2001:db8::/48" || got[1].Reason != "two" {
		t.Fatalf("got %+v", got)
	}
}

// FuzzHandlerPost: any body gets 201 or 400, never a server error, and a
// 201 leaves the key it names blocked and listed.
func FuzzHandlerPost(f *testing.F) {
	for _, b := range []string{
		`{"key": "192.0.2.0/24", "duration": "1h", "reason": "abuse"}`,
		`{"key": "2001:db8::7"}`, `{"key": "::ffff:192.0.2.1", "duration": "1ns"}`,
		`{"key": "192.0.2.7/24"}`, `{"key": 7}`, `{}`, `null`, `[`, `{"key": "192.0.2.1", "duration": "876000h1s"}`,
	} {
		f.Add(b)
	}
	s := fixture(f, "max_entries: 1000000", core.Deps{}, newClock())
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		code, resp := do(t, h, "POST", "/blacklist", body)
		switch code {
		case 400:
			return
		case 201:
		default:
			t.Fatalf("POST %q = %d %s", body, code, resp)
		}
		var b core.Block
		if err := json.Unmarshal([]byte(resp), &b); err != nil {
			t.Fatalf("201 body %q: %v", resp, err)
		}
		p, key, msg := parseKey(b.Key)
		if msg != "" || key != b.Key || b.Rule != RuleAdmin {
			t.Fatalf("201 for %q returned block %+v", body, b)
		}
		if !s.blockedIn(s.snap.Load(), p.Addr()) {
			t.Fatalf("201 for %q but %v is not blocked", body, p.Addr())
		}
		if err := s.Remove(b.Key); err != nil {
			t.Fatalf("Remove(%q) after 201: %v", b.Key, err)
		}
	})
}
