package server

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// Session is one bound c2s session (RFC 6120 §7): an authenticated account
// with a resource, its presence state (RFC 6121 §4), a bounded outbound queue
// and, once enabled, its stream management state (XEP-0198). With stream
// management a session can outlive its connection (hibernation) and move to a
// new one (resumption). The queue is drained by a writer goroutine that exists
// only while there is something to write, so an idle session holds no writer
// goroutine.
type Session struct {
	srv *Server
	log *slog.Logger

	// Set once at bind, read-only afterwards.
	jid      jid.JID // full JID
	bare     jid.JID
	username string // localpart
	since    time.Time

	// Presence state, guarded by srv.router.mu (RFC 6121 §4).
	available  bool
	priority   int
	presence   *xmlel.Element    // last broadcast available presence
	interested bool              // requested the roster (RFC 6121 §2.1.3)
	directed   map[string]string // directed presence recipients (RFC 6121 §4.6), JID string -> ""
	lastStatus string            // status of the last unavailable presence (XEP-0012 §4)
	hibernated bool              // XEP-0198 §5: connection lost, awaiting resumption

	// Output and connection state, guarded by outMu.
	outMu   sync.Mutex
	conn    net.Conn   // the (TLS) connection stanzas are written to; nil while hibernated
	lc      *limitConn // the raw connection under conn
	ip      netip.Addr
	gen     int // bumped whenever the connection is replaced or lost
	queue   [][]byte
	queued  int // bytes in queue
	writing bool
	closing bool // ending: a final stream error is queued or the session is torn down
	closed  bool
	sm      *smState  // nil until <enable/> (XEP-0198 §3)
	csi     *csiState // non-nil while the client is inactive (XEP-0352)

	endOnce sync.Once // teardown runs once, whoever notices the end
}

// JID returns the session's full JID (RFC 6120 §7).
func (s *Session) JID() jid.JID { return s.jid }

// Username returns the localpart of the account this session belongs to.
func (s *Session) Username() string { return s.username }

// Hibernated reports whether the session lost its connection and waits for a
// stream management resumption (XEP-0198 §5); stanzas sent to it are kept
// for the resumed connection. Push notifications (XEP-0357) are for these.
func (s *Session) Hibernated() bool {
	s.srv.router.mu.RLock()
	defer s.srv.router.mu.RUnlock()
	return s.hibernated
}

// Available reports whether the session has sent initial presence and not yet
// gone unavailable (RFC 6121 §4.2).
func (s *Session) Available() bool {
	s.srv.router.mu.RLock()
	defer s.srv.router.mu.RUnlock()
	return s.available
}

// Send queues stanza st (a message, presence or IQ) for this session. It
// never blocks on the network. While the client is inactive (XEP-0352) an
// unimportant stanza may be held back or superseded. With stream management
// the stanza is counted and kept until acknowledged (XEP-0198 §4); while
// hibernated it only waits for resumption. Send returns false when the session
// is ending or a queue bound (Limits.SendQueueBytes, Limits.MaxUnacked) is
// exceeded; in the latter case the session is ended with stream error
// resource-constraint, and the caller decides whether the stanza goes
// elsewhere (offline storage, RFC 6121 §8.5.2.1.1).
func (s *Session) Send(st *xmlel.Element) bool {
	s.outMu.Lock()
	if s.closing || s.closed {
		s.outMu.Unlock()
		return false
	}
	if s.csi != nil {
		if s.csi.hold(st) {
			s.outMu.Unlock()
			return true
		}
		// Something important: what was held goes first, in order.
		for _, h := range s.csi.flush() {
			if !s.sendLocked(h) {
				s.outMu.Unlock()
				return false
			}
		}
	}
	ok := s.sendLocked(st)
	s.outMu.Unlock()
	return ok
}

// sendLocked serializes, counts and queues one stanza. outMu is held.
func (s *Session) sendLocked(st *xmlel.Element) bool {
	b := st.Bytes(NSClient)
	if s.sm != nil {
		if len(s.sm.unacked) >= s.srv.limits.MaxUnacked {
			s.log.Warn("too many unacknowledged stanzas, ending session", "unacked", len(s.sm.unacked))
			go s.Terminate(newStreamError(stream.ResourceConstraint, "too many unacknowledged stanzas"))
			return false
		}
		s.sm.outH++
		s.sm.unacked = append(s.sm.unacked, unackedStanza{h: s.sm.outH, el: st, b: b, at: s.srv.now()})
		if s.conn == nil && s.sm.timer != nil {
			return true // hibernated: kept for resumption
		}
		// Still negotiating (XEP-0386 Bind 2 enabled stream management
		// before startWriting): queued like on a live connection, or the
		// stanza would be counted but never sent.
	}
	if s.queued+len(b) > s.srv.limits.SendQueueBytes {
		s.log.Warn("send queue full, ending session", "queued_bytes", s.queued)
		// Terminate takes outMu, which we hold.
		go s.Terminate(newStreamError(stream.ResourceConstraint, "too many unread stanzas"))
		// With stream management the stanza stays in the unacknowledged queue
		// and is rerouted when the session ends (XEP-0198 §4).
		return s.sm != nil
	}
	s.enqueueLocked(b)
	return true
}

