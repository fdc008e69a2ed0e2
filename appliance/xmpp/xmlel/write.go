package xmlel

import (
	"strconv"
	"unicode/utf8"
)

// Append serializes e to buf and returns the extended buffer. parentNS is the
// default namespace in scope where e is written (for a stanza on a c2s stream,
// "jabber:client"): an xmlns declaration is written only where the namespace
// changes. Attributes in other namespaces get generated prefixes; xml:lang keeps
// the reserved "xml" prefix. Text and attribute values are escaped; characters
// not allowed in XML 1.0 are replaced by U+FFFD.
func (e *Element) Append(buf []byte, parentNS string) []byte {
	buf = append(buf, '<')
	buf = append(buf, e.Name.Local...)
	if e.Name.Space != parentNS {
		buf = append(buf, ` xmlns="`...)
		buf = appendEscaped(buf, e.Name.Space, true)
		buf = append(buf, '"')
	}
	prefixes := 0
	for _, a := range e.Attr {
		buf = append(buf, ' ')
		switch a.Name.Space {
		case "":
		case NSXML, "xml":
			buf = append(buf, "xml:"...)
		default:
			prefixes++
			p := "ns" + strconv.Itoa(prefixes)
			buf = append(buf, "xmlns:"...)
			buf = append(buf, p...)
			buf = append(buf, `="`...)
			buf = appendEscaped(buf, a.Name.Space, true)
			buf = append(buf, `" `...)
			buf = append(buf, p...)
			buf = append(buf, ':')
		}
		buf = append(buf, a.Name.Local...)
		buf = append(buf, `="`...)
		buf = appendEscaped(buf, a.Value, true)
		buf = append(buf, '"')
	}
	if len(e.Children) == 0 {
		return append(buf, "/>"...)
	}
	buf = append(buf, '>')
	for _, c := range e.Children {
		switch n := c.(type) {
		case *Element:
			buf = n.Append(buf, e.Name.Space)
		case Text:
			buf = appendEscaped(buf, string(n), false)
		}
	}
	buf = append(buf, "</"...)
	buf = append(buf, e.Name.Local...)
	return append(buf, '>')
}

// String serializes e with its namespace declared (for logs and storage).
func (e *Element) String() string {
	return string(e.Append(nil, ""))
}

// Bytes serializes e as a stanza on a stream whose default namespace is ns.
func (e *Element) Bytes(ns string) []byte {
	return e.Append(make([]byte, 0, 256), ns)
}

func appendEscaped(buf []byte, s string, attr bool) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			var esc string
			switch c {
			case '<':
				esc = "&lt;"
			case '>':
				esc = "&gt;"
			case '&':
				esc = "&amp;"
			case '"':
				if attr {
					esc = "&quot;"
				}
			case '\'':
				if attr {
					esc = "&apos;"
				}
			case '\r':
				esc = "&#xD;"
			case '\n':
				if attr {
					esc = "&#xA;"
				}
			case '\t':
				if attr {
					esc = "&#x9;"
				}
			default:
				if c < 0x20 {
					esc = "\uFFFD"
				}
			}
			if esc != "" {
				buf = append(buf, s[last:i]...)
				buf = append(buf, esc...)
				last = i + 1
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r == 0xFFFE || r == 0xFFFF {
			buf = append(buf, s[last:i]...)
			buf = append(buf, "\uFFFD"...)
			last = i + size
		}
		i += size
	}
	return append(buf, s[last:]...)
}
