package lean

import (
	"bytes"
	"errors"
	"io"
)

// Kind is the kind of a top-level item of an XMPP stream returned by
// [Scanner.Next].
type Kind int

// The kinds of top-level items (RFC 6120 §4).
const (
	// ItemElement is a complete top-level element: a stanza or a nonza.
	ItemElement Kind = iota
	// ItemHeader is the stream header's start tag (<stream:stream ...>).
	ItemHeader
	// ItemClose is the stream's end tag (</stream:stream>).
	ItemClose
)

const (
	scanInitialBuf = 4 << 10 // bytes: most idle sessions never need more
	scanGrowLimit  = 64 << 10
	scanMaxElement = 1 << 20 // bytes: a larger top-level element is an error
)

// Errors of [Scanner.Next], besides the reader's own.
var (
	// ErrSyntax is malformed XML at stream level (text before the header,
	// an end tag with no element open, '<' inside a tag).
	ErrSyntax = errors.New("lean: malformed XML on the stream")
	// ErrRestricted is a comment, DTD or processing instruction inside the
	// stream, which RFC 6120 §11.1 forbids.
	ErrRestricted = errors.New("lean: comment, DTD or processing instruction inside the stream (RFC 6120 §11.1)")
	// ErrTooLarge is a top-level element of more than 1 MiB.
	ErrTooLarge = errors.New("lean: top-level element larger than 1 MiB")
)

// Scanner splits an XMPP stream (RFC 6120 §4) into its top-level items
// without building a tree: it only tracks tag nesting and attribute quoting.
// The slices it returns alias its buffer and are valid until the next call.
// Character data between top-level elements (whitespace keepalives) is
// skipped. Its buffer starts at 4 KiB and grows up to the 1 MiB element
// bound. A Scanner is not safe for concurrent use.
type Scanner struct {
	r          io.Reader
	buf        []byte
	start, end int  // unread bytes are buf[start:end]
	inStream   bool // the stream header has been read
	grow       bool // the last read filled the buffer

	// onBlock, if set, runs before each read that may block (every
	// complete item already in the buffer has been returned).
	onBlock func()
}

// NewScanner returns a Scanner reading the stream from r, which must start
// with the stream header (an XML declaration before it is skipped).
func NewScanner(r io.Reader) *Scanner {
	return &Scanner{r: r, buf: make([]byte, scanInitialBuf)}
}

// Reset makes the scanner read a new stream from r (after STARTTLS or SASL,
// RFC 6120 §5.4.3.3 and §6.4.6), dropping anything buffered.
func (s *Scanner) Reset(r io.Reader) {
	s.r, s.start, s.end, s.inStream = r, 0, 0, false
}

// Next returns the next top-level item of the stream and its bytes (for
// ItemElement the whole element, for ItemHeader the start tag, for ItemClose
// the end tag). Errors are the reader's (io.EOF, a deadline), [ErrSyntax],
// [ErrRestricted] or [ErrTooLarge]; after one the Scanner is unusable.
func (s *Scanner) Next() (kind Kind, item []byte, err error) {
	for {
		if s.start < s.end {
			off, n, kind, err := scanItem(s.buf[s.start:s.end], s.inStream)
			if err != nil {
				return 0, nil, err
			}
			s.start += off
			if n > 0 {
				item = s.buf[s.start : s.start+n]
				s.start += n
				switch kind {
				case ItemHeader:
					s.inStream = true
				case ItemClose:
					s.inStream = false
				}
				return kind, item, nil
			}
		}
		if err := s.fill(); err != nil {
			return 0, nil, err
		}
	}
}

