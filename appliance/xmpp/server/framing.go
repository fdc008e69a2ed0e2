package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// Web transports (RFC 7395 WebSocket, XEP-0124/XEP-0206 BOSH) reach the same
// c2s code as TCP: serveC2S runs on a webConn, a net.Conn whose byte stream
// looks exactly like a TCP client stream. The transport translates between
// its framing and that stream:
//
//   - input: the transport pushes bytes into the webConn's inbox; a framing
//     <open/> (or a BOSH session creation or restart) becomes a
//     <stream:stream> header, <close/> (or a BOSH terminate) the closing
//     </stream:stream> tag, and everything else passes unchanged;
//   - output: what the c2s code writes (our stream header, stanzas and
//     stream-level elements, possibly several per write or one split over
//     several writes, and the closing tag) is cut by outFramer into one unit
//     per top-level element, each made a standalone document by declaring
//     the namespaces the stream header declared on TCP (RFC 7395 §3.3.3), and
//     handed to the transport's frameSink (one WebSocket message per element;
//     BOSH queues them for the next <body/>).
//
// Framing violations the transport detects are returned by Read as a
// *streamError, which the c2s reader sends like any stream error.

// securedConn is implemented by connections that a layer below the XMPP
// stream already secured: the HTTPS connection under RFC 7395 WebSocket and
// XEP-0206 BOSH. serveC2S starts such a stream in state xmpp.Secure (no
// STARTTLS is offered, RFC 7395 §3.1) and SASL channel binding uses the TLS
// state returned by transportTLS (the zero value when no single TLS
// connection carries the stream, as with BOSH, so no -PLUS mechanism is
// offered).
type securedConn interface {
	transportTLS() tls.ConnectionState
}

// tlsStateConn gives the c2s stream's connection the TLS state of a secured
// transport below it; mellium and the SASL feature read it through
// ConnectionState (channel binding).
type tlsStateConn struct {
	net.Conn
	state tls.ConnectionState
}

// ConnectionState returns the transport's TLS state.
func (c *tlsStateConn) ConnectionState() tls.ConnectionState { return c.state }

// Namespaces of the web transports.
const (
	// NSFraming is the RFC 7395 framing namespace of <open/> and <close/>.
	NSFraming = "urn:ietf:params:xml:ns:xmpp-framing"
	// NSHTTPBind is the XEP-0124 namespace of the BOSH <body/> wrapper.
	NSHTTPBind = "http://jabber.org/protocol/httpbind"
	// NSXBOSH is the XEP-0206 namespace of the xmpp:version and
	// xmpp:restart attributes.
	NSXBOSH = "urn:xmpp:xbosh"
)

// errTransportLost is what a webConn's Read returns once the transport
// connection is gone without the stream having been closed (a dropped
// WebSocket, a BOSH session that stopped polling): the c2s reader treats it
// as a lost connection, so a stream-managed session hibernates (XEP-0198 §5,
// RFC 7395 §3.6).
var errTransportLost = io.ErrUnexpectedEOF

// streamHeader is the information of a stream header, ours or the client's.
type streamHeader struct {
	to, from, id, version, lang string
}

// parseStreamHeader reads the attributes of a start tag (our <stream:stream>
// header as mellium writes it, or a client's <open/>).
func parseStreamHeader(tag []byte) (xml.Name, streamHeader, error) {
	d := xml.NewDecoder(bytes.NewReader(tag))
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.Name{}, streamHeader{}, err
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue // the XML declaration, whitespace
		}
		var h streamHeader
		for _, a := range start.Attr {
			switch {
			case a.Name.Space == "" && a.Name.Local == "to":
				h.to = a.Value
			case a.Name.Space == "" && a.Name.Local == "from":
				h.from = a.Value
			case a.Name.Space == "" && a.Name.Local == "id":
				h.id = a.Value
			case a.Name.Space == "" && a.Name.Local == "version":
				h.version = a.Value
			case a.Name.Local == "lang" && (a.Name.Space == "xml" || a.Name.Space == "http://www.w3.org/XML/1998/namespace"):
				h.lang = a.Value
			}
		}
		return start.Name, h, nil
	}
}

