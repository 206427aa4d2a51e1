package sip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// rfc3863 is the example of RFC 3863 section 3.4 (a tuple with contact,
// note and timestamp).
const rfc3863 = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:im="urn:ietf:params:xml:ns:pidf:im"
    xmlns:myex="http://id.example.com/presence/"
    entity="pres:someone@example.com">
  <tuple id="bs35r9">
    <status>
      <basic>open</basic>
      <im:im>busy</im:im>
      <myex:location>home</myex:location>
    </status>
    <contact priority="0.8">im:someone@mobilecarrier.net</contact>
    <note xml:lang="en">Don't Disturb Please!</note>
    <note xml:lang="fr">Ne derangez pas, s'il vous plait</note>
    <timestamp>2001-10-27T16:49:29Z</timestamp>
  </tuple>
  <note>I'll be in Tokyo next week</note>
</presence>`

// rfc4480 is shaped like the examples of RFC 4480 section 4 (person with
// activities, an idle user input and a note on the person).
const rfc4480 = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
 xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
 xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
 entity="pres:someone@example.com">
 <tuple id="bs35r9">
  <status><basic>open</basic></status>
  <contact>sip:someone@example.com</contact>
 </tuple>
 <dm:person id="p1">
  <rpid:activities><rpid:on-the-phone/><rpid:meeting/></rpid:activities>
  <rpid:user-input idle-threshold="600">active</rpid:user-input>
  <dm:note>In a call &amp; a meeting</dm:note>
 </dm:person>
</presence>`

// baresipClosed is what baresip's presence module sends when its user is
// away (basic closed, an empty activities element).
const baresipClosed = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    entity="sip:alice@127.0.0.1">
  <dm:person id="p1234">
    <rpid:activities><rpid:away/></rpid:activities>
  </dm:person>
  <tuple id="t5678">
    <status>
      <basic>closed</basic>
    </status>
    <contact>sip:alice@127.0.0.1</contact>
  </tuple>
