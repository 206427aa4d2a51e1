package wire

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Namespaces the reader knows.
const (
	// NSStream is the namespace of the stream element (RFC 6120).
	NSStream = "http://etherx.jabber.org/streams"
	// NSXML is the namespace bound to the xml prefix.
	NSXML = "http://www.w3.org/XML/1998/namespace"
)

// The errors a Reader refuses input with. Each is wrapped with a short
// description that never quotes the input.
var (
	// ErrRestricted: XML that RFC 6120 section 11.1 forbids in a stream (a
	// document type declaration, an entity reference other than the
	// predefined ones, a comment, a processing instruction).
	ErrRestricted = errors.New("wire: restricted XML")
	// ErrTooLarge: a top-level element (or the stream header, or a run of
	// whitespace) longer than Limits.MaxSize bytes.
	ErrTooLarge = errors.New("wire: element too large")
	// ErrTooDeep: elements nested deeper than Limits.MaxDepth.
	ErrTooDeep = errors.New("wire: elements nested too deep")
	// ErrAttributes: an element with more than Limits.MaxAttrs attributes.
	ErrAttributes = errors.New("wire: too many attributes")
	// ErrSyntax: XML that is not well-formed.
	ErrSyntax = errors.New("wire: not well-formed")
	// ErrNamespace: XML that is not namespace-well-formed (an undeclared
	// prefix, a reserved prefix redeclared, a duplicate attribute after
	// namespace resolution).
	ErrNamespace = errors.New("wire: not namespace-well-formed")
	// ErrText: character data other than whitespace at the stream level.
	ErrText = errors.New("wire: text at the stream level")
)

// Limits bound what a Reader accepts. A zero field takes its value from
// DefaultLimits.
type Limits struct {
	// MaxSize is the most bytes of one top-level element, of the stream
	// header (with the XML declaration before it), or of a run of
	// whitespace between elements.
	MaxSize int
	// MaxDepth is the deepest nesting within a top-level element; the
	// element itself is at depth 1.
	MaxDepth int
	// MaxAttrs is the most attributes of one element, namespace
	// declarations included.
	MaxAttrs int
	// MaxElements is the most elements in one top-level element (itself
	// included). Zero: MaxSize/32, at least 64. It bounds the memory of
	// the tree: an element costs more than a hundred bytes in memory and
	// four (<a/>) on the wire.
	MaxElements int
}

// DefaultLimits are limits no chat client reaches: 256 KiB per stanza (as
// Prosody's own c2s limit), depth 32, 64 attributes.
func DefaultLimits() Limits { return Limits{MaxSize: 256 << 10, MaxDepth: 32, MaxAttrs: 64} }

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxSize <= 0 {
		l.MaxSize = d.MaxSize
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxAttrs <= 0 {
		l.MaxAttrs = d.MaxAttrs
	}
	if l.MaxElements <= 0 {
		l.MaxElements = max(l.MaxSize/32, 64)
	}
	return l
}

// Kind is what an Item is.
type Kind uint8

// Item kinds.
const (
	// KindHeader is a stream header: the stream starts, or restarts (after
	// SASL); El has its name and attributes and no children.
	KindHeader Kind = iota + 1
	// KindElement is a top-level element: a stanza or a negotiation
	// element, with its whole tree in El.
	KindElement
	// KindSpace is whitespace between top-level elements (a keepalive).
	KindSpace
	// KindClose is the end of the stream (</stream:stream>).
	KindClose
)