// tcpHeader renders h as the stream header a TCP client would send
// (RFC 6120 §4.7), for the c2s reader.
func (h streamHeader) tcpHeader() []byte {
	var b strings.Builder
	b.WriteString(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'`)
	h.writeAttrs(&b)
	b.WriteString(">")
	return []byte(b.String())
}

// writeAttrs writes h's non-empty attributes, escaped, each with a leading
// space.
func (h streamHeader) writeAttrs(b *strings.Builder) {
	for _, a := range [...]struct{ name, value string }{
		{"from", h.from}, {"to", h.to}, {"id", h.id}, {"version", h.version}, {"xml:lang", h.lang},
	} {
		if a.value == "" {
			continue
		}
		b.WriteString(" ")
		b.WriteString(a.name)
		b.WriteString("='")
		xml.EscapeText(b, []byte(a.value))
		b.WriteString("'")
	}
}

// inbox is the read side of a webConn: bytes the transport received, read
// by the c2s code in order, with a read deadline. Both sides may block: Read
// until bytes arrive, push while more than max bytes are unread (so a fast
// sender waits for the c2s reader, whose limits pace it).
type inbox struct {
	mu       sync.Mutex
	buf      []byte
	err      error // returned by Read once buf is drained; nil while open
	deadline time.Time
	changed  chan struct{} // closed and replaced at every change
	max      int
	consumed int64  // bytes read so far
	pushed   int64  // bytes pushed so far
	onRead   func() // called after each successful Read, without locks held
}

func newInbox(max int) *inbox {
	return &inbox{max: max, changed: make(chan struct{})}
}

func (b *inbox) signalLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// push appends p, waiting while more than max bytes are unread, until ctx
// ends (its error is returned) or the inbox is closed (net.ErrClosed). It
// returns the total number of bytes pushed, p included.
func (b *inbox) push(ctx context.Context, p []byte) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if b.err != nil {
			return b.pushed, net.ErrClosed
		}
		if b.max <= 0 || len(b.buf) < b.max {
			break
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			b.mu.Lock()
			return b.pushed, ctx.Err()
		}
		b.mu.Lock()
	}
	b.buf = append(b.buf, p...)
	b.pushed += int64(len(p))
	b.signalLocked()
	return b.pushed, nil
}

// closeWith ends the input: Read returns err after the bytes already pushed.
// The first call wins.
func (b *inbox) closeWith(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
		b.signalLocked()
	}
}

// Read implements io.Reader with the deadline of setDeadline: past it, Read
// fails with os.ErrDeadlineExceeded (a net.Error timeout) and can be called
// again after the deadline moved.
func (b *inbox) Read(p []byte) (int, error) {
	b.mu.Lock()
	for {
		if len(b.buf) > 0 {
			n := copy(p, b.buf)
			b.buf = b.buf[n:]
			if len(b.buf) == 0 {
				if cap(b.buf) > 64<<10 {
					b.buf = nil // release large buffers once idle
				} else {
					b.buf = b.buf[:0:cap(b.buf)]
				}
			}
			b.consumed += int64(n)
			b.signalLocked()
			onRead := b.onRead
			b.mu.Unlock()
			if onRead != nil {
				onRead()
			}
			return n, nil
		}
		if b.err != nil {
			err := b.err
			b.mu.Unlock()
			return 0, err
		}
		var timer *time.Timer
		var timeout <-chan time.Time
		if !b.deadline.IsZero() {
			d := time.Until(b.deadline)
			if d <= 0 {
				b.mu.Unlock()
				return 0, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			timeout = timer.C
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
		}
		if timer != nil {
			timer.Stop()
		}
		b.mu.Lock()
	}
}

// readCount returns how many bytes the c2s reader has consumed.
func (b *inbox) readCount() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.consumed
}

