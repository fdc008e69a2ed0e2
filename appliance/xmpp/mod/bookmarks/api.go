package bookmarks

import (
	"context"
	"errors"
	"fmt"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/pep"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

// Add gives the local account user an autojoin bookmark of the group chat
// room (a room JID, stored bare and normalised) named name, as an item of
// its XEP-0402 urn:xmpp:bookmarks:1 node published through svc on the
// user's behalf: the node is created with XEP-0402's configuration
// (pep.PrivateConfig) if missing, the user's connected clients that asked
// for urn:xmpp:bookmarks:1+notify get the event (XEP-0402 §3.2, XEP-0163
// §4.3), and, when Register installed the conversion on svc, the XEP-0048
// storage:bookmarks document in private XML storage is rewritten to match.
//
// A bookmark of the room that the user already has keeps its nickname,
// password and <extensions/>; it gets autojoin and name. If it has both
// already nothing is published. Errors: a plain error for an invalid room
// JID, *server.StanzaError values from the PEP service (quota), or store
// errors (an unknown account among them).
func Add(ctx context.Context, svc *pep.Service, user, room, name string) error {
	r := roomJID(room)
	if r == "" {
		return fmt.Errorf("bookmarks: invalid room JID %q", room)
	}
	b := bookmark{name: name, autojoin: true}
	old, id, err := current(ctx, svc, user, r)
	if err != nil {
		return err
	}
	if id != "" {
		b.nick, b.password, b.extensions = old.nick, old.password, old.extensions
		if b.equal(old) {
			return nil
		}
	} else {
		id = r
	}
	cfg := pep.PrivateConfig()
	_, err = svc.Publish(ctx, user, NS, id, b.element(NS, r), &cfg)
	return err
}

// Remove takes the bookmark of the group chat room (a room JID) out of
// the local account user's XEP-0402 node through svc, notifying the
// retraction to its connected clients (XEP-0402 §3.4) and, when Register
// installed the conversion on svc, out of its XEP-0048 storage:bookmarks
// document. No bookmark of the room is no error. Errors: a plain error for
// an invalid room JID, or store errors.
func Remove(ctx context.Context, svc *pep.Service, user, room string) error {
	r := roomJID(room)
	if r == "" {
		return fmt.Errorf("bookmarks: invalid room JID %q", room)
	}
	_, id, err := current(ctx, svc, user, r)
	if err != nil || id == "" {
		return err
	}
	err = svc.Retract(ctx, user, NS, []string{id}, true)
	if errors.Is(err, server.ErrItemNotFound) {
		return nil // retracted meanwhile
	}
	return err
}

// current returns user's XEP-0402 bookmark of room (a normalised bare JID)
// and its item id (as published, maybe not normalised), or "" if it has
// none.
func current(ctx context.Context, svc *pep.Service, user, room string) (bookmark, string, error) {
	items, err := svc.Items(ctx, user, NS)
	if errors.Is(err, store.ErrNotFound) {
		return bookmark{}, "", nil
	}
	if err != nil {
		return bookmark{}, "", err
	}
	for _, it := range items {
		if roomJID(it.ID) == room {
			return parseConference(it.Payload, NS), it.ID, nil
		}
	}
	return bookmark{}, "", nil
}