var kindNames = [...]string{"", "header", "element", "space", "close"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k > 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Item is one top-level item of a stream.
type Item struct {
	Kind Kind
	// El is the element (KindElement) or the stream element's start
	// (KindHeader).
	El *Element
	// Raw is the item exactly as it arrived (with the XML declaration
	// before a header). It is valid until the next call to Next.
	Raw []byte
}

// Reader reads one XMPP stream. It is not safe for concurrent use.
type Reader struct {
	lim Limits
	src source
	dec *xml.Decoder
	err error

	open        bool         // a stream header was read and its end was not
	rootRaw     xml.Name     // the stream element's name as written
	declOK      bool         // an XML declaration may come now
	pendingDecl bool         // an XML declaration came: a header must follow
	scope       []binding    // namespace bindings in force, innermost last
	frames      []frame      // the open elements of the element being read
	elements    int          // elements of the element being read
	text        bytes.Buffer // character data of the innermost open element
}

type binding struct{ prefix, uri string }

type frame struct {
	el    *Element
	raw   xml.Name
	scope int // len(scope) before the element's declarations
	text  int // length of Reader.text when the element opened
}

// NewReader returns a reader of the stream on r.
func NewReader(r io.Reader, lim Limits) *Reader {
	rd := &Reader{lim: lim.withDefaults()}
	rd.Reset(r)
	return rd
}

// Reset makes the reader read a new stream on r (after a TLS handshake
// replaced the transport). Bytes still buffered from the old one are lost.
func (r *Reader) Reset(rd io.Reader) {
	r.src = source{br: bufio.NewReaderSize(rd, 4096), max: r.lim.MaxSize}
	r.dec = xml.NewDecoder(&r.src)
	r.dec.Strict = true
	r.err = nil
	r.open, r.declOK, r.pendingDecl = false, true, false
	r.scope = r.scope[:0]
}

// Buffered returns how many bytes were received and not read yet. Before
// a TLS handshake on the same connection it must be zero: bytes sent
// after <starttls/> and before the handshake would otherwise be taken as
// coming over TLS.
func (r *Reader) Buffered() int { return r.src.br.Buffered() }

// Next returns the next top-level item. After an error every later call
// returns the same error. io.EOF means the connection ended between items.
func (r *Reader) Next() (Item, error) {
	if r.err != nil {
		return Item{}, r.err
	}
	it, err := r.next()
	if err != nil {
		r.err = err
		return Item{}, err
	}
	return it, nil
}

func (r *Reader) next() (Item, error) {
	r.src.mark(r.dec.InputOffset())
	for {
		tok, err := r.dec.RawToken()
		if err != nil {
			return Item{}, r.wrap(err)
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" || r.pendingDecl || !r.declOK && !r.open {
				return Item{}, fmt.Errorf("%w: processing instruction", ErrRestricted)
			}
			r.declOK, r.pendingDecl = false, true
		case xml.Directive:
			return Item{}, fmt.Errorf("%w: document type or markup declaration", ErrRestricted)
		case xml.Comment:
			return Item{}, fmt.Errorf("%w: comment", ErrRestricted)
		case xml.CharData:
			if !isSpace(t) {
				if !r.open {
					return Item{}, fmt.Errorf("%w: text before the stream header", ErrSyntax)
				}
				return Item{}, fmt.Errorf("%w", ErrText)
			}
			if !r.open || r.pendingDecl {
				continue // whitespace before a header belongs to it
			}
			return Item{Kind: KindSpace, Raw: r.src.raw(r.dec.InputOffset())}, nil
		case xml.StartElement:
			r.declOK = false
			if !r.open || r.isStreamStart(t) {
				return r.header(t)
			}
			if r.pendingDecl {
				return Item{}, fmt.Errorf("%w: XML declaration inside the stream", ErrRestricted)
			}
			el, err := r.element(t)
			if err != nil {
				return Item{}, err
			}
			return Item{Kind: KindElement, El: el, Raw: r.src.raw(r.dec.InputOffset())}, nil
		case xml.EndElement:
			if !r.open || t.Name != r.rootRaw || r.pendingDecl {
				return Item{}, fmt.Errorf("%w: unexpected end tag", ErrSyntax)
			}
			r.open = false
			return Item{Kind: KindClose, Raw: r.src.raw(r.dec.InputOffset())}, nil
		}
	}
}

// isStreamStart reports whether t, met among the stream's children, is a
// new stream header (a restart after SASL).
func (r *Reader) isStreamStart(t xml.StartElement) bool {
	if t.Name.Local != "stream" {
		return false
	}
	for _, a := range t.Attr {
		if t.Name.Space == "" && a.Name.Space == "" && a.Name.Local == "xmlns" ||
			t.Name.Space != "" && a.Name.Space == "xmlns" && a.Name.Local == t.Name.Space {
			return a.Value == NSStream
		}
	}
	uri, ok := r.lookup(t.Name.Space)
	return ok && uri == NSStream
}

// header starts a stream: the namespace bindings start afresh.
func (r *Reader) header(t xml.StartElement) (Item, error) {
	r.scope = append(r.scope[:0], binding{"xml", NSXML})
	el, err := r.build(t)
	if err != nil {
		return Item{}, err
	}
	r.open, r.pendingDecl, r.rootRaw = true, false, t.Name
	return Item{Kind: KindHeader, El: el, Raw: r.src.raw(r.dec.InputOffset())}, nil
}

