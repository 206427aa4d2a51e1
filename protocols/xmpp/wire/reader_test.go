package wire

import (
	"errors"
	"io"
	"strings"
	"testing"
)

const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.test' version='1.0'>`

// items reads every item of s until an error.
func items(s string, lim Limits) ([]Item, error) {
	r := NewReader(strings.NewReader(s), lim)
	var out []Item
	for {
		it, err := r.Next()
		if err != nil {
			return out, err
		}
		it.Raw = append([]byte(nil), it.Raw...)
		out = append(out, it)
	}
}

func TestReaderStream(t *testing.T) {
	msg := `<message to='juliet@example.test' type='chat' xml:lang='en'><body>hi &amp; &#x41;<![CDATA[<x>]]></body><x xmlns='urn:x' a='1'/></message>`
	in := header + " \n" + msg + "<iq type='get' id='1'/>" + `</stream:stream>`
	got, err := items(in, Limits{})
	if err != io.EOF {
		t.Fatalf("err = %v, want EOF", err)
	}
	kinds := []Kind{KindHeader, KindSpace, KindElement, KindElement, KindClose}
	if len(got) != len(kinds) {
		t.Fatalf("got %d items, want %d", len(got), len(kinds))
	}
	for i, k := range kinds {
		if got[i].Kind != k {
			t.Errorf("item %d: kind %v, want %v", i, got[i].Kind, k)
		}
	}
	if string(got[0].Raw) != header {
		t.Errorf("header raw = %q", got[0].Raw)
	}
	h := got[0].El
	if !h.Is(NSStream, "stream") || h.Get("to") != "example.test" || len(h.Decls) != 2 {
		t.Errorf("header = %+v", h)
	}
	if string(got[2].Raw) != msg {
		t.Errorf("message raw = %q, want %q", got[2].Raw, msg)
	}
	m := got[2].El
	if !m.Is("jabber:client", "message") || m.Get("to") != "juliet@example.test" || m.Lang() != "en" {
		t.Errorf("message = %+v", m)
	}
	if b := m.Child("jabber:client", "body"); b == nil || b.Text != "hi & A<x>" {
		t.Errorf("body = %+v", b)
	}
	if x := m.Child("urn:x", "x"); x == nil || x.Get("a") != "1" {
		t.Errorf("x = %+v", x)
	}
	if string(got[4].Raw) != "</stream:stream>" {
		t.Errorf("close raw = %q", got[4].Raw)
	}
}

func TestReaderRestart(t *testing.T) {
	in := header + `<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>` + header + `<iq type='set' id='b'/>`
	got, err := items(in, Limits{})
	if err != io.EOF {
		t.Fatalf("err = %v", err)
	}
	if len(got) != 4 || got[2].Kind != KindHeader || got[3].Kind != KindElement || !got[3].El.Is("jabber:client", "iq") {
		t.Fatalf("items = %+v", got)
	}
	if string(got[2].Raw) != header {
		t.Errorf("restart raw = %q", got[2].Raw)
	}
	// A restart in the default namespace is a restart too.
	got, err = items(header+`<stream xmlns='http://etherx.jabber.org/streams'>`, Limits{})
	if err != io.EOF || len(got) != 2 || got[1].Kind != KindHeader {
		t.Fatalf("default-namespace restart: %v %+v", err, got)
	}
}

