package sip

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// PIDF (RFC 3863) is how SIP carries presence in a NOTIFY; RPID (RFC
// 4480) adds what the person is doing. The bridge keeps what the neutral
// core.Presence holds: available or not (<basic>open</basic> in any
// tuple), the show value and a status text (the first <note>).
//
// Show values map to RPID activities:
//
//	away  <rpid:away/>
//	xa    <rpid:away/> and <rpid:user-input>idle</rpid:user-input>
//	dnd   <rpid:busy/>
//	chat  nothing: RPID has no "free to chat", so it reads as plain available
//
// and back, from what SIP clients send: busy, on-the-phone, meeting,
// appointment, presentation, performance, steering and worship read as
// dnd; vacation, holiday, permanent-absence and sleeping as xa; away,
// meal, breakfast, dinner, in-transit, travel and shopping as away; idle
// user input turns away (or nothing) into xa. A closed presence has no
// show.

const (
	nsPIDF = "urn:ietf:params:xml:ns:pidf"
	nsRPID = "urn:ietf:params:xml:ns:pidf:rpid"
	nsDM   = "urn:ietf:params:xml:ns:pidf:data-model"

	// maxPIDF bounds the PIDF document the gateway reads, in bytes.
	maxPIDF = 64 << 10
	// maxPIDFDepth and maxPIDFTokens bound the work one document costs.
	maxPIDFDepth  = 32
	maxPIDFTokens = 8192
	// maxStatus bounds the status text carried across, in bytes.
	maxStatus = 1024
)

// presenceInfo is what a PIDF document says that the bridge carries.
type presenceInfo struct {
	Available bool
	Show      string // "", "away", "xa" or "dnd"
	Status    string
}

// errPIDF reports a body that is not a PIDF document the gateway reads.
var errPIDF = errors.New("sip: malformed pidf")

var rpidShow = map[string]string{
	"busy": "dnd", "on-the-phone": "dnd", "meeting": "dnd", "appointment": "dnd",
	"presentation": "dnd", "performance": "dnd", "steering": "dnd", "worship": "dnd",
	"vacation": "xa", "holiday": "xa", "permanent-absence": "xa", "sleeping": "xa",
	"away": "away", "meal": "away", "breakfast": "away", "dinner": "away",
	"in-transit": "away", "travel": "away", "shopping": "away",
}

// normalize returns p as it survives a trip through PIDF: a known show
// only while available ("chat" reads as available), the status cleaned.
func (p presenceInfo) normalize() presenceInfo {
	switch p.Show {
	case "away", "xa", "dnd":
	default:
		p.Show = ""
	}
	if !p.Available {
		p.Show = ""
	}
	p.Status = cleanStatus(p.Status)
	return p
}

// cleanStatus keeps what XML can carry of a status text: valid UTF-8 in
// the XML character range, trimmed, at most maxStatus bytes. It is
// idempotent.
func cleanStatus(s string) string {
	ok := utf8.ValidString(s)
	for _, r := range s {
		if !xmlChar(r) {
			ok = false
			break
		}
	}
	if !ok {
		var b strings.Builder
		for _, r := range s {
			if r != utf8.RuneError && xmlChar(r) {
				b.WriteRune(r)
			}
		}
		s = b.String()
	}
	s = strings.TrimSpace(s)
	if len(s) > maxStatus {
		cut := maxStatus
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = strings.TrimSpace(s[:cut])
	}
	return s
}

// xmlChar reports whether r may appear in an XML 1.0 document.
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

// buildPIDF writes p as a PIDF document for entity (a pres: URI).
func buildPIDF(entity string, p presenceInfo) []byte {
	p = p.normalize()
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<presence xmlns="` + nsPIDF + `" xmlns:dm="` + nsDM + `" xmlns:rpid="` + nsRPID + `" entity="`)
	_ = xml.EscapeText(&b, []byte(entity))
	b.WriteString("\">\n")
	basic := "closed"
	if p.Available {
		basic = "open"
	}
	b.WriteString(`<tuple id="t1"><status><basic>` + basic + `</basic></status>`)
	if p.Status != "" {
		b.WriteString("<note>")
		_ = xml.EscapeText(&b, []byte(p.Status))
		b.WriteString("</note>")
	}
	b.WriteString("</tuple>\n")
	if p.Show != "" {
		b.WriteString(`<dm:person id="p1"><rpid:activities>`)
		switch p.Show {
		case "away", "xa":
			b.WriteString("<rpid:away/>")
		case "dnd":
			b.WriteString("<rpid:busy/>")
		}
		b.WriteString("</rpid:activities>")
		if p.Show == "xa" {
			b.WriteString("<rpid:user-input>idle</rpid:user-input>")
		}
		b.WriteString("</dm:person>\n")
	}
	b.WriteString("</presence>\n")
	return b.Bytes()
}