func (b *inbox) setDeadline(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deadline = t
	b.signalLocked()
}

// frameSink receives our output stream cut into units. deadline is the
// connection's write deadline (zero: none); a sink that cannot deliver by
// then returns os.ErrDeadlineExceeded.
type frameSink interface {
	// open receives our stream header (RFC 6120 §4.7; after SASL a new one,
	// RFC 6120 §6.4.6).
	open(h streamHeader, deadline time.Time) error
	// element receives one top-level element (a stanza, <stream:features/>,
	// <stream:error/>, a SASL or stream management element) as a standalone
	// document: its namespaces are declared on it. stream reports a
	// <stream:*/> element.
	element(el []byte, stream bool, deadline time.Time) error
	// close receives our closing </stream:stream> tag.
	close(deadline time.Time) error
}

// webConn is the net.Conn serveC2S runs on for a web transport.
type webConn struct {
	in     *inbox
	remote net.Addr
	local  net.Addr
	tls    tls.ConnectionState

	wmu    sync.Mutex // serializes writes: the framer and the sink
	framer outFramer
	sink   frameSink

	dmu       sync.Mutex
	wdeadline time.Time

	closeOnce sync.Once
	done      chan struct{} // closed by Close
	onClose   func()        // run once by Close, after done is closed
}

func newWebConn(in *inbox, remote, local string, state tls.ConnectionState, sink frameSink) *webConn {
	return &webConn{
		in:     in,
		remote: tcpAddr(remote),
		local:  tcpAddr(local),
		tls:    state,
		sink:   sink,
		done:   make(chan struct{}),
	}
}

// tcpAddr parses an "ip:port" (http.Request.RemoteAddr) into a *net.TCPAddr,
// which the per-address connection limit reads; unparsable input gives the
// zero address.
func tcpAddr(hostport string) *net.TCPAddr {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return &net.TCPAddr{}
	}
	return net.TCPAddrFromAddrPort(ap)
}

func (c *webConn) transportTLS() tls.ConnectionState { return c.tls }

// Read reads the translated client stream.
func (c *webConn) Read(p []byte) (int, error) { return c.in.Read(p) }

// Write cuts p into units for the sink; an element split over several writes
// is delivered once complete.
func (c *webConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	c.dmu.Lock()
	deadline := c.wdeadline
	c.dmu.Unlock()
	if err := c.framer.write(p, c.sink, deadline); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the connection: reads fail with net.ErrClosed (after what was
// already received), writes fail, and the transport closes its side.
func (c *webConn) Close() error {
	c.closeOnce.Do(func() {
		c.in.closeWith(net.ErrClosed)
		close(c.done)
		if c.onClose != nil {
			c.onClose()
		}
	})
	return nil
}

func (c *webConn) LocalAddr() net.Addr  { return c.local }
func (c *webConn) RemoteAddr() net.Addr { return c.remote }

func (c *webConn) SetDeadline(t time.Time) error {
	c.in.setDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *webConn) SetReadDeadline(t time.Time) error {
	c.in.setDeadline(t)
	return nil
}

func (c *webConn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	c.wdeadline = t
	c.dmu.Unlock()
	return nil
}

// deadlineContext returns a context ending at deadline (none when zero).
func deadlineContext(deadline time.Time) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return context.WithCancel(context.Background())
	}
	return context.WithDeadline(context.Background(), deadline)
}

// outFramer cuts the server's output stream into top-level units. The input
// is our own well-formed output (mellium's stream header and features,
// xmlel-serialized stanzas, our stream errors), so a small byte scanner that
// tracks tags, quoted attribute values and element depth suffices; whitespace
// between top-level elements and the XML declaration are dropped.
type outFramer struct {
	buf     []byte // the unit being collected
	depth   int    // 0 outside the stream, 1 inside it, ≥ 2 inside a top-level element
	inTag   bool
	quote   byte // closing quote while inside an attribute value
	tagAt   int  // start of the current tag in buf
	rootEnd int  // end of the current top-level element's start tag in buf
}

