package muc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/bookmarks"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/pep"
	"mellium.im/xmpp/jid"
)

// maxRoomLocalpart bounds the room localpart derived from a circle name,
// in bytes (RFC 7622 allows 1023; addresses stay readable).
const maxRoomLocalpart = 48

// CircleChats is the group chat backend of Hearth's circles
// (invite.GroupChat): a circle's room is a room of MUC made with
// CreateRoom (members-only, non-anonymous, archived, persistent, without
// owner: the circle manages it), its members have the member affiliation,
// and each member has an autojoin XEP-0402 bookmark of it published
// through PEP (bookmarks.Add), so their clients join it by themselves.
//
// Users are local account localparts; rooms are bare room JIDs. Only a
// room's localpart addresses it, so a room recorded before the service's
// domain changed is still found: new bookmarks use the current domain, and
// RemoveMember removes the bookmarks of both addresses.
type CircleChats struct {
	// MUC is the group chat service. Required.
	MUC *Service
	// PEP is the personal eventing service holding the bookmarks
	// (bookmarks.Register installed on it keeps XEP-0048 clients in
	// sync). Required.
	PEP *pep.Service
}

// CreateRoom creates the circle's room titled circle at the first free
// localpart derived from the name ("Grandma's house" gives
// grandma-s-house, then grandma-s-house-2, ...; "circle" if nothing of the
// name is usable) and returns its bare JID. Errors: the service's store
// errors, or an error if no free address was found.
func (c CircleChats) CreateRoom(ctx context.Context, circle string) (string, error) {
	base := roomLocalpart(circle)
	if _, err := c.MUC.RoomJID(base); err != nil {
		base = "circle"
	}
	for i := 1; i <= 50; i++ {
		name := base
		if i > 1 {
			name += "-" + strconv.Itoa(i)
		}
		if i == 50 {
			name = base + "-" + strings.ToLower(randomID())
		}
		j, err := c.MUC.CreateRoom(ctx, name, circle, nil)
		if errors.Is(err, ErrRoomExists) {
			continue
		}
		if err != nil {
			return "", err
		}
		return j.String(), nil
	}
	return "", fmt.Errorf("muc: no free room address for circle %q", circle)
}

// DestroyRoom destroys room (XEP-0045 §10.9, reason "The circle's group
// chat was closed": the circle was deleted or its chat closed); a room
// that no longer exists is no error.
func (c CircleChats) DestroyRoom(ctx context.Context, room string) error {
	name, err := roomName(room)
	if err != nil {
		return err
	}
	err = c.MUC.DestroyRoom(ctx, name, "The circle's group chat was closed")
	if errors.Is(err, ErrRoomNotFound) {
		return nil
	}
	return err
}

// AddMember gives the local account user the member affiliation in room
// (XEP-0045 §9.3; an owner or admin keeps its affiliation) and an autojoin
// bookmark of it named circle.
func (c CircleChats) AddMember(ctx context.Context, room, circle, user string) error {
	name, err := roomName(room)
	if err != nil {
		return err
	}
	current, err := c.MUC.RoomJID(name)
	if err != nil {
		return err
	}
	u, err := c.userJID(user)
	if err != nil {
		return err
	}
	affs, err := c.MUC.Affiliations(ctx, name)
	if err != nil {
		return err
	}
	if affRank(affs[u]) < affRank(affMember) {
		if err := c.MUC.SetAffiliation(ctx, name, u, AffiliationMember, ""); err != nil {
			return err
		}
	}
	return bookmarks.Add(ctx, c.PEP, user, current.String(), circle)
}

// RemoveMember takes the local account user's member affiliation in room
// away (XEP-0045 §9.4: an occupant is removed with status 321; an owner or
// admin keeps its affiliation; nothing if the room no longer exists) and
// its bookmark of room.
func (c CircleChats) RemoveMember(ctx context.Context, room, user string) error {
	name, err := roomName(room)
	if err != nil {
		return err
	}
	u, err := c.userJID(user)
	if err != nil {
		return err
	}
	affs, err := c.MUC.Affiliations(ctx, name)
	switch {
	case errors.Is(err, ErrRoomNotFound):
	case err != nil:
		return err
	case affs[u] == affMember:
		if err := c.MUC.SetAffiliation(ctx, name, u, AffiliationNone, ""); err != nil && !errors.Is(err, ErrRoomNotFound) {
			return err
		}
	}
	if current, err := c.MUC.RoomJID(name); err == nil && current.String() != room {
		if err := bookmarks.Remove(ctx, c.PEP, user, current.String()); err != nil {
			return err
		}
	}
	return bookmarks.Remove(ctx, c.PEP, user, room)
}

// userJID returns the bare JID of the local account user.
func (c CircleChats) userJID(user string) (string, error) {
	j, err := jid.New(user, c.MUC.s.Domain().Domainpart(), "")
	if err != nil || user == "" {
		return "", fmt.Errorf("muc: invalid username %q", user)
	}
	return j.String(), nil
}

// roomName returns the localpart of the room JID room.
func roomName(room string) (string, error) {
	j, err := jid.Parse(room)
	if err != nil || j.Localpart() == "" {
		return "", fmt.Errorf("muc: invalid room JID %q", room)
	}
	return j.Localpart(), nil
}

// roomLocalpart derives a room localpart from a circle name: lower-case
// letters and digits, other runs of characters as one '-', at most
// maxRoomLocalpart bytes; "circle" if nothing is left.
func roomLocalpart(circle string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(circle) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if b.Len()+len(string(r)) > maxRoomLocalpart {
				return finish(b.String())
			}
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0 && b.Len() < maxRoomLocalpart:
			b.WriteByte('-')
			dash = true
		}
	}
	return finish(b.String())
}

func finish(s string) string {
	s = strings.TrimRight(s, "-")
	if s == "" {
		return "circle"
	}
	return s
}