// parsePIDF reads what the bridge keeps of a PIDF document, which comes
// from the network: anything that is not well-formed XML with a PIDF
// <presence> root is errPIDF, and so is a document type declaration (no
// DTD, no entity but XML's five), a processing instruction other than the
// XML declaration, a charset other than UTF-8, more than maxPIDF bytes,
// maxPIDFDepth levels or maxPIDFTokens tokens. Elements the bridge does not
// know are skipped.
func parsePIDF(body []byte) (presenceInfo, error) {
	var p presenceInfo
	if len(body) > maxPIDF {
		return p, errPIDF
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	d.CharsetReader = func(label string, r io.Reader) (io.Reader, error) {
		// The declaration may name UTF-8 in any spelling; nothing else.
		if strings.EqualFold(label, "utf-8") || strings.EqualFold(label, "utf8") {
			return r, nil
		}
		return nil, errPIDF
	}
	var (
		stack    []xml.Name
		text     strings.Builder
		inText   bool // collecting the text of a basic, note or user-input
		note     = -1 // depth of the note being read
		root     bool
		activity string
		idle     bool
		hasNote  bool
	)
	for n := 0; ; n++ {
		if n > maxPIDFTokens {
			return presenceInfo{}, errPIDF
		}
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return presenceInfo{}, errPIDF
		}
		switch t := tok.(type) {
		case xml.Directive:
			// A DOCTYPE (and with it any entity declaration) has no place
			// in PIDF: refused, not skipped.
			return presenceInfo{}, errPIDF
		case xml.ProcInst:
			// Only the XML declaration, and only first.
			if t.Target != "xml" || n != 0 {
				return presenceInfo{}, errPIDF
			}
		case xml.StartElement:
			if len(stack) == 0 {
				if root || t.Name.Space != nsPIDF || t.Name.Local != "presence" {
					return presenceInfo{}, errPIDF
				}
				root = true
			}
			if len(stack) >= maxPIDFDepth {
				return presenceInfo{}, errPIDF
			}
			if parent := stackTop(stack); parent.Space == nsRPID && parent.Local == "activities" &&
				t.Name.Space == nsRPID && activity == "" {
				activity = rpidShow[t.Name.Local]
			}
			stack = append(stack, t.Name)
			inText = false
			switch {
			case t.Name.Space == nsPIDF && t.Name.Local == "basic",
				t.Name.Space == nsRPID && t.Name.Local == "user-input":
				inText = true
				text.Reset()
			case (t.Name.Space == nsPIDF || t.Name.Space == nsDM) && t.Name.Local == "note" && !hasNote && note < 0:
				note = len(stack)
				text.Reset()
			}
		case xml.CharData:
			if (inText || note == len(stack)) && text.Len() < 4*maxStatus {
				text.Write(t)
			}
		case xml.EndElement:
			name := stackTop(stack)
			switch {
			case name.Space == nsPIDF && name.Local == "basic":
				if strings.EqualFold(strings.TrimSpace(text.String()), "open") {
					p.Available = true
				}
			case name.Space == nsRPID && name.Local == "user-input":
				if strings.EqualFold(strings.TrimSpace(text.String()), "idle") {
					idle = true
				}
			case note == len(stack):
				if s := cleanStatus(text.String()); s != "" {
					p.Status, hasNote = s, true
				}
				note = -1
			}
			inText = false
			stack = stack[:len(stack)-1]
		}
	}
	if !root || len(stack) != 0 {
		return presenceInfo{}, errPIDF
	}
	if idle && (activity == "" || activity == "away") {
		activity = "xa"
	}
	p.Show = activity
	return p.normalize(), nil
}

func stackTop(s []xml.Name) xml.Name {
	if len(s) == 0 {
		return xml.Name{}
	}
	return s[len(s)-1]
}
