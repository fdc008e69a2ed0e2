// Package xmlel is Hearth's in-memory XML element: a stanza is decoded once from
// the stream into an *Element and passed along the router and feature modules as
// that tree, then serialized once per recipient with a writer that does not go
// through encoding/xml's encoder (RFC 6120 §4.9 and §11: XMPP's restricted XML).
package xmlel

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
)

// NSXML is the namespace bound to the reserved "xml" prefix (xml:lang),
// as encoding/xml reports it (XML Namespaces 1.0 §3).
const NSXML = "http://www.w3.org/XML/1998/namespace"

// Node is a child of an Element: either *Element or Text.
type Node interface{ isNode() }

// Text is character data inside an element, unescaped.
type Text string

func (Text) isNode() {}

// Element is one XML element with its namespace-qualified name, attributes
// (excluding namespace declarations, which are derived on output) and children
// in document order.
type Element struct {
	Name     xml.Name
	Attr     []xml.Attr
	Children []Node
}

func (*Element) isNode() {}

// New returns an element named local in namespace space with the given
// attributes as name/value pairs; an odd trailing name is ignored.
func New(space, local string, attrs ...string) *Element {
	e := &Element{Name: xml.Name{Space: space, Local: local}}
	for i := 0; i+1 < len(attrs); i += 2 {
		e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
	}
	return e
}

// Get returns the value of the un-namespaced attribute local, or "".
func (e *Element) Get(local string) string {
	for _, a := range e.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// Has reports whether the un-namespaced attribute local is present.
func (e *Element) Has(local string) bool {
	for _, a := range e.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return true
		}
	}
	return false
}

// Set sets the un-namespaced attribute local to value, removing it when value
// is empty. It returns e for chaining.
func (e *Element) Set(local, value string) *Element {
	for i, a := range e.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			if value == "" {
				e.Attr = append(e.Attr[:i], e.Attr[i+1:]...)
			} else {
				e.Attr[i].Value = value
			}
			return e
		}
	}
	if value != "" {
		e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: local}, Value: value})
	}
	return e
}

// Lang returns the xml:lang attribute, or "".
func (e *Element) Lang() string {
	for _, a := range e.Attr {
		if a.Name.Local == "lang" && (a.Name.Space == NSXML || a.Name.Space == "xml") {
			return a.Value
		}
	}
	return ""
}

// Add appends children and returns e for chaining.
func (e *Element) Add(children ...Node) *Element {
	e.Children = append(e.Children, children...)
	return e
}

// AddText appends a text child and returns e.
func (e *Element) AddText(s string) *Element {
	if s != "" {
		e.Children = append(e.Children, Text(s))
	}
	return e
}

// Child returns the first child element with the given namespace and local
// name, or nil. An empty space matches any namespace.
func (e *Element) Child(space, local string) *Element {
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok && ce.Name.Local == local && (space == "" || ce.Name.Space == space) {
			return ce
		}
	}
	return nil
}

// ChildrenNamed returns every child element with the given namespace and local name.
func (e *Element) ChildrenNamed(space, local string) []*Element {
	var out []*Element
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok && ce.Name.Local == local && (space == "" || ce.Name.Space == space) {
			out = append(out, ce)
		}
	}
	return out
}

// Elements returns the child elements, skipping text.
func (e *Element) Elements() []*Element {
	var out []*Element
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok {
			out = append(out, ce)
		}
	}
	return out
}

// FirstElement returns the first child element, or nil.
func (e *Element) FirstElement() *Element {
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok {
			return ce
		}
	}
	return nil
}

// Text returns the concatenated character data of e's direct text children.
func (e *Element) Text() string {
	var b strings.Builder
	for _, c := range e.Children {
		if t, ok := c.(Text); ok {
			b.WriteString(string(t))
		}
	}
	return b.String()
}

// ChildText returns the text of the first child named (space, local), or "".
func (e *Element) ChildText(space, local string) string {
	if c := e.Child(space, local); c != nil {
		return c.Text()
	}
	return ""
}

// RemoveChildren removes every child element for which drop returns true.
func (e *Element) RemoveChildren(drop func(*Element) bool) {
	kept := e.Children[:0]
	for _, c := range e.Children {
		if ce, ok := c.(*Element); ok && drop(ce) {
			continue
		}
		kept = append(kept, c)
	}
	for i := len(kept); i < len(e.Children); i++ {
		e.Children[i] = nil
	}
	e.Children = kept
}

// Copy returns a deep copy of e, so the copy's attributes and children can be
// changed without affecting e.
func (e *Element) Copy() *Element {
	c := &Element{Name: e.Name, Attr: append([]xml.Attr(nil), e.Attr...)}
	if len(e.Children) > 0 {
		c.Children = make([]Node, len(e.Children))
		for i, n := range e.Children {
			if ce, ok := n.(*Element); ok {
				c.Children[i] = ce.Copy()
			} else {
				c.Children[i] = n
			}
		}
	}
	return c
}

// ShallowCopy returns a copy of e with its own attribute slice and child slice
// but sharing the child elements themselves. Use it to re-address a stanza.
func (e *Element) ShallowCopy() *Element {
	return &Element{
		Name:     e.Name,
		Attr:     append([]xml.Attr(nil), e.Attr...),
		Children: append([]Node(nil), e.Children...),
	}
}

// ErrRestrictedXML reports a comment, processing instruction or DTD inside a
// stanza, which RFC 6120 §11.1 forbids (stream error restricted-xml).
var ErrRestrictedXML = errors.New("xmlel: comments, processing instructions and DTDs are not allowed (RFC 6120 §11.1)")

// Decode reads the remainder of the element whose start tag is start from r and
// returns it as an Element. r must yield the tokens after start (as a stream
// decoder does after returning start). Comments, processing instructions and
// directives yield ErrRestrictedXML; io.EOF before the end tag yields
// io.ErrUnexpectedEOF.
func Decode(r xml.TokenReader, start xml.StartElement) (*Element, error) {
	root := fromStart(start)
	stack := []*Element{root}
	for {
		tok, err := r.Token()
		if err != nil {
			if err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el := fromStart(t)
			parent := stack[len(stack)-1]
			parent.Children = append(parent.Children, el)
			stack = append(stack, el)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return root, nil
			}
		case xml.CharData:
			parent := stack[len(stack)-1]
			if n := len(parent.Children); n > 0 {
				if prev, ok := parent.Children[n-1].(Text); ok {
					parent.Children[n-1] = prev + Text(t)
					continue
				}
			}
			parent.Children = append(parent.Children, Text(string(t)))
		case xml.Comment, xml.ProcInst, xml.Directive:
			return nil, ErrRestrictedXML
		}
	}
}

func fromStart(t xml.StartElement) *Element {
	el := &Element{Name: t.Name}
	for _, a := range t.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		el.Attr = append(el.Attr, a)
	}
	return el
}

// Parse decodes a single element from a string; it is meant for stored XML
// (offline messages, vCards) and tests.
func Parse(s string) (*Element, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return Decode(d, t)
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return nil, errors.New("xmlel: text before the root element")
			}
		case xml.ProcInst:
			// An XML declaration before the root is fine.
		default:
			return nil, ErrRestrictedXML
		}
	}
}

// MustParse is Parse for literals known to be valid; it panics on error.
func MustParse(s string) *Element {
	e, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return e
}