// sendNonza queues a stream-level element (XEP-0198 <a/>, <r/>, <enabled/>)
// that is not counted as a stanza.
func (s *Session) sendNonza(el *xmlel.Element) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if s.closing || s.closed || s.conn == nil {
		return
	}
	s.enqueueLocked(el.Bytes(NSClient))
}

// enqueueLocked appends b and starts the writer if none runs. outMu is held.
func (s *Session) enqueueLocked(b []byte) {
	s.queue = append(s.queue, b)
	s.queued += len(b)
	if !s.writing && s.conn != nil {
		s.writing = true
		go s.writeLoop()
	}
}

// writeLoop drains the queue and exits when it is empty or the connection it
// started on was replaced.
func (s *Session) writeLoop() {
	var buf []byte
	for {
		s.outMu.Lock()
		conn, gen := s.conn, s.gen
		if len(s.queue) == 0 || s.closed || conn == nil {
			s.writing = false
			closing := s.closing && conn != nil && len(s.queue) == 0
			s.outMu.Unlock()
			if closing {
				conn.Close()
			}
			return
		}
		batch := s.queue
		s.queue = nil
		s.queued = 0
		requestAck := s.sm != nil && len(s.sm.unacked) > 0 && !s.sm.requested && !s.closing
		if requestAck {
			s.sm.requested = true
		}
		s.outMu.Unlock()

		buf = buf[:0]
		for _, b := range batch {
			buf = append(buf, b...)
		}
		if requestAck {
			// XEP-0198 §4: ask for an acknowledgement after each batch so the
			// unacknowledged queue stays short.
			buf = append(buf, "<r xmlns='urn:xmpp:sm:3'/>"...)
		}
		conn.SetWriteDeadline(time.Now().Add(s.srv.limits.WriteTimeout))
		if _, err := conn.Write(buf); err != nil {
			s.log.Debug("write failed", "err", err)
			s.outMu.Lock()
			if s.gen == gen {
				// The reader sees the closed connection and decides between
				// hibernation and the end of the session.
				s.queue = nil
				s.queued = 0
			}
			s.writing = false
			s.outMu.Unlock()
			conn.Close()
			return
		}
		if cap(buf) > 64<<10 {
			buf = nil // release large buffers once idle
		}
	}
}

// Terminate ends the session with a stream error (RFC 6120 §4.9): the error and
// the closing stream tag are written after anything already queued, then the
// connection is closed and the session torn down (no resumption). nil sends
// only the closing tag. Safe to call more than once and from any goroutine,
// also while the session is bound but its negotiation still owns the
// connection (the error then goes out as soon as startWriting runs).
func (s *Session) Terminate(se *streamError) {
	s.outMu.Lock()
	after := s.terminateLocked(se)
	s.outMu.Unlock()
	after()
}

// terminateLocked marks the session ending and queues se; outMu is held.
// It returns what must run once outMu is released.
func (s *Session) terminateLocked(se *streamError) func() {
	if s.closing || s.closed {
		return func() {}
	}
	s.closing = true
	if s.conn == nil && s.sm != nil && s.sm.timer != nil {
		// Hibernated: no connection to write to; end the session now.
		return func() { s.srv.endHibernated(s) }
	}
	final := []byte("</stream:stream>")
	if se != nil && se.cond.Err != "" {
		s.log.Info("ending stream", "condition", se.cond.Err, "text", se.text)
		final = se.bytes()
	}
	// Queued even while the negotiation still owns the connection (bound or
	// resumed, startWriting not yet called: the writer is not started then),
	// so that the stream error is what startWriting sends after the bind or
	// resumption reply (RFC 6120 §4.9.1.1: the error precedes the closing
	// tag; RFC 7395 §3.6.1, XEP-0206 §5 on the web transports).
	s.enqueueLocked(final)
	// Bound how long a peer that does not read can hold the connection open
	// (the raw connection's deadline also bounds TLS on top of it);
	// startWriting sets it again after the negotiation cleared it.
	lc := s.lc
	return func() { lc.SetDeadline(time.Now().Add(5 * time.Second)) }
}

// startWriting is called once a stream is negotiated (bind or resumption):
// until then the session may be bound in the router while the negotiation
// owns the connection, so stanzas routed to it, and a stream error from
// Terminate, wait in the queue (Session.writing is true meanwhile).
// It returns the connection generation the reader must pass to readLoop.
func (s *Session) startWriting(conn net.Conn) int {
	s.outMu.Lock()
	s.conn = conn
	s.writing = false
	if len(s.queue) > 0 {
		s.writing = true
		go s.writeLoop()
	}
	gen, closing, lc := s.gen, s.closing, s.lc
	s.outMu.Unlock()
	if closing {
		// Ended while negotiating (shutdown, conflict): the queue ends with
		// the stream error (terminateLocked); the negotiation cleared the
		// deadline terminateLocked set.
		lc.SetDeadline(time.Now().Add(5 * time.Second))
	}
	return gen
}
