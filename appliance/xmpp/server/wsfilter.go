package server

import (
	"crypto/tls"
	"net"
)

// wsFilterConn removes whitespace between top-level elements of an XML
// stream (children of <stream:stream>) as it is read. RFC 6120 §11.7 allows
// such whitespace anywhere between elements, and clients send it (go-sendxmpp
// writes a newline after <starttls/> and <auth/>), but mellium's server-side
// feature negotiation fails on any token that is not a start element. The
// filter tracks element depth with a small byte-level scanner (tags, quoted
// attribute values, CDATA, comments, processing instructions) and drops only
// whitespace at depth 1; everything else passes unchanged, and malformed input
// is left for the XML decoder to reject. A new <stream:stream> start tag resets
// the depth to 1 (stream restarts after SASL reuse the connection).
type wsFilterConn struct {
	net.Conn
	tls     *tls.Conn // the TLS connection under the filter, if any
	depth   int
	state   scanState
	quote   byte   // closing quote while in an attribute value
	name    []byte // tag name being read, up to 16 bytes
	slash   bool   // the last non-space byte in the tag was '/'
	endTag  bool   // the tag started with "</"
	special int    // progress through "]]>", "-->" or "?>" terminators
}

// ConnectionState exposes the TLS state to mellium and the SASL feature
// (channel binding); the zero value before TLS.
func (c *wsFilterConn) ConnectionState() tls.ConnectionState {
	if c.tls == nil {
		return tls.ConnectionState{}
	}
	return c.tls.ConnectionState()
}

type scanState uint8

const (
	scanText    scanState = iota
	scanTagOpen           // just read '<'
	scanTagName           // reading the element name
	scanTag               // inside a tag, after the name
	scanAttrVal           // inside a quoted attribute value
	scanBang              // "<!" – comment, CDATA or DOCTYPE
	scanCDATA             // inside <![CDATA[ ... ]]>
	scanComment           // inside <!-- ... -->
	scanDecl              // inside <!DOCTYPE ...> (no nesting support: rejected later anyway)
	scanPI                // inside <? ... ?>
)

func (c *wsFilterConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if n > 0 {
			n = c.filter(p[:n])
			if n == 0 && err == nil {
				continue // everything was inter-element whitespace; read more
			}
		}
		return n, err
	}
}

// filter compacts b in place and returns the new length.
func (c *wsFilterConn) filter(b []byte) int {
	w := 0
	for _, ch := range b {
		keep := true
		switch c.state {
		case scanText:
			if ch == '<' {
				c.state = scanTagOpen
			} else if c.depth == 1 && (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
				keep = false
			}
		case scanTagOpen:
			c.name = c.name[:0]
			c.slash, c.endTag, c.special = false, false, 0
			switch ch {
			case '/':
				c.endTag = true
				c.state = scanTagName
			case '!':
				c.state = scanBang
			case '?':
				c.state = scanPI
			default:
				c.name = append(c.name, ch)
				c.state = scanTagName
			}
		case scanTagName:
			switch {
			case ch == '>':
				c.closeTag()
			case ch == '/':
				c.slash = true
				c.state = scanTag
			case ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n':
				c.state = scanTag
			default:
				if len(c.name) < 16 {
					c.name = append(c.name, ch)
				}
			}
		case scanTag:
			switch ch {
			case '"', '\'':
				c.quote = ch
				c.state = scanAttrVal
				c.slash = false
			case '>':
				c.closeTag()
			case '/':
				c.slash = true
			case ' ', '\t', '\r', '\n':
			default:
				c.slash = false
			}
		case scanAttrVal:
			if ch == c.quote {
				c.state = scanTag
			}
		case scanBang:
			switch ch {
			case '[':
				c.state = scanCDATA
			case '-':
				c.state = scanComment
			default:
				c.state = scanDecl
			}
		case scanCDATA:
			c.special = advance(c.special, ch, "]]>")
			if c.special == 3 {
				c.state = scanText
			}
		case scanComment:
			c.special = advance(c.special, ch, "-->")
			if c.special == 3 {
				c.state = scanText
			}
		case scanPI:
			c.special = advance(c.special, ch, "?>")
			if c.special == 2 {
				c.state = scanText
			}
		case scanDecl:
			if ch == '>' {
				c.state = scanText
			}
		}
		if keep {
			b[w] = ch
			w++
		}
	}
	return w
}

// closeTag handles the '>' ending a start, end or empty-element tag.
func (c *wsFilterConn) closeTag() {
	c.state = scanText
	switch {
	case c.endTag:
		c.depth--
	case c.slash:
	case string(c.name) == "stream:stream" || string(c.name) == "stream":
		c.depth = 1
	default:
		c.depth++
	}
}

// advance matches ch against the terminator term, returning how many of its
// bytes have been seen in a row.
func advance(seen int, ch byte, term string) int {
	if ch == term[seen] {
		return seen + 1
	}
	// Restart, allowing the current byte to begin the terminator ("]]]>").
	if ch == term[0] {
		if seen > 0 && term[0] == term[1] {
			return seen
		}
		return 1
	}
	return 0
}
