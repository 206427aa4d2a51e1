package wire

import (
	"encoding/xml"
	"strconv"
	"unicode/utf8"
)

// Element is an element read from a stream, with its names resolved.
type Element struct {
	// Name is the element's namespace URI and local name.
	Name xml.Name
	// Attr are the attributes other than namespace declarations. An
	// unprefixed attribute has no namespace; a prefixed one has its URI
	// (NSXML for xml:lang).
	Attr []xml.Attr
	// Decls are the namespace declarations on the element: Name.Local is
	// the prefix ("" for the default namespace), Value the URI.
	Decls []xml.Attr
	// Children are the child elements, in order.
	Children []*Element
	// Text is the character data directly inside the element.
	Text string
}

// Get returns the value of the unprefixed attribute local, or "".
func (e *Element) Get(local string) string {
	v, _ := e.Lookup(local)
	return v
}

// Lookup returns the value of the unprefixed attribute local and whether
// the element has it.
func (e *Element) Lookup(local string) (string, bool) {
	for _, a := range e.Attr {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// Lang returns the xml:lang attribute, or "".
func (e *Element) Lang() string {
	for _, a := range e.Attr {
		if a.Name.Space == NSXML && a.Name.Local == "lang" {
			return a.Value
		}
	}
	return ""
}

// Child returns the first child with the given namespace and local name,
// or nil.
func (e *Element) Child(space, local string) *Element {
	for _, c := range e.Children {
		if c.Name.Local == local && c.Name.Space == space {
			return c
		}
	}
	return nil
}

// Is reports whether the element has the given namespace and local name.
func (e *Element) Is(space, local string) bool {
	return e != nil && e.Name.Space == space && e.Name.Local == local
}

// Append appends the element as XML to b. parentNS is the default
// namespace in force where it is written: the element declares its own
// namespace when it differs. Prefixed attributes other than xml:* get a
// prefix declared on the element.
func (e *Element) Append(b []byte, parentNS string) []byte {
	b = append(b, '<')
	b = append(b, e.Name.Local...)
	if e.Name.Space != parentNS {
		b = append(b, " xmlns='"...)
		b = AppendEscaped(b, e.Name.Space)
		b = append(b, '\'')
	}
	n := 0
	for _, a := range e.Attr {
		b = append(b, ' ')
		switch a.Name.Space {
		case "":
		case NSXML:
			b = append(b, "xml:"...)
		default:
			n++
			p := "a" + strconv.Itoa(n)
			b = append(b, "xmlns:"...)
			b = append(b, p...)
			b = append(b, "='"...)
			b = AppendEscaped(b, a.Name.Space)
			b = append(b, "' "...)
			b = append(b, p...)
			b = append(b, ':')
		}
		b = append(b, a.Name.Local...)
		b = append(b, "='"...)
		b = AppendEscaped(b, a.Value)
		b = append(b, '\'')
	}
	if len(e.Children) == 0 && e.Text == "" {
		return append(b, "/>"...)
	}
	b = append(b, '>')
	b = AppendEscaped(b, e.Text)
	for _, c := range e.Children {
		b = c.Append(b, e.Name.Space)
	}
	b = append(b, "</"...)
	b = append(b, e.Name.Local...)
	return append(b, '>')
}

// String returns the element as XML, declaring its namespace.
func (e *Element) String() string { return string(e.Append(nil, "\x00")) }

// AppendEscaped appends s escaped for character data and for attribute
// values in single or double quotes. Characters XML 1.0 does not allow
// (control characters, U+FFFE, U+FFFF) and invalid UTF-8 become U+FFFD,
// so that text from another protocol can never break the stream.
func AppendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 || r == 0xFFFE || r == 0xFFFF {
				b = append(b, "\uFFFD"...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
			continue
		}
		i++
		switch c {
		case '<':
			b = append(b, "&lt;"...)
		case '>':
			b = append(b, "&gt;"...)
		case '&':
			b = append(b, "&amp;"...)
		case '\'':
			b = append(b, "&apos;"...)
		case '"':
			b = append(b, "&quot;"...)
		case '\r':
			b = append(b, "&#xD;"...)
		case '\n':
			b = append(b, "&#xA;"...)
		case '\t':
			b = append(b, "&#x9;"...)
		default:
			if c < 0x20 {
				b = append(b, "\uFFFD"...)
			} else {
				b = append(b, c)
			}
		}
	}
	return b
}

// Escape returns s escaped as AppendEscaped does.
func Escape(s string) string {
	if clean(s) {
		return s
	}
	return string(AppendEscaped(make([]byte, 0, len(s)+16), s))
}

// clean reports whether s needs no escaping.
func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c >= utf8.RuneSelf, c == '<', c == '>', c == '&', c == '\'', c == '"':
			return false
		}
	}
	return true
}
