package server

import (
	"context"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// routeIQ handles an IQ from a local session (RFC 6120 §8.2.3, RFC 6121
// §8.5): requests to the server or an account go to the registered handler,
// requests to a full JID are delivered to that session, everything else is
// answered with the proper error.
func (s *Server) routeIQ(ctx context.Context, sess *Session, st *xmlel.Element, from, to jid.JID) {
	typ := st.Get("type")
	switch typ {
	case "result", "error":
		// Responses travel to the full JID they name; one for the server or for
		// nobody is dropped (RFC 6120 §8.2.3 forbids answering it).
		if to.Equal(s.domain) || (s.IsLocal(to) && to.Localpart() != "" && to.Resourcepart() == "") {
			// Answers to Request (from the domain) or RequestFrom (from an
			// account's bare JID).
			s.resolvePending(st)
			return
		}
		if !s.IsLocal(to) {
			s.toComponent(ctx, st, from, to)
			return
		}
		if to.Resourcepart() != "" {
			if target := s.router.session(to); target != nil && s.allowed(ctx, st, from, to) {
				target.Send(st)
			}
		}
		return
	case "get", "set":
	default:
		sess.Send(ErrorReply(st, Errorf(ErrBadRequest, "IQ type must be get, set, result or error")))
		return
	}
	if st.Get("id") == "" {
		sess.Send(ErrorReply(st, Errorf(ErrBadRequest, "IQ requests need an id (RFC 6120 §8.2.3)")))
		return
	}
	payloads := st.Elements()
	if len(payloads) != 1 {
		sess.Send(ErrorReply(st, Errorf(ErrBadRequest, "an IQ request has exactly one payload element")))
		return
	}
	if to.String() == "" {
		// RFC 6120 §10.3.3: handled on behalf of the sender's account.
		s.answerIQ(ctx, sess, st, payloads[0], from, from.Bare(), ToAccount)
		return
	}
	if !s.IsLocal(to) {
		if s.toComponent(ctx, st, from, to) {
			return
		}
		sess.Send(ErrorReply(st, Errorf(ErrRemoteServerNotFound, "federation is not enabled on this server")))
		return
	}
	switch {
	case to.Localpart() == "" && to.Resourcepart() == "":
		s.answerIQ(ctx, sess, st, payloads[0], from, to, ToServer)
	case to.Localpart() == "":
		sess.Send(ErrorReply(st, ErrServiceUnavailable))
	case to.Resourcepart() == "":
		if !to.Equal(from.Bare()) {
			exists, err := s.store.AccountExists(ctx, to.Localpart())
			if err != nil || !exists {
				// RFC 6121 §8.5.1: the same answer as for an unsupported namespace.
				sess.Send(ErrorReply(st, ErrServiceUnavailable))
				return
			}
			if !s.allowed(ctx, st, from, to) {
				return // the filter answered
			}
		}
		s.answerIQ(ctx, sess, st, payloads[0], from, to, ToAccount)
	default:
		// RFC 6121 §8.5.3.1 / §8.5.3.2.1.
		if target := s.router.session(to); target != nil {
			if !s.allowed(ctx, st, from, to) || target.Send(st) {
				return
			}
		}
		sess.Send(ErrorReply(st, ErrServiceUnavailable))
	}
}

// answerIQ runs the handler for (target, type, payload name) and sends the
// result or error to the requester.
func (s *Server) answerIQ(ctx context.Context, sess *Session, st, payload *xmlel.Element, from, to jid.JID, target Target) {
	typ := st.Get("type")
	h := s.iq[iqKey{target: target, typ: typ, name: payload.Name}]
	if h == nil && target == ToAccount && to.Equal(from.Bare()) && st.Get("to") == "" {
		// A request with no 'to' that only the server implements (ping,
		// version, time) is answered by the server.
		h = s.iq[iqKey{target: ToServer, typ: typ, name: payload.Name}]
	}
	if h == nil {
		sess.Send(ErrorReply(st, ErrServiceUnavailable))
		return
	}
	res, err := h(ctx, &IQ{Stanza: st, Payload: payload, Type: typ, From: from, To: to, Session: sess})
	if err != nil {
		se := asStanzaError(err)
		if se == ErrInternal {
			s.log.Error("IQ handler failed", "ns", payload.Name.Space, "err", err)
		}
		sess.Send(ErrorReply(st, se))
		return
	}
	reply := xmlel.New(NSClient, "iq", "type", "result", "id", st.Get("id"))
	if st.Get("to") != "" {
		reply.Set("from", st.Get("to"))
	}
	reply.Set("to", from.String())
	if res != nil {
		reply.Add(res)
	}
	sess.Send(reply)
}

// Request sends an IQ get or set from the server (from = the domain) to a
// local full JID and waits for the answer or ctx's end (XEP-0030 queries for
// XEP-0115 caps, for example). iq must have type, to and a payload; its id is
// set here. It returns the result or error IQ, or ctx.Err(), or
// ErrServiceUnavailable when the recipient has no session.
func (s *Server) Request(ctx context.Context, iq *xmlel.Element) (*xmlel.Element, error) {
	iq.Set("from", s.domain.String())
	to, err := jid.Parse(iq.Get("to"))
	if err != nil {
		return nil, ErrJIDMalformed
	}
	target := s.router.session(to)
	if target == nil {
		return nil, ErrServiceUnavailable
	}
	return s.await(ctx, iq, func() bool { return target.Send(iq) })
}

// RequestFrom sends an IQ get or set on behalf of a local account or a
// component: iq's 'from' must be the account's bare JID (for example XEP-0357
// notifications published from the user's JID to an app server) or a JID at
// a component's domain (a XEP-0410 ping from a room to an occupant). It is
// routed like any stanza and the answer addressed to that JID is returned.
// Errors as for Request; an unreachable recipient yields its error IQ or
// ctx.Err().
func (s *Server) RequestFrom(ctx context.Context, iq *xmlel.Element) (*xmlel.Element, error) {
	from, err := jid.Parse(iq.Get("from"))
	account := err == nil && s.IsLocal(from) && from.Localpart() != "" && from.Resourcepart() == ""
	if !account && (err != nil || !s.IsComponent(from)) {
		return nil, ErrJIDMalformed
	}
	return s.await(ctx, iq, func() bool { s.routeStanza(ctx, iq); return true })
}

// await registers iq's answer slot, sends it with send and waits.
func (s *Server) await(ctx context.Context, iq *xmlel.Element, send func() bool) (*xmlel.Element, error) {
	id := pendingPrefix + randomID(8)
	iq.Set("id", id)
	ch := make(chan *xmlel.Element, 1)
	s.pendingMu.Lock()
	if s.pending == nil {
		s.pending = make(map[string]chan *xmlel.Element)
	}
	s.pending[id] = ch
	s.pendingMu.Unlock()
	defer func() {
		s.pendingMu.Lock()
		delete(s.pending, id)
		s.pendingMu.Unlock()
	}()
	if !send() {
		return nil, ErrServiceUnavailable
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// resolvePending hands an IQ answer to the Request or RequestFrom waiting
// for it and reports whether one was; unknown answers are dropped by the
// callers (RFC 6120 §8.2.3).
func (s *Server) resolvePending(st *xmlel.Element) bool {
	s.pendingMu.Lock()
	ch := s.pending[st.Get("id")]
	delete(s.pending, st.Get("id"))
	s.pendingMu.Unlock()
	if ch != nil {
		ch <- st
	}
	return ch != nil
}

// pendingPrefix starts the id of every IQ the server sends and awaits.
const pendingPrefix = "srv-"
