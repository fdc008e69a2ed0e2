package server

import (
	"context"
	"errors"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// routeMessage delivers a message stanza by the rules of RFC 6121 §8.5.
// from is the (already stamped) sender, to the parsed 'to' (zero if absent).
func (s *Server) routeMessage(ctx context.Context, st *xmlel.Element, from, to jid.JID) {
	if to.String() == "" {
		// RFC 6120 §10.3.1: no 'to' means the sender's own bare JID.
		to = from.Bare()
		st.Set("to", to.String())
	}
	typ := st.Get("type")
	if !s.IsLocal(to) {
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
	if res := to.Resourcepart(); res != "" {
		if sess := s.router.session(to); sess != nil && sess.Send(st) {
			return // RFC 6121 §8.5.3.1
		}
		// RFC 6121 §8.5.3.2.1: no such resource.
		switch typ {
		case "", "normal", "chat":
			// Treated as addressed to the bare JID.
		case "groupchat":
			s.bounce(ctx, st, ErrServiceUnavailable)
			return
		default: // headline, error
			return
		}
	}
	s.deliverToBare(ctx, st, to.Bare(), typ)
}

// deliverToBare applies RFC 6121 §8.5.2.1.1 for a message to an existing
// local account's bare JID.
func (s *Server) deliverToBare(ctx context.Context, st *xmlel.Element, to jid.JID, typ string) {
	switch typ {
	case "groupchat":
		s.bounce(ctx, st, ErrServiceUnavailable)
		return
	case "error":
		return
	}
	targets := s.messageTargets(to.Localpart(), typ == "headline")
	delivered := false
	for _, sess := range targets {
		if sess.Send(st) {
			delivered = true
		}
	}
	if delivered || typ == "headline" {
		return
	}
	s.storeOffline(ctx, st, to)
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
// stamp (XEP-0203 §3). Messages without content worth keeping (no body,
// subject or other payload besides chat states) are dropped, as XEP-0160 §3
// allows. A full store bounces service-unavailable to the sender.
func (s *Server) storeOffline(ctx context.Context, st *xmlel.Element, to jid.JID) {
	if !worthStoring(st) {
		return
	}
	stored := st.ShallowCopy()
	stored.Name.Space = NSClient
	stored.Add(xmlel.New(NSDelay, "delay", "from", s.domain.String(), "stamp", delayStamp(s.now())))
	err := s.store.PushOffline(ctx, to.Localpart(), []byte(stored.String()), s.now(), s.limits.MaxOfflinePerUser)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrQuotaExceeded):
		s.log.Info("offline storage full", "user", to.Localpart())
		s.bounce(ctx, st, Errorf(ErrServiceUnavailable, "the recipient's offline storage is full"))
	default:
		s.log.Error("storing offline message failed", "err", err)
		s.bounce(ctx, st, ErrInternal)
	}
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
