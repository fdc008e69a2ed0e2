package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"mellium.im/xmpp/stream"
)

const (
	// wsSubprotocol is the WebSocket subprotocol of RFC 7395 §3.1.
	wsSubprotocol = "xmpp"
	// wsInboxBytes bounds what the WebSocket reader has received but the c2s
	// reader not yet consumed; beyond it the WebSocket reader waits.
	wsInboxBytes = 16 << 10
	// wsChunk is how much of a message the WebSocket reader hands on at
	// once, and the size up to which a message is examined whole (an
	// <open/> or <close/> is far smaller).
	wsChunk = 4 << 10
	// wsReadSlack is what the WebSocket library's own per-message limit
	// allows beyond Limits.MaxStanzaBytes: our limit (stream error
	// policy-violation, counted by the c2s reader) must trip first, and the
	// reader runs ahead of it by at most wsInboxBytes plus one chunk.
	wsReadSlack = wsInboxBytes + 2*wsChunk
	// wsPingInterval is how often an idle WebSocket gets a ping frame
	// (RFC 6455 §5.5.2): it keeps proxies and NAT from dropping the
	// connection and finds dead peers, since RFC 7395 §3.4 forbids XMPP
	// whitespace keepalives on WebSocket. A pong must come within
	// wsPingTimeout, or the connection counts as lost.
	wsPingInterval = 60 * time.Second
	wsPingTimeout  = 30 * time.Second
)

// WebSocketHandler returns the RFC 7395 XMPP-over-WebSocket endpoint, to be
// mounted at /xmpp-websocket on the HTTPS server. Each WebSocket connection
// (subprotocol "xmpp", text messages, one XML element each) runs the same
// client stream as a TCP connection: the same limits (stanza size as the
// largest message, read rate, authentication timeout, connections per
// address), SASL and SASL2 with SCRAM (-PLUS with tls-exporter or
// tls-server-end-point of the HTTPS connection), resource binding, stream
// management with resumption (a WebSocket dropped without <close/> leaves a
// resumable session, RFC 7395 §3.6, XEP-0198 §5) and the same sessions in the
// router. The stream starts secure, so STARTTLS is not offered; requests over
// plain HTTP are refused with 403. Cross-origin clients are allowed: a
// WebSocket carries no cookies or other ambient credentials, authentication
// happens inside the stream. Stream errors go out as <stream:error/>
// followed by <close/> (RFC 7395 §3.6.1); a ping frame every minute keeps
// the connection alive.
func (s *Server) WebSocketHandler() http.Handler {
	return http.HandlerFunc(s.serveWebSocket)
}

