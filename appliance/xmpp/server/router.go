package server

import (
	"context"
	"sort"
	"sync"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// router is the table of bound sessions by account and resource.
type router struct {
	mu    sync.RWMutex
	users map[string]*userSessions // localpart -> sessions
}

type userSessions struct {
	byResource map[string]*Session
}

// bind registers sess under its resource and returns the session it replaced.
func (r *router) bind(sess *Session) (old *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.users[sess.username]
	if u == nil {
		u = &userSessions{byResource: make(map[string]*Session)}
		r.users[sess.username] = u
	}
	old = u.byResource[sess.jid.Resourcepart()]
	u.byResource[sess.jid.Resourcepart()] = sess
	return old
}

// unbind removes sess if it is still the registered session for its resource,
// and reports whether it was.
func (r *router) unbind(sess *Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.users[sess.username]
	if u == nil || u.byResource[sess.jid.Resourcepart()] != sess {
		return false
	}
	delete(u.byResource, sess.jid.Resourcepart())
	if len(u.byResource) == 0 {
		delete(r.users, sess.username)
	}
	return true
}

// session returns the session bound to a full JID, or nil.
func (r *router) session(full jid.JID) *Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if u := r.users[full.Localpart()]; u != nil {
		return u.byResource[full.Resourcepart()]
	}
	return nil
}

// sessions returns all sessions of an account, sorted by resource.
func (r *router) sessions(username string) []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	u := r.users[username]
	if u == nil {
		return nil
	}
	out := make([]*Session, 0, len(u.byResource))
	for _, s := range u.byResource {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].jid.Resourcepart() < out[j].jid.Resourcepart() })
	return out
}

// all returns every bound session.
func (r *router) all() []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*Session
	for _, u := range r.users {
		for _, s := range u.byResource {
			out = append(out, s)
		}
	}
	return out
}

// Sessions returns the bound sessions of the local account username.
func (s *Server) Sessions(username string) []*Session { return s.router.sessions(username) }

// SessionCount returns the number of bound c2s sessions.
func (s *Server) SessionCount() int {
	s.router.mu.RLock()
	defer s.router.mu.RUnlock()
	n := 0
	for _, u := range s.router.users {
		n += len(u.byResource)
	}
	return n
}

// handleFromClient validates a top-level element read from a bound session,
// stamps its 'from' with the session's full JID (RFC 6120 §8.1.2.1) and routes
// it. A returned stream error ends the session.
func (s *Server) handleFromClient(ctx context.Context, sess *Session, el *xmlel.Element) *streamError {
	if el.Name.Space != NSClient {
		return newStreamError(stream.UnsupportedStanzaType, "unknown top-level element <"+el.Name.Local+"/>")
	}
	switch el.Name.Local {
	case "message", "presence", "iq":
	default:
		return newStreamError(stream.UnsupportedStanzaType, "unknown top-level element <"+el.Name.Local+"/>")
	}
	if f := el.Get("from"); f != "" {
		fj, err := jid.Parse(f)
		if err != nil || !(fj.Equal(sess.jid) || fj.Equal(sess.bare)) {
			return newStreamError(stream.InvalidFrom, "'from' does not match your address")
		}
	}
	el.Set("from", sess.jid.String())
	var to jid.JID
	if t := el.Get("to"); t != "" {
		var err error
		to, err = jid.Parse(t)
		if err != nil {
			if el.Get("type") != "error" {
				sess.Send(ErrorReply(el, Errorf(ErrJIDMalformed, "malformed 'to' address")))
			}
			return nil
		}
		el.Set("to", to.String())
	}
	switch el.Name.Local {
	case "iq":
		s.routeIQ(ctx, sess, el, sess.jid, to)
	case "message":
		if to.String() == "" {
			// RFC 6120 §10.3.1: no 'to' means the sender's own bare JID.
			to = sess.bare
			el.Set("to", to.String())
		}
		m := &Message{Stanza: el, From: sess.jid, To: to, Type: el.Get("type"), Sender: sess}
		if runMessageHooks(ctx, s.hooks.messageOut, m) {
			return nil
		}
		s.routeMessage(ctx, m)
	case "presence":
		s.routePresenceFromClient(ctx, sess, el, to)
	}
	return nil
}

// bounce answers st with an error stanza to its sender unless st is itself an
// error (RFC 6120 §8.3.1: never respond to an error with an error).
func (s *Server) bounce(ctx context.Context, st *xmlel.Element, se *StanzaError) {
	if st.Get("type") == "error" {
		return
	}
	reply := ErrorReply(st, se)
	if reply.Get("from") == "" {
		reply.Set("from", s.domain.String())
	}
	s.routeStanza(ctx, reply)
}

// routeStanza delivers a server- or component-generated stanza to a local
// full or bare JID or to a component; stanzas for other domains are dropped
// until s2s exists.
func (s *Server) routeStanza(ctx context.Context, st *xmlel.Element) {
	to, err := jid.Parse(st.Get("to"))
	if err != nil {
		return
	}
	from, _ := jid.Parse(st.Get("from"))
	if !s.IsLocal(to) {
		s.toComponent(ctx, st, from, to)
		return
	}
	switch st.Name.Local {
	case "message":
		s.routeMessage(ctx, &Message{Stanza: st, From: from, To: to, Type: st.Get("type")})
	case "presence":
		s.deliverPresence(ctx, st, to)
	case "iq":
		if sess := s.router.session(to); sess != nil && s.allowed(ctx, st, from, to) {
			sess.Send(st)
		}
	}
}