func (f *outFramer) write(p []byte, sink frameSink, deadline time.Time) error {
	for _, ch := range p {
		if !f.inTag {
			if ch == '<' {
				f.inTag = true
				f.quote = 0
				f.tagAt = len(f.buf)
				f.buf = append(f.buf, ch)
			} else if f.depth >= 2 {
				f.buf = append(f.buf, ch)
			}
			continue
		}
		f.buf = append(f.buf, ch)
		switch {
		case f.quote != 0:
			if ch == f.quote {
				f.quote = 0
			}
		case ch == '"' || ch == '\'':
			f.quote = ch
		case ch == '>':
			f.inTag = false
			if err := f.tagDone(sink, deadline); err != nil {
				return err
			}
		}
	}
	return nil
}

// tagDone handles the tag that just ended at the end of f.buf.
func (f *outFramer) tagDone(sink frameSink, deadline time.Time) error {
	tag := f.buf[f.tagAt:]
	switch tag[1] {
	case '?', '!': // the XML declaration
		if f.depth < 2 {
			f.buf = f.buf[:f.tagAt]
		}
		return nil
	case '/':
		if f.depth < 2 { // </stream:stream>
			f.reset()
			f.depth = 0
			return sink.close(deadline)
		}
		f.depth--
		if f.depth == 1 {
			return f.emitElement(sink, deadline)
		}
		return nil
	}
	name := tagName(tag)
	empty := len(tag) >= 2 && tag[len(tag)-2] == '/'
	if f.depth < 2 {
		if f.tagAt > 0 {
			// Only dropped bytes can precede a top-level tag; keep it alone.
			f.buf = append(f.buf[:0], tag...)
			f.tagAt = 0
		}
		if string(name) == "stream:stream" {
			_, h, err := parseStreamHeader(append(append([]byte(nil), f.buf[:len(f.buf)-1]...), "/>"...))
			f.reset()
			f.depth = 1
			if err != nil {
				return err
			}
			return sink.open(h, deadline)
		}
		f.depth = 1
		f.rootEnd = len(f.buf)
		if empty {
			return f.emitElement(sink, deadline)
		}
		f.depth = 2
		return nil
	}
	if !empty {
		f.depth++
	}
	return nil
}

func (f *outFramer) reset() {
	if cap(f.buf) > 64<<10 {
		f.buf = nil
	} else {
		f.buf = f.buf[:0]
	}
	f.tagAt = 0
}

// emitElement hands the collected top-level element to sink, with the
// namespace declarations that the stream header made on TCP added to its
// start tag (RFC 7395 §3.3.3): the default namespace jabber:client where it
// is not declared, and the stream prefix on <stream:*/> elements.
func (f *outFramer) emitElement(sink frameSink, deadline time.Time) error {
	root := f.buf[:f.rootEnd]
	name := tagName(root)
	nameEnd := 1 + len(name)
	hasDefault, hasStream := false, false
	attrNames(root[nameEnd:], func(n []byte) {
		switch string(n) {
		case "xmlns":
			hasDefault = true
		case "xmlns:stream":
			hasStream = true
		}
	})
	isStream := bytes.HasPrefix(name, []byte("stream:"))
	var decl string
	if isStream && !hasStream {
		decl += " xmlns:stream='" + NSStreamNS + "'"
	}
	if !hasDefault && (isStream || bytes.IndexByte(name, ':') < 0) {
		decl += " xmlns='" + NSClient + "'"
	}
	el := make([]byte, 0, len(f.buf)+len(decl))
	el = append(el, f.buf[:nameEnd]...)
	el = append(el, decl...)
	el = append(el, f.buf[nameEnd:]...)
	f.reset()
	return sink.element(el, isStream, deadline)
}

// tagName returns the qualified name of a start or end tag.
func tagName(tag []byte) []byte {
	i := 1
	if i < len(tag) && tag[i] == '/' {
		i++
	}
	j := i
	for j < len(tag) {
		switch tag[j] {
		case ' ', '\t', '\r', '\n', '/', '>':
			return tag[i:j]
		}
		j++
	}
	return tag[i:j]
}