func TestReaderRefusals(t *testing.T) {
	deep := strings.Repeat("<a>", 40) + strings.Repeat("</a>", 40)
	attrs := "<a"
	for i := range 70 {
		attrs += " a" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "='1'"
	}
	attrs += "/>"
	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>&lol2;`
	cases := []struct {
		name string
		in   string
		want error
	}{
		{"billion laughs", laughs, ErrRestricted},
		{"doctype in stream", header + `<!DOCTYPE x [<!ENTITY x SYSTEM "file:///etc/passwd">]>`, ErrRestricted},
		{"external entity reference", header + `<message><body>&xxe;</body></message>`, ErrRestricted},
		{"entity in attribute", header + `<message to='&xxe;'/>`, ErrRestricted},
		{"comment", header + `<message><!-- hi --></message>`, ErrRestricted},
		{"comment between stanzas", header + `<!-- hi -->`, ErrRestricted},
		{"processing instruction", header + `<message><?php x?></message>`, ErrRestricted},
		{"pi before header", `<?foo?>` + header, ErrRestricted},
		{"xml declaration in stanza", header + `<message><?xml version='1.0'?></message>`, ErrRestricted},
		{"xml declaration not before a header", header + `<?xml version='1.0'?><message/>`, ErrRestricted},
		{"deep nesting", header + "<message>" + deep + "</message>", ErrTooDeep},
		{"attributes", header + attrs, ErrAttributes},
		{"many elements", header + "<message>" + strings.Repeat("<a/>", 9000) + "</message>", ErrTooLarge},
		{"oversized stanza", header + "<message><body>" + strings.Repeat("x", 300<<10) + "</body></message>", ErrTooLarge},
		{"oversized attribute", header + "<message to='" + strings.Repeat("x", 300<<10) + "'/>", ErrTooLarge},
		{"oversized whitespace", header + strings.Repeat(" ", 300<<10), ErrTooLarge},
		{"oversized header", `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='` + strings.Repeat("x", 300<<10), ErrTooLarge},
		{"duplicate attribute", header + `<message to='a@b' to='c@d'/>`, ErrSyntax},
		{"duplicate attribute after resolution", header + `<message xmlns:p='u' xmlns:q='u' p:a='1' q:a='2'/>`, ErrNamespace},
		{"undeclared prefix", header + `<p:message/>`, ErrNamespace},
		{"undeclared attribute prefix", header + `<message p:to='x'/>`, ErrNamespace},
		{"xml prefix rebound", header + `<message xmlns:xml='urn:x'/>`, ErrNamespace},
		{"xmlns prefix declared", header + `<message xmlns:xmlns='urn:x'/>`, ErrNamespace},
		{"empty prefix binding", header + `<message xmlns:p=''/>`, ErrNamespace},
		{"mismatched tags", header + `<message></iq>`, ErrSyntax},
		{"invalid utf-8", header + "<message><body>\xff</body></message>", ErrSyntax},
		{"control character", header + "<message><body>\x01</body></message>", ErrSyntax},
		{"nul character reference", header + "<message><body>&#0;</body></message>", ErrSyntax},
		{"text at stream level", header + "hello", ErrText},
		{"text before header", "hello" + header, ErrSyntax},
		{"stray end tag", header + "</message>", ErrSyntax},
		{"unterminated", header + "<message><body>", io.EOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := items(c.in, Limits{})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if strings.Contains(err.Error(), "xxe") || strings.Contains(err.Error(), "passwd") {
				t.Errorf("error quotes the input: %v", err)
			}
		})
	}
}

func TestReaderLimitsExact(t *testing.T) {
	el := "<message><body>" + strings.Repeat("x", 1000) + "</body></message>"
	lim := Limits{MaxSize: len(el), MaxDepth: 2, MaxAttrs: 1}
	r := NewReader(strings.NewReader(header), Limits{MaxSize: len(header)})
	if _, err := r.Next(); err != nil {
		t.Fatalf("header at the limit: %v", err)
	}
	r = NewReader(strings.NewReader(header), Limits{MaxSize: len(header) - 2})
	if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("header over the limit: %v", err)
	}
	r = NewReader(strings.NewReader(header+el+"<a/>"), Limits{MaxSize: max(lim.MaxSize, len(header)), MaxDepth: 2, MaxAttrs: 4})
	for range 3 {
		if _, err := r.Next(); err != nil {
			t.Fatalf("element at the limit: %v", err)
		}
	}
	r = NewReader(strings.NewReader(header+"<a><b/><b/><b/></a><a><b/><b/><b/><b/></a>"), Limits{MaxElements: 4})
	r.Next()
	if _, err := r.Next(); err != nil {
		t.Fatalf("4 elements with limit 4: %v", err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("5 elements with limit 4: %v", err)
	}
	r = NewReader(strings.NewReader(header+"<a><b><c/></b></a>"), Limits{MaxDepth: 2})
	r.Next()
	if _, err := r.Next(); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("depth 3 with limit 2: %v", err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("errors are sticky: %v", err)
	}
}

func TestAppendRoundTrip(t *testing.T) {
	in := header + `<features xmlns='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms><x xmlns:p='urn:p' p:a='&lt;1&apos;' xml:lang='en'>t&amp;</x></features>`
	got, err := items(in, Limits{})
	if err != io.EOF || len(got) != 2 {
		t.Fatal(err)
	}
	out := got[1].El.Append(nil, "jabber:client")
	again, err := items(header+string(out), Limits{})
	if err != io.EOF || len(again) != 2 {
		t.Fatalf("re-read %q: %v", out, err)
	}
	if a, b := got[1].El.String(), again[1].El.String(); a != b {
		t.Errorf("round trip:\n%s\n%s", a, b)
	}
	if s := Escape("a\x01b\xffc<"); s != "a\uFFFDb\uFFFDc&lt;" {
		t.Errorf("Escape = %q", s)
	}
}

func TestBuffered(t *testing.T) {
	r := NewReader(strings.NewReader(header+"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message/>"), Limits{})
	r.Next()
	r.Next()
	if r.Buffered() == 0 {
		t.Fatal("bytes after starttls not reported")
	}
}
