package server

import (
	"context"
	"errors"
	"hash/fnv"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// routeMessage delivers a message stanza by the rules of RFC 6121 §8.5.
// m.From is the (already stamped) sender and m.To is never empty.
func (s *Server) routeMessage(ctx context.Context, m *Message) {
	st, to, typ := m.Stanza, m.To, m.Type
	if !s.IsLocal(to) {
		if s.toComponent(ctx, st, m.From, to) {
			return
		}
		s.bounce(ctx, st, Errorf(ErrRemoteServerNotFound, "federation is not enabled on this server"))
		return
	}
	if to.Localpart() == "" {
		// A message to the server itself: nothing handles it yet; RFC 6120
		// §10.3.1 lets the server drop it.
		return
	}
	exists, err := s.store.AccountExists(ctx, to.Localpart())
	if err != nil {
		s.log.Error("account lookup failed", "err", err)
		s.bounce(ctx, st, ErrInternal)
		return
	}
	if !exists {
		// RFC 6121 §8.5.1.
		if typ != "error" {
			s.bounce(ctx, st, ErrServiceUnavailable)
		}
		return
	}
	if !s.allowed(ctx, st, m.From, to) {
		return
	}
	if runMessageHooks(ctx, s.hooks.messageIn, m) {
		return
	}
	st = m.Stanza // a hook may have replaced it
	var delivered []*Session
	if to.Resourcepart() != "" {
		if sess := s.router.session(to); sess != nil && sess.Send(st) {
			delivered = []*Session{sess} // RFC 6121 §8.5.3.1
		} else {
			// RFC 6121 §8.5.3.2.1: no such resource.
			switch typ {
			case "", "normal", "chat":
				delivered = s.deliverToBare(ctx, m)
			case "groupchat":
				s.bounce(ctx, st, ErrServiceUnavailable)
				return
			default: // headline, error
				return
			}
		}
	} else {
		delivered = s.deliverToBare(ctx, m)
	}
	if len(delivered) > 0 || m.Offline {
		for _, h := range s.hooks.delivered {
			h(ctx, m, delivered)
		}
	}
}

// deliverToBare applies RFC 6121 §8.5.2.1.1 for a message to an existing
// local account: it returns the sessions that got it, or stores it offline
// (setting m.Offline).
func (s *Server) deliverToBare(ctx context.Context, m *Message) []*Session {
	st, typ := m.Stanza, m.Type
	switch typ {
	case "groupchat":
		s.bounce(ctx, st, ErrServiceUnavailable)
		return nil
	case "error":
		return nil
	}
	var delivered []*Session
	for _, sess := range s.messageTargets(m.To.Localpart(), typ == "headline") {
		if sess.Send(st) {
			delivered = append(delivered, sess)
		}
	}
	if len(delivered) > 0 || typ == "headline" {
		return delivered
	}
	m.Offline = s.storeOffline(ctx, st, m.To.Bare())
	return nil
}

// messageTargets returns the available resources a bare-JID message goes to:
// those with the highest non-negative priority, or with all=true every
// available resource with non-negative priority (RFC 6121 §8.5.2.1.1).
func (s *Server) messageTargets(username string, all bool) []*Session {
	s.router.mu.RLock()
	defer s.router.mu.RUnlock()
	u := s.router.users[username]
	if u == nil {
		return nil
	}
	var out []*Session
	best := -1
	for _, sess := range u.byResource {
		if !sess.available || sess.priority < 0 {
			continue
		}
		switch {
		case all:
			out = append(out, sess)
		case sess.priority > best:
			best = sess.priority
			out = append(out[:0], sess)
		case sess.priority == best:
			out = append(out, sess)
		}
	}
	return out
}

// storeOffline keeps a message for later delivery (XEP-0160) with a delay
// stamp (XEP-0203 §3) and reports whether it did. Messages without content
// worth keeping (no body, subject or other payload besides chat states) are
// dropped, as XEP-0160 §3 allows. A full store bounces service-unavailable to
// the sender.
func (s *Server) storeOffline(ctx context.Context, st *xmlel.Element, to jid.JID) bool {
	if !worthStoring(st) {
		return false
	}
	stored := withDelay(st, s.domain.String(), s.now()).ShallowCopy()
	stored.Name.Space = NSClient
	err := s.store.PushOffline(ctx, to.Localpart(), []byte(stored.String()), s.now(), s.limits.MaxOfflinePerUser)
	switch {
	case err == nil:
		// A resource may have become available, and read the offline table,
		// between the routing decision and this insert: hand the message
		// over now instead of at the next login.
		for _, sess := range s.router.sessions(to.Localpart()) {
			if sess.Available() && sess.Priority() >= 0 {
				s.deliverOffline(ctx, sess)
				break
			}
		}
		return true
	case errors.Is(err, store.ErrQuotaExceeded):
		s.log.Info("offline storage full", "user", to.Localpart())
		s.bounce(ctx, st, Errorf(ErrServiceUnavailable, "the recipient's offline storage is full"))
	default:
		s.log.Error("storing offline message failed", "err", err)
		s.bounce(ctx, st, ErrInternal)
	}
	return false
}

// worthStoring reports whether a message carries something a user would miss:
// any child other than chat-state notifications (XEP-0085 §5.5) and
// processing hints asking not to store (XEP-0334 §4.2 no-store).
func worthStoring(st *xmlel.Element) bool {
	worth := false
	for _, c := range st.Elements() {
		switch c.Name.Space {
		case "http://jabber.org/protocol/chatstates":
			continue
		case "urn:xmpp:hints":
			if c.Name.Local == "no-store" || c.Name.Local == "no-permanent-store" {
				return false
			}
			if c.Name.Local == "store" {
				worth = true
			}
			continue
		}
		worth = true
	}
	return worth
}

// deliverOffline sends stored messages to a session that just became
// available with non-negative priority (XEP-0160 §3), deleting what was queued.
func (s *Server) deliverOffline(ctx context.Context, sess *Session) {
	// One delivery per account at a time, so that a message is read and
	// deleted by exactly one of them (see storeOffline).
	mu := &s.offlineMu[offlineStripe(sess.username)]
	mu.Lock()
	defer mu.Unlock()
	msgs, err := s.store.OfflineMessages(ctx, sess.username)
	if err != nil {
		s.log.Error("reading offline messages failed", "err", err)
		return
	}
	var last int64
	for _, m := range msgs {
		el, err := xmlel.Parse(string(m.Stanza))
		if err != nil {
			s.log.Error("corrupt offline message skipped", "id", m.ID, "err", err)
			last = m.ID
			continue
		}
		if from, err := jid.Parse(el.Get("from")); err == nil && !s.allowed(ctx, el, from, sess.bare) {
			last = m.ID // blocked since it was stored: dropped
			continue
		}
		if !sess.Send(el) {
			break
		}
		last = m.ID
	}
	if last > 0 {
		if err := s.store.DeleteOffline(ctx, sess.username, last); err != nil {
			s.log.Error("deleting offline messages failed", "err", err)
		}
	}
}

// delayStamp formats t as XEP-0082 DateTime with milliseconds.
func delayStamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// offlineStripes is the number of offline delivery locks.
const offlineStripes = 64

// offlineStripe maps an account to one of the offline delivery locks.
func offlineStripe(username string) int {
	h := fnv.New32a()
	h.Write([]byte(username))
	return int(h.Sum32() % offlineStripes)
}