// attrNames calls fn with the name of each attribute in the rest of a start
// tag after its element name.
func attrNames(rest []byte, fn func([]byte)) {
	i := 0
	for i < len(rest) {
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t' || rest[i] == '\r' || rest[i] == '\n') {
			i++
		}
		start := i
		for i < len(rest) && rest[i] != '=' && rest[i] != ' ' && rest[i] != '\t' && rest[i] != '\r' && rest[i] != '\n' && rest[i] != '/' && rest[i] != '>' {
			i++
		}
		if i == start {
			return
		}
		fn(rest[start:i])
		for i < len(rest) && rest[i] != '\'' && rest[i] != '"' {
			i++
		}
		if i >= len(rest) {
			return
		}
		q := rest[i]
		i++
		for i < len(rest) && rest[i] != q {
			i++
		}
		i++
	}
}

// webRegistry tracks the web transport connections of a Server, for
// ShutdownWeb, and the BOSH sessions by sid.
type webRegistry struct {
	mu    sync.Mutex
	conns map[*webConn]func(*streamError) // abort function per connection
	bosh  map[string]*boshSession
}

// trackWeb admits a new web transport connection: it counts it in the
// server's wait group (Shutdown waits for it like for a TCP connection) and
// registers abort for ShutdownWeb. It reports false once Shutdown began.
func (s *Server) trackWeb(c *webConn, abort func(*streamError)) bool {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false
	}
	s.wg.Add(1)
	s.mu.Unlock()
	r := &s.web
	r.mu.Lock()
	if r.conns == nil {
		r.conns = make(map[*webConn]func(*streamError))
	}
	r.conns[c] = abort
	r.mu.Unlock()
	return true
}

// untrackWeb undoes trackWeb once the connection's goroutines are done.
func (s *Server) untrackWeb(c *webConn) {
	r := &s.web
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	s.wg.Done()
}

// ShutdownWeb ends every WebSocket and BOSH stream (RFC 7395, XEP-0206) with
// stream error system-shutdown (RFC 6120 §4.9.3.19) followed by the
// transport's close (<close/>, a terminating BOSH <body/>), like Shutdown
// does for TCP streams; bound sessions end through the usual path (presence,
// offline rerouting). It does not wait. Register it with the HTTP server's
// shutdown hooks (httpd.Server.RegisterOnShutdown) so that held BOSH
// requests are answered before the HTTP server waits for them.
func (s *Server) ShutdownWeb() {
	r := &s.web
	r.mu.Lock()
	conns := make(map[*webConn]func(*streamError), len(r.conns))
	for c, abort := range r.conns {
		conns[c] = abort
	}
	r.mu.Unlock()
	se := newStreamError(streamSystemShutdown, "server shutting down")
	// Bound sessions (also those whose negotiation has not handed the
	// connection to the writer yet: Terminate queues the error for it).
	s.terminateWebSessions(conns, se)
	for _, abort := range conns {
		abort(se) // still negotiating
	}
	// A stream whose resource got bound after the scan above was aborted
	// with se already; its session must still end (not hibernate when the
	// reader sees the closed connection). One bound later fails its bind
	// reply on the closed connection and never goes live.
	s.terminateWebSessions(conns, se)
}

// terminateWebSessions ends with se each routed session whose connection is
// one of conns, and removes those connections from conns.
func (s *Server) terminateWebSessions(conns map[*webConn]func(*streamError), se *streamError) {
	for _, sess := range s.router.all() {
		sess.outMu.Lock()
		var wc *webConn
		if sess.lc != nil {
			wc, _ = sess.lc.Conn.(*webConn)
		}
		sess.outMu.Unlock()
		if _, ok := conns[wc]; ok && wc != nil {
			delete(conns, wc)
			sess.Terminate(se)
		}
	}
}