</presence>
`

func TestParsePIDF(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want presenceInfo
	}{
		{"rfc3863", rfc3863, presenceInfo{Available: true, Status: "Don't Disturb Please!"}},
		{"rfc4480 busy", rfc4480, presenceInfo{Available: true, Show: "dnd", Status: "In a call & a meeting"}},
		{"baresip closed", baresipClosed, presenceInfo{}},
		{"idle away is xa", `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="pres:a@b">` +
			`<tuple id="t"><status><basic>open</basic></status></tuple><rpid:activities><rpid:away/></rpid:activities>` +
			`<rpid:user-input>idle</rpid:user-input></presence>`, presenceInfo{Available: true, Show: "xa"}},
		{"any open tuple", `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b"><tuple id="1"><status><basic>closed</basic></status></tuple>` +
			`<tuple id="2"><status><basic> OPEN </basic></status></tuple></presence>`, presenceInfo{Available: true}},
		{"no tuple", `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b"/>`, presenceInfo{}},
		{"charset utf-8 spelled otherwise", `<?xml version="1.0" encoding="utf8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x">` +
			`<tuple id="1"><status><basic>open</basic></status><note>caf&#233;</note></tuple></presence>`, presenceInfo{Available: true, Status: "café"}},
	}
	for _, tt := range tests {
		got, err := parsePIDF([]byte(tt.doc))
		if err != nil || got != tt.want {
			t.Errorf("%s: got %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

// TestParsePIDFRefusesHostile: a PIDF body comes from the network; these
// are refused as a whole, none is expanded or followed.
func TestParsePIDFRefusesHostile(t *testing.T) {
	const open = `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b"><tuple id="t"><status><basic>open</basic></status>`
	tests := []struct{ name, doc string }{
		{"billion laughs", `<?xml version="1.0"?><!DOCTYPE presence [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">` +
			`<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>` + open + `<note>&lol3;</note></tuple></presence>`},
		{"external entity", `<!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` + open + `<note>&xxe;</note></tuple></presence>`},
		{"doctype alone", `<!DOCTYPE presence>` + open + `</tuple></presence>`},
		{"undeclared entity", open + `<note>&nbsp;</note></tuple></presence>`},
		{"processing instruction", open + `<?php system("id"); ?></tuple></presence>`},
		{"stylesheet", `<?xml version="1.0"?><?xml-stylesheet href="http://attacker.example/x.xsl"?>` + open + `</tuple></presence>`},
		{"declaration not first", " \n" + `<?xml version="1.0"?>` + open + `</tuple></presence>`},
		{"other charset", `<?xml version="1.0" encoding="ISO-8859-1"?>` + open + `</tuple></presence>`},
		{"not utf-8", open + "<note>\xff\xfe</note></tuple></presence>"},
		{"wrong root", `<presence entity="pres:a@b"><tuple id="t"><status><basic>open</basic></status></tuple></presence>`},
		{"wrong namespace", `<presence xmlns="urn:example:not-pidf"/>`},
		{"two roots", `<presence xmlns="urn:ietf:params:xml:ns:pidf"/><presence xmlns="urn:ietf:params:xml:ns:pidf"/>`},
		{"unclosed", open},
		{"mismatched", open + `</status></presence>`},
		{"deep", `<presence xmlns="urn:ietf:params:xml:ns:pidf">` + strings.Repeat("<a>", maxPIDFDepth) + strings.Repeat("</a>", maxPIDFDepth) + `</presence>`},
		{"too large", open + "<note>" + strings.Repeat("x", maxPIDF) + "</note></tuple></presence>"},
		{"too many tokens", open + strings.Repeat("<a/>", maxPIDFTokens) + `</tuple></presence>`},
		{"empty", ""},
		{"text", "open"},
	}
	for _, tt := range tests {
		if got, err := parsePIDF([]byte(tt.doc)); err == nil {
			t.Errorf("%s: accepted as %+v", tt.name, got)
		}
	}
}

func TestBuildPIDFRoundTrip(t *testing.T) {
	tests := []presenceInfo{
		{},
		{Available: true},
		{Available: true, Show: "away", Status: "lunch"},
		{Available: true, Show: "xa", Status: "on holiday until 12/1"},
		{Available: true, Show: "dnd", Status: `<b>"quotes" & 'apostrophes'</b>`},
		{Available: true, Show: "chat"},                       // no RPID for chat: plain available
		{Available: false, Show: "dnd", Status: "gone"},       // closed has no show
		{Available: true, Status: "ctl\x00\x01 and \xff bad"}, // what XML cannot carry is dropped
		{Available: true, Status: strings.Repeat("é", maxStatus)},
	}
	for _, p := range tests {
		body := buildPIDF(`pres:juliet%20c@xmpp.example"<&`, p)
		got, err := parsePIDF(body)
		if err != nil {
			t.Errorf("%+v: built %q, not read back: %v", p, body, err)
			continue
		}
		if want := p.normalize(); got != want {
			t.Errorf("%+v: read back %+v, want %+v", p, got, want)
		}
		if len(got.Status) > maxStatus || !utf8.ValidString(got.Status) {
			t.Errorf("%+v: status not bounded UTF-8: %q", p, got.Status)
		}
	}
}

// FuzzPIDF: no document crashes the parser or costs more than its bounds;
// what it reads is normalized, bounded, and survives being written again.
func FuzzPIDF(f *testing.F) {
	for _, s := range []string{rfc3863, rfc4480, baresipClosed,
		string(buildPIDF("pres:a@b", presenceInfo{Available: true, Show: "xa", Status: "x"})),
		`<!DOCTYPE presence [<!ENTITY a "b">]><presence xmlns="urn:ietf:params:xml:ns:pidf">&a;</presence>`,
		`<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple><status><basic>open</basic></status><note>a<b/>c</note></tuple></presence>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parsePIDF(body)
		if err != nil {
			if p != (presenceInfo{}) {
				t.Fatalf("error with a result: %+v", p)
			}
			return
		}
		if p != p.normalize() {
			t.Fatalf("not normalized: %+v", p)
		}
		if len(p.Status) > maxStatus || !utf8.ValidString(p.Status) {
			t.Fatalf("status not bounded UTF-8: %q", p.Status)
		}
		back, err := parsePIDF(buildPIDF("pres:a@b", p))
		if err != nil || back != p {
			t.Fatalf("%+v written and read back as %+v, %v", p, back, err)
		}
	})
}

// BenchmarkPIDF: reading a NOTIFY's PIDF (baresip's) and writing one.
func BenchmarkPIDF(b *testing.B) {
	b.Run("parse", func(b *testing.B) {
		body := []byte(rfc4480)
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := parsePIDF(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("build", func(b *testing.B) {
		p := presenceInfo{Available: true, Show: "dnd", Status: "in a meeting"}
		b.ReportAllocs()
		for b.Loop() {
			buildPIDF("pres:juliet@xmpp.example", p)
		}
	})
}
