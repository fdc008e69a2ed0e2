package server

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// Component is a service living at its own domain next to the served one,
// like an internal XEP-0114 component (XEP-0045 group chat on groups.DOMAIN,
// XEP-0363 upload on upload.DOMAIN). The router hands it every stanza whose
// 'to' domain is the component's domain; the component answers and sends
// through Server.Route with its own domain (or a JID at it) as 'from'.
type Component interface {
	// HandleStanza receives a message, presence or IQ addressed to the
	// component's domain or to a JID at it. from is the validated sender
	// (stamped by the server for local clients); to is the parsed 'to'.
	// It runs on the sender's goroutine: it must not block for long, and it
	// must not keep st after returning unless it copies it.
	HandleStanza(ctx context.Context, st *xmlel.Element, from, to jid.JID)
}

// AddComponent serves c at domain, which must be a valid domain JID other
// than the served domain (conventionally a subdomain: "groups.example.org").
// Register before the first ListenC2S. It fails for an invalid or duplicate
// domain.
func (s *Server) AddComponent(domain string, c Component) error {
	d, err := jid.Parse(domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" || d.Equal(s.domain) {
		return fmt.Errorf("server: invalid component domain %q", domain)
	}
	if s.components == nil {
		s.components = make(map[string]Component)
	}
	if _, dup := s.components[d.Domainpart()]; dup {
		return fmt.Errorf("server: component domain %q registered twice", domain)
	}
	s.components[d.Domainpart()] = c
	return nil
}

// Components returns the domains of the registered components, sorted (the
// server's XEP-0030 disco#items list them).
func (s *Server) Components() []string {
	out := make([]string, 0, len(s.components))
	for d := range s.components {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// IsComponent reports whether j is at a component's domain.
func (s *Server) IsComponent(j jid.JID) bool {
	_, ok := s.components[j.Domainpart()]
	return ok
}

// toComponent hands st to the component serving to's domain and reports
// whether there was one. A stanza from a local account passes the outbound
// filters first (XEP-0191: a blocked room gets nothing); an IQ answer to a
// request the server sent on the component's behalf (RequestFrom) is
// resolved here instead.
func (s *Server) toComponent(ctx context.Context, st *xmlel.Element, from, to jid.JID) bool {
	c := s.components[to.Domainpart()]
	if c == nil {
		return false
	}
	if s.IsLocal(from) && from.Localpart() != "" && !s.allowed(ctx, st, from, to) {
		return true
	}
	if st.Name.Local == "iq" && (st.Get("type") == "result" || st.Get("type") == "error") &&
		strings.HasPrefix(st.Get("id"), pendingPrefix) && s.resolvePending(st) {
		return true
	}
	c.HandleStanza(ctx, st, from, to)
	return true
}
