package mam

import (
	"context"
	"strconv"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// getPrefs returns the user's archiving preferences (XEP-0441 §2.1), with
// default 'always' if never set; forbidden for another account.
func (a *Archive) getPrefs(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(a.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "you can only read your own archiving preferences")
	}
	p, err := a.s.Store().ArchivePrefs(ctx, iq.From.Localpart())
	if err != nil {
		return nil, err
	}
	return prefsElement(iq.Payload.Name.Space, p), nil
}

// setPrefs replaces the user's archiving preferences (XEP-0441 §2.1) and
// returns them as applied (JIDs normalized, duplicates dropped). Errors:
// forbidden for another account, bad-request for a missing or unknown
// 'default', jid-malformed for a bad <jid/>, not-acceptable for a list
// longer than MaxPrefsJIDs.
func (a *Archive) setPrefs(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(a.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "you can only change your own archiving preferences")
	}
	ns := iq.Payload.Name.Space
	p := store.ArchivePrefs{Default: iq.Payload.Get("default")}
	switch p.Default {
	case "always", "never", "roster":
	default:
		return nil, server.Errorf(server.ErrBadRequest, "'default' must be always, never or roster")
	}
	var err error
	if p.Always, err = prefsList(iq.Payload.Child(ns, "always")); err != nil {
		return nil, err
	}
	if p.Never, err = prefsList(iq.Payload.Child(ns, "never")); err != nil {
		return nil, err
	}
	user := iq.From.Localpart()
	if err := a.s.Store().SetArchivePrefs(ctx, user, p); err != nil {
		return nil, err
	}
	if p, err = a.s.Store().ArchivePrefs(ctx, user); err != nil {
		return nil, err
	}
	return prefsElement(ns, p), nil
}

// prefsList reads the <jid/> children of an <always/> or <never/> list.
func prefsList(list *xmlel.Element) ([]string, error) {
	if list == nil {
		return nil, nil
	}
	var out []string
	for _, c := range list.ChildrenNamed(list.Name.Space, "jid") {
		j, err := jid.Parse(strings.TrimSpace(c.Text()))
		if err != nil {
			return nil, server.Errorf(server.ErrJIDMalformed, "malformed JID in the archiving preferences")
		}
		out = append(out, j.String())
	}
	if len(out) > MaxPrefsJIDs {
		return nil, server.Errorf(server.ErrNotAcceptable, "at most "+strconv.Itoa(MaxPrefsJIDs)+" JIDs per list")
	}
	return out, nil
}

// prefsElement renders p as <prefs/> in namespace ns (XEP-0441 §2.1: both
// lists present, even if empty).
func prefsElement(ns string, p store.ArchivePrefs) *xmlel.Element {
	def := p.Default
	if def == "" {
		def = "always"
	}
	el := xmlel.New(ns, "prefs", "default", def)
	for _, l := range []struct {
		name string
		jids []string
	}{{"always", p.Always}, {"never", p.Never}} {
		list := xmlel.New(ns, l.name)
		for _, j := range l.jids {
			list.Add(xmlel.New(ns, "jid").AddText(j))
		}
		el.Add(list)
	}
	return el
}