// fill reads more bytes, compacting or growing the buffer first.
func (s *Scanner) fill() error {
	if s.onBlock != nil {
		s.onBlock()
	}
	if s.start == s.end {
		s.start, s.end = 0, 0
	} else if s.start > 0 {
		s.end = copy(s.buf, s.buf[s.start:s.end])
		s.start = 0
	}
	if s.end == len(s.buf) || (s.grow && len(s.buf) < scanGrowLimit) {
		if len(s.buf) >= scanMaxElement {
			return ErrTooLarge
		}
		nb := make([]byte, 2*len(s.buf))
		copy(nb, s.buf[:s.end])
		s.buf = nb
		s.grow = false
	}
	n, err := s.r.Read(s.buf[s.end:])
	s.end += n
	s.grow = s.end == len(s.buf)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// scanItem finds the first top-level item of b. It returns the number of
// bytes to skip before it (whitespace, XML declaration) and its length n; n
// is 0 if b holds no complete item yet. inStream says whether the stream
// header was already read: before it, the first start tag is the header.
func scanItem(b []byte, inStream bool) (off, n int, kind Kind, err error) {
	for {
		for off < len(b) && isSpace(b[off]) {
			off++
		}
		if off == len(b) {
			return off, 0, 0, nil
		}
		if b[off] != '<' {
			if !inStream {
				return 0, 0, 0, ErrSyntax
			}
			// Character data at stream level: skip it up to the next tag.
			i := bytes.IndexByte(b[off:], '<')
			if i < 0 {
				return len(b), 0, 0, nil
			}
			off += i
			continue
		}
		if len(b)-off < 2 {
			return off, 0, 0, nil
		}
		switch b[off+1] {
		case '?':
			// The XML declaration before the stream header.
			if inStream {
				return 0, 0, 0, ErrRestricted
			}
			i := bytes.Index(b[off:], []byte("?>"))
			if i < 0 {
				return off, 0, 0, nil
			}
			off += i + 2
			continue
		case '!':
			return 0, 0, 0, ErrRestricted
		case '/':
			if !inStream {
				return 0, 0, 0, ErrSyntax
			}
			i := bytes.IndexByte(b[off:], '>')
			if i < 0 {
				return off, 0, 0, nil
			}
			return off, i + 1, ItemClose, nil
		}
		if !inStream {
			end, _, ok, err := scanTag(b[off:])
			if err != nil || !ok {
				return off, 0, 0, err
			}
			return off, end, ItemHeader, nil
		}
		n, err := scanElement(b[off:])
		return off, n, ItemElement, err
	}
}

// scanTag scans the start or empty-element tag at b[0] ('<'), honouring
// quoted attribute values, which may contain '>' and '/'. It returns the
// length of the tag, whether it is an empty-element tag (ends with "/>"), and
// ok=false if b ends before the tag does.
func scanTag(b []byte) (n int, empty, ok bool, err error) {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; c {
		case '\'', '"':
			j := bytes.IndexByte(b[i+1:], c)
			if j < 0 {
				return 0, false, false, nil
			}
			i += j + 1
		case '<':
			return 0, false, false, ErrSyntax
		case '>':
			return i + 1, b[i-1] == '/', true, nil
		}
	}
	return 0, false, false, nil
}

// scanElement returns the length of the complete element starting at b[0],
// or 0 if b ends first.
func scanElement(b []byte) (int, error) {
	depth := 0
	i := 0
	for i < len(b) {
		if b[i] != '<' {
			j := bytes.IndexByte(b[i:], '<')
			if j < 0 {
				return 0, nil
			}
			i += j
			continue
		}
		if i+1 >= len(b) {
			return 0, nil
		}
		switch b[i+1] {
		case '/':
			j := bytes.IndexByte(b[i:], '>')
			if j < 0 {
				return 0, nil
			}
			i += j + 1
			depth--
			if depth == 0 {
				return i, nil
			}
			if depth < 0 {
				return 0, ErrSyntax
			}
		case '!', '?':
			return 0, ErrRestricted
		default:
			n, empty, ok, err := scanTag(b[i:])
			if err != nil || !ok {
				return 0, err
			}
			i += n
			if !empty {
				depth++
			} else if depth == 0 {
				return i, nil
			}
		}
	}
	return 0, nil
}

// TagName returns the qualified name of the tag at el[0], prefix included
// ("message", "stream:features"). It does not allocate.
func TagName(el []byte) []byte {
	i := 1
	for i < len(el) && !isSpace(el[i]) && el[i] != '>' && el[i] != '/' {
		i++
	}
	return el[1:i]
}

// LocalName returns [TagName] without its prefix ("features" for
// "stream:features").
func LocalName(el []byte) []byte {
	n := TagName(el)
	if i := bytes.IndexByte(n, ':'); i >= 0 {
		return n[i+1:]
	}
	return n
}

// Attr returns the raw (still escaped) value of the attribute name (as
// written, prefix included) in the start tag at el[0], and whether it is
// present. It does not allocate.
func Attr(el []byte, name string) ([]byte, bool) {
	i := 1 + len(TagName(el))
	for i < len(el) {
		for i < len(el) && isSpace(el[i]) {
			i++
		}
		if i >= len(el) || el[i] == '>' || el[i] == '/' {
			return nil, false
		}
		ns := i
		for i < len(el) && el[i] != '=' && !isSpace(el[i]) {
			i++
		}
		an := el[ns:i]
		for i < len(el) && (isSpace(el[i]) || el[i] == '=') {
			i++
		}
		if i >= len(el) || (el[i] != '\'' && el[i] != '"') {
			return nil, false
		}
		q := el[i]
		j := bytes.IndexByte(el[i+1:], q)
		if j < 0 {
			return nil, false
		}
		v := el[i+1 : i+1+j]
		i += j + 2
		if string(an) == name {
			return v, true
		}
	}
	return nil, false
}

// HasBody reports whether a stanza has a <body/> child (RFC 6121 §5.2.3); a
// cheap test that does not parse the children.
func HasBody(el []byte) bool {
	return bytes.Contains(el, []byte("<body"))
}

// Contains reports whether the element el is named local (any prefix) or
// has a descendant of that name; a byte search on tag names that does not
// parse the element.
func Contains(el []byte, local string) bool {
	for i := 0; i < len(el); i++ {
		j := bytes.IndexByte(el[i:], '<')
		if j < 0 {
			return false
		}
		i += j
		if i+1 < len(el) && el[i+1] != '/' && string(LocalName(el[i:])) == local {
			return true
		}
	}
	return false
}