// element reads the rest of a top-level element that starts with t.
func (r *Reader) element(t xml.StartElement) (*Element, error) {
	base := len(r.scope)
	defer func() {
		r.scope = r.scope[:base]
		clear(r.frames)
		r.frames = r.frames[:0]
	}()
	r.text.Reset()
	r.elements = 0
	root, err := r.push(t)
	if err != nil {
		return nil, err
	}
	for len(r.frames) > 0 {
		tok, err := r.dec.RawToken()
		if err != nil {
			return nil, r.wrap(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(r.frames) >= r.lim.MaxDepth {
				return nil, fmt.Errorf("%w: more than %d levels", ErrTooDeep, r.lim.MaxDepth)
			}
			if _, err := r.push(t); err != nil {
				return nil, err
			}
		case xml.EndElement:
			f := &r.frames[len(r.frames)-1]
			if t.Name != f.raw {
				return nil, fmt.Errorf("%w: mismatched end tag", ErrSyntax)
			}
			if r.text.Len() > f.text {
				f.el.Text = string(r.text.Bytes()[f.text:])
			}
			r.text.Truncate(f.text)
			r.scope = r.scope[:f.scope]
			r.frames = r.frames[:len(r.frames)-1]
		case xml.CharData:
			r.text.Write(t)
		case xml.Comment:
			return nil, fmt.Errorf("%w: comment", ErrRestricted)
		case xml.ProcInst:
			return nil, fmt.Errorf("%w: processing instruction", ErrRestricted)
		case xml.Directive:
			return nil, fmt.Errorf("%w: markup declaration", ErrRestricted)
		}
	}
	return root, nil
}

// push opens an element inside the one being read.
func (r *Reader) push(t xml.StartElement) (*Element, error) {
	if r.elements++; r.elements > r.lim.MaxElements {
		return nil, fmt.Errorf("%w: more than %d elements", ErrTooLarge, r.lim.MaxElements)
	}
	scope := len(r.scope)
	el, err := r.build(t)
	if err != nil {
		return nil, err
	}
	if n := len(r.frames); n > 0 {
		p := r.frames[n-1].el
		p.Children = append(p.Children, el)
	}
	r.frames = append(r.frames, frame{el: el, raw: t.Name, scope: scope, text: r.text.Len()})
	return el, nil
}

// build checks a start tag and resolves its names. Its namespace
// declarations stay in scope; the caller pops them.
func (r *Reader) build(t xml.StartElement) (*Element, error) {
	if len(t.Attr) > r.lim.MaxAttrs {
		return nil, fmt.Errorf("%w: more than %d", ErrAttributes, r.lim.MaxAttrs)
	}
	if !qname(t.Name) {
		return nil, fmt.Errorf("%w: bad element name", ErrNamespace)
	}
	el := &Element{}
	nattr := 0
	for i, a := range t.Attr {
		for _, b := range t.Attr[:i] {
			if a.Name == b.Name {
				return nil, fmt.Errorf("%w: duplicate attribute", ErrSyntax)
			}
		}
		switch {
		case a.Name.Space == "xmlns":
			if a.Name.Local == "xmlns" || !ncName(a.Name.Local) || a.Value == "" || a.Value == NSXML && a.Name.Local != "xml" ||
				a.Name.Local == "xml" && a.Value != NSXML || strings.Contains(a.Name.Local, ":") {
				return nil, fmt.Errorf("%w: bad namespace declaration", ErrNamespace)
			}
			r.scope = append(r.scope, binding{a.Name.Local, a.Value})
			el.Decls = append(el.Decls, xml.Attr{Name: xml.Name{Local: a.Name.Local}, Value: a.Value})
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			if a.Value == NSXML {
				return nil, fmt.Errorf("%w: bad namespace declaration", ErrNamespace)
			}
			r.scope = append(r.scope, binding{"", a.Value})
			el.Decls = append(el.Decls, xml.Attr{Name: xml.Name{}, Value: a.Value})
		default:
			nattr++
		}
	}
	var ok bool
	if el.Name.Space, ok = r.lookup(t.Name.Space); !ok {
		return nil, fmt.Errorf("%w: undeclared prefix", ErrNamespace)
	}
	el.Name.Local = t.Name.Local
	if nattr > 0 {
		el.Attr = make([]xml.Attr, 0, nattr)
	}
	for _, a := range t.Attr {
		if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
			continue
		}
		if !qname(a.Name) {
			return nil, fmt.Errorf("%w: bad attribute name", ErrNamespace)
		}
		name := xml.Name{Local: a.Name.Local}
		if a.Name.Space != "" {
			if name.Space, ok = r.lookup(a.Name.Space); !ok {
				return nil, fmt.Errorf("%w: undeclared prefix", ErrNamespace)
			}
			for _, b := range el.Attr {
				if b.Name == name {
					return nil, fmt.Errorf("%w: duplicate attribute", ErrNamespace)
				}
			}
		}
		el.Attr = append(el.Attr, xml.Attr{Name: name, Value: a.Value})
	}
	return el, nil
}

