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
// with a resource, its presence state (RFC 6121 §4) and a bounded outbound
// queue. The queue is drained by a writer goroutine that exists only while
// there is something to write, so an idle session holds no writer goroutine.
type Session struct {
	srv  *Server
	conn net.Conn // the (TLS) connection stanzas are written to
	lc   *limitConn
	ip   netip.Addr
	log  *slog.Logger

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

	outMu   sync.Mutex
	queue   [][]byte
	queued  int // bytes in queue
	writing bool
	closing bool // a final stream error is queued; accept nothing more
	closed  bool
}

// JID returns the session's full JID (RFC 6120 §7).
func (s *Session) JID() jid.JID { return s.jid }

// Username returns the localpart of the account this session belongs to.
func (s *Session) Username() string { return s.username }

// Hibernated reports whether the session lost its connection and waits for a
// stream management resumption (XEP-0198 §5); stanzas sent to it are queued
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

// Send serializes st and queues it for this session. It never blocks on the
// network. It returns false when the session is closing or its queue limit
// (Limits.SendQueueBytes) is exceeded; in the latter case the session is
// ended with stream error resource-constraint, and the caller decides whether
// the stanza goes elsewhere (offline storage, RFC 6121 §8.5.2.1.1).
func (s *Session) Send(st *xmlel.Element) bool {
	b := st.Bytes(NSClient)
	s.outMu.Lock()
	if s.closing || s.closed {
		s.outMu.Unlock()
		return false
	}
	if s.queued+len(b) > s.srv.limits.SendQueueBytes {
		s.outMu.Unlock()
		s.log.Warn("send queue full, ending session", "queued_bytes", s.queued)
		s.Terminate(newStreamError(stream.ResourceConstraint, "too many unread stanzas"))
		return false
	}
	s.enqueueLocked(b)
	s.outMu.Unlock()
	return true
}

// enqueueLocked appends b and starts the writer if none runs. outMu is held.
func (s *Session) enqueueLocked(b []byte) {
	s.queue = append(s.queue, b)
	s.queued += len(b)
	if !s.writing {
		s.writing = true
		go s.writeLoop()
	}
}

// startWriting is called once the stream is negotiated: until then the
// session is bound in the router but the negotiation owns the connection, so
// stanzas routed to it wait in the queue (Session.writing starts true).
func (s *Session) startWriting(conn net.Conn) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	s.conn = conn
	s.writing = false
	if len(s.queue) > 0 {
		s.writing = true
		go s.writeLoop()
	}
}

// writeLoop drains the queue and exits when it is empty.
func (s *Session) writeLoop() {
	var buf []byte
	for {
		s.outMu.Lock()
		if len(s.queue) == 0 || s.closed {
			s.writing = false
			closing := s.closing
			s.outMu.Unlock()
			if closing {
				s.conn.Close()
			}
			return
		}
		batch := s.queue
		s.queue = nil
		s.queued = 0
		s.outMu.Unlock()

		buf = buf[:0]
		for _, b := range batch {
			buf = append(buf, b...)
		}
		s.conn.SetWriteDeadline(time.Now().Add(s.srv.limits.WriteTimeout))
		if _, err := s.conn.Write(buf); err != nil {
			s.log.Debug("write failed", "err", err)
			s.outMu.Lock()
			s.closed = true
			s.queue = nil
			s.writing = false
			s.outMu.Unlock()
			s.conn.Close()
			return
		}
		if cap(buf) > 64<<10 {
			buf = nil // release large buffers once idle
		}
	}
}

// Terminate ends the session with a stream error (RFC 6120 §4.9): the error and
// the closing stream tag are written after anything already queued, then the
// connection is closed. The session's reader then unregisters it. Safe to call
// more than once and from any goroutine.
func (s *Session) Terminate(se *streamError) {
	s.outMu.Lock()
	if s.closing || s.closed {
		s.outMu.Unlock()
		return
	}
	s.closing = true
	if se != nil {
		s.log.Info("ending stream", "condition", se.cond.Err, "text", se.text)
		s.enqueueLocked(se.bytes())
	} else {
		s.enqueueLocked([]byte("</stream:stream>"))
	}
	s.outMu.Unlock()
	// Bound how long a peer that does not read can hold the connection open
	// (the raw connection's deadline also bounds TLS on top of it).
	s.lc.SetDeadline(time.Now().Add(5 * time.Second))
}