// wsTransport is one XMPP-over-WebSocket connection.
type wsTransport struct {
	srv      *Server
	ws       *websocket.Conn
	in       *inbox
	conn     *webConn
	sink     *wsSink
	pumpDone chan struct{}
	ping     *time.Timer
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil {
		http.Error(w, "XMPP over WebSocket needs HTTPS", http.StatusForbidden)
		return
	}
	if !headerHasToken(r.Header.Values("Sec-WebSocket-Protocol"), wsSubprotocol) {
		http.Error(w, "RFC 7395 requires the WebSocket subprotocol \"xmpp\"", http.StatusBadRequest)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:   []string{wsSubprotocol},
		OriginPatterns: []string{"*"},
	})
	if err != nil {
		s.log.Debug("websocket: handshake failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	ws.SetReadLimit(int64(s.limits.MaxStanzaBytes) + wsReadSlack)
	t := &wsTransport{srv: s, ws: ws, sink: &wsSink{ws: ws}, pumpDone: make(chan struct{})}
	t.in = newInbox(wsInboxBytes)
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	localAddr := ""
	if local != nil {
		localAddr = local.String()
	}
	t.conn = newWebConn(t.in, r.RemoteAddr, localAddr, *r.TLS, t.sink)
	if !s.trackWeb(t.conn, t.abort) {
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer s.untrackWeb(t.conn)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go t.pump(ctx)
	t.ping = time.AfterFunc(wsPingInterval, t.keepalive)
	s.serveC2S(ctx, t.conn, false)

	// The session's writer may still be sending the final <close/>; it
	// closes the connection when done.
	select {
	case <-t.conn.done:
	case <-time.After(s.limits.WriteTimeout + 5*time.Second):
		t.conn.Close()
	}
	t.ping.Stop()
	ws.Close(websocket.StatusNormalClosure, "")
	cancel()
	<-t.pumpDone
}

// headerHasToken reports whether a comma-separated header holds token.
func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// pump reads WebSocket messages and pushes their translation into the inbox
// until the client closes the stream, the connection breaks or the
// connection is closed.
func (t *wsTransport) pump(ctx context.Context) {
	defer close(t.pumpDone)
	buf := make([]byte, wsChunk)
	for {
		typ, r, err := t.ws.Reader(ctx)
		if err != nil {
			// Closed or broken without <close/>: the stream is implicitly
			// closed, but a stream-managed session may resume (RFC 7395 §3.6).
			t.in.closeWith(errTransportLost)
			return
		}
		if typ != websocket.MessageText {
			t.in.closeWith(newStreamError(stream.BadFormat, "WebSocket messages must be text (RFC 7395 §3.2)"))
			return
		}
		if err := t.message(ctx, r, buf); err != nil {
			t.in.closeWith(err)
			return
		}
	}
}

// message translates one WebSocket message. It returns io.EOF after the
// client's <close/>, a *streamError for a framing violation, errTransportLost
// when the connection broke, and net.ErrClosed when the connection was closed
// meanwhile.
func (t *wsTransport) message(ctx context.Context, r io.Reader, buf []byte) error {
	n, err := io.ReadFull(r, buf)
	whole := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	if err != nil && !whole {
		return errTransportLost
	}
	if whole {
		msg := bytes.TrimSpace(buf[:n])
		if bytes.HasPrefix(msg, []byte("<?xml")) {
			// An XML declaration before the element: dropped (the stream
			// has one encoding, UTF-8, RFC 7395 §3.3.3).
			if i := bytes.Index(msg, []byte("?>")); i >= 0 {
				n = copy(buf, bytes.TrimSpace(msg[i+2:]))
				msg = buf[:n]
			}
		}
		if len(msg) == 0 {
			return nil // whitespace (RFC 7395 §3.4 forbids it as a keepalive): ignored
		}
		if msg[0] == '<' {
			if err := t.framing(ctx, msg); err != errNotFraming {
				return err
			}
		}
		_, err := t.in.push(ctx, buf[:n])
		return err
	}
	// A long message: stream it, so that the c2s reader's size limit trips
	// without the whole message in memory.
	for {
		if _, err := t.in.push(ctx, buf[:n]); err != nil {
			return err
		}
		n, err = r.Read(buf)
		if errors.Is(err, io.EOF) {
			if n > 0 {
				_, err = t.in.push(ctx, buf[:n])
				return err
			}
			return nil
		}
		if err != nil {
			return errTransportLost
		}
	}
}

// errNotFraming means a message is not an <open/> or <close/>.
var errNotFraming = errors.New("not a framing element")

// framing handles a message that may be an RFC 7395 framing element: <open/>
// becomes a stream header and <close/> the closing stream tag (after which
// framing returns io.EOF: nothing more is read). A stream header in the TCP
// form or an <open/> in another namespace is an invalid-namespace stream
// error. Other messages return errNotFraming.
func (t *wsTransport) framing(ctx context.Context, msg []byte) error {
	name := tagName(msg)
	local := name
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		local = name[i+1:]
	}
	switch string(local) {
	case "open", "close", "stream":
	default:
		return errNotFraming
	}
	qname, h, err := parseStreamHeader(msg)
	if err != nil {
		return errNotFraming // not well-formed: the c2s reader will say so
	}
	switch {
	case qname.Space == NSFraming && qname.Local == "open":
		_, err := t.in.push(ctx, h.tcpHeader())
		return err
	case qname.Space == NSFraming && qname.Local == "close":
		if _, err := t.in.push(ctx, []byte("</stream:stream>")); err != nil {
			return err
		}
		return io.EOF
	case qname.Local == "open" || qname.Local == "stream":
		return newStreamError(stream.InvalidNamespace, "streams are opened with <open xmlns='"+NSFraming+"'/> (RFC 7395 §3.3.2)")
	}
	return errNotFraming
}

// keepalive sends a ping frame and reschedules itself; a missing pong means
// the connection is lost.
func (t *wsTransport) keepalive() {
	select {
	case <-t.conn.done:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), wsPingTimeout)
	err := t.ws.Ping(ctx)
	cancel()
	if err != nil {
		t.in.closeWith(errTransportLost)
		return
	}
	t.ping.Reset(wsPingInterval)
}

// abort ends a connection that has no bound session (ShutdownWeb): se, then
// <close/> (after an <open/> if none was sent yet), then the connection.
func (t *wsTransport) abort(se *streamError) {
	c := t.conn
	c.wmu.Lock()
	deadline := time.Now().Add(5 * time.Second)
	if !t.sink.closed {
		if !t.sink.opened {
			t.sink.open(streamHeader{from: t.srv.domain.String(), id: randomID(8), version: "1.0", lang: "en"}, deadline)
		}
		t.sink.element(streamErrorElement(se), true, deadline)
		t.sink.close(deadline)
	}
	c.wmu.Unlock()
	c.Close()
}

// streamErrorElement renders se as a standalone <stream:error/> element.
func streamErrorElement(se *streamError) []byte {
	b := bytes.TrimSuffix(se.bytes(), []byte("</stream:stream>"))
	const open = "<stream:error"
	out := make([]byte, 0, len(b)+80)
	out = append(out, open...)
	out = append(out, " xmlns:stream='"+NSStreamNS+"'"...)
	return append(out, b[len(open):]...)
}

// wsSink writes each unit of our stream as one WebSocket text message
// (RFC 7395 §3.3): our stream header as <open/>, elements as they are, the
// closing tag as <close/>. Its methods run under webConn.wmu.
type wsSink struct {
	ws     *websocket.Conn
	opened bool // an <open/> was sent
	closed bool // <close/> was sent; nothing more goes out
}

func (w *wsSink) send(b []byte, deadline time.Time) error {
	if w.closed {
		return net.ErrClosed
	}
	ctx, cancel := deadlineContext(deadline)
	defer cancel()
	return w.ws.Write(ctx, websocket.MessageText, b)
}

func (w *wsSink) open(h streamHeader, deadline time.Time) error {
	w.opened = true
	var b strings.Builder
	b.WriteString("<open xmlns='" + NSFraming + "'")
	h.writeAttrs(&b)
	b.WriteString("/>")
	return w.send([]byte(b.String()), deadline)
}

func (w *wsSink) element(el []byte, _ bool, deadline time.Time) error {
	return w.send(el, deadline)
}

func (w *wsSink) close(deadline time.Time) error {
	err := w.send([]byte("<close xmlns='"+NSFraming+"'/>"), deadline)
	w.closed = true
	return err
}