// lookup resolves a prefix ("" for the default namespace, which may be
// unbound: then it is "").
func (r *Reader) lookup(prefix string) (string, bool) {
	for i := len(r.scope) - 1; i >= 0; i-- {
		if r.scope[i].prefix == prefix {
			return r.scope[i].uri, true
		}
	}
	if prefix == "xml" {
		return NSXML, true
	}
	return "", prefix == ""
}

// wrap turns a decoder error into one of the package's.
func (r *Reader) wrap(err error) error {
	var se *xml.SyntaxError
	switch {
	case errors.As(err, &se):
		if m, ok := strings.CutPrefix(se.Msg, "invalid character entity &"); ok && !strings.HasPrefix(m, "#") {
			return fmt.Errorf("%w: entity reference", ErrRestricted)
		}
		return fmt.Errorf("%w: %s", ErrSyntax, syntaxDetail(se.Msg))
	case errors.Is(err, errTooLarge):
		return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, r.lim.MaxSize)
	}
	return err
}

// syntaxDetail keeps the decoder's message when it quotes nothing of the
// input: "unexpected EOF", "invalid UTF-8", "illegal character code U+0001".
func syntaxDetail(msg string) string {
	switch {
	case strings.ContainsAny(msg, "<&'\"`"):
		return "syntax error"
	case len(msg) > 64:
		return msg[:64]
	}
	return msg
}

// qname reports whether n, as the decoder split it, is a qualified name
// of the namespaces recommendation: an NCName, or two joined by a colon.
func qname(n xml.Name) bool {
	return ncName(n.Local) && (n.Space == "" || ncName(n.Space))
}

// ncName reports whether s is a name without a colon (XML 1.0 Name
// production, with Go's unicode tables for letters and digits).
func ncName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_' || c < utf8.RuneSelf && ('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'):
		case i > 0 && (c == '-' || c == '.' || '0' <= c && c <= '9' || c == 0xB7):
		case c >= utf8.RuneSelf && c != utf8.RuneError && (unicode.IsLetter(c) ||
			i > 0 && (unicode.IsDigit(c) || unicode.In(c, unicode.Mn, unicode.Mc, unicode.Nd, unicode.Lm))):
		default:
			return false
		}
	}
	return true
}

func isSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

var errTooLarge = errors.New("wire: size limit")

// source is the byte reader under the decoder. It keeps the bytes read
// since the start of the current item, at most max of them, so that an
// item can be relayed exactly as it came.
type source struct {
	br   *bufio.Reader
	buf  []byte // bytes from offset base on
	base int64
	max  int
}

// ReadByte implements io.ByteReader, which makes the decoder read byte by
// byte without buffering of its own.
func (s *source) ReadByte() (byte, error) {
	if len(s.buf) > s.max { // one byte of slack: the decoder's look-ahead
		return 0, errTooLarge
	}
	b, err := s.br.ReadByte()
	if err != nil {
		return 0, err
	}
	s.buf = append(s.buf, b)
	return b, nil
}

// Read implements io.Reader; the decoder never calls it when ReadByte is
// there.
func (s *source) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, err := s.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = b
	return 1, nil
}

// mark forgets the bytes before offset off (the decoder may have read one
// byte past it, which is kept).
func (s *source) mark(off int64) {
	n := int(off - s.base)
	if n > len(s.buf) {
		n = len(s.buf)
	}
	if n > 0 {
		s.buf = s.buf[:copy(s.buf, s.buf[n:])]
	}
	s.base = off
	if cap(s.buf) > 64<<10 && len(s.buf) < 1024 {
		s.buf = append(make([]byte, 0, 4096), s.buf...) // give back a large element's buffer
	}
}

// raw returns the bytes from the last mark to offset end.
func (s *source) raw(end int64) []byte {
	n := int(end - s.base)
	if n > len(s.buf) {
		n = len(s.buf)
	}
	return s.buf[:n:n]
}
