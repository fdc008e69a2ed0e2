package server

import "github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"

// maxHeld bounds the stanzas held back for an inactive client; beyond it
// everything is flushed.
const maxHeld = 100

// csiState holds back what an inactive client does not need right away
// (XEP-0352 §4 leaves the policy to the server): presence updates, of which
// only the newest per sender matters, chat states and similar notifications.
// Messages with content and every IQ are delivered at once, after what was
// held, so order is kept.
type csiState struct {
	held []*xmlel.Element
}

// hold keeps st back and reports true, or reports false for a stanza that
// must go now (the caller then flushes).
func (c *csiState) hold(st *xmlel.Element) bool {
	if important(st) || len(c.held) >= maxHeld {
		return false
	}
	if st.Name.Local == "presence" || chatStateOnly(st) {
		// Superseded: drop an older held stanza of the same kind from the
		// same sender.
		from, kind := st.Get("from"), st.Name.Local
		kept := c.held[:0]
		for _, h := range c.held {
			if h.Get("from") == from && h.Name.Local == kind && (kind == "presence" || chatStateOnly(h)) {
				continue
			}
			kept = append(kept, h)
		}
		c.held = kept
	}
	c.held = append(c.held, st)
	return true
}

// flush returns the held stanzas in order and empties the buffer.
func (c *csiState) flush() []*xmlel.Element {
	h := c.held
	c.held = nil
	return h
}

// important reports whether a stanza must reach an inactive client now: IQs,
// errors, subscription requests, and messages with a body, subject or
// encrypted payload (what a push notification would be sent for).
func important(st *xmlel.Element) bool {
	switch st.Name.Local {
	case "iq":
		return true
	case "presence":
		t := st.Get("type")
		return t != "" && t != "unavailable"
	}
	if st.Get("type") == "error" {
		return true
	}
	for _, c := range st.Elements() {
		switch {
		case c.Name.Local == "body" || c.Name.Local == "subject":
			return true
		case c.Name.Local == "encrypted": // OMEMO (XEP-0384), any version
			return true
		case c.Name.Space == "jabber:x:conference" || c.Name.Space == "http://jabber.org/protocol/muc#user":
			return true // invitations
		}
	}
	return false
}

// chatStateOnly reports whether a message carries only XEP-0085 chat states
// and hints.
func chatStateOnly(st *xmlel.Element) bool {
	if st.Name.Local != "message" {
		return false
	}
	found := false
	for _, c := range st.Elements() {
		switch c.Name.Space {
		case "http://jabber.org/protocol/chatstates":
			found = true
		case "urn:xmpp:hints", "urn:xmpp:sid:0":
		default:
			return false
		}
	}
	return found
}

// handleCSI switches a session between active and inactive (XEP-0352 §3).
func (s *Server) handleCSI(sess *Session, el *xmlel.Element) {
	sess.outMu.Lock()
	defer sess.outMu.Unlock()
	switch el.Name.Local {
	case "inactive":
		if sess.csi == nil {
			sess.csi = &csiState{}
		}
	case "active":
		if sess.csi != nil {
			held := sess.csi.flush()
			sess.csi = nil
			for _, h := range held {
				if !sess.sendLocked(h) {
					break
				}
			}
		}
	}
}
