package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func count(e *Element) int {
	n := 1
	for _, c := range e.Children {
		n += count(c)
	}
	return n
}

func depth(e *Element) int {
	d := 0
	for _, c := range e.Children {
		d = max(d, depth(c))
	}
	return d + 1
}

// FuzzReader feeds arbitrary bytes after a stream header. Invariants: no
// panic; every item fits the limits; an element read again from its raw
// bytes is the same element (what the proxy relays is what it checked);
// an element written by Append reads back as itself.
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		`<message to='juliet@example.test' type='chat'><body>hi &amp; &#x41;</body></message>`,
		`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>`,
		`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>`,
		` <presence xml:lang='en'><show>away</show><status>b&lt;</status></presence></stream:stream>`,
		`<!DOCTYPE x [<!ENTITY a "b">]><message>&a;</message>`,
		`<message><!-- c --></message>`,
		`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`,
		`<a xmlns:p='u' p:x='1'><p:b/><![CDATA[<>]]></a>`,
		"<a>\xff</a>", `<a b='1' b='2'/>`, `<a><b></a></b>`,
	} {
		f.Add([]byte(s))
	}
	lim := Limits{MaxSize: 4096, MaxDepth: 8, MaxAttrs: 8}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(io.MultiReader(bytes.NewReader([]byte(header)), bytes.NewReader(data)), lim)
		for range 1000 {
			it, err := r.Next()
			if err != nil {
				return
			}
			if len(it.Raw) > lim.MaxSize+1 {
				t.Fatalf("item of %d bytes over the limit", len(it.Raw))
			}
			if it.Kind != KindElement {
				continue
			}
			if d := depth(it.El); d > lim.MaxDepth {
				t.Fatalf("depth %d over the limit", d)
			}
			if n := count(it.El); n > max(lim.MaxSize/32, 64) {
				t.Fatalf("%d elements over the limit", n)
			}
			again, err := items(header+string(it.Raw), Limits{MaxSize: 1 << 20})
			if !errors.Is(err, io.EOF) || len(again) != 2 || again[1].El.String() != it.El.String() {
				t.Fatalf("raw %q reads back as %v (%v)", it.Raw, again, err)
			}
			out := it.El.Append(nil, "jabber:client")
			again, err = items(header+string(out), Limits{MaxSize: 1 << 20})
			if !errors.Is(err, io.EOF) || len(again) != 2 || again[1].El.String() != it.El.String() {
				t.Fatalf("%q written as %q reads back as %v (%v)", it.Raw, out, again, err)
			}
		}
	})
}
